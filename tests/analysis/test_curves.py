"""Learning curves' points (issue 11 item 3): against step from the engine's storage, against
a logged counter or wall time from MLflow, for the same trials and the same values."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sweepspec.analysis.curves import from_mlflow, from_steps
from sweepspec.commands.results import which_engine
from sweepspec.main import main
from sweepspec.runners.base import EngineOptions, open_engine
from sweepspec.spec import check

SPEC = """
name: curves
method: random
metric: {name: loss}
function: curves_trial:objective
run_cap: 5
parameters:
  width: {values: [16, 32, 64]}
  lr: {min: 0.1, max: 1.0}
early_terminate: {type: hyperband, min_iter: 10}  # the engine keeps each value; none stops
"""

TRIAL = """
def objective(trial):
    width, lr = trial.params["width"], trial.params["lr"]
    for step in range(4):
        trial.report({"loss": lr / (step + 1), "tokens": (step + 1) * width}, step)
    return {"loss": lr / 4}
"""


@pytest.mark.parametrize("engine", ["optuna", "wandb"])
def test_mlflow_and_engine_curves_hold_the_reported_values(
    engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mlflow_store: Callable[[Path], str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow.db"))
    (tmp_path / "curves_trial.py").write_text(textwrap.dedent(TRIAL))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    assert main(["run", "sweep.yaml", "--engine", engine, "--tracker", "mlflow"]) == 0
    capsys.readouterr()
    assert main(["results", "sweep.yaml", "--format", "json"]) == 0
    rows = {r["number"]: r for r in json.loads(capsys.readouterr().out)}
    spec = check("sweep.yaml").spec
    assert spec is not None
    live = open_engine(
        which_engine(spec, "sweep.yaml", None), spec, "sweep.yaml", EngineOptions(create=False)
    )
    try:
        steps, sweep_id = live.curves(), live.sweep_id
    finally:
        live.close()
    states = {n: r["state"] for n, r in rows.items()}

    expected = {n: [r["params"]["lr"] / (s + 1) for s in range(4)] for n, r in rows.items()}
    by_step = from_steps(steps, states)
    assert {c.number: c.ys for c in by_step} == expected
    # W&B's hyperband counts reported values: Optuna's steps are that 1-based count
    xs = [1.0, 2.0, 3.0, 4.0] if engine == "optuna" else [0.0, 1.0, 2.0, 3.0]
    assert all(c.xs == xs and c.state == "COMPLETE" for c in by_step)

    tokens = from_mlflow(spec, "sweep.yaml", sweep_id, "loss", "tokens", states)
    assert {c.number: c.ys for c in tokens} == expected
    assert {c.number: c.xs for c in tokens} == {
        n: [float((s + 1) * r["params"]["width"]) for s in range(4)] for n, r in rows.items()
    }
    by_mlflow_step = from_mlflow(spec, "sweep.yaml", sweep_id, "loss", "step", states)
    assert {c.number: (c.xs, c.ys) for c in by_mlflow_step} == {
        n: ([0.0, 1.0, 2.0, 3.0], ys) for n, ys in expected.items()
    }
    wall = from_mlflow(spec, "sweep.yaml", sweep_id, "loss", "wall", states)
    assert {c.number: c.ys for c in wall} == expected
    for curve in wall:
        assert curve.xs[0] == 0.0 and curve.xs == sorted(curve.xs), curve.xs
