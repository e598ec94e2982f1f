"""MLflow: one parent run per sweep, one nested run per trial, each trial in one batch.

The layout (read it back with ``mlflow.search_runs`` and ``MlflowClient.get_metric_history``):

* experiment: ``tracking.experiment``, else the spec's ``name``, else the spec file's stem;
  the store is ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's own default.
* the sweep's parent run, named after the sweep, tagged ``sweepspec.role=sweep``,
  ``sweepspec.engine``, ``sweepspec.spec_hash``, ``sweepspec.sweep_id``, with the spec file
  and the compiled study (``optuna.json``) as artifacts. A resumed sweep reuses it.
* one nested run per trial (``mlflow.parentRunId``), named ``trial-<number>``: params are the
  real values by dotted name (``optimizer.lr``); metrics are every reported value at its step,
  then the final values (logged only where they differ from the last reported value, at
  that step, so ``metrics.<name>`` in ``search_runs`` is the final value); tags
  ``sweepspec.trial_number``, ``sweepspec.state`` (``COMPLETE`` | ``PRUNED`` | ``FAIL``) and,
  for a failure, ``sweepspec.error``. Run status: FINISHED, KILLED (stopped early), FAILED.

Writes run on a background thread (``create_run``, ``log_batch``, ``set_terminated`` per
trial), so MLflow overlaps the next trial; :meth:`MlflowTracker.close` flushes them.
A write that fails is reported as a warning and the sweep goes on: the engine's storage
holds every trial regardless.
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import Echo, SweepInfo, Tracker, TrialRecord

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

__all__ = ["MlflowTracker", "RUN_STATUS"]

RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
"""MLflow run status of a trial, by trial state."""

_MAX_TAG = 5000
_MAX_PARAM = 6000


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(
        self, uri: str | None = None, experiment: str = "sweepspec", echo: Echo | None = None
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self._echo = echo or _stderr
        self._client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.sweep_id = ""
        self._owner = False
        self._queue: queue.Queue[TrialRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures = 0

    # ---- set-up

    def start(self, sweep: SweepInfo) -> None:
        client = self._connect(self.uri)
        self.sweep_id = sweep.sweep_id
        self.experiment_id = _experiment_id(client, self.experiment)
        found = _find_parent(client, self.experiment_id, sweep.sweep_id)
        if found is not None:
            self.parent_run_id = found
            client.update_run(found, status="RUNNING")
        else:
            self.parent_run_id = _create_parent(client, self.experiment_id, sweep)
        self._owner = True
        self._start_thread()

    def attach(self, settings: dict[str, Any]) -> None:
        self._connect(settings["uri"])
        self.experiment_id = settings["experiment_id"]
        self.parent_run_id = settings["parent_run_id"]
        self.sweep_id = settings["sweep_id"]
        self._start_thread()

    def worker_settings(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "sweep_id": self.sweep_id,
        }

    def _connect(self, uri: str | None) -> MlflowClient:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri or mlflow.get_tracking_uri()
        self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._drain, name="sweepspec-mlflow", daemon=True)
        self._thread.start()

    # ---- trials

    def log_trial(self, record: TrialRecord) -> None:
        self._queue.put(record)

    def _drain(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self._log(record)
            except Exception as exc:  # the sweep goes on; the storage has the trial
                self._failed(record, exc)

    def _failed(self, record: TrialRecord, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            self._echo(
                f"sweepspec: warning: MLflow could not log trial {record.number}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            )

    def _log(self, record: TrialRecord) -> None:
        from mlflow.entities import Param, RunTag

        assert self._client is not None and self.experiment_id is not None
        run = self._client.create_run(
            self.experiment_id,
            start_time=record.start_ms,
            tags=self._trial_tags(record),
            run_name=f"trial-{record.number}",
        )
        run_id = run.info.run_id
        # mlflow < 3.16 leaves Param and RunTag untyped
        params = [
            Param(name, _text(value, _MAX_PARAM))  # type: ignore[no-untyped-call,unused-ignore]
            for name, value in record.params.items()
        ]
        tags = (
            [RunTag("sweepspec.error", _text(record.error, _MAX_TAG))]  # type: ignore[no-untyped-call,unused-ignore]
            if record.error
            else []
        )
        self._client.log_batch(run_id, metrics=trial_metrics(record), params=params, tags=tags)
        self._client.set_terminated(run_id, status=RUN_STATUS[record.state], end_time=record.end_ms)

    def _trial_tags(self, record: TrialRecord) -> dict[str, str]:
        assert self.parent_run_id is not None
        return {
            "mlflow.parentRunId": self.parent_run_id,
            "sweepspec.sweep_id": self.sweep_id,
            "sweepspec.trial_number": str(record.number),
            "sweepspec.state": record.state,
        }

    # ---- the end

    def where(self) -> str | None:
        if self.uri is None:
            return None
        return (
            f"sweepspec: runs are in MLflow, experiment {self.experiment!r} at {self.uri}; "
            f"look with: mlflow ui --backend-store-uri {self.uri}"
        )

    def close(self, status: str = "FINISHED") -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self.failures > 1:
            self._echo(
                f"sweepspec: warning: MLflow could not log {self.failures} trials "
                "(they are in the engine's storage: sweepspec results)"
            )
        if self._owner and self._client is not None and self.parent_run_id is not None:
            self._client.set_terminated(self.parent_run_id, status=status)
            self._owner = False


def trial_metrics(record: TrialRecord) -> list[Metric]:
    """Every reported value at its step, then the final values that differ from the last
    reported ones (with seeds: the aggregate by name, and ``seed_<s>/<name>`` per seed)."""
    from mlflow.entities import Metric

    out = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in record.history]
    last: dict[str, tuple[int, float]] = {}
    for p in record.history:
        last[p.key] = (p.step, p.value)
    top = max((p.step for p in record.history), default=0)
    # later than every reported value, so that MLflow's latest value is the final one
    at = max([record.end_ms] + [p.timestamp_ms + 1 for p in record.history])
    for key, value in _finals(record).items():
        step, previous = last.get(key, (top, None))
        if previous is None or not _same(previous, value):
            out.append(Metric(key, value, at, step))
    return out


def _finals(record: TrialRecord) -> dict[str, float]:
    finals = dict(record.metrics)
    for run in record.seeds or []:
        finals.update({f"seed_{run['seed']}/{k}": v for k, v in run["metrics"].items()})
    return finals


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another worker created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _find_parent(client: MlflowClient, experiment_id: str, sweep_id: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        max_results=1,
        filter_string=(
            f"tags.`sweepspec.sweep_id` = '{sweep_id}' and tags.`sweepspec.role` = 'sweep'"
        ),
    )
    return str(runs[0].info.run_id) if runs else None


def _create_parent(client: MlflowClient, experiment_id: str, sweep: SweepInfo) -> str:
    tags = {
        "sweepspec.role": "sweep",
        "sweepspec.engine": sweep.engine,
        "sweepspec.spec_hash": sweep.spec_hash,
        "sweepspec.sweep_id": sweep.sweep_id,
    }
    run = client.create_run(
        experiment_id, start_time=int(time.time() * 1000), tags=tags, run_name=sweep.name
    )
    run_id = str(run.info.run_id)
    client.log_artifact(run_id, sweep.spec_path)
    client.log_text(
        run_id, json.dumps(sweep.artifact, indent=2, default=repr) + "\n", sweep.artifact_name
    )
    return run_id


def _text(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
