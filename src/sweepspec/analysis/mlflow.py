"""The analysis table from MLflow (``results --from mlflow``), and decisions recorded there.

The sweep is read through MLflow's search API, in the layout :mod:`sweepspec.trackers.mlflow`
writes: the experiment (``tracking.experiment``, else the spec's ``name``, else the file's
stem) in the store (``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default);
the sweep's parent run (tag ``sweepspec.role=sweep``; its ``sweepspec.sweep_id`` is the one in
the engine's storage when that is here, else the latest parent named after the sweep); its
nested runs (``mlflow.parentRunId``), one per trial. A trial's row is rebuilt from its run:
``number`` and ``state`` from the tags ``sweepspec.trial_number`` and ``sweepspec.state``,
``params`` from the params (MLflow keeps text: each is read back as the spec's value it spells,
else as the number, boolean or ``None`` it spells, else kept as text), ``metrics`` from the run's
latest values (with ``seeds:``, the ``seed_<s>/<name>`` ones are the per-seed ``seeds``),
``values`` from the tag ``sweepspec.values``, ``error`` from ``sweepspec.error``, the decision
from ``sweepspec.decision`` and ``sweepspec.decision_why``, the times from the run's start and
end. MLflow keeps an infinite metric as the largest float; it is read back as infinite.

:func:`record_decision` tags the chosen trial's run ``sweepspec.decision=chosen`` (with
``sweepspec.decision_why`` and ``sweepspec.decision_time``), the run chosen before it
``superseded``, and the parent run ``sweepspec.decision_trial`` / ``_run_id`` / ``_why``:
``mlflow.search_runs`` shows them as ``tags.sweepspec.decision`` columns.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .table import KnownSweep, Table, TableError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from ..spec import Spec

__all__ = ["connect", "read", "record_decision", "typed_param"]

_SEED_KEY = re.compile(r"seed_(-?\d+)/(.+)")


class _Store:
    """The MLflow store and experiment of a spec."""

    def __init__(self, spec: Spec, path: str) -> None:
        from ..runners.sweep import experiment_name

        self.client, self.uri = connect(spec)
        self.experiment = experiment_name(spec, path)

    def call(self, what: Any, *args: Any, **kwargs: Any) -> Any:
        """One MLflow call; a store that does not answer is one line."""
        from ..redact import redact
        from ..trackers.mlflow import _connection_problem

        try:
            return what(*args, **kwargs)
        except TableError:
            raise
        except Exception as exc:
            reason = _connection_problem(exc)
            if reason is None:
                raise TableError(
                    f"MLflow at {redact(self.uri)} failed: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:300]}"
                ) from None
            raise TableError(
                f"MLflow at {redact(self.uri)} does not answer ({reason}); start it, or correct "
                "tracking.uri or MLFLOW_TRACKING_URI"
            ) from None

    def experiment_id(self) -> str:
        found = self.call(self.client.get_experiment_by_name, self.experiment)
        if found is None:
            from ..redact import redact

            raise TableError(
                f"MLflow at {redact(self.uri)} has no experiment {self.experiment!r} (the spec's "
                "tracking.experiment, else its name, else the file's stem): was the sweep run "
                "with the mlflow tracker?"
            )
        return str(found.experiment_id)

    def search(self, experiment_id: str, where: str) -> list[Run]:
        runs: list[Run] = []
        token = None
        while True:
            page = self.call(
                self.client.search_runs,
                [experiment_id],
                filter_string=where,
                max_results=1000,
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs


def connect(spec: Spec) -> tuple[MlflowClient, str]:
    """A client on the spec's store, with the tracker's bounded HTTP waits; a SQLite store or
    a folder that does not exist is an error (MLflow would make an empty one)."""
    from ..trackers.mlflow import SETTINGS, absolute_uri

    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    uri = absolute_uri(spec.tracking.uri if spec.tracking else None)
    local = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
    if uri.startswith("file:"):
        local = uri[len("file://") :] if uri.startswith("file://") else uri[len("file:") :]
    elif "://" not in uri and not uri.startswith("databricks"):
        local = uri
    if local is not None and not os.path.exists(local):
        raise TableError(
            f"no MLflow store at {local} (tracking.uri, MLFLOW_TRACKING_URI or MLflow's "
            "default): was the sweep run with the mlflow tracker, from this folder?"
        )
    return MlflowClient(tracking_uri=uri), uri


def _sweep_names(spec: Spec, path: str) -> set[str]:
    from ..compiler.optuna import study_name_for

    stem = Path(path).stem
    return {study_name_for(spec, path) or stem, spec.name or stem}


def _parent(
    store: _Store, experiment_id: str, spec: Spec, path: str, known: KnownSweep | None
) -> Run:
    where = "tags.`sweepspec.role` = 'sweep'"
    if known is not None:
        where += f" and tags.`sweepspec.sweep_id` = '{known.sweep_id}'"
    runs = store.search(experiment_id, where)
    if known is not None:
        if not runs:
            raise TableError(
                f"MLflow experiment {store.experiment!r} holds no run of sweep {known.name!r} "
                f"(sweep id {known.sweep_id}): it ran with another tracker, or MLflow was down "
                "('sweepspec sync' logs what waits)"
            )
        return runs[0]
    names = _sweep_names(spec, path)
    named = [r for r in runs if r.info.run_name in names]
    if not named:
        raise TableError(
            f"MLflow experiment {store.experiment!r} holds no sweep named "
            f"{' or '.join(sorted(map(repr, names)))}"
        )
    named.sort(key=lambda r: r.info.start_time or 0)
    if len(named) > 1:
        chosen = named[-1]
        sys.stderr.write(
            f"sweepspec: MLflow experiment {store.experiment!r} holds {len(named)} sweeps named "
            f"{chosen.info.run_name!r}; reading the latest (sweep id "
            f"{chosen.data.tags.get('sweepspec.sweep_id')}, run {chosen.info.run_id})\n"
        )
    return named[-1]


def read(table: Table, spec: Spec, path: str, known: KnownSweep | None) -> None:
    """Fill ``table`` with the sweep's trials as MLflow holds them."""
    store = _Store(spec, path)
    experiment_id = store.experiment_id()
    parent = _parent(store, experiment_id, spec, path, known)
    from ..redact import redact

    table.where = f"MLflow experiment {store.experiment!r} at {redact(store.uri)}"
    runs = store.search(experiment_id, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    runs = [r for r in runs if "sweepspec.trial_number" in r.data.tags]
    flat = spec.flat_parameters()
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):  # a re-logged trial: last
        row = _row(run, spec, flat)
        table.rows = [r for r in table.rows if r["number"] != row["number"]] + [row]
        table.run_ids[row["number"]] = run.info.run_id
    _say_missing(table, known, "MLflow")
    if any(r["state"] == "COMPLETE" and r["values"] is None for r in table.rows):
        table.notes.append(
            "sweepspec: MLflow: runs logged before sweepspec recorded 'sweepspec.values' have "
            "no objective values ('values' is null)"
        )


