"""``sweepspec run`` with W&B hyperband on the Optuna engine stops every trial where W&B's own
``sweeps.stop_runs`` stops the same run, on the same learning curves in the same order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hyperband_curves import Wandb, config, curves, signed

from sweepspec.main import main

TRIAL = """
import json, pathlib

CURVES = json.loads(pathlib.Path(__file__).with_name("curves.json").read_text())

def objective(trial):
    logged = 0
    for value in CURVES[trial.params["i"]]:
        logged += 1
        trial.report({"m": value, "logged": logged})
        if trial.should_stop():
            break
    return {"logged": logged}
"""

SPEC = """\
method: grid
metric: {{name: m, goal: {goal}}}
function: replay:objective
early_terminate: {{type: hyperband, {form}, strict: {strict}}}
parameters:
  i: {{min: 0, max: {last}}}
"""


@pytest.mark.parametrize(
    ("form", "strict", "goal"),
    [
        ({"min_iter": 1, "eta": 3}, False, "minimize"),
        ({"max_iter": 27, "s": 3, "eta": 3}, True, "maximize"),
    ],
    ids=["min_iter, not strict, minimize", "max_iter, strict, maximize"],
)
def test_every_trial_stops_where_wandb_stops_it(
    sweep_dir: Path,
    capsys: pytest.CaptureFixture[str],
    form: dict[str, float],
    strict: bool,
    goal: str,
) -> None:
    replayed = [signed(c, goal) for c in curves(60)]
    (sweep_dir / "curves.json").write_text(json.dumps(replayed))  # NaN as NaN
    (sweep_dir / "replay.py").write_text(TRIAL)
    written = ", ".join(f"{k}: {v}" for k, v in form.items())
    spec = SPEC.format(goal=goal, form=written, strict=str(strict).lower(), last=len(replayed) - 1)
    (sweep_dir / "sweep.yaml").write_text(spec)

    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    capsys.readouterr()
    assert main(["results", "sweep.yaml", "--format", "json"]) == 0
    trials = json.loads(capsys.readouterr().out)

    wandb = Wandb(config({**form, "strict": strict}, goal))
    expected = []
    for trial in trials:  # in the order they ran
        curve, run, stopped = replayed[trial["params"]["i"]], wandb.start(), None
        for logged, value in enumerate(curve, start=1):
            wandb.log(run, value)
            if wandb.stop():
                stopped = logged
                break
        run.state = "finished" if stopped is None else run.state
        expected.append(("PRUNED", stopped) if stopped else ("COMPLETE", len(curve)))
    got = [(t["state"], int(t["metrics"]["logged"])) for t in trials]
    assert len(got) == len(replayed)
    assert got == expected
    assert 10 < sum(state == "PRUNED" for state, _ in got) < len(got) - 3
