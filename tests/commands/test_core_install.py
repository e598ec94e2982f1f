"""A core-only install (``pip install sweepspec``, no extras: what the pre-commit hook installs):
the commands that need no engine work, and each one that needs an extra says which, in one
line, instead of crashing on ``import optuna``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

SPEC = (
    "method: random\nmetric: {name: loss}\nprogram: train.py\nparameters:\n  a: {values: [1, 2]}\n"
)


def _importable(python: Path) -> list[str]:
    probe = (
        "import importlib.util as u; "
        "print(*[m for m in ('optuna', 'mlflow', 'wandb', 'sweeps') if u.find_spec(m)])"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def core_python(installed: Callable[..., Path]) -> Path:
    """``pip install sweepspec``: no extra."""
    python = installed()
    assert _importable(python) == []
    return python


@pytest.fixture(scope="module")
def optuna_python(installed: Callable[..., Path]) -> Path:
    """``pip install 'sweepspec[optuna]'``: Optuna, no tracker."""
    python = installed("optuna")
    assert _importable(python) == ["optuna"]
    return python


def _sweepspec(python: Path, folder: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [python, "-m", "sweepspec", *args], capture_output=True, text=True, cwd=folder, timeout=120
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "sweep.yaml"],
        ["compile", "sweep.yaml", "--engine", "wandb"],
        ["compile", "sweep.yaml", "--engine", "wandb", "--format", "json"],
        ["schema"],
    ],
)
def test_what_the_core_does(
    args: list[str], core_python: Path, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    write_spec(SPEC)
    code, out, err = _sweepspec(core_python, tmp_path, *args)
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["compile", "sweep.yaml", "--engine", "optuna"],
            "compile --engine optuna needs Optuna: pip install 'sweepspec[optuna]'",
        ),
        (
            ["compile", "sweep.yaml", "--engine", "optuna", "--format", "python"],
            "compile --engine optuna needs Optuna: pip install 'sweepspec[optuna]'",
        ),
        (["results", "sweep.yaml"], "results needs Optuna: pip install 'sweepspec[optuna]'"),
        (["run", "sweep.yaml"], "run needs Optuna: pip install 'sweepspec[optuna]'"),
        (["compare", "sweep.yaml"], "compare needs SciPy: pip install 'sweepspec[analysis]'"),
    ],
)
def test_a_command_that_needs_an_extra_names_it(
    args: list[str],
    message: str,
    core_python: Path,
    write_spec: Callable[..., Path],
    tmp_path: Path,
) -> None:
    write_spec(SPEC)
    assert _sweepspec(core_python, tmp_path, *args) == (1, "", f"Error: {message}\n")


def test_the_optuna_extra_compiles_and_runs_without_a_tracker(
    optuna_python: Path, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """``pip install 'sweepspec[optuna]'`` is enough for ``compile --engine optuna``,
    ``run --tracker none`` and ``results``."""
    write_spec(SPEC)
    (tmp_path / "train.py").write_text("print('loss=1.0')\n")
    compiled = _sweepspec(optuna_python, tmp_path, "compile", "sweep.yaml", "--engine", "optuna")
    assert compiled[::2] == (0, "")
    ran = _sweepspec(
        optuna_python, tmp_path, "run", "sweep.yaml", "--trials", "1", "--tracker", "none"
    )
    assert ran[0] == 0, ran[2]
    code, out, err = _sweepspec(optuna_python, tmp_path, "results", "sweep.yaml", "--format", "csv")
    assert (code, err, out.splitlines()[0]) == (
        0,
        "",
        "number,state,params.a,metrics.loss,duration",
    )
