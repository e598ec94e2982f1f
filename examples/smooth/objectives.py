"""Cheap smooth objectives with known minima, for comparing search methods and engines.

Each is a sweepspec trial function: it reads ``trial.params`` and returns ``{"loss": value}``
(the metric ``loss``, minimised). Pure Python, microseconds per call, so a sweep's time is the
engine's own. ``sweep.yaml`` runs ``branin``; ``benchmarks/bayes_vs_tpe.py`` runs all four.
"""

from __future__ import annotations

import math
from typing import Any

# the bowl's centre, one coordinate per parameter name (x0..x3 in [-5, 5])
BOWL_CENTRE = {"x0": 1.5, "x1": -2.5, "x2": 0.7, "x3": 3.1}


def bowl(trial: Any) -> dict[str, float]:
    """A shifted quadratic bowl: the sum of ``(x - centre)^2``; minimum 0 at BOWL_CENTRE."""
    return {"loss": sum((v - BOWL_CENTRE[k]) ** 2 for k, v in trial.params.items())}


def branin(trial: Any) -> dict[str, float]:
    """Branin's function on x1 in [-5, 10], x2 in [0, 15]: three minima of 0.397887."""
    x1, x2 = trial.params["x1"], trial.params["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return {"loss": (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10}


def camel(trial: Any) -> dict[str, float]:
    """The six-hump camel on x1 in [-3, 3], x2 in [-2, 2]: two minima of -1.031628."""
    x1, x2 = trial.params["x1"], trial.params["x2"]
    value = (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2
    return {"loss": value}


def forrester(trial: Any) -> dict[str, float]:
    """Forrester's 1-D function on x in [0, 1]: minimum -6.020740 at x = 0.757249."""
    x = trial.params["x"]
    return {"loss": (6 * x - 2) ** 2 * math.sin(12 * x - 4)}
