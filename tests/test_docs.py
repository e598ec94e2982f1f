"""Every ```yaml block of README.md and docs/*.md is valid YAML and says what sweepspec does.

A block is a whole spec (it has `method`) or a piece of one (top-level keys, or parameters);
a piece is checked inside the smallest spec around it. Blocks in docs/lint-rules.md show a
rule's finding: that rule must report it, at the level the example's comment names. A block
whose first line is `# .pre-commit-config.yaml` is not a spec (it must still be YAML); a block
right after the line `<!-- invalid YAML on purpose -->` is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sweepspec.spec import check_text
from sweepspec.spec.models import Spec

ROOT = Path(__file__).resolve().parents[1]
BROKEN_ON_PURPOSE = "<!-- invalid YAML on purpose -->"
NOT_A_SPEC = "# .pre-commit-config.yaml"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
_RULE_HEADING = re.compile(r"^## `([a-z0-9-]+)`$", re.M)


@dataclass
class Block:
    file: str
    line: int
    text: str
    rule: str | None  # the lint rule whose section holds it (docs/lint-rules.md)
    skipped: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _blocks() -> list[Block]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            before = text[: match.start()]
            headings = _RULE_HEADING.findall(before) if path.name == "lint-rules.md" else []
            previous = before.rstrip("\n").rsplit("\n", 1)[-1]
            out.append(
                Block(
                    str(path.relative_to(ROOT)),
                    before.count("\n") + 2,
                    match.group(1),
                    headings[-1] if headings else None,
                    previous == BROKEN_ON_PURPOSE,
                )
            )
    return out


BLOCKS = _blocks()


def _as_spec(data: object) -> str:
    """The block as a whole spec: a piece gets `method` (and `parameters`) around it."""
    assert isinstance(data, dict), "a block is a mapping"
    if "method" in data:
        return yaml.safe_dump(data)
    if not set(data) <= set(Spec.model_fields):
        data = {"parameters": data}  # a parameter or two
    data = {"method": "random", **data}
    data.setdefault("parameters", {"x": {"values": [1]}})
    return yaml.safe_dump(data)


def test_blocks_are_found() -> None:
    files = {b.file for b in BLOCKS}
    assert {"README.md", "docs/running.md", "docs/lint-rules.md"} <= files
    assert len([b for b in BLOCKS if b.rule]) >= 15


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_yaml_block(block: Block) -> None:
    if block.skipped:
        pytest.skip("invalid YAML on purpose")
    loaded = check_text(block.text, block.where)
    yaml_errors = [f.format() for f in loaded.findings if f.rule in ("yaml", "duplicate-key")]
    assert yaml_errors == []
    if block.text.startswith(NOT_A_SPEC):
        return
    checked = check_text(_as_spec(loaded.data), block.where)
    if block.rule is None:
        assert [f.format() for f in checked.findings if f.level == "error"] == []
        return
    level = re.search(r"#\s*(error|warning)\b", block.text)
    assert level, f"the example of {block.rule!r} says what it gives ('# error: ...')"
    assert (block.rule, level.group(1)) in {(f.rule, f.level) for f in checked.findings}
