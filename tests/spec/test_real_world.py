"""Real W&B sweep files written by other people (sources in fixtures/real_world/SOURCES.md).

Each fixture has its expected `sweepspec validate` output in `expected/<name>.txt`; the
verdict of W&B's own validator is in `wandb_verdicts.json` (made by `make_verdicts.py`).
Regenerate the expected files with `SWEEPSPEC_REGEN=1 pytest tests/spec/test_real_world.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sweepspec.spec import check

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "real_world"
FILES = sorted(p.name for p in HERE.glob("*.yaml"))
VERDICTS = json.loads((HERE / "wandb_verdicts.json").read_text())

# W&B accepts these, sweepspec refuses them: SPEC section 1's two exceptions (an unknown
# macro, a duplicate key); each with its exact error lines.
REFUSED_ON_PURPOSE = {
    "ayers1013__dreamprolog__sweep.yaml": [
        "ayers1013__dreamprolog__sweep.yaml:22:5: error: command[1]: unknown macro "
        "'${interpereter}'; did you mean '${interpreter}'?"
    ],
    "etheredge-works__gloves__wandb_sweep.yaml": [
        "etheredge-works__gloves__wandb_sweep.yaml:13:5: error: parameters.epochs.values: "
        "duplicate key 'values' (first at line 12); PyYAML and W&B would silently keep only "
        "the last one"
    ],
}


def _output(name: str) -> str:
    checked = check(name)
    return "".join(f.format() + "\n" for f in checked.findings)


@pytest.fixture(autouse=True)
def _in_fixture_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 30
    assert set(VERDICTS) == set(FILES)
    sources = (HERE / "SOURCES.md").read_text()
    assert all(name in sources for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_expected_findings(name: str) -> None:
    expected = HERE / "expected" / (name.removesuffix(".yaml") + ".txt")
    got = _output(name)
    if os.environ.get("SWEEPSPEC_REGEN"):
        expected.write_text(got)
    assert got == expected.read_text()


@pytest.mark.parametrize("name", [n for n in FILES if VERDICTS[n]["wandb_valid"]])
def test_what_wandb_accepts_is_valid(name: str) -> None:
    checked = check(name)
    if name in REFUSED_ON_PURPOSE:
        assert not checked.ok
        assert [f.format() for f in checked.findings if f.level == "error"] == REFUSED_ON_PURPOSE[
            name
        ]
    else:
        assert checked.ok, [f.format() for f in checked.findings]


@pytest.mark.parametrize("name", [n for n in FILES if not VERDICTS[n]["wandb_valid"]])
def test_what_wandb_refuses(name: str) -> None:
    """Refused by W&B: an error at a line, unless W&B's refusal is one sweepspec lifts on
    purpose (exponent-form log_uniform; 1e-5 read as a number, with a warning)."""
    checked = check(name)
    violations = " ".join(VERDICTS[name]["violations"])
    lifted = "uses log_uniform, where min/max" in violations or any(
        f.rule == "yaml12-float" for f in checked.findings
    )
    if checked.ok:
        assert lifted, violations
    else:
        errors = [f for f in checked.findings if f.level == "error"]
        assert errors and all(f.line >= 1 and f.col >= 1 for f in errors)
