"""``tracker: none`` logs nothing and imports no tracking library."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sweepspec.trackers import TrialRecord, make_tracker
from sweepspec.trackers.none import NoneTracker


def test_a_sweep_without_tracker_never_imports_mlflow(
    tmp_path: Path, imported_modules: Callable[..., set[str]]
) -> None:
    (tmp_path / "quiet_trial.py").write_text("def objective(trial):\n    return 1.0\n")
    (tmp_path / "sweep.yaml").write_text(
        "method: random\nmetric: {name: loss}\nfunction: quiet_trial:objective\nrun_cap: 2\n"
        "parameters:\n  x: {min: 0, max: 3}\n"
    )
    imported = imported_modules(
        "from sweepspec.main import main\n"
        "assert main(['run', 'sweep.yaml', '--tracker', 'none']) == 0\n",
        cwd=tmp_path,
    )
    assert "optuna" in imported  # the sweep did run
    assert imported & {"mlflow", "wandb"} == set()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_make_tracker() -> None:
    tracker = make_tracker("none")
    assert isinstance(tracker, NoneTracker)
    tracker.log_trial(TrialRecord(0, {}, "COMPLETE", {}))
    assert tracker.worker_settings() == {}
    with pytest.raises(
        ValueError,
        match=r"^'tracker in \('mlflow', 'none', 'wandb'\)' must hold, but "
        r"got 'comet'$",
    ):
        make_tracker("comet")
