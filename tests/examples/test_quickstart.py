"""The quickstart example (examples/quickstart): its training code, then the whole sweep.

The unit tests call ``train.objective`` with a small recording trial object written here: a
test double of sweepspec's trial (``.params``, ``.seed``, ``.report``, ``.should_stop``),
because the unit under test is the training code, not the runner. The end-to-end test runs
the real ``sweepspec run`` and ``sweepspec results`` on a copy of the example folder.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sweepspec.compiler.optuna import wandb_bands
from sweepspec.spec import load
from sweepspec.spec.models import HyperbandStopping

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
GOOD = {"learning_rate": 0.03, "hidden_units": 64, "weight_decay": 1e-4}


def _load_train() -> ModuleType:
    """Import examples/quickstart/train.py under a private name (no sys.path changes)."""
    spec = importlib.util.spec_from_file_location("quickstart_train", EXAMPLE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = _load_train()


class RecordingTrial:
    """The trial contract of SPEC section 6; it stops the trial after ``stop_after`` reports."""

    def __init__(
        self, params: dict[str, Any], seed: int = 0, stop_after: int | None = None
    ) -> None:
        self.params = params
        self.seed = seed
        self.stop_after = stop_after
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.stop_questions = 0

    def report(self, metrics: dict[str, float], step: int) -> None:
        self.reports.append((step, dict(metrics)))

    def should_stop(self) -> bool:
        self.stop_questions += 1
        return self.stop_after is not None and len(self.reports) >= self.stop_after

    def curve(self, name: str = "val_loss") -> list[float]:
        return [metrics[name] for _, metrics in self.reports]


def test_a_sane_configuration_learns_and_reports_every_epoch() -> None:
    trial = RecordingTrial(GOOD)
    result = train.objective(trial)

    assert [step for step, _ in trial.reports] == list(range(1, train.EPOCHS + 1))
    assert [m["epoch"] for _, m in trial.reports] == list(range(1, train.EPOCHS + 1))
    losses = trial.curve()
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] / 3
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= len(losses) // 2
    assert trial.curve("val_accuracy")[-1] > 0.93
    # the return value is the best epoch (see train.py's docstring)
    assert result["val_loss"] == min(losses)
    assert result["best_epoch"] == losses.index(min(losses)) + 1
    assert result["val_accuracy"] == trial.curve("val_accuracy")[result["best_epoch"] - 1]
    assert result["epochs"] == train.EPOCHS


def test_good_and_bad_configurations_are_far_apart() -> None:
    good = train.objective(RecordingTrial(GOOD))["val_loss"]
    too_slow = train.objective(RecordingTrial({**GOOD, "learning_rate": 1e-4}))["val_loss"]
    too_much_decay = train.objective(RecordingTrial({**GOOD, "weight_decay": 0.1}))["val_loss"]
    assert good < 0.15
    assert too_slow > 3 * good
    assert too_much_decay > 3 * good


@pytest.mark.parametrize("stop_after", [1, 3, 9])
def test_should_stop_is_honoured_at_once(stop_after: int) -> None:
    trial = RecordingTrial(GOOD, stop_after=stop_after)
    result = train.objective(trial)

    assert len(trial.reports) == stop_after
    assert trial.stop_questions == stop_after  # asked after every report, returned at once
    assert result["epochs"] == stop_after
    assert result["val_loss"] == min(trial.curve())


def test_the_same_seed_gives_the_same_numbers() -> None:
    first, again, other = (RecordingTrial(GOOD, seed=s) for s in (7, 7, 8))
    assert train.objective(first) == train.objective(again)
    assert first.reports == again.reports
    train.objective(other)
    assert other.curve() != first.curve()


def test_an_epochs_parameter_shortens_training() -> None:
    trial = RecordingTrial({**GOOD, "epochs": 4})
    assert train.objective(trial)["epochs"] == 4
    assert len(trial.reports) == 4


def test_the_learning_rate_falls_along_a_cosine_from_its_peak() -> None:
    rates = [train.learning_rate_at(e, 50, 0.02) for e in range(1, 51)]
    assert rates[0] == 0.02
    assert rates[25] == pytest.approx(0.01)  # half-way: half the peak
    assert all(b < a for a, b in itertools.pairwise(rates))
    assert 0 < rates[-1] < 0.02 * 0.001


def test_a_diverging_learning_rate_reports_finite_losses() -> None:
    trial = RecordingTrial({**GOOD, "learning_rate": 1.0, "weight_decay": 1e-6})
    result = train.objective(trial)
    assert all(math.isfinite(v) for v in trial.curve())
    assert math.isfinite(result["val_loss"])


# --------------------------------------------------------------------------- end to end


def _sweepspec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "sweepspec", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _rungs() -> set[int]:
    """The epochs where the spec's hyperband can stop a trial (W&B's bands inside training)."""
    stop = load(str(EXAMPLE / "sweep.yaml")).early_terminate
    assert isinstance(stop, HyperbandStopping)
    return {band for band in wandb_bands(stop) if band < train.EPOCHS}


def test_the_spec_s_rungs_fall_inside_training() -> None:
    assert len(_rungs()) >= 2


def test_the_quickstart_sweep_runs_and_its_results_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "quickstart"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))

    run = _sweepspec("run", "sweep.yaml", "--trials", "6", "--tracker", "none", cwd=folder)
    assert run.returncode == 0, run.stderr
    assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists()

    results = _sweepspec("results", "sweep.yaml", "--format", "json", cwd=folder)
    assert results.returncode == 0, results.stderr
    trials = json.loads(results.stdout)

    assert [t["number"] for t in trials] == list(range(6))
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert complete, trials
    for t in trials:
        assert set(t["params"]) == {"learning_rate", "hidden_units", "weight_decay"}
        assert 1e-4 <= t["params"]["learning_rate"] <= 1.0
        assert t["params"]["hidden_units"] in (16, 32, 64, 128)
        assert math.isfinite(t["metrics"]["val_loss"])
        assert t["metrics"]["epoch"] == t["metrics"]["epochs"]
        if t["state"] == "COMPLETE":
            assert t["metrics"]["epochs"] == train.EPOCHS
        else:  # stopped at a hyperband rung
            assert t["metrics"]["epochs"] in _rungs()

    # a second run of the same spec resumes the sweep instead of starting over
    again = _sweepspec("run", "sweep.yaml", "--trials", "7", "--tracker", "none", cwd=folder)
    assert again.returncode == 0, again.stderr
    trials = json.loads(_sweepspec("results", "sweep.yaml", "--format", "json", cwd=folder).stdout)
    assert len(trials) == 7
