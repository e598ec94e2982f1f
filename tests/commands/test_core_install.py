"""A core-only install (``pip install sweepspec``, no extras: what the pre-commit hook installs):
the commands that need no engine work, and each one that needs an extra says which, in one
line, instead of crashing on ``import optuna``."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import venv
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import sweepspec

SPEC = (
    "method: random\nmetric: {name: loss}\nprogram: train.py\nparameters:\n  a: {values: [1, 2]}\n"
)


def _closure(extra: str | None) -> list[importlib.metadata.Distribution]:
    """The installed distributions that sweepspec's core requirements pull in, with those of
    ``extra`` when given."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    wanted = [Requirement(r) for r in importlib.metadata.requires("sweepspec") or []]
    todo = [r.name for r in wanted if r.marker is None or r.marker.evaluate({"extra": extra or ""})]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        seen[key] = importlib.metadata.distribution(req.name)
        todo += seen[key].requires or []
    return list(seen.values())


def _venv(root: Path, extra: str | None) -> Path:
    """A fresh virtual environment holding sweepspec and the dependencies of its core (and of
    ``extra``) only: the same installed files as this environment's, linked (no index, no
    network, a few seconds). Its Python."""
    venv.create(root, with_pip=False, symlinks=True)
    site = next(root.glob("lib/python3*/site-packages"))
    for dist in _closure(extra):
        for top in {
            f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")
        }:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    (site / "sweepspec").symlink_to(Path(sweepspec.__file__).parent)
    return root / "bin" / "python"


def _importable(python: Path) -> list[str]:
    probe = (
        "import importlib.util as u; "
        "print(*[m for m in ('optuna', 'mlflow', 'wandb', 'sweeps') if u.find_spec(m)])"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install sweepspec``: no extra."""
    python = _venv(tmp_path_factory.mktemp("core") / "venv", None)
    assert _importable(python) == []
    return python


@pytest.fixture(scope="module")
def optuna_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install 'sweepspec[optuna]'``: Optuna, no tracker."""
    python = _venv(tmp_path_factory.mktemp("optuna") / "venv", "optuna")
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
