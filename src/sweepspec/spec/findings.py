"""One finding about a spec file: where it is, how bad it is, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning"]
Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``('parameters', 'lr', 'min')`` -> ``parameters.lr.min``; list items as ``[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Finding:
    """A problem (``error``) or a trap (``warning``) at one node of one file."""

    file: str
    line: int
    col: int
    level: Level
    path: Path
    message: str
    rule: str = "schema"

    def format(self) -> str:
        where = f"{format_path(self.path)}: " if self.path else ""
        message = " ".join(self.message.split())  # one finding, one line
        return f"{self.file}:{self.line}:{self.col}: {self.level}: {where}{message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "level": self.level,
            "path": format_path(self.path),
            "rule": self.rule,
            "message": self.message,
        }