def _say_missing(table: Table, known: KnownSweep | None, tracker: str) -> None:
    if known is None:
        return
    held = {r["number"] for r in table.rows}
    missing = [n for n in known.numbers if n not in held]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
        table.notes.append(
            f"sweepspec: {tracker} holds {len(held)} of the {len(known.numbers)} trials in the "
            f"engine's storage; not there: {shown} (running, or not logged yet: the engine's "
            "storage has them, 'sweepspec results' without --from shows them)"
        )


def _row(run: Run, spec: Spec, flat: dict[str, Any]) -> dict[str, Any]:
    tags = run.data.tags
    metrics = {k: _metric(v) for k, v in run.data.metrics.items()}
    row: dict[str, Any] = {
        "number": int(tags["sweepspec.trial_number"]),
        "state": tags.get("sweepspec.state", "RUNNING"),
        "params": {
            name: typed_param(run.data.params[name], flat.get(name))
            for name in list(flat) + sorted(set(run.data.params) - set(flat))
            if name in run.data.params
        },
    }
    if spec.seeds is not None:
        own = {k: v for k, v in metrics.items() if _SEED_KEY.fullmatch(k) is None}
        row["metrics"] = own
        row["values"] = _values(tags)
        row["seeds"] = _seeds(metrics, spec.seeds.values, row["state"], tags)
    else:
        row["metrics"] = metrics
        row["values"] = _values(tags)
    if "sweepspec.error" in tags:
        row["error"] = tags["sweepspec.error"]
    row["datetime_start"] = _iso(run.info.start_time)
    row["datetime_complete"] = _iso(run.info.end_time)
    if "sweepspec.decision" in tags:
        row["decision"] = tags["sweepspec.decision"]
        row["decision_why"] = tags.get("sweepspec.decision_why", "")
    return row


