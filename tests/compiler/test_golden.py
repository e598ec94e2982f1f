"""Golden files, one folder per case, in the manner of sqlglot's ``validate_all``.

``tests/fixtures/compiler/<case>/spec.yaml`` is one spec; next to it, for each engine, the
artifact ``sweepspec compile`` must print (``wandb.yaml``, ``optuna.json``, ``ray.json``) and
the lines it must print on stderr (``<engine>.stderr``: the unsupported warnings, or the error
when the spec cannot be compiled for that engine, in which case there is no artifact and exit
is 1).

Regenerate with ``SWEEPSPEC_UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py`` and review
the diff.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweepspec.compiler import COMPILERS, compile_for, compile_optuna, table
from sweepspec.compiler.base import CompileError
from sweepspec.main import main
from sweepspec.spec import Spec, load

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "compiler"
CASES = sorted(p.name for p in HERE.iterdir() if (p / "spec.yaml").is_file())
ARTIFACT = {"wandb": "wandb.yaml", "optuna": "optuna.json", "ray": "ray.json"}
UPDATE = os.environ.get("SWEEPSPEC_UPDATE_GOLDEN") == "1"


def _compile(
    case: str, engine: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.chdir(HERE / case)
    code = main(["compile", "spec.yaml", "--engine", engine])
    out, err = capsys.readouterr()
    return code, out, err


def _update(folder: Path, engine: str, code: int, out: str, err: str) -> None:
    artifact = folder / ARTIFACT[engine]
    if code == 0:
        artifact.write_text(out, encoding="utf-8")
    elif artifact.exists():
        artifact.unlink()
    stderr = folder / f"{engine}.stderr"
    if err:
        stderr.write_text(err, encoding="utf-8")
    elif stderr.exists():
        stderr.unlink()


def test_there_are_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("engine", list(COMPILERS))
@pytest.mark.parametrize("case", CASES)
def test_golden(
    case: str, engine: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _compile(case, engine, capsys, monkeypatch)
    folder = HERE / case
    if UPDATE:
        _update(folder, engine, code, out, err)
    artifact = folder / ARTIFACT[engine]
    stderr = folder / f"{engine}.stderr"
    assert code == (0 if artifact.exists() else 1)
    assert out == (artifact.read_text(encoding="utf-8") if artifact.exists() else "")
    assert err == (stderr.read_text(encoding="utf-8") if stderr.exists() else "")


@pytest.mark.parametrize("case", CASES)
def test_golden_wandb_configs_pass_wandbs_validator_with_the_same_quantiles(
    case: str, assert_same_quantiles: Callable[[Spec, dict[str, Any]], None]
) -> None:
    artifact = HERE / case / "wandb.yaml"
    if not artifact.exists():
        pytest.skip("no W&B artifact: no config that W&B's validator accepts says this")
    config = yaml.safe_load(artifact.read_text(encoding="utf-8"))
    assert_same_quantiles(load(str(HERE / case / "spec.yaml")), config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import schema_violations_from_proposed_config

        assert schema_violations_from_proposed_config(config) == []


def _kinds(case: str, engine: str) -> set[str]:
    spec = load(str(HERE / case / "spec.yaml"))
    try:
        plan = compile_for(engine, spec)
    except CompileError:
        return set()
    return {u.kind for u in plan.unsupported}


def test_every_unsupported_kind_is_in_the_table_and_has_a_golden_case() -> None:
    emitted = {
        (engine, kind) for case in CASES for engine in COMPILERS for kind in _kinds(case, engine)
    }
    listed = {(row.target, row.kind) for row in table.unsupported_rows()}
    assert emitted == listed


@pytest.mark.parametrize("case", CASES)
def test_optuna_golden_json_is_what_the_api_gives(case: str) -> None:
    artifact = HERE / case / "optuna.json"
    if not artifact.exists():
        pytest.skip("no Optuna artifact: the spec cannot be compiled for Optuna")
    plan = compile_optuna(load(str(HERE / case / "spec.yaml")))
    assert json.loads(artifact.read_text(encoding="utf-8")) == plan.to_json()
