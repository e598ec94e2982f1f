"""Synthetic learning curves, and W&B's own ``sweeps.stop_runs`` replaying them: the oracle
that WandbHyperbandPruner is held to, decision by decision."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sweeps' pydantic-v2 warning on import
    from sweeps import RunState, SweepRun, stop_runs

EPOCHS = 27


def curves(n: int = 120, seed: int = 0) -> list[list[float]]:
    """``n`` loss curves: most decay early, a quarter are late bloomers (a middling plateau,
    then a drop between epochs 8 and 20 to below the others), some end early, some log a
    NaN."""
    rng = np.random.default_rng(seed)
    out = []
    t = np.arange(1, EPOCHS + 1)
    for i in range(n):
        floor, height = rng.uniform(0.2, 0.8), rng.uniform(0.5, 2.0)
        if i % 4 == 3:  # late bloomer
            at, width = rng.uniform(8, 20), rng.uniform(0.5, 2.0)
            plateau, low = rng.uniform(0.6, 1.3), rng.uniform(0.05, 0.3)
            curve = low + (plateau - low) / (1 + np.exp((t - at) / width))
        else:
            curve = floor + height * np.exp(-t / rng.uniform(1.5, 8.0))
        curve = curve + rng.normal(0, 0.03, EPOCHS)
        length = EPOCHS if i % 9 else int(rng.integers(5, EPOCHS))
        values = [float(v) for v in curve[:length]]
        if i % 13 == 5:
            values[int(rng.integers(0, length))] = math.nan
        out.append(values)
    return out


def config(early_terminate: dict[str, Any], goal: str) -> dict[str, Any]:
    return {
        "method": "random",
        "metric": {"name": "m", "goal": goal},
        "early_terminate": {"type": "hyperband", **early_terminate},
        "parameters": {"i": {"values": [0]}},
    }


def signed(values: list[float], goal: str) -> list[float]:
    """The curve as the metric is logged: loss to minimise, ``1 - loss`` to maximise."""
    return values if goal == "minimize" else [1.0 - v for v in values]


class Wandb:
    """Runs logged one value at a time, ``stop_runs`` asked after each value."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.runs: list[SweepRun] = []

    def start(self) -> SweepRun:
        run = SweepRun(name=f"run-{len(self.runs)}", state=RunState.running)
        self.runs.append(run)
        return run

    def log(self, run: SweepRun, value: float) -> None:
        run.history.append({"_step": len(run.history), "m": value})
        run.summary_metrics = {"m": value}

    def stop(self) -> list[SweepRun]:
        """The runs W&B stops now; they are marked killed."""
        stopped = stop_runs(self.cfg, self.runs)
        for run in stopped:
            run.state = RunState.killed
        return stopped


FORMS = {  # each form with the goal it is run with: both forms meet both goals
    "min_iter 1, eta 3": ({"min_iter": 1, "eta": 3}, "minimize"),
    "min_iter 2, eta 2.5": ({"min_iter": 2, "eta": 2.5}, "maximize"),
    "max_iter 27, s 3, eta 3": ({"max_iter": 27, "s": 3, "eta": 3}, "minimize"),
    "max_iter 20, s 2, eta 2": ({"max_iter": 20, "s": 2, "eta": 2}, "maximize"),
}
"""W&B hyperband's two forms (min_iter, or max_iter with s), each with the goal it runs with."""

CASES = [
    pytest.param(form, strict, goal, id=f"{name}, strict {strict}, {goal}")
    for name, (form, goal) in FORMS.items()
    for strict in (True, False)
]
"""Every form, strict and not: the cases both engines' hyperband tests run."""
