"""Selections on the analysis table: ``--filter``, ``--sort``, ``--columns``.

The filter is a small grammar, read here, never evaluated as Python: ``COLUMN OP VALUE``
conditions joined by ``and`` (case-insensitive). ``COLUMN`` is a column's name as the table
shows it (``metrics.val_loss``, ``params.optimizer.lr``, ``state``), in backquotes when it
holds a space or an operator character (``metrics.`seed_0/loss```); ``OP`` is one of ``<``
``<=`` ``>`` ``>=`` ``=`` (or ``==``) ``!=``; ``VALUE`` is a number, a quoted string, ``null``,
``true``, ``false``, or a bare word taken as a string (``state = COMPLETE``). Numbers compare
as numbers, strings as strings; a number against a string is only ever unequal, and an empty
cell (``null``) satisfies only ``= null`` (and ``!=`` anything else), as in SQL.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..spec.messages import did_you_mean

__all__ = ["Condition", "QueryError", "parse_filter", "pick_columns", "sort_rows"]


class QueryError(ValueError):
    """A filter, sort or column list that cannot be read: one line for the user."""


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op><=|>=|!=|==|=|<|>)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<quoted>`[^`]*`)
    | (?P<word>[^\s<>=!'"`]+)
    )""",
    re.VERBOSE,
)
_WORDS: dict[str, Any] = {"null": None, "none": None, "true": True, "false": False}


@dataclass(frozen=True)
class Condition:
    """``column op value``."""

    column: str
    op: str
    value: Any

    def holds(self, row: dict[str, Any]) -> bool:
        cell = row.get(self.column)
        if cell is None or self.value is None:
            same = cell is None and self.value is None
            return same if self.op in ("=", "==") else (not same if self.op == "!=" else False)
        if _number(cell) and _number(self.value):
            if math.isnan(cell) or math.isnan(self.value):
                return self.op == "!="
            return _OPS[self.op](cell, self.value)
        if isinstance(cell, str) and isinstance(self.value, str):
            return _OPS[self.op](cell, self.value)
        if isinstance(cell, bool) or isinstance(self.value, bool):
            if self.op in ("=", "==", "!="):
                return _OPS[self.op](cell, self.value)
        return self.op == "!="


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise QueryError(f"--filter {text!r}: cannot read it at {text[pos:].strip()!r}")
        kind = found.lastgroup
        assert kind is not None
        out.append((kind, found.group(kind)))
        pos = found.end()
    return out


def _value(kind: str, text: str) -> Any:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    for kind_of in (int, float):
        try:
            return kind_of(text)
        except ValueError:
            continue
    return text


def parse_filter(text: str, columns: Sequence[str]) -> list[Condition]:
    """The conditions of ``text`` (all must hold); ``columns`` are the names a condition may
    use (an unknown one is an error with a did-you-mean)."""
    tokens = _tokens(text)
    conditions = []
    i = 0
    while True:
        part = tokens[i : i + 3]
        if len(part) < 3 or part[0][0] not in ("word", "quoted") or part[1][0] != "op":
            shown = " ".join(t for _, t in part) or "nothing"
            raise QueryError(
                f"--filter {text!r}: each condition is 'COLUMN OP VALUE' (OP one of < <= > "
                f">= = != ), joined by 'and', but got {shown!r}"
            )
        (kind, name), (_, op), (value_kind, value) = part
        column = name[1:-1] if kind == "quoted" else name
        if column not in columns:
            raise QueryError(
                f"--filter: no column {column!r} in the table{did_you_mean(column, columns)}"
                f" (columns: {', '.join(columns)})"
            )
        if value_kind not in ("word", "string"):
            raise QueryError(f"--filter {text!r}: {column} {op} needs a value, but got {value!r}")
        conditions.append(Condition(column, op, _value(value_kind, value)))
        i += 3
        if i == len(tokens):
            return conditions
        joiner_kind, joiner = tokens[i]
        if joiner_kind != "word" or joiner.lower() != "and":
            raise QueryError(
                f"--filter {text!r}: conditions are joined by 'and', but got {joiner!r}"
            )
        i += 1


def sort_rows(
    rows: list[dict[str, Any]], column: str, columns: Sequence[str], descending: bool = False
) -> list[dict[str, Any]]:
    """``rows`` by ``column`` (a leading ``-`` sorts descending); empty cells last, either
    way; the sort is stable."""
    if column.startswith("-"):
        column, descending = column[1:], True
    if column not in columns:
        raise QueryError(
            f"--sort: no column {column!r} in the table{did_you_mean(column, columns)}"
        )
    present = [r for r in rows if not _missing(r.get(column))]
    missing = [r for r in rows if _missing(r.get(column))]
    present.sort(key=lambda r: _key(r[column]), reverse=descending)
    return present + missing


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _key(value: Any) -> tuple[int, Any]:
    if _number(value):
        return (0, value)
    return (1, str(value))


def pick_columns(wanted: str, columns: Sequence[str]) -> list[str]:
    """The columns ``wanted`` names (comma-separated; shell-style patterns such as
    ``params.*`` pick every match), in the order given."""
    out: list[str] = []
    for name in (n.strip() for n in wanted.split(",")):
        if not name:
            continue
        if any(c in name for c in "*?["):
            matched = fnmatch.filter(columns, name)
            if not matched:
                raise QueryError(f"--columns: no column matches {name!r}")
        elif name in columns:
            matched = [name]
        else:
            raise QueryError(
                f"--columns: no column {name!r} in the table{did_you_mean(name, columns)}"
                f" (columns: {', '.join(columns)})"
            )
        out += [c for c in matched if c not in out]
    if not out:
        raise QueryError("--columns: name at least one column")
    return out