def _values(tags: dict[str, str]) -> list[float] | None:
    text = tags.get("sweepspec.values")
    return [float(v) for v in json.loads(text)] if text else None


def _seeds(
    metrics: dict[str, float], seeds: list[int], state: str, tags: dict[str, str]
) -> list[dict[str, Any]]:
    """The per-seed metrics, for the seeds the trial ran: every seed of a COMPLETE trial; the
    first of a PRUNED one (only the first seed is pruned); of a FAIL, up to the one its
    error names (``seed <s>: ...``) or, with one seed, that one."""
    per: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        found = _SEED_KEY.fullmatch(key)
        if found is not None:
            per.setdefault(int(found.group(1)), {})[found.group(2)] = value
    ran = list(seeds)
    if state == "PRUNED":
        ran = seeds[:1]
    elif state == "FAIL":
        named = re.match(r"seed (-?\d+): ", tags.get("sweepspec.error", ""))
        if named is not None and int(named.group(1)) in seeds:
            ran = seeds[: seeds.index(int(named.group(1))) + 1]
        elif len(seeds) > 1:
            ran = [s for s in seeds if s in per]
    return [{"seed": s, "metrics": per.get(s, {})} for s in ran]


def _metric(value: float) -> float:
    if value == sys.float_info.max:  # MLflow's store for +inf
        return math.inf
    if value == -sys.float_info.max:
        return -math.inf
    return float(value)


def typed_param(text: str, param: Any) -> Any:
    """A param as MLflow keeps it (``str(value)``) read back as the value: one of the spec's
    own values (categorical or constant) that it spells, else the int, float, boolean or
    ``None`` it spells, else the text."""
    for value in _spec_values(param):
        if str(value) == text:
            return value
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _spec_values(param: Any) -> list[Any]:
    if param is None:
        return []
    if hasattr(param, "values") and isinstance(param.values, list):
        return list(param.values)
    if hasattr(param, "value"):
        return [param.value]
    return []


def _iso(ms: int | None) -> str | None:
    from ..runners.trials import iso_ms

    return iso_ms(ms) if ms else None


# --------------------------------------------------------------------------- decisions


def record_decision(spec: Spec, path: str, sweep_id: str, decision: dict[str, Any]) -> str:
    """Tag the decided trial's run (and the parent run) in MLflow; return the run's id."""
    from mlflow.entities import RunTag

    store = _Store(spec, path)
    experiment_id = store.experiment_id()
    known = KnownSweep(sweep_id, spec.name or Path(path).stem, [], [])
    parent = _parent(store, experiment_id, spec, path, known)
    number = int(decision["trial"])
    under = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    found = store.search(experiment_id, f"{under} and tags.`sweepspec.trial_number` = '{number}'")
    if not found:
        raise TableError(
            f"MLflow experiment {store.experiment!r} has no run of trial {number} yet (it may be "
            "queued while MLflow was down: 'sweepspec sync' logs it, then decide again)"
        )
    run_id = found[-1].info.run_id
    before = store.search(experiment_id, f"{under} and tags.`sweepspec.decision` = 'chosen'")
    for run in before:
        if run.info.run_id != run_id:
            store.call(store.client.set_tag, run.info.run_id, "sweepspec.decision", "superseded")
    why, when = str(decision["why"]), str(decision["time"])
    tags = [
        RunTag("sweepspec.decision", "chosen"),
        RunTag("sweepspec.decision_why", why),
        RunTag("sweepspec.decision_time", when),
    ]
    if decision.get("config"):
        tags.append(RunTag("sweepspec.decision_config", str(decision["config"])))
    store.call(store.client.log_batch, run_id, tags=tags)
    parent_tags = [
        RunTag("sweepspec.decision_trial", str(number)),
        RunTag("sweepspec.decision_run_id", run_id),
        RunTag("sweepspec.decision_why", why),
    ]
    store.call(store.client.log_batch, parent.info.run_id, tags=parent_tags)
    return str(run_id)
