"""``sweepspec run``: the objective told to the engine is W&B's score of a run, the best value
of the metric it reported or returned (``SweepRun.metric_extremum``), unless the spec says
``objective: last``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from sweepspec.main import main

TRIAL = """
CURVES = {0: [0.5, 0.2, 0.4], 1: [0.6, 0.3, 0.35], 2: [0.9, 0.8, 0.7], 3: [0.5, float("nan")]}

def objective(trial):
    for value in CURVES[trial.params["i"]][:-1]:
        trial.report({"m": value})
    return {"m": CURVES[trial.params["i"]][-1]}
"""

SPEC = """\
method: grid
metric: {{name: m, goal: {goal}}}
function: replay:objective
{objective}parameters:
  i: {{values: [0, 1, 2, 3]}}
"""


def _values(folder: Path, capsys: pytest.CaptureFixture[str], goal: str, objective: str) -> dict:
    (folder / "replay.py").write_text(TRIAL)
    (folder / "sweep.yaml").write_text(SPEC.format(goal=goal, objective=objective))
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    capsys.readouterr()
    assert main(["results", "sweep.yaml", "--format", "json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    return {t["params"]["i"]: (t["values"], t["metrics"]["m"]) for t in trials}


def _wandb_score(i: int, goal: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import SweepRun

    curve = {0: [0.5, 0.2, 0.4], 1: [0.6, 0.3, 0.35], 2: [0.9, 0.8, 0.7], 3: [0.5, math.nan]}[i]
    run = SweepRun(history=[{"m": v} for v in curve], summary_metrics={"m": curve[-1]})
    return float(run.metric_extremum("m", goal))


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_the_objective_is_wandbs_best_value_by_default(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], goal: str
) -> None:
    """A final NaN is left out, as W&B leaves it out: the trial is scored by its finite values."""
    got = _values(sweep_dir, capsys, goal, "")
    assert got == {i: ([_wandb_score(i, goal)], [0.4, 0.35, 0.7, None][i]) for i in range(4)}


def test_objective_last_takes_the_final_value(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = _values(sweep_dir, capsys, "minimize", "objective: last\n")
    assert got == {0: ([0.4], 0.4), 1: ([0.35], 0.35), 2: ([0.7], 0.7), 3: (None, 0.5)}
