"""The report's plots, drawn with matplotlib (the Agg backend, no display) as PNG bytes.

* :func:`learning_curves`: one line per trial; a trial stopped early ends in a red ``x`` at its
  last point, a failed one in a black ``x``, a finished one in a dot; a grey line marks the
  best final value.
* :func:`optimisation_history`: the objective of every finished trial by trial number, and
  the best so far as a step line.
* :func:`parallel_coordinates`: one axis per parameter (scaled to its range: logarithmic for
  the ``log`` distributions, categories evenly spaced), one line per finished trial coloured
  by its objective.
* :func:`importance_bars`: the parameter importances of :func:`param_importances`.

:func:`param_importances` runs one of Optuna's importance evaluators (fANOVA by default, which
needs scikit-learn) on an in-memory study made of the finished trials' *real* values, so the
figures are the same for both engines and for reparametrised distributions.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .curves import Curve

__all__ = [
    "EVALUATORS",
    "ImportanceError",
    "curves_figure",
    "importance_bars",
    "learning_curves",
    "optimisation_history",
    "parallel_coordinates",
    "param_importances",
]

EVALUATORS = ("fanova", "ped-anova", "mdi")
"""Optuna's importance evaluators, by the name ``report --importance`` takes."""

Row = dict[str, Any]

_STATE_MARK = {"PRUNED": ("x", "tab:red"), "FAIL": ("x", "black"), "COMPLETE": ("o", None)}


class ImportanceError(Exception):
    """Importance cannot be computed for these trials: says what is missing."""


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def learning_curves(
    curves: Sequence[Curve], metric: str, x_label: str, goal: str = "minimize"
) -> bytes:
    """``metric`` against ``x_label`` per trial; where each trial stopped is marked."""
    return _png(curves_figure(curves, metric, x_label, goal))


def curves_figure(
    curves: Sequence[Curve], metric: str, x_label: str, goal: str = "minimize"
) -> Figure:
    """The figure of :func:`learning_curves`: per trial a line, then its end marker."""
    fig = _figure()
    ax = fig.add_subplot()
    for curve in curves:
        (line,) = ax.plot(curve.xs, curve.ys, linewidth=1.2, alpha=0.8)
        marker, colour = _STATE_MARK.get(curve.state, ("", None))
        if marker:
            ax.plot(
                curve.xs[-1:],
                curve.ys[-1:],
                marker=marker,
                markersize=9 if marker == "x" else 4,
                markeredgewidth=2,
                color=colour or line.get_color(),
                linestyle="none",
            )
    finals = [c.ys[-1] for c in curves if c.state == "COMPLETE" and c.ys]
    if finals:
        best = min(finals) if goal == "minimize" else max(finals)
        ax.axhline(best, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves: {metric} against {x_label} ({len(curves)} trials)")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="x", color="tab:red", linestyle="none", label="stopped early"),
        Line2D([], [], marker="x", color="black", linestyle="none", label="failed"),
        Line2D([], [], marker="o", color="grey", linestyle="none", label="finished"),
    ]
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def optimisation_history(rows: Sequence[Row], metric: str, goal: str = "minimize") -> bytes:
    """Each finished trial's ``metric`` by trial number, and the best so far."""
    points = sorted((r["number"], v) for r in rows if (v := _objective(r, metric)) is not None)
    fig = _figure()
    ax = fig.add_subplot()
    numbers = [n for n, _ in points]
    values = [v for _, v in points]
    ax.scatter(numbers, values, s=18, label=f"{metric} of a finished trial")
    pick = min if goal == "minimize" else max
    best = [pick(values[: i + 1]) for i in range(len(values))]
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    ax.set_title(f"Optimisation history ({goal} {metric})")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)


def parallel_coordinates(
    rows: Sequence[Row], params: Sequence[str], logs: set[str], metric: str
) -> bytes:
    """One line per finished trial through one axis per parameter, coloured by ``metric``."""
    done = [(r, v) for r in rows if (v := _objective(r, metric)) is not None]
    fig = _figure(max(6.0, 1.6 * len(params) + 2.0), 4.5)
    ax = fig.add_subplot()
    scales = {p: _Scale([r["params"].get(p) for r, _ in done], p in logs) for p in params}
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values = [v for _, v in done]
    norm = Normalize(min(values), max(values)) if values else Normalize(0, 1)
    cmap = colormaps["viridis_r"]
    xs = list(range(len(params)))
    for row, value in done:
        ys = [scales[p].position(row["params"].get(p)) for p in params]
        ax.plot(xs, ys, color=cmap(norm(value)), alpha=0.8, linewidth=1.2)
    for i, p in enumerate(params):
        ax.axvline(i, color="black", linewidth=0.8)
        for position, label in scales[p].ticks():
            ax.text(i + 0.03, position, label, fontsize=7, va="center")
    ax.set_xticks(xs, list(params))
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, max(len(params) - 1, 0) + 0.6)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    ax.set_title(f"Parallel coordinates ({len(done)} finished trials)")
    return _png(fig)


