"""The grid sweep the engines' run tests write (tests/runners/test_drive.py, test_ray.py): a
trial function that fails at ``x == 2`` and reports three steps, stopping when the engine
says so, on a grid ``x`` in 1, 2, 3; its sweep ``sweep.yaml``, its module ``sweep_trial.py``.
"""

from __future__ import annotations

from pathlib import Path

TRIAL = """
import time

def objective(trial):
    if trial.params["x"] == 2:
        raise ValueError("x=2 is broken")
    for step in range(3):
        trial.report({"loss": trial.params["x"] + 1.0 / (step + 1)}, step)
        if trial.should_stop():
            return {"loss": trial.params["x"]}
        time.sleep(trial.params.get("pause", 0))
    return {"loss": trial.params["x"], "acc": 0.5}
"""

GRID = """
method: grid
metric: {name: loss}
function: sweep_trial:objective
parameters:
  x: {values: [1, 2, 3]}
"""


def write_trial(folder: Path) -> None:
    """The trial function's module, ``sweep_trial.py``, in ``folder``."""
    (folder / "sweep_trial.py").write_text(TRIAL)


def write_grid(folder: Path, spec: str = GRID) -> Path:
    """The trial's module and the sweep ``spec`` (default :data:`GRID`) in ``folder``; the
    spec's path."""
    write_trial(folder)
    path = folder / "sweep.yaml"
    path.write_text(spec)
    return path
