"""The HTML report: one self-contained page (``templates/report.html.j2``).

Every image is a PNG inside the page as a ``data:`` URI; the page has no script, loads
nothing, and says so to the browser (a ``Content-Security-Policy`` that allows only ``data:``
images and its own style), so it opens the same offline, attached to a mail or in a CI
artifact. Every value shown is escaped (Jinja2's autoescape): a parameter or an error message
holding HTML shows as text.

This module lays out what it is given (:class:`ReportData`); reading the sweep is the
command's (:mod:`sweepspec.commands.report`).
"""

from __future__ import annotations

import base64
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import plots

if TYPE_CHECKING:
    from .curves import Curve

__all__ = ["Plot", "ReportData", "render"]

Row = dict[str, Any]
_STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")


@dataclass
class Plot:
    """One figure: a PNG, or why there is none."""

    id: str
    title: str
    caption: str
    png: bytes | None = None

    def context(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title, "caption": self.caption}
        out["uri"] = None
        if self.png is not None:
            out["uri"] = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
            out["width"], out["height"] = _png_size(self.png)
        return out


@dataclass
class ReportData:
    """What the page shows."""

    title: str
    spec_path: str
    engine: str
    state: str  # where the engine's state is (credentials hidden)
    sweep_id: str
    metric: str | None  # the objective (the first, with several)
    goal: str
    params: list[str]  # the spec's parameters by dotted name, in file order
    logs: set[str]  # those whose distribution is logarithmic
    rows: list[Row]
    curves: list[Curve]
    x_label: str
    curves_source: str
    evaluator: str = "fanova"
    comparison: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    cost_metric: str | None = None
    cost_cap: float | None = None
    notes: list[str] = field(default_factory=list)


def render(data: ReportData) -> str:
    """The page's HTML."""
    import jinja2

    from .. import __version__

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sweepspec", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    best = _best(data)
    context = {
        "title": data.title,
        "spec_path": data.spec_path,
        "version": __version__,
        "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": _summary(data),
        "best": best,
        "no_best": _no_best(data),
        "decision": data.decision,
        "plots": [p.context() for p in make_plots(data)],
        "comparison": data.comparison,
        "cost": _cost(data),
        "no_cost": "no cost metric: the spec has no budget.cost"
        if data.cost_metric is None
        else f"no trial logged {data.cost_metric}",
        "table": _table(data, best["number"] if best else None),
    }
    return env.get_template("report.html.j2").render(context)


def make_plots(data: ReportData) -> list[Plot]:
    """Learning curves, optimisation history, parallel coordinates and importance, each a
    PNG or the reason it is missing."""
    metric = data.metric
    if metric is None:
        why = "the spec has no metric to plot"
        return [Plot(i, t, why) for i, t in _PLOTS]
    finished = [r for r in data.rows if plots._objective(r, metric) is not None]
    out = [_curves_plot(data, metric)]
    if not finished:
        why = f"no finished trial with a value of {metric} yet"
        return out + [Plot(i, t, why) for i, t in _PLOTS[1:]]
    out.append(
        Plot(
            "history",
            "Optimisation history",
            f"{metric} of each of the {len(finished)} finished trials by trial number; "
            "the line is the best so far.",
            plots.optimisation_history(data.rows, metric, data.goal),
        )
    )
    varying = [p for p in data.params if _varies(finished, p)]
    if varying:
        out.append(
            Plot(
                "parallel",
                "Parallel coordinates",
                f"one line per finished trial, coloured by {metric}; axes: "
                f"{', '.join(varying)}"
                + (
                    f" (log scale: {', '.join(sorted(data.logs & set(varying)))})"
                    if data.logs & set(varying)
                    else ""
                )
                + ".",
                plots.parallel_coordinates(finished, varying, data.logs, metric),
            )
        )
    else:
        out.append(Plot("parallel", "Parallel coordinates", _no_variation(len(finished))))
    out.append(_importance_plot(data, metric))
    return out


_PLOTS = (
    ("curves", "Learning curves"),
    ("history", "Optimisation history"),
    ("parallel", "Parallel coordinates"),
    ("importance", "Parameter importance"),
)


def _curves_plot(data: ReportData, metric: str) -> Plot:
    title = "Learning curves"
    if not data.curves:
        return Plot("curves", title, f"no per-step values of {metric}: {data.curves_source}")
    states = Counter(c.state for c in data.curves)
    stopped = states.get("PRUNED", 0)
    caption = (
        f"{metric} against {data.x_label} for {len(data.curves)} trials, from "
        f"{data.curves_source}; a red x marks where a trial stopped early ({stopped} did), "
        "a black x a failed trial; the dashed line is the best final value."
    )
    png = plots.learning_curves(data.curves, metric, data.x_label, data.goal)
    return Plot("curves", title, caption, png)


