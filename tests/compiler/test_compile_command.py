"""``sweepspec compile`` (SPEC section 6): artifacts on stdout or -o, warnings on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sweepspec.cli import cli
from sweepspec.main import main

CONDITIONAL = """
method: random
metric: {name: loss}
parameters:
  a: {values: [x, y]}
  b: {values: [1, 2], when: {a: y}}
"""


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compile", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_optuna_json_has_the_fixed_keys(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(CONDITIONAL)
    code, out, err = _run(capsys, str(path), "--engine", "optuna", "--format", "json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["directions"] == ["minimize"]
    assert data["sampler"] == {"name": "RandomSampler", "kwargs": {}}
    assert data["pruner"] == {"name": "NopPruner", "kwargs": {}}
    assert data["n_trials"] is None
    assert data["distributions"]["b"] == {
        "name": "CategoricalDistribution",
        "attributes": {"choices": [1, 2]},
    }
    assert data["conditions"] == {"b": {"a": ["y"]}}


def test_wandb_warns_per_unsupported_item(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(CONDITIONAL)
    code, out, err = _run(capsys, str(path), "--engine", "wandb")
    assert code == 0
    assert err == (
        f"{path}: warning: unsupported on wandb: parameters.b.when: W&B has no "
        "conditional parameters; the parameter (active only when a == 'y') is "
        "sampled in every run\n"
    )
    assert out.splitlines()[:3] == [
        f"# W&B sweep config compiled by sweepspec from {path}.",
        "# Unsupported on W&B (the spec says this; this config does not):",
        "#   parameters.b.when: W&B has no conditional parameters; the parameter (active only "
        "when a == 'y') is sampled in every run",
    ]
    assert yaml.safe_load(out)["parameters"]["b"] == {"values": [1, 2]}


def test_strict_fails_and_writes_nothing(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(CONDITIONAL)
    target = tmp_path / "out.yaml"
    code, out, err = _run(capsys, str(path), "--engine", "wandb", "--strict", "-o", str(target))
    assert (code, out) == (1, "")
    assert err == (
        f"{path}: error: unsupported on wandb: parameters.b.when: W&B has no "
        "conditional parameters; the parameter (active only when a == 'y') is "
        "sampled in every run\n"
    )
    assert not target.exists()


def test_wandb_json_notes_go_to_stderr(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(
        "method: grid\nengine: wandb\nparameters:\n"
        "  lr: {distribution: log_uniform, min: 0, max: 1}\n"
    )
    code, out, err = _run(capsys, str(path), "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "method": "grid",
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1.0, "max": 2.718281828459045}
        },
    }
    assert err == (
        f"{path}: note: parameters.lr: log_uniform (exponents 0..1) rewritten to "
        "log_uniform_values 1.0..2.718281828459045, the same distribution\n"
        f"{path}: note: engine: removed: the default engine is sweepspec's choice, "
        "not part of a W&B config\n"
    )


def test_output_file(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(CONDITIONAL)
    target = tmp_path / "study.json"
    assert _run(capsys, str(path), "--engine", "optuna", "-o", str(target))[:2] == (0, "")
    assert json.loads(target.read_text())["conditions"] == {"b": {"a": ["y"]}}


def test_optuna_yaml(write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, str(write_spec(CONDITIONAL)), "--format", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["sampler"] == {"name": "RandomSampler", "kwargs": {}}


def test_spec_errors_print_like_validate(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec("method: random\nparameters:\n  lr: {min: 1.0, max: 0.5}\n")
    code, out, err = _run(capsys, str(path), "--engine", "wandb")
    assert (code, out) == (1, "")
    assert err == (
        f"{path}:3:7: error: parameters.lr: 'min < max' must hold, but got min=1.0, max=0.5\n"
    )


def test_a_spec_that_cannot_compile_is_one_error_line(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec("method: grid\nparameters:\n  lr: {min: 0.1, max: 0.5}\n")
    code, out, err = _run(capsys, str(path), "--engine", "optuna")
    assert (code, out) == (1, "")
    assert err == (
        f"{path}: error: parameters.lr: grid search cannot enumerate 'uniform' "
        "(W&B's grid raises on it too); give 'values', or use int_uniform or "
        "q_uniform\n"
    )


def test_python_is_for_optuna_only(write_spec: Callable[..., Path]) -> None:
    result = CliRunner().invoke(
        cli, ["compile", str(write_spec(CONDITIONAL)), "--engine", "wandb", "--format", "python"]
    )
    assert result.exit_code == 2
    assert (
        "Error: --engine wandb writes yaml or json, not python; "
        "--format python is for --engine optuna or ray"
    ) in result.output.splitlines()


def test_the_spec_engine_is_the_default(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, str(write_spec("method: random\nengine: wandb\nparameters:\n  a: {values: [1]}\n"))
    )
    assert code == 0 and out.startswith("# W&B sweep config")


def test_help() -> None:
    result = CliRunner().invoke(cli, ["compile", "--help"])
    assert result.exit_code == 0
    assert "--engine [wandb|optuna|ray]" in result.output  # the compilers' registry, in order
    assert "--format [yaml|json|python]" in result.output


def test_exit_codes_through_click(write_spec: Callable[..., Path]) -> None:
    path = str(write_spec(CONDITIONAL))
    strict = CliRunner().invoke(cli, ["compile", path, "--engine", "wandb", "--strict"])
    assert (strict.exit_code, strict.stdout) == (1, "")
    ok = CliRunner().invoke(cli, ["compile", path, "--engine", "optuna"])
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["conditions"] == {"b": {"a": ["y"]}}
