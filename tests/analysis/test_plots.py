"""The report's plots (issue 11 item 3): importance on real values, stopped trials marked."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.colors import to_rgba

from sweepspec.analysis.curves import Curve
from sweepspec.analysis.plots import (
    ImportanceError,
    curves_figure,
    learning_curves,
    param_importances,
)


def _rows() -> list[dict[str, object]]:
    """A 6 x 3 x 2 grid whose loss depends on lr alone (log scale), the rest is noise-free
    and irrelevant."""
    rows = []
    grid = itertools.product([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], [32, 64, 128], ["a", "b"])
    for number, (lr, width, act) in enumerate(grid):
        loss = (len(str(int(1 / lr))) - 3) ** 2 / 10
        rows.append(
            {
                "number": number,
                "state": "COMPLETE",
                "params": {"lr": lr, "width": width, "act": act, "fixed": 1},
                "metrics": {"loss": loss},
            }
        )
    return rows


@pytest.mark.parametrize("evaluator", ["fanova", "mdi"])
def test_importance_finds_the_one_parameter_that_matters(evaluator: str) -> None:
    found = param_importances(_rows(), ["lr", "width", "act", "fixed"], {"lr"}, "loss", evaluator)
    assert list(found) == ["lr", "width", "act"] or list(found)[0] == "lr"
    assert set(found) == {"lr", "width", "act"}  # 'fixed' never varies: nothing to attribute
    assert found["lr"] > 0.95
    assert sum(found.values()) == pytest.approx(1.0)


def test_importance_leaves_out_unfinished_and_non_finite_trials() -> None:
    rows = _rows()[:2]
    rows.append({"number": 9, "state": "PRUNED", "params": rows[0]["params"], "metrics": {}})
    rows[1]["metrics"] = {"loss": float("nan")}
    with pytest.raises(ImportanceError) as caught:
        param_importances(rows, ["lr"], set(), "loss", "fanova")
    assert str(caught.value) == (
        "importance needs at least 2 finished trials with a value of loss; there is 1"
    )


def test_a_stopped_trial_ends_in_a_red_x_where_it_stopped() -> None:
    curves = [
        Curve(0, "COMPLETE", [0.0, 1.0, 2.0, 3.0], [1.0, 0.6, 0.4, 0.3]),
        Curve(1, "PRUNED", [0.0, 1.0], [1.2, 0.9]),
        Curve(2, "FAIL", [0.0], [2.0]),
    ]
    ax = curves_figure(curves, "loss", "step").axes[0]
    marks = [
        (line.get_marker(), list(line.get_xdata()), list(line.get_ydata()), line.get_color())
        for line in ax.get_lines()
        if line.get_marker() not in ("None", None, "")
    ]
    assert ("x", [1.0], [0.9], "tab:red") in marks
    assert ("x", [0.0], [2.0], "black") in marks
    assert any(m[0] == "o" and m[1:3] == ([3.0], [0.3]) for m in marks)
    assert to_rgba("tab:red") != to_rgba("black")
    png = learning_curves(curves, "loss", "step")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