def _importance_plot(data: ReportData, metric: str) -> Plot:
    title = "Parameter importance"
    try:
        found = plots.param_importances(data.rows, data.params, data.logs, metric, data.evaluator)
    except plots.ImportanceError as exc:
        return Plot("importance", title, str(exc))
    caption = (
        f"Optuna's {data.evaluator} importance of each parameter for {metric}, on the "
        f"finished trials' real values: "
        + ", ".join(f"{name} {value:.3f}" for name, value in found.items())
        + "."
    )
    return Plot("importance", title, caption, plots.importance_bars(found, data.evaluator, metric))


def _varies(rows: list[Row], param: str) -> bool:
    return len({repr(r["params"].get(param)) for r in rows}) > 1


def _no_variation(count: int) -> str:
    if count < 2:
        return f"needs at least 2 finished trials; there is {count}"
    return "no parameter differs between the finished trials"


def _summary(data: ReportData) -> dict[str, Any]:
    counts = Counter(r["state"] for r in data.rows)
    states = [(s, counts[s]) for s in _STATE_ORDER if counts.get(s)]
    states += [(s, n) for s, n in sorted(counts.items()) if s not in _STATE_ORDER]
    starts = [r["datetime_start"] for r in data.rows if r.get("datetime_start")]
    ends = [r["datetime_complete"] for r in data.rows if r.get("datetime_complete")]
    return {
        "engine": data.engine,
        "state": data.state,
        "sweep_id": data.sweep_id,
        "objective": f"{data.goal} {data.metric}" if data.metric else "none",
        "trials": len(data.rows),
        "states": states,
        "first": min(starts) if starts else None,
        "last": max(ends) if ends else None,
    }


def _best(data: ReportData) -> dict[str, Any] | None:
    if data.metric is None:
        return None
    metric = data.metric
    scored = [(v, r) for r in data.rows if (v := plots._objective(r, metric)) is not None]
    if not scored:
        return None
    pick = min if data.goal == "minimize" else max
    value, row = pick(scored, key=lambda item: item[0])
    return {
        "number": row["number"],
        "metric": metric,
        "value": _fmt(value),
        "params": [(p, _fmt(row["params"][p])) for p in data.params if p in row["params"]],
        "metrics": [(m, _fmt(v)) for m, v in row["metrics"].items()],
    }


def _no_best(data: ReportData) -> str:
    if data.metric is None:
        return "the spec has no metric: no best configuration"
    if not data.rows:
        return "the sweep has no trial yet"
    return f"no finished trial with a value of {data.metric} yet"


def _cost(data: ReportData) -> dict[str, Any] | None:
    metric = data.cost_metric
    if metric is None:
        return None
    from .table import trial_cost

    values = [v for r in data.rows if (v := trial_cost(r, metric)) is not None]
    if not values:
        return None
    comparison = (data.comparison or {}).get("cost")
    return {
        "metric": metric,
        "total": _fmt(math.fsum(values)),
        "count": len(values),
        "mean": _fmt(math.fsum(values) / len(values)),
        "cap": _fmt(data.cost_cap) if data.cost_cap is not None else None,
        "comparison": comparison,
    }


def _table(data: ReportData, best: int | None) -> dict[str, Any]:
    params = [p for p in data.params if any(p in r["params"] for r in data.rows)]
    found = {m for r in data.rows for m in r["metrics"]}
    metrics = [data.metric] if data.metric in found else []
    metrics += sorted(found - set(metrics))
    errors = any(r.get("error") for r in data.rows)
    header = (
        ["number", "state"]
        + [f"params.{p}" for p in params]
        + [f"metrics.{m}" for m in metrics]
        + (["error"] if errors else [])
    )
    rows = []
    for r in sorted(data.rows, key=lambda r: r["number"]):
        values = (
            [r["number"], r["state"]]
            + [r["params"].get(p) for p in params]
            + [r["metrics"].get(m) for m in metrics]
            + ([r.get("error")] if errors else [])
        )
        cells = [{"text": _fmt(v), "num": _is_number(v)} for v in values]
        rows.append({"cells": cells, "best": r["number"] == best})
    return {"header": header, "rows": rows}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _png_size(png: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk."""
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)
