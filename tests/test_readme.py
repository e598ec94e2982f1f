"""README.md opens with the two commands; .ci/run runs the second one exactly."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    first_block = README.index("```sh")
    assert README[:first_block].count("```") == 0
    run, test = _commands()
    assert run.endswith("sweepspec run examples/quickstart/sweep.yaml")
    assert test.endswith("python -m pytest -n 2")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    own = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert own == [_commands()[1]]


def test_readme_validate_example_is_real(tmp_path: Path) -> None:
    """The spec shown in the README is valid as written (function aside, which validate
    never imports)."""
    from sweepspec.spec import check_text

    spec = re.search(r"```yaml\n(# yaml-language-server.*?)```", README, re.S)
    assert spec is not None
    checked = check_text(spec.group(1), "README.md")
    assert checked.ok, [f.format() for f in checked.findings]
    assert checked.findings == []


def test_readme_validate_output_is_real(monkeypatch) -> None:
    from sweepspec.spec import check

    monkeypatch.chdir(ROOT)
    shown = re.search(r"On\n`examples/broken/sweep.yaml`:\n\n```\n(.*?)```", README, re.S)
    assert shown is not None
    checked = check("examples/broken/sweep.yaml")
    assert shown.group(1) == "".join(f.format() + "\n" for f in checked.findings)
