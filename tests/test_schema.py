"""The committed JSON Schema is the one the models generate, and it accepts every valid spec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from sweepspec.cli import cli
from sweepspec.schema import spec_schema
from sweepspec.spec import check

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "src" / "sweepspec" / "schemas" / "sweepspec.schema.json"
SPECS = sorted([*ROOT.glob("tests/fixtures/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
VALID = [p for p in SPECS if check(str(p)).ok and "expected" not in p.parts]


def test_committed_schema_is_in_sync() -> None:
    """Regenerate with: sweepspec schema > src/sweepspec/schemas/sweepspec.schema.json"""
    assert json.loads(COMMITTED.read_text()) == spec_schema()


def test_schema_command_prints_it() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == spec_schema()


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(spec_schema())


def test_there_are_many_valid_specs() -> None:
    assert len(VALID) >= 40


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_schema_accepts_every_valid_spec(path: Path) -> None:
    """What an editor checks with the schema agrees with `validate` on valid files. (The
    schema reads YAML as PyYAML does, so a `1e-5` that sweepspec reads as a number is a
    string there; those files are checked after sweepspec's reading.)"""
    data = check(str(path)).data
    errors = list(jsonschema.Draft202012Validator(spec_schema()).iter_errors(data))
    assert not errors, [e.message for e in errors]


def test_schema_refuses_an_unknown_key_and_a_bad_distribution() -> None:
    validator = jsonschema.Draft202012Validator(spec_schema())
    assert not validator.is_valid(
        yaml.safe_load("method: grid\nparameters: {x: {values: [1]}}\nmetrik: {name: a}\n")
    )
    assert not validator.is_valid(
        yaml.safe_load("method: grid\nparameters: {x: {distribution: gaussian}}\n")
    )


def test_lint_rules_page_is_in_sync() -> None:
    from sweepspec.spec.rules import markdown

    assert (ROOT / "docs" / "lint-rules.md").read_text() == markdown()
