from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweepspec.cli import cli
from sweepspec.main import main

GOOD = """
method: bayes
metric: {name: val_loss, goal: minimize}
parameters:
  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}
  bs: {values: [8, 16, 32]}
"""
WARN = """
method: grid
parameters:
  lr: {min: 0.001, max: 0.1}
"""
BAD = """
method: bayes
metric: {name: val_loss, goal: minimise}
parameters:
  lr: {distribution: log_uniform_value, min: 1.0e-5, max: 1.0e-2}
"""


def test_valid_file_exits_0_silently(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(GOOD)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_errors_exit_1_one_line_each(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(BAD)
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', but got "
        "'minimise'; did you mean 'minimize'?\n"
        f"{path}:4:22: error: parameters.lr.distribution: unknown distribution "
        "'log_uniform_value'; did you mean 'log_uniform_values'?\n"
    )


def test_warnings_pass_unless_strict(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(WARN)
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1
    warning = (
        f"{path}:3:3: warning: parameters.lr: W&B's grid search cannot enumerate "
        "'uniform'; give 'values', or use int_uniform or q_uniform\n"
    )
    assert capsys.readouterr().err == warning * 2


def test_every_file_is_checked(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_spec(BAD, "bad.yaml")
    good = write_spec(GOOD, "good.yaml")
    missing = good.parent / "missing.yaml"
    assert main(["validate", str(bad), str(good), str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"{bad}:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', but got "
        "'minimise'; did you mean 'minimize'?\n"
        f"{bad}:4:22: error: parameters.lr.distribution: unknown distribution "
        "'log_uniform_value'; did you mean 'log_uniform_values'?\n"
        f"{missing}:1:1: error: cannot read the file: No such file or directory\n"
    )


def test_json_format(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(WARN)
    assert main(["validate", "--format", "json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "file": str(path),
            "line": 3,
            "col": 3,
            "level": "warning",
            "path": "parameters.lr",
            "rule": "grid-continuous",
            "message": "W&B's grid search cannot enumerate 'uniform'; give 'values', or use "
            "int_uniform or q_uniform",
        }
    ]


def test_click_path_gives_the_same_result(write_spec) -> None:
    """main() takes a click-free path for plain `validate` calls; click gives the same."""
    path = write_spec(BAD)
    result = CliRunner().invoke(cli, ["validate", "--format=json", str(path)])
    fast = subprocess.run(
        [sys.executable, "-m", "sweepspec", "validate", "--format=json", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.exit_code == fast.returncode == 1
    assert json.loads(result.output) == json.loads(fast.stdout)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert capsys.readouterr().err == (
        "Usage: sweepspec validate [OPTIONS] FILES...\n"
        "Try 'sweepspec validate --help' for help.\n"
        "\n"
        "Error: Missing argument 'FILES...'.\n"
    )
    assert main(["validate", "--bogus", "x.yaml"]) == 2


def test_help() -> None:
    result = CliRunner().invoke(cli, ["validate", "--help"])
    assert result.exit_code == 0
    assert (
        "  Check spec FILES; one line per finding on stderr: FILE:LINE:COL: LEVEL:"
        in result.output.splitlines()
    )


def test_imports_no_engine_and_runs_no_user_code(
    tmp_path: Path, imported_modules: Callable[..., set[str]]
) -> None:
    """validate must stay light (pre-commit) and safe on any branch: it neither imports
    optuna, mlflow, wandb or sweeps, nor the module a spec names."""
    (tmp_path / "evil.py").write_text("open('pwned', 'w').write('x')\ndef objective(t): pass\n")
    (tmp_path / "sweep.yaml").write_text(
        "method: random\nfunction: evil:objective\n"
        "program: evil.py\nparameters: {x: {values: [1]}}\n"
    )
    # exit code 1: function and program are both set
    imported = imported_modules(
        "from sweepspec.main import main\nassert main(['validate', 'sweep.yaml']) == 1\n",
        cwd=tmp_path,
    )
    assert "sweepspec" in imported
    assert imported & {"optuna", "mlflow", "wandb", "sweeps", "evil", "numpy"} == set()
    assert not (tmp_path / "pwned").exists()
