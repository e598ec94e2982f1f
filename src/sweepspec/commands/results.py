"""``sweepspec results``: the sweep's trials from the engine's storage (SPEC section 6).

The study is found as ``run`` finds it (``--storage``, else ``optuna.storage``, else the
journal under the working directory; the name from ``optuna.study_name``, ``name`` or the file
stem). ``json`` is an array with one object per trial: ``number``, ``state``, ``params``
(real values by dotted name), ``metrics`` (final values), ``values`` (the objective values
told to the engine), ``seeds`` (per-seed final metrics, when the spec has ``seeds``),
``error`` (for a failure), ``datetime_start`` and ``datetime_complete``. ``table`` and
``csv`` have one column per ``params.*`` and ``metrics.*``, as ``mlflow.search_runs`` names
them. Non-finite numbers are ``null`` in JSON (strict JSON has no token for them). In CSV, a
text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
leading ``'`` (OWASP's rule against formula injection; numbers stay numbers). In the table,
control characters (line breaks, terminal escapes) are shown escaped (``\\n``, ``\\x1b``).
"""

from __future__ import annotations

import csv
import io
import sys
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from ..escape import csv_cell, strict_json, visible
from . import emit, load_spec, require

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from ..compiler.optuna import OptunaPlan

Row = dict[str, Any]


def results(path: str, *, storage: str | None = None, fmt: str = "table") -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    require("optuna", "results")  # the sweep's state is an Optuna study
    from ..compiler.base import CompileError
    from ..compiler.optuna import compile_optuna
    from ..runners.optuna import RunError, load_study, open_storage, study_name

    try:
        plan = compile_optuna(spec)
        name = study_name(spec, path)
        store, label = open_storage(storage, spec, name, create=False, echo=_note)
        study = load_study(store, name, label)
    except (CompileError, RunError) as exc:
        raise SweepspecError(str(exc)) from None
    rows = [
        trial_row(t, plan) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"
    ]
    emit(render(rows, plan, fmt))
    return 0


def _note(line: str) -> None:
    """What was set aside from a torn journal, on stderr (stdout is the results)."""
    sys.stderr.write(line + "\n")


def trial_row(trial: FrozenTrial, plan: OptunaPlan) -> Row:
    """One trial as ``results --format json`` shows it."""
    from ..runners.optuna import ERROR_ATTR, METRICS_ATTR, SEEDS_ATTR

    attrs = trial.user_attrs
    metrics = dict(attrs.get(METRICS_ATTR) or {})
    if not metrics and trial.values is not None:
        metrics = dict(zip(plan.metric_names or ["objective"], trial.values, strict=False))
    row: Row = {
        "number": trial.number,
        "state": trial.state.name,
        "params": plan.real_params(trial),
        "metrics": metrics,
        "values": list(trial.values) if trial.values is not None else None,
    }
    if plan.spec.seeds is not None:
        row["seeds"] = attrs.get(SEEDS_ATTR, [])
    if ERROR_ATTR in attrs:
        row["error"] = attrs[ERROR_ATTR]
    row["datetime_start"] = _iso(trial.datetime_start)
    row["datetime_complete"] = _iso(trial.datetime_complete)
    return row


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def render(rows: list[Row], plan: OptunaPlan, fmt: str) -> str:
    if fmt == "json":
        return strict_json(rows) + "\n"
    header, cells = _flat(rows, plan)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)  # RFC 4180: CRLF rows, so a CR in a cell is quoted too
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([[csv_cell(c) for c in row] for row in cells])
        return out.getvalue()
    return _table([visible(h) for h in header], [[_cell(c) for c in row] for row in cells])


def _flat(rows: list[Row], plan: OptunaPlan) -> tuple[list[str], list[list[Any]]]:
    params = [n for n in plan.params if any(n in r["params"] for r in rows)]
    found = {m for r in rows for m in r["metrics"]}
    metrics = [m for m in plan.metric_names if m in found]
    metrics += sorted(found - set(metrics))
    errors = any("error" in r for r in rows)
    header = (
        ["number", "state"]
        + [f"params.{p}" for p in params]
        + [f"metrics.{m}" for m in metrics]
        + (["error"] if errors else [])
    )
    cells = [
        [r["number"], r["state"]]
        + [r["params"].get(p) for p in params]
        + [r["metrics"].get(m) for m in metrics]
        + ([r.get("error")] if errors else [])
        for r in rows
    ]
    return header, cells


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = visible(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
