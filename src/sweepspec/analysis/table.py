"""The analysis table: one row per trial of a sweep, from the engine's storage or a tracker.

:func:`load_table` reads the sweep of a spec from one source: ``engine`` (the engine's storage,
whichever engine ran it: :func:`which_engine`), ``mlflow`` (MLflow's search API:
:mod:`sweepspec.analysis.mlflow`) or ``wandb`` (W&B's offline run folders:
:mod:`sweepspec.analysis.wandb`). Every source gives the same trials (:attr:`Table.rows`, the
objects of ``results --format json``): ``number``, ``state``, ``params`` (real values by dotted
name), ``metrics`` (final values), ``values`` (the objective values told to the engine),
``seeds`` (per-seed final metrics, with ``seeds:``), ``error`` (a failure), ``cost`` (with
``budget.cost``: the sum over the trial's seeds of the cost metric's final value, as the
budget counts it), ``decision`` and ``decision_why`` (a trial chosen with ``sweepspec decide``:
``chosen``, or ``superseded`` once another was chosen), and each source's own clock:
``datetime_start``, ``datetime_complete`` and ``duration`` (seconds between them: the
engine's ask and tell, or the tracker run's start and end, a few milliseconds apart).

:meth:`Table.records` flattens them into columns named as ``mlflow.search_runs`` names them:
``number``, ``state``, ``params.<name>``, ``metrics.<name>``, ``duration``, ``cost``,
``decision``, ``decision_why``, ``error``, ``datetime_start``, ``datetime_complete``; with
``per_seed``, one row per (trial, seed) with a ``seed`` column and that seed's metrics (the
trial's row is the aggregate the engine optimised; the JSON keeps one object per trial).
:meth:`Table.frame` is the same as a pandas DataFrame (pandas comes with the ``mlflow`` extra).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from ..runners.base import Engine
    from ..spec import Spec

__all__ = [
    "SOURCES",
    "STATES",
    "Table",
    "TableError",
    "decision_columns",
    "mark_decisions",
    "load_table",
    "open_sweep_state",
    "which_engine",
]


def _sources() -> tuple[str, ...]:
    from ..trackers import TRACKERS, tracker_module

    readers = [name for name in TRACKERS if hasattr(tracker_module(name), "read_results")]
    return ("engine", *readers)


SOURCES = _sources()
"""Where ``results --from`` reads a sweep: ``engine`` (the engine's storage), or a tracker
whose module reads its runs back (``read_results``: ``mlflow``, ``wandb``)."""
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")

Row = dict[str, Any]
Echo = Callable[[str], None]


class TableError(Exception):
    """The sweep cannot be read from the source asked for: one line for the user."""


class MissingExtra(TableError):
    """The source needs a package that is not installed (``module``: the extra's module)."""

    def __init__(self, module: str) -> None:
        from ..commands import needs_extra

        super().__init__(needs_extra(module, "results"))
        self.module = module


@dataclass
class Table:
    """A sweep's trials and how to show them."""

    rows: list[Row]
    params: list[str]  # the spec's parameters by dotted name, in file order
    objectives: list[str]  # the spec's metric names, in file order
    source: str  # one of SOURCES: "engine", "mlflow", "wandb"
    where: str  # the engine's state, the MLflow experiment, the W&B folder
    cost_metric: str | None = None
    seeded: bool = False
    notes: list[str] = field(default_factory=list)  # what is missing from a partial result
    run_ids: dict[int, str] = field(default_factory=dict)  # trial number -> tracker run id

    def records(self, per_seed: bool = False) -> list[dict[str, Any]]:
        """One flat dict per trial (per trial and seed with ``per_seed``), column -> value."""
        out = []
        for row in self.rows:
            if per_seed and row.get("seeds"):
                for run in row["seeds"]:
                    out.append(self._flat(row, run["metrics"], run["seed"], per_seed))
            else:
                out.append(self._flat(row, row["metrics"], None, per_seed))
        return out

    def _flat(
        self, row: Row, metrics: dict[str, Any], seed: int | None, per_seed: bool
    ) -> dict[str, Any]:
        flat: dict[str, Any] = {"number": row["number"], "state": row["state"]}
        flat.update({f"params.{k}": v for k, v in row["params"].items()})
        flat.update({f"metrics.{k}": v for k, v in metrics.items()})
        if per_seed:
            flat["seed"] = seed
        flat["duration"] = row.get("duration")
        if self.cost_metric is not None:
            if seed is not None:
                flat["cost"] = _cost_of(metrics.get(self.cost_metric)) or 0.0
            else:
                flat["cost"] = row.get("cost")
        for key in ("decision", "decision_why", "error", "datetime_start", "datetime_complete"):
            if key in row:
                flat[key] = row[key]
        return flat

    def columns(self, per_seed: bool = False, every: bool = False) -> list[str]:
        """The columns shown by default (``every``: all there are), in order: number, state,
        the parameters in file order, the objectives then the other metrics by name, seed,
        duration, cost, the decision, the error, then (``every``) the times."""
        records = self.records(per_seed)
        present = {k for r in records for k in r}
        params = [f"params.{p}" for p in self.params if f"params.{p}" in present]
        params += sorted(k for k in present if k.startswith("params.") and k not in params)
        metrics = [f"metrics.{m}" for m in self.objectives if f"metrics.{m}" in present]
        metrics += sorted(k for k in present if k.startswith("metrics.") and k not in metrics)
        tail = ["seed", "duration", "cost", "decision", "decision_why", "error"]
        if every:
            tail += ["datetime_start", "datetime_complete"]
        shown = ["number", "state", *params, *metrics]
        shown += [k for k in tail if k in present and (k != "seed" or per_seed)]
        if not records:
            shown += [k for k in ("duration", "cost") if k not in shown and self._has(k)]
        return shown

    def _has(self, column: str) -> bool:
        return column == "duration" or (column == "cost" and self.cost_metric is not None)

    def frame(self, per_seed: bool = False, columns: list[str] | None = None) -> pandas.DataFrame:
        """The table as a pandas DataFrame (one row per trial, or per trial and seed)."""
        import pandas

        records = self.records(per_seed)
        return pandas.DataFrame.from_records(
            records, columns=columns or self.columns(per_seed, every=True)
        )


# --------------------------------------------------------------------------- reading


def load_table(
    spec: Spec,
    path: str,
    *,
    storage: str | None = None,
    source: str = "engine",
    echo: Echo | None = None,
) -> Table:
    """The sweep of ``spec`` (read from ``path``) from ``source`` (one of :data:`SOURCES`).
    ``echo`` gets the lines an engine has to say about its state (a repaired journal)."""
    if source not in SOURCES:
        raise TableError(f"'source in {SOURCES}' must hold, but got {source!r}")
    table = Table(
        rows=[],
        params=list(spec.flat_parameters()),
        objectives=[m.name for m in spec.objectives],
        source=source,
        where="",
        cost_metric=spec.budget.cost.metric if spec.budget and spec.budget.cost else None,
        seeded=spec.seeds is not None,
    )
    if source == "engine":
        engine = open_sweep_state(spec, path, storage)
        try:
            for line in engine.messages:
                (echo or _stderr)(line)
            table.rows = list(engine.records())
            decisions = engine.decisions()
            table.where = engine.label
        except _engine_error() as exc:
            raise TableError(str(exc)) from None
        finally:
            engine.close()
        mark_decisions(table.rows, decisions)
    else:
        from ..trackers import tracker_module

        known = _known_sweep(spec, path, storage)
        tracker_module(source).read_results(table, spec, path, known)
    for row in table.rows:
        _complete(row, table.cost_metric)
        order = [p for p in table.params if p in row["params"]]
        order += [p for p in row["params"] if p not in order]  # the spec's order, then others
        row["params"] = {p: row["params"][p] for p in order}
        row["metrics"] = _ordered(row["metrics"], table.objectives)
        for run in row.get("seeds") or []:
            run["metrics"] = _ordered(run["metrics"], table.objectives)
    table.rows.sort(key=lambda r: int(r["number"]))
    return table


@dataclass(frozen=True)
class KnownSweep:
    """What the engine's storage says of the sweep, when it is here: the tracker's rows are
    then those of this sweep, and what the tracker lacks can be named."""

    sweep_id: str
    name: str
    numbers: list[int]
    decisions: list[dict[str, Any]]


def _known_sweep(spec: Spec, path: str, storage: str | None) -> KnownSweep | None:
    try:
        engine = open_sweep_state(spec, path, storage, quiet=True)
    except (TableError, ImportError):
        return None
    try:
        numbers = [int(r["number"]) for r in engine.records()]
        return KnownSweep(engine.sweep_id, engine.sweep_name, numbers, engine.decisions())
    except _engine_error():
        return None
    finally:
        engine.close()


def _engine_error() -> type[Exception]:
    from ..runners.base import EngineError

    return EngineError


def which_engine(spec: Spec, path: str, storage: str | None) -> str | None:
    """The engine whose state of this sweep is there (``storage``, else each engine's default
    place); the latest written when several are; None when none is."""
    from ..runners.base import engine_names, find_state

    found: dict[str, float] = {}
    for name in engine_names():
        try:
            when = find_state(name, spec, path, storage)
        except ImportError:  # that engine is not installed: it cannot have run the sweep
            continue
        if when is not None:
            found[name] = when
    if not found:
        return None
    if storage is not None and len(found) > 1:  # a file one engine recognises as its own
        found.pop("optuna", None)
    return max(found, key=lambda name: found[name])


def open_sweep_state(spec: Spec, path: str, storage: str | None, *, quiet: bool = False) -> Engine:
    """The engine's state of the sweep, opened to read (and to record a decision). None
    found: the spec's engine (else optuna) says what is missing, as a :class:`TableError`."""
    from ..runners.base import EngineError, EngineOptions, open_engine

    name = which_engine(spec, path, storage)
    if name is None:
        if quiet:
            raise TableError("no engine state")
        name = spec.engine or "optuna"
    try:
        return open_engine(name, spec, path, EngineOptions(storage=storage, create=False))
    except ModuleNotFoundError as exc:
        from ..commands import EXTRAS

        top = (exc.name or "").split(".")[0]
        if top in EXTRAS:  # the sweep's state is that engine's
            raise MissingExtra(top) from None
        raise
    except EngineError as exc:
        raise TableError(str(exc)) from None


def decision_columns(decisions: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """Trial number -> (``chosen`` | ``superseded``, its last reason), from the decisions
    recorded, oldest first: the last one's trial is chosen."""
    out: dict[int, tuple[str, str]] = {}
    for decision in decisions:
        out[int(decision["trial"])] = ("superseded", str(decision.get("why") or ""))
    if decisions:
        last = int(decisions[-1]["trial"])
        out[last] = ("chosen", out[last][1])
    return out


def mark_decisions(rows: list[Row], decisions: list[dict[str, Any]]) -> None:
    marks = decision_columns(decisions)
    for row in rows:
        if row["number"] in marks:
            row["decision"], row["decision_why"] = marks[row["number"]]


def _complete(row: Row, cost_metric: str | None) -> None:
    """Add what every source derives the same way: ``duration`` and ``cost``."""
    row["duration"] = _seconds(row.get("datetime_start"), row.get("datetime_complete"))
    if cost_metric is not None:
        row["cost"] = trial_cost(row, cost_metric) or 0.0


def trial_cost(row: Row, cost_metric: str) -> float | None:
    """What a trial cost: ``cost_metric``'s final value summed over its runs (one per seed
    with ``seeds:``, else the trial itself); None when no run logged a finite value."""
    runs = row.get("seeds") or [{"metrics": row["metrics"]}]
    costs = [v for run in runs if (v := _cost_of(run["metrics"].get(cost_metric))) is not None]
    return math.fsum(costs) if costs else None


def _ordered(metrics: dict[str, Any], objectives: list[str]) -> dict[str, Any]:
    """The spec's metrics first, in file order, then the others by name: one order whatever
    the source kept."""
    names = [m for m in objectives if m in metrics] + sorted(set(metrics) - set(objectives))
    return {m: metrics[m] for m in names}


def _cost_of(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds(), 3)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
