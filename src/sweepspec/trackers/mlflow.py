"""MLflow: one parent run per sweep, one nested run per trial, each trial in one batch.

The layout (read it back with ``mlflow.search_runs`` and ``MlflowClient.get_metric_history``):

* experiment: ``tracking.experiment``, else the spec's ``name``, else the spec file's stem;
  the store is ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's own default.
* the sweep's parent run, named after the sweep, tagged ``sweepspec.role=sweep``,
  ``sweepspec.engine``, ``sweepspec.spec_hash``, ``sweepspec.sweep_id``, with the spec file
  (credentials redacted) and the compiled study (``optuna.json``) as artifacts. A resumed
  sweep reuses it. As trials finish it holds the best so far (single objective): the metric
  ``best_<metric>`` (one point per improvement, at the step of the trial's number), the
  artifact ``best_params.json`` (the best trial's real values by dotted name) and the tags
  ``sweepspec.best_trial`` and ``sweepspec.best_run_id``.
* one nested run per trial (``mlflow.parentRunId``), named ``trial-<number>``: params are the
  real values by dotted name (``optimizer.lr``); metrics are every reported value at its step,
  then the final values where they differ from the last reported value, once, at the step
  after it (so ``metrics.<name>`` in ``search_runs`` is the final value and no step holds
  two points); tags ``sweepspec.trial_number``, ``sweepspec.state`` (``COMPLETE`` | ``PRUNED``
  | ``FAIL``), for a finished trial ``sweepspec.values`` (the objective values told to the
  engine, a JSON list), for a failure ``sweepspec.error``, and with GPUs per trial
  ``sweepspec.gpus`` (the devices it saw). ``sweepspec decide`` adds ``sweepspec.decision``
  (:mod:`sweepspec.analysis.mlflow`). Run status: FINISHED, KILLED (stopped
  early), FAILED.

Writes run on a background thread (``create_run``, ``log_batch``, ``set_terminated`` per
trial), so MLflow overlaps the next trial; :meth:`MlflowTracker.close` flushes them.

Nothing is lost when MLflow goes away. HTTP waits are bounded (a dead server fails at once, see
:data:`SETTINGS`; variables the user set win). Each trial is first appended to a backlog
file beside the engine's state (``<journal>.mlflow-pending.jsonl``) and marked there once
logged; a trial MLflow could not take waits there, the sweep goes on, and the next ``run``
(or ``sweepspec sync``) logs it. A trial's run is looked up by its tags before one is made,
so nothing is logged twice, and a run left RUNNING gets its final state.

A value MLflow refuses (a metric named ``../x``, a name over 250 characters, a step beyond
64 bits) is left out, the rest of the trial is logged, the run ends as usual, and one line
(and the run's tag ``sweepspec.refused``) says what was left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..locks import process_alive
from ..redact import redact
from . import Echo, Point, SweepInfo, Tracker, TrackerUnavailable, TrialRecord

if TYPE_CHECKING:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from ..analysis.table import KnownSweep, Table
    from ..spec import Spec

__all__ = [
    "SETTINGS",
    "PENDING_SUFFIX",
    "RUN_STATUS",
    "Backlog",
    "MlflowTracker",
    "absolute_uri",
    "make",
    "trial_metrics",
]

RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
"""MLflow run status of a trial, by trial state."""

SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
"""MLflow's settings while sweepspec logs, unless the user set them: bounded HTTP waits (a
dead server fails at once, a hung one within ~20 s, where MLflow's defaults wait ~4 min per
call), and no "View run at URL" lines (two per trial, with the URI's password in them)."""

RETRY_AFTER = 30.0
"""Seconds the tracker leaves MLflow alone after a failed call before it tries again."""

PENDING_SUFFIX = ".mlflow-pending.jsonl"

_MAX_TAG = 5000
_MAX_PARAM = 6000  # MLflow's limits: 8000 for a tag, 6000 for a param (500 before 2.x)
_INT64 = 2**63
_REFUSALS = ("INVALID_PARAMETER_VALUE", "RESOURCE_LIMIT_EXCEEDED", "BAD_REQUEST")


# --------------------------------------------------------------------------- the backlog


CLAIM_TTL = 600.0
"""Seconds after which a waiting trial claimed by a process on another machine may be
taken by this one (a process on this machine holds its claim as long as it lives)."""


class Backlog:
    """Trials of one sweep not yet in MLflow, as JSON lines in a file that every process
    logging the sweep appends to, under a lock (several runs, workers, machines on a shared
    disk). A line holds a trial record (with the process that logs it, ``host:pid``), a claim
    on a waiting trial by a process that will log it, the number of a trial now logged, or the
    status the parent run could not be given. A process logs only the trials it claims: the
    ones it added, and the waiting ones of processes that are gone, so two runs catching up
    at once never log one trial twice."""

    def __init__(self, path: str | None, sweep_id: str) -> None:
        self.path = path
        self.sweep_id = sweep_id
        self.me = f"{socket.gethostname()}:{os.getpid()}"

    def add(self, record: TrialRecord) -> None:
        self._append({"trial": dataclasses.asdict(record), "by": self.me, "at": time.time()})

    def claim(self) -> list[TrialRecord]:
        """The waiting trials no live process holds, now held by this one (by number)."""
        if self.path is None:
            return []
        with self._locked():
            waiting, owners = self._waiting(self._lines())
            mine = [n for n in sorted(waiting) if self._free(owners.get(n))]
            for number in mine:
                self._write({"claim": number, "by": self.me, "at": time.time()})
        return [waiting[n] for n in mine]

    def _free(self, owner: tuple[str, float] | None) -> bool:
        if owner is None:
            return True
        worker, at = owner
        if worker == self.me:
            return True
        host, _, pid = worker.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return not process_alive(int(pid))
        return time.time() - at > CLAIM_TTL

    def done(self, number: int) -> None:
        self._append({"done": number})

    def finished(self, status: str) -> None:
        self._append({"status": status})

    def read(self) -> tuple[list[TrialRecord], str | None]:
        """The trials still to log (by number) and the parent's status, if one waits."""
        with self._locked():
            lines = self._lines()
        waiting, _ = self._waiting(lines)
        status = None
        for line in lines:
            if line.get("sweep") == self.sweep_id and "status" in line:
                status = line["status"]
        return [waiting[n] for n in sorted(waiting)], status

    def _waiting(
        self, lines: list[dict[str, Any]]
    ) -> tuple[dict[int, TrialRecord], dict[int, tuple[str, float]]]:
        """This sweep's trials not logged yet, and who holds each (host:pid, since when)."""
        waiting: dict[int, TrialRecord] = {}
        owners: dict[int, tuple[str, float]] = {}
        for line in lines:
            if line.get("sweep") != self.sweep_id:
                continue
            if "trial" in line:
                record = _record(dict(line["trial"]))
                waiting[record.number] = record
                owners[record.number] = (str(line.get("by", "")), float(line.get("at", 0)))
            elif "claim" in line:
                owners[int(line["claim"])] = (str(line["by"]), float(line["at"]))
            elif "done" in line:
                waiting.pop(line["done"], None)
        return waiting, owners

    def compact(self, keep_status: bool) -> int:
        """Drop this sweep's logged trials (and its waiting status, unless ``keep_status``);
        remove the file when nothing is left. Return how many trials still wait."""
        if self.path is None:
            return 0
        with self._locked():
            lines = self._lines()
            done = {
                line["done"]
                for line in lines
                if line.get("sweep") == self.sweep_id and "done" in line
            }
            kept = [line for line in lines if self._keep(line, done, keep_status)]
            if not kept:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            else:
                temporary = f"{self.path}.tmp"
                with open(temporary, "w", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(line) + "\n" for line in kept)
                os.replace(temporary, self.path)
        return len(
            {
                line["trial"]["number"]
                for line in kept
                if line.get("sweep") == self.sweep_id and "trial" in line
            }
        )

    def _keep(self, line: dict[str, Any], done: set[int], keep_status: bool) -> bool:
        if line.get("sweep") != self.sweep_id:
            return True
        if "trial" in line:
            return line["trial"].get("number") not in done
        if "claim" in line:
            return line["claim"] not in done
        return "status" in line and keep_status

    def _append(self, item: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self._locked():
            self._write(item)

    def _write(self, item: dict[str, Any]) -> None:
        """Append one line; the caller holds the lock."""
        assert self.path is not None
        text = json.dumps({"sweep": self.sweep_id, **item}, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def _lines(self) -> list[dict[str, Any]]:
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = fh.readlines()
        except FileNotFoundError:
            return []
        lines = []
        for text in raw:
            try:  # a line cut short by a crash is skipped: its trial is in the engine
                item = json.loads(text)
            except ValueError:
                continue
            if isinstance(item, dict):
                lines.append(item)
        return lines

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The backlog's lock (``flock`` on its own open file: threads exclude each other
        too)."""
        if self.path is None:
            yield
            return
        import fcntl

        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(f"{self.path}.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _record(data: dict[str, Any]) -> TrialRecord:
    history = [Point(**p) for p in data.pop("history", [])]
    return TrialRecord(history=history, **data)


# --------------------------------------------------------------------------- the tracker


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
        self.objective: str | None = None
        self.direction = "minimize"
        self.backlog = Backlog(None, "")
        self._owner = False
        self._queue: queue.Queue[TrialRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._waiting: list[TrialRecord] = []  # not logged yet, oldest first
        self._tried: set[int] = set()  # trials a call failed on: their run may exist
        self._retry_at = 0.0
        self._best: float | None = None
        self._best_step = -1
        self._best_logged: tuple[TrialRecord, str] | None = None
        self.failures = 0

    # ---- set-up

    def start(self, sweep: SweepInfo) -> None:
        self._open(sweep)
        self._owner = True
        assert self._client is not None and self.parent_run_id is not None
        self._client.update_run(self.parent_run_id, status="RUNNING")
        records = self.backlog.claim()
        if records:
            self._echo(
                f"sweepspec: MLflow: logging {len(records)} trials that an earlier run "
                f"could not log (queued in {self.backlog.path})"
            )
            self._waiting = list(records)
            self._tried = {r.number for r in records}
            self._flush()
        self._start_thread()

    def sync(self, sweep: SweepInfo) -> int:
        self._open(sweep)
        records = self.backlog.claim()
        _, status = self.backlog.read()
        self._waiting = list(records)
        self._tried = {r.number for r in records}
        self._flush()
        if self._waiting:
            raise TrackerUnavailable(self._queued_line(len(self._waiting)))
        self._merge()
        if status is not None:
            assert self._client is not None and self.parent_run_id is not None
            self._client.set_terminated(self.parent_run_id, status=status)
        self.backlog.compact(keep_status=False)
        return len(records)

    def _open(self, sweep: SweepInfo) -> None:
        """Connect, find or make the experiment and the sweep's parent run."""
        self.sweep_id = sweep.sweep_id
        self.objective, self.direction = sweep.objective, sweep.direction
        if sweep.state_path is not None:
            self.backlog = Backlog(sweep.state_path + PENDING_SUFFIX, sweep.sweep_id)
        client = self._connect(self.uri)
        try:
            self.experiment_id = _experiment_id(client, self.experiment)
            self.parent_run_id = _parent(client, self.experiment_id, sweep)
            self._load_best()
        except Exception as exc:
            reason = _connection_problem(exc)
            if reason is None:
                raise
            raise TrackerUnavailable(
                f"MLflow at {redact(str(self.uri))} does not answer ({reason}); start it, "
                "correct tracking.uri or MLFLOW_TRACKING_URI, or run with --tracker none"
            ) from None

    def attach(self, settings: dict[str, Any]) -> None:
        self._connect(settings["uri"])
        self.experiment_id = settings["experiment_id"]
        self.parent_run_id = settings["parent_run_id"]
        self.sweep_id = settings["sweep_id"]
        self.objective, self.direction = settings["objective"], settings["direction"]
        self.backlog = Backlog(settings["backlog"], self.sweep_id)
        with contextlib.suppress(Exception):  # the best is read again before it is replaced
            self._load_best()
        self._start_thread()

    def worker_settings(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "sweep_id": self.sweep_id,
            "objective": self.objective,
            "direction": self.direction,
            "backlog": self.backlog.path,
        }

    def _connect(self, uri: str | None) -> MlflowClient:
        for name, value in SETTINGS.items():
            os.environ.setdefault(name, value)
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
        self.backlog.add(record)  # first on disk: a crash or a dead server loses nothing
        self._queue.put(record)

    def _drain(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            if not self._stop.is_set():
                self._waiting.append(record)
                self._flush()

    def _flush(self) -> None:
        """Log the waiting trials in order, unless MLflow failed a moment ago."""
        if time.monotonic() < self._retry_at:
            return
        while self._waiting and not self._stop.is_set():
            record = self._waiting[0]
            try:
                self._log(record, retry=record.number in self._tried)
            except Exception as exc:  # the sweep goes on; the backlog keeps the trial
                self._tried.add(record.number)
                self._down(record, exc)
                return
            self._waiting.pop(0)
            self.backlog.done(record.number)

    def _down(self, record: TrialRecord, exc: Exception) -> None:
        self.failures += 1
        self._retry_at = time.monotonic() + RETRY_AFTER
        if self.failures == 1:
            reason = _connection_problem(exc) or f"{type(exc).__name__}: {_first_line(exc)}"
            self._echo(
                redact(
                    f"sweepspec: warning: MLflow at {self.uri} could not log trial "
                    f"{record.number} ({reason}); the sweep goes on, and what MLflow misses "
                    f"is queued in {self.backlog.path} for when it is back"
                )
            )

    def _log(self, record: TrialRecord, retry: bool = False) -> None:
        assert self._client is not None and self.experiment_id is not None
        client = self._client
        metrics, params, tags, refused = _loggable(record)
        run_id, status = self._find_trial(record.number) if retry else (None, None)
        if status is not None and status != "RUNNING":
            return  # logged before, by a run that could not say so
        if run_id is None:
            run = client.create_run(
                self.experiment_id,
                start_time=record.start_ms,
                tags=self._trial_tags(record),
                run_name=f"trial-{record.number}",
            )
            run_id = run.info.run_id
        else:
            metrics, params = _missing(client, run_id, metrics, params)
        try:
            client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        except Exception as exc:
            if not _refused(exc):
                raise
            refused += _one_by_one(client, run_id, metrics, params, tags)
        if refused:
            self._refused(client, run_id, record.number, refused)
        client.set_terminated(run_id, status=RUN_STATUS[record.state], end_time=record.end_ms)
        if record.state == "COMPLETE":
            self._update_best(record, run_id)

    def _refused(self, client: MlflowClient, run_id: str, number: int, refused: list[str]) -> None:
        unique = list(dict.fromkeys(refused))
        text = "; ".join(unique)
        client.set_tag(run_id, "sweepspec.refused", _text(text, _MAX_TAG))
        self._echo(
            f"sweepspec: warning: MLflow refused {len(unique)} of trial {number}'s values, "
            f"which were left out (the rest is logged): {text}"
        )

    def _find_trial(self, number: int) -> tuple[str | None, str | None]:
        assert self._client is not None and self.experiment_id is not None
        runs = self._client.search_runs(
            [self.experiment_id],
            max_results=1,
            filter_string=(
                f"tags.`sweepspec.sweep_id` = '{self.sweep_id}' and "
                f"tags.`sweepspec.trial_number` = '{number}'"
            ),
        )
        if not runs:
            return None, None
        return str(runs[0].info.run_id), str(runs[0].info.status)

    def _trial_tags(self, record: TrialRecord) -> dict[str, str]:
        assert self.parent_run_id is not None
        return {
            "mlflow.parentRunId": self.parent_run_id,
            "sweepspec.sweep_id": self.sweep_id,
            "sweepspec.trial_number": str(record.number),
            "sweepspec.state": record.state,
        }

    # ---- the best trial, on the parent run

    def _update_best(self, record: TrialRecord, run_id: str) -> None:
        if self.objective is None:
            return
        value = record.values[0] if record.values else record.metrics.get(self.objective)
        if value is None or not math.isfinite(value) or not self._better(value):
            return
        self._load_best()  # another worker may have found a better one meanwhile
        if not self._better(value):
            return
        from mlflow.entities import Metric, RunTag

        assert self._client is not None and self.parent_run_id is not None
        step = max(record.number, self._best_step + 1)
        self._client.log_batch(
            self.parent_run_id,
            metrics=[Metric(f"best_{self.objective}", value, _now_ms(), step)],
            tags=[
                RunTag("sweepspec.best_trial", str(record.number)),
                RunTag("sweepspec.best_run_id", run_id),
            ],
        )
        params = {k: redact(v) if isinstance(v, str) else v for k, v in record.params.items()}
        self._client.log_text(
            self.parent_run_id, json.dumps(params, indent=2, default=str), "best_params.json"
        )
        self._best, self._best_step = value, step
        self._best_logged = (record, run_id)

    def _better(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best if self.direction == "maximize" else value < self._best

    def _merge(self) -> None:
        """Runs that started together and each made a parent run: one is left, holding
        every trial run (:func:`merge_parents`), and the best this run found."""
        assert self._client is not None and self.experiment_id is not None
        try:
            winner = merge_parents(self._client, self.experiment_id, self.sweep_id)
            if winner is None or winner == self.parent_run_id:
                return
            self.parent_run_id = winner
            self._best, self._best_step = None, -1
            self._load_best()
            if self._best_logged is not None:
                self._update_best(*self._best_logged)
        except Exception as exc:  # MLflow away: the next run or sync merges them
            if _connection_problem(exc) is None:
                raise

    def _load_best(self) -> None:
        if self.objective is None or self._client is None or self.parent_run_id is None:
            return
        history = self._client.get_metric_history(self.parent_run_id, f"best_{self.objective}")
        if history:
            last = max(history, key=lambda m: (m.step, m.timestamp))
            self._best, self._best_step = float(last.value), int(last.step)

    # ---- the end

    def where(self) -> str | None:
        if self.uri is None:
            return None
        uri = redact(self.uri)
        return (
            f"sweepspec: runs are in MLflow, experiment {self.experiment!r} at {uri}; "
            f"look with: mlflow ui --backend-store-uri {uri}"
        )

    def close(self, status: str = "FINISHED") -> None:
        """Flush, then end the parent run. Ctrl-C stops the flush at once: what is not
        logged stays in the backlog."""
        try:
            if self._thread is not None:
                self._queue.put(None)
                while self._thread.is_alive():
                    self._thread.join(0.2)
                self._thread = None
                self._flush()
        except KeyboardInterrupt:
            self._stop.set()
            self._echo(self._queued_line(len(self._waiting) + self._queue.qsize()))
            raise
        if self._owner and not self._waiting:
            self._merge()
        parent_done = self._end_parent(status)
        left = len(self._waiting)
        if self._owner:  # the workers have stopped: what they left waiting counts too
            left = self.backlog.compact(keep_status=not parent_done)
        if left or not parent_done:
            self._echo(self._queued_line(left))
        self._owner = False

    def _end_parent(self, status: str) -> bool:
        if not self._owner or self._client is None or self.parent_run_id is None:
            return True
        if self._waiting:  # MLflow is down: do not wait for it once more
            self.backlog.finished(status)
            return False
        try:
            self._client.set_terminated(self.parent_run_id, status=status)
        except Exception:
            self.backlog.finished(status)
            return False
        return True

    def _queued_line(self, count: int) -> str:
        what = f"{count} trials are" if count else "the sweep's final status is"
        return redact(
            f"sweepspec: warning: MLflow at {self.uri} is behind: {what} queued in "
            f"{self.backlog.path}; the next 'sweepspec run' of this spec, or 'sweepspec sync', "
            "logs them"
        )


# --------------------------------------------------------------------------- what is logged


def trial_metrics(record: TrialRecord) -> list[Metric]:
    """Every reported value at its step, then each final value that differs from the last
    reported one, once, at the step after it (with seeds: the aggregate by name, and
    ``seed_<s>/<name>`` per seed)."""
    from mlflow.entities import Metric

    out = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in record.history]
    last: dict[str, tuple[int, float]] = {}
    for p in record.history:
        if p.step >= last.get(p.key, (-1, 0.0))[0]:
            last[p.key] = (p.step, p.value)
    top = max((p.step for p in record.history), default=0)
    # later than every reported value, so that MLflow's latest value is the final one
    at = max([record.end_ms] + [p.timestamp_ms + 1 for p in record.history])
    for key, value in _finals(record).items():
        if key not in last:
            out.append(Metric(key, value, at, top))
        elif not _same(last[key][1], value):
            out.append(Metric(key, value, at, last[key][0] + 1))
    return out


def _loggable(record: TrialRecord) -> tuple[list[Metric], list[Param], list[RunTag], list[str]]:
    """The trial's metrics, params and tags that MLflow takes, and what it would refuse."""
    from mlflow.entities import Param, RunTag
    from mlflow.utils.validation import _validate_metric, _validate_param

    refused: list[str] = []
    metrics = []
    for metric in trial_metrics(record):
        try:
            _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)  # type: ignore[no-untyped-call]
            if not -_INT64 <= metric.step < _INT64:
                raise ValueError(f"step {metric.step:.3g} is beyond a 64-bit integer")
        except Exception as exc:
            refused.append(f"metric {_short(metric.key)!r}: {_reason(exc, metric.key)}")
            continue
        metrics.append(metric)
    params = []
    for name, value in record.params.items():
        text = _text(redact(value) if isinstance(value, str) else value, _MAX_PARAM)
        try:
            _validate_param(name, text)  # type: ignore[no-untyped-call]
        except Exception as exc:
            refused.append(f"param {_short(name)!r}: {_reason(exc, name)}")
            continue
        params.append(Param(name, text))
    tags = []
    if record.values is not None and record.state == "COMPLETE":
        tags.append(RunTag("sweepspec.values", json.dumps(record.values)))
    if record.error:
        tags.append(RunTag("sweepspec.error", _text(redact(record.error), _MAX_TAG)))
    if record.gpus is not None:
        tags.append(RunTag("sweepspec.gpus", record.gpus or "none"))
    return metrics, params, tags, refused


def _one_by_one(
    client: MlflowClient,
    run_id: str,
    metrics: list[Metric],
    params: list[Param],
    tags: list[RunTag],
) -> list[str]:
    """Log a batch MLflow refused piece by piece (a metric's points together); return what
    it refused."""
    refused = []
    by_key: dict[str, list[Metric]] = {}
    for metric in metrics:
        by_key.setdefault(metric.key, []).append(metric)
    pieces: list[tuple[str, str, dict[str, Any]]] = [
        ("metric", k, {"metrics": v}) for k, v in by_key.items()
    ]
    pieces += [("param", p.key, {"params": [p]}) for p in params]
    pieces += [("tag", t.key, {"tags": [t]}) for t in tags]
    for kind, key, batch in pieces:
        try:
            client.log_batch(run_id, **batch)
        except Exception as exc:
            if not _refused(exc):
                raise
            refused.append(f"{kind} {_short(key)!r}: {_reason(exc, key)}")
    return refused


def _missing(
    client: MlflowClient, run_id: str, metrics: list[Metric], params: list[Param]
) -> tuple[list[Metric], list[Param]]:
    """Of a trial's batch, what its run (left RUNNING by an earlier try) does not hold."""
    data = client.get_run(run_id).data
    params = [p for p in params if p.key not in data.params]
    held: set[tuple[str, int, int, float]] = set()
    for key in {m.key for m in metrics}:
        held.update(
            (key, m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)
        )
    return [m for m in metrics if (m.key, m.step, m.timestamp, m.value) not in held], params


def _finals(record: TrialRecord) -> dict[str, float]:
    finals = dict(record.metrics)
    for run in record.seeds or []:
        finals.update({f"seed_{run['seed']}/{k}": v for k, v in run["metrics"].items()})
    return finals


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# --------------------------------------------------------------------------- the parent run


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


SETTLE = 2.0
"""Seconds a run that has just made the sweep's parent run (or found one made moments ago)
waits before it looks again: runs starting together (on several machines) each make one, and
all must then see every one of them to agree on the same."""

YOUNG_MS = 30_000
"""A parent run made less than this long ago may still have rivals being made."""


def _parent(client: MlflowClient, experiment_id: str, sweep: SweepInfo) -> str:
    """The sweep's parent run: the one there, else one made here. Runs that start together
    may each make one (MLflow has no "create unless there"); after :data:`SETTLE` seconds
    every one of them sees them all, takes the first made (by start time, then id) and
    deletes its own if it is not that one."""
    found = _parents(client, experiment_id, sweep.sweep_id)
    made = None
    if not found:
        made = _create_parent(client, experiment_id, sweep)
    if made is not None or _now_ms() - found[0][0] < YOUNG_MS:
        time.sleep(SETTLE)
        found = _parents(client, experiment_id, sweep.sweep_id) or found
    winner = found[0][1] if found else made
    assert winner is not None
    if made is not None and made != winner:
        client.delete_run(made)
    return winner


def _parents(
    client: MlflowClient, experiment_id: str, sweep_id: str, deleted: bool = False
) -> list[tuple[int, str]]:
    """The sweep's parent runs, first made first: (start time, run id); only the active
    ones unless ``deleted``."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`sweepspec.sweep_id` = '{sweep_id}' and tags.`sweepspec.role` = 'sweep'"
        ),
        run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY,
        max_results=1000,
    )
    return sorted((int(r.info.start_time or 0), str(r.info.run_id)) for r in runs)


def merge_parents(client: MlflowClient, experiment_id: str, sweep_id: str) -> str | None:
    """One parent run for the sweep: the trial runs under any other (one that lost the race
    at start, or was deleted after it) move to the first made, and the others are deleted.
    Return that one (None when there is none)."""
    active = _parents(client, experiment_id, sweep_id)
    if not active:
        return None
    winner = active[0][1]
    for _, other in _parents(client, experiment_id, sweep_id, deleted=True):
        if other == winner:
            continue
        moved = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{other}'"
        )
        for run in moved:
            client.set_tag(run.info.run_id, "mlflow.parentRunId", winner)
        if any(other == run_id for _, run_id in active):
            client.delete_run(other)
    return winner


def _create_parent(client: MlflowClient, experiment_id: str, sweep: SweepInfo) -> str:
    tags = {
        "sweepspec.role": "sweep",
        "sweepspec.engine": sweep.engine,
        "sweepspec.spec_hash": sweep.spec_hash,
        "sweepspec.sweep_id": sweep.sweep_id,
    }
    run = client.create_run(experiment_id, start_time=_now_ms(), tags=tags, run_name=sweep.name)
    run_id = str(run.info.run_id)
    spec = Path(sweep.spec_path)
    client.log_text(run_id, redact(spec.read_text(encoding="utf-8", errors="replace")), spec.name)
    artifact = json.dumps(sweep.artifact, indent=2, default=repr) + "\n"
    client.log_text(run_id, redact(artifact), sweep.artifact_name)
    return run_id


# --------------------------------------------------------------------------- small helpers


def _refused(exc: Exception) -> bool:
    """MLflow answered, and said no to a value (not: could not be reached)."""
    return getattr(exc, "error_code", None) in _REFUSALS


_CONNECTION = (  # most telling first
    re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)"),
    re.compile(r"(Read timed out|Connection refused|Connection reset|Connection aborted)"),
    re.compile(r"(Remote end closed connection|Max retries exceeded)"),
)


def _connection_problem(exc: Exception) -> str | None:
    """Why MLflow could not be reached, in a few words; None when it was reached."""
    text = str(exc)
    for pattern in _CONNECTION:
        found = pattern.search(text)
        if found is not None:
            return found.group(1).strip()
    return None


def _reason(exc: Exception, name: str) -> str:
    """MLflow's reason in one short sentence, without the (maybe huge) name it quotes."""
    text = str(exc).replace(name, _short(name))
    text = text.split("supplied: ", 1)[-1]
    text = text.split(". ", 1)[0].strip().rstrip(".")
    return _text(text, 160)


def _short(name: str) -> str:
    return name if len(name) <= 40 else f"{name[:20]}...({len(name)} characters)"


def _text(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def make(
    uri: str | None = None, experiment: str = "sweepspec", echo: Echo | None = None
) -> MlflowTracker:
    """The MLflow tracker: ``uri`` (None: ``MLFLOW_TRACKING_URI`` or MLflow's default) and
    ``experiment`` say where to log."""
    return MlflowTracker(uri=absolute_uri(uri), experiment=experiment, echo=echo)


def absolute_uri(uri: str | None) -> str:
    """MLflow's store with a relative path made absolute (``tracking.uri``, else
    ``MLFLOW_TRACKING_URI``, else MLflow's default ``./mlruns`` or ``sqlite:///mlflow.db``),
    so that a trial that changes the working directory does not move it."""
    import mlflow

    from ..locks import absolute_sqlite

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    if uri.startswith("sqlite:"):
        try:
            return absolute_sqlite(uri)
        except ValueError:
            return uri  # MLflow's own error names what is wrong with it
    if uri.startswith("file:") and not uri.startswith("file:///"):
        return Path(os.path.abspath(uri[len("file:") :])).as_uri()
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        return os.path.abspath(uri)
    return uri


LABEL = "MLflow"


def read_results(table: Table, spec: Spec, path: str, known: KnownSweep | None) -> None:
    """``sweepspec results --from mlflow``: fill ``table`` with the sweep's runs as MLflow
    holds them (:func:`sweepspec.analysis.mlflow.read`)."""
    from ..analysis.mlflow import read

    read(table, spec, path, known)


def record_decision(
    spec: Any, path: str, sweep_id: str, decision: dict[str, Any], echo: Echo
) -> None:
    """``sweepspec decide``: tag the chosen trial's run (and the parent run); a missing store
    or run is a :class:`~sweepspec.analysis.table.TableError`."""
    from ..analysis.mlflow import record_decision as tag_runs

    run_id = tag_runs(spec, path, sweep_id, decision)
    echo(
        f"sweepspec: MLflow: run {run_id} is tagged sweepspec.decision=chosen "
        "(mlflow.search_runs shows tags.sweepspec.decision)"
    )
