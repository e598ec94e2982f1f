"""``sweepspec report SPEC -o report.html``: the sweep on one self-contained HTML page.

The trials come from the engine's storage, whichever engine ran the sweep (as ``results``
finds it); the learning curves from the engine too for ``--x step``, from the MLflow tracker
for ``--x wall`` or a counter metric (:mod:`sweepspec.analysis.curves` says why). The
comparison over seeds is shown when ``sweepspec compare`` has run one. The page is laid out
by :mod:`sweepspec.analysis.report`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from . import EXTRAS, emit, load_spec, needs_extra, require

if TYPE_CHECKING:
    from ..analysis.curves import Curve
    from ..spec import Spec

__all__ = ["report"]

_LOG_KINDS = ("log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values")


def report(
    path: str,
    *,
    output: str = "report.html",
    storage: str | None = None,
    x: str = "step",
    importance: str = "fanova",
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    require("matplotlib", "report")
    if importance in ("fanova", "mdi"):  # Optuna's random forests are scikit-learn's
        require("sklearn", f"report --importance {importance}")
    from ..analysis.report import ReportData, render
    from .results import which_engine

    engine = which_engine(spec, path, storage)
    rows, steps, found = _read(engine, spec, path, storage)
    metric = spec.objectives[0] if spec.objectives else None
    states = {int(r["number"]): str(r["state"]) for r in rows}
    curves, source = _curves(spec, path, x, metric.name if metric else None, steps, found, states)
    params = spec.flat_parameters()
    cost = spec.budget.cost if spec.budget is not None else None
    data = ReportData(
        title=spec.name or Path(path).stem,
        spec_path=path,
        engine=engine,
        state=found["label"],
        sweep_id=found["sweep_id"],
        metric=metric.name if metric else None,
        goal=metric.goal if metric else "minimize",
        params=list(params),
        logs={name for name, p in params.items() if getattr(p, "distribution", "") in _LOG_KINDS},
        rows=rows,
        curves=curves,
        x_label=x,
        curves_source=source,
        evaluator=importance,
        comparison=_comparison(spec, path),
        cost_metric=cost.metric if cost is not None else None,
        cost_cap=float(cost.max) if cost is not None else None,
        decision=_decision(rows),
    )
    html = render(data)
    try:
        Path(output).write_text(html, encoding="utf-8")
    except OSError as exc:
        raise SweepspecError(f"cannot write {output}: {exc.strerror or exc}") from None
    emit(f"wrote {output}: {len(rows)} trials\n")
    return 0


def _decision(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial chosen with 'sweepspec decide', for the page's Decision section."""
    chosen = next((r for r in rows if r.get("decision") == "chosen"), None)
    if chosen is None:
        return None
    shown = ", ".join(f"{k}={v}" for k, v in chosen["params"].items())
    return {
        "chosen": f"trial {chosen['number']}",
        "why": chosen.get("decision_why"),
        "extra": [f"its parameters: {shown}"] if shown else [],
    }


def _read(
    name: str, spec: Spec, path: str, storage: str | None
) -> tuple[list[dict[str, Any]], dict[int, list[tuple[int, float]]], dict[str, str]]:
    """The trials (as ``results`` gives them), their curves against step, and the sweep's
    id and state label, from engine ``name``'s storage."""
    from ..analysis.table import mark_decisions
    from ..runners.base import EngineError, EngineOptions, open_engine

    try:
        engine = open_engine(name, spec, path, EngineOptions(storage=storage, create=False))
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in EXTRAS:
            raise SweepspecError(needs_extra(top, "report")) from None
        raise
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    try:
        for line in engine.messages:
            sys.stderr.write(line + "\n")
        rows = list(engine.records())
        mark_decisions(rows, engine.decisions())  # 'sweepspec decide'
        return rows, engine.curves(), {"label": engine.label, "sweep_id": engine.sweep_id}
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    finally:
        engine.close()


def _curves(
    spec: Spec,
    path: str,
    x: str,
    metric: str | None,
    steps: dict[int, list[tuple[int, float]]],
    found: dict[str, str],
    states: dict[int, str],
) -> tuple[list[Curve], str]:
    from ..analysis.curves import CurveError, from_mlflow, from_steps

    if metric is None:
        return [], "the spec has no metric"
    if x == "step":
        curves = from_steps(steps, states)
        if curves:
            return curves, "the engine's storage"
        return _mlflow_steps(spec, path, found["sweep_id"], metric, states)
    require("mlflow", f"report --x {x}")
    try:
        curves = from_mlflow(spec, path, found["sweep_id"], metric, x, states)
    except CurveError as exc:
        raise SweepspecError(f"report --x {x}: {exc}") from None
    if not curves:
        raise SweepspecError(
            f"report --x {x}: no trial of the sweep logged both {metric} and {x} "
            "at the same step in MLflow"
            if x != "wall"
            else f"report --x wall: no trial of the sweep logged {metric} in MLflow"
        )
    return curves, "the MLflow tracker"


def _mlflow_steps(
    spec: Spec, path: str, sweep_id: str, metric: str, states: dict[int, str]
) -> tuple[list[Curve], str]:
    """Curves against step from MLflow, for a sweep whose engine kept none (it keeps the
    values only with ``early_terminate``); none, and why, when MLflow has none either."""
    import importlib.util

    from ..analysis.curves import CurveError, from_mlflow

    why = "the engine keeps each step's value only with early_terminate"
    if importlib.util.find_spec("mlflow") is None:
        return [], f"{why}, and MLflow is not installed"
    try:
        curves = from_mlflow(spec, path, sweep_id, metric, "step", states)
    except CurveError as exc:
        return [], f"{why}; {exc}"
    if not curves:
        return [], f"{why}, and no trial logged {metric} to MLflow"
    return curves, "the MLflow tracker"


def _comparison(spec: Spec, path: str) -> dict[str, Any] | None:
    """The comparison ``sweepspec compare`` ran for this spec, for the page; None when none
    has (or SciPy, which tests the pairs, is not installed)."""
    from .compare import load_comparison

    try:
        found = load_comparison(path, spec)
    except ModuleNotFoundError:  # no SciPy: the tests cannot be computed here
        return None
    if found is None:
        return None
    plain: dict[str, Any] = found.to_json()
    configs = [
        {
            "id": c["id"],
            "params": ", ".join(f"{k}={_fmt(v)}" for k, v in c["params"].items()),
            "seeds": len(c["scores"]),
            "mean": _fmt(c.get("mean")),
            "sd": _fmt(c.get("sd")),
        }
        for c in plain["configs"]
    ]
    total = plain.get("cost")
    return {
        "intro": f"{len(configs)} configurations over seeds {plain['seeds']} "
        f"({plain['goal']} {plain['metric']}); paired t-test and Wilcoxon signed-rank, "
        "Holm-corrected over the pairs.",
        "metric": plain["metric"],
        "configs": configs,
        "verdicts": plain["verdicts"],
        "notes": plain["notes"],
        "cost": f"{_fmt(total['total'])} over {total['runs']} runs" if total else None,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