def importance_bars(importances: dict[str, float], evaluator: str, metric: str) -> bytes:
    """Horizontal bars, the most important parameter on top."""
    names = list(importances)[::-1]
    fig = _figure(8.0, max(2.5, 0.45 * len(names) + 1.5))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    for i, name in enumerate(names):
        ax.text(importances[name], i, f" {importances[name]:.3f}", va="center", fontsize=8)
    ax.set_xlabel(f"importance for {metric} ({evaluator})")
    ax.set_title("Parameter importance")
    ax.set_xlim(0, max([*importances.values(), 0.0]) * 1.15 or 1.0)
    return _png(fig)


def param_importances(
    rows: Sequence[Row], params: Sequence[str], logs: set[str], metric: str, evaluator: str
) -> dict[str, float]:
    """The importance of each parameter that varies, for ``metric``, by Optuna's
    ``evaluator`` (:data:`EVALUATORS`), on the finished trials' real values."""
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    done = [(r, v) for r in rows if (v := _objective(r, metric)) is not None]
    if len(done) < 2:
        raise ImportanceError(
            f"importance needs at least 2 finished trials with a value of {metric}; "
            f"there {'is' if len(done) == 1 else 'are'} {len(done)}"
        )
    dists: dict[str, BaseDistribution] = {}
    encode: dict[str, Any] = {}
    for p in params:
        seen = [r["params"][p] for r, _ in done if p in r["params"]]
        if len(seen) < len(done) or len({repr(v) for v in seen}) < 2:
            continue  # constant (or conditional): nothing to attribute to it
        if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            dists[p] = IntDistribution(min(seen), max(seen), log=p in logs and min(seen) > 0)
            encode[p] = int
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            low, high = float(min(seen)), float(max(seen))
            dists[p] = FloatDistribution(low, high, log=p in logs and low > 0)
            encode[p] = float
        else:
            choices = sorted({_choice(v) for v in seen}, key=repr)
            dists[p] = CategoricalDistribution(choices)
            encode[p] = _choice
    if not dists:
        raise ImportanceError("importance needs a parameter whose value differs between trials")
    trials = [
        optuna.trial.create_trial(
            params={p: encode[p](row["params"][p]) for p in dists},
            distributions=dists,
            value=value,
        )
        for row, value in done
    ]
    study = optuna.create_study()
    study.add_trials(trials)
    found = optuna.importance.get_param_importances(study, evaluator=_evaluator(evaluator))
    return {name: float(v) for name, v in found.items()}


def _evaluator(name: str) -> Any:
    from optuna import importance

    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=0)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    return importance.PedAnovaImportanceEvaluator()


def _choice(value: Any) -> Any:
    """A value as an Optuna categorical choice (None, bool, int, float or str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _objective(row: Row, metric: str) -> float | None:
    """The finished trial's finite value of ``metric``, else None."""
    if row.get("state") != "COMPLETE":
        return None
    value = row.get("metrics", {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class _Scale:
    """A parameter's values placed on [0, 1]: linear, logarithmic or by category."""

    def __init__(self, values: list[Any], log: bool) -> None:
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self.numeric = bool(values) and len(numbers) == len(values)
        self.log = log and self.numeric and min(numbers) > 0
        if self.numeric:
            low, high = min(numbers), max(numbers)
            self.low, self.high = (math.log(low), math.log(high)) if self.log else (low, high)
        else:
            self.categories = sorted({repr(v) for v in values})

    def position(self, value: Any) -> float:
        if not self.numeric:
            if len(self.categories) < 2:
                return 0.5
            return self.categories.index(repr(value)) / (len(self.categories) - 1)
        x = math.log(value) if self.log else float(value)
        return 0.5 if self.high == self.low else (x - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        if not self.numeric:
            return [(self.position_of(c), c.strip("'")[:14]) for c in self.categories]
        if self.high == self.low:
            return [(0.5, f"{_unscale(self.low, self.log):.3g}")]
        return [
            (f, f"{_unscale(self.low + f * (self.high - self.low), self.log):.3g}")
            for f in (0.0, 0.5, 1.0)
        ]

    def position_of(self, category: str) -> float:
        if len(self.categories) < 2:
            return 0.5
        return self.categories.index(category) / (len(self.categories) - 1)


def _unscale(x: float, log: bool) -> float:
    return math.exp(x) if log else x
