"""The mapping between the engines, as data: the compilers' documentation and the README's.

The table has a row per spec feature (W&B's distributions, methods, early termination types,
other keys) and a column per engine in :data:`sweepspec.compiler.COMPILERS`: each compiler
module provides its own :class:`Column` as ``COLUMN`` (what each feature becomes on that
engine, whether that is exact, and why not when it is not, and the kinds of ``unsupported()``
items it emits). This module names no engine. :func:`markdown_table` renders the README
section "How the engines differ" (``docs/engines.md``); tests check each column against its
compiler (a distribution marked native compiles natively; every unsupported kind a compiler
emits has a row, and every row is emitted by some golden case; every column has a cell in
every row).

Imports nothing heavy at import time; :func:`columns` imports each compiler module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..spec.models import DISTRIBUTION_MODELS

__all__ = [
    "DISTRIBUTION_ROWS",
    "EARLY_TERMINATE_ROWS",
    "METHOD_ROWS",
    "OTHER_KEY_ROWS",
    "Column",
    "Section",
    "UnsupportedRow",
    "columns",
    "markdown_table",
    "unsupported_rows",
]

DISTRIBUTION_ROWS: tuple[str, ...] = tuple(DISTRIBUTION_MODELS)
"""W&B's distributions, in W&B's order: the rows of the distributions section."""

METHOD_ROWS: tuple[str, ...] = (
    "grid",
    "random",
    "bayes",
    "custom",
    "`metrics` (several objectives)",
)

EARLY_TERMINATE_ROWS: tuple[str, ...] = (
    "(none)",
    "hyperband",
    "hyperband with `brackets` > 1",
    "median",
    "percentile",
    "successive_halving",
    "threshold",
    "patient",
    "wilcoxon",
)

OTHER_KEY_ROWS: tuple[str, ...] = (
    "`metric.target`",
    "`metric` absent",
    "`run_cap`, `budget.trials`",
    "`seeds`, `budget`",
    "`engine`, `tracking`, `optuna`, `wandb`",
    "`function`",
    "nested `parameters`",
)


@dataclass(frozen=True)
class Section:
    """An engine's columns in one section of the table.

    Attributes:
        headers: the column headers (``("on Optuna", "native", "note")``).
        cells: row key -> one cell per header; every row of the section must have one.
        intro: a paragraph shown before the section's table.
        footnote: a paragraph shown after it.
    """

    headers: tuple[str, ...]
    cells: Mapping[str, tuple[str, ...]]
    intro: str = ""
    footnote: str = ""


@dataclass(frozen=True)
class UnsupportedRow:
    target: str
    kind: str
    feature: str
    instead: str


@dataclass(frozen=True)
class Column:
    """What one engine's compiler contributes to the table (its module's ``COLUMN``); a
    section it leaves out (None) has no column of that engine."""

    engine: str
    distributions: Section | None = None
    methods: Section | None = None
    early_terminate: Section | None = None
    other_keys: Section | None = None
    unsupported: tuple[UnsupportedRow, ...] = field(default_factory=tuple)


SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "distributions": ("W&B distribution", DISTRIBUTION_ROWS),
    "methods": ("method", METHOD_ROWS),
    "early_terminate": ("early_terminate", EARLY_TERMINATE_ROWS),
    "other_keys": ("spec", OTHER_KEY_ROWS),
}
"""Section -> (the header of its first column, its rows)."""


def columns() -> list[Column]:
    """Every registered compiler's column, in the registry's order."""
    from . import COMPILERS, compiler_module

    found: list[Column] = []
    for name in COMPILERS:
        column: Column = compiler_module(name).COLUMN
        if column.engine != name:
            raise ValueError(f"the {name} compiler's COLUMN is the {column.engine!r} engine's")
        found.append(column)
    return found


def unsupported_rows() -> list[UnsupportedRow]:
    """Every engine's unsupported kinds, in the registry's order."""
    return [row for column in columns() for row in column.unsupported]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _label(section: str, key: str) -> str:
    if section == "distributions":
        return f"`{key}`"
    if section == "other_keys" or key == "(none)" or " " in key:
        return key
    return f"`{key}`"


def _section_lines(section: str, every: list[Column]) -> list[str]:
    first, keys = SECTIONS[section]
    parts = [s for s in (getattr(c, section) for c in every) if s is not None]
    header = [first, *(h for part in parts for h in part.headers)]
    rows = []
    for key in keys:
        cells = [_label(section, key)]
        for part in parts:
            cells += part.cells[key]
        rows.append(cells)
    intros = [line for part in parts if part.intro for line in (part.intro, "")]
    footnotes = [line for part in parts if part.footnote for line in ("", part.footnote)]
    return [*intros, *_table(header, rows), *footnotes]


def _unsupported_lines(every: list[Column]) -> list[str]:
    rows = [[r.target, f"`{r.kind}`", r.feature, r.instead] for c in every for r in c.unsupported]
    return _table(["target", "kind", "spec feature", "what the artifact does instead"], rows)


def markdown_table() -> str:
    """The README section "How the engines differ", generated from every engine's column."""
    from . import COMPILERS

    every = columns()
    lines = [
        "## How the engines differ",
        "",
        "<!-- generated by sweepspec.compiler.table.markdown_table(); do not edit by hand -->",
        "",
        f"`sweepspec compile FILE --engine {'|'.join(COMPILERS)}` translates one spec for "
        "each engine. Where the target can say the same thing, it does; where it cannot, the "
        "compiler names the feature (`FILE: warning: unsupported on ENGINE: FEATURE: "
        "MESSAGE`), records it in the artifact, and `--strict` turns it into an error.",
        "",
        "### Distributions",
        "",
        *_section_lines("distributions", every),
        "",
        "### Methods",
        "",
        *_section_lines("methods", every),
        "",
        "### Early termination",
        "",
        *_section_lines("early_terminate", every),
        "",
        "### Other keys",
        "",
        *_section_lines("other_keys", every),
        "",
        "### What a target cannot express",
        "",
        *_unsupported_lines(every),
        "",
        "### Adding an engine",
        "",
        "An engine is one module under `src/sweepspec/runners/` whose `open_engine(spec, path, "
        "options)` returns an object with the `Engine` protocol of "
        "`src/sweepspec/runners/base.py` (ask for the next trial, report an intermediate value "
        "and learn whether to stop, tell the outcome, list the trials, resume), plus one line "
        "in `ENGINES` there, and its compiler `src/sweepspec/compiler/<engine>.py` (its plan "
        "renders the engine's formats, its `COLUMN` is the engine's column of these tables) "
        "with one line in `COMPILERS` (`src/sweepspec/compiler/__init__.py`). The "
        "engine-neutral loop (`src/sweepspec/runners/sweep.py`) does everything else: workers, "
        "budgets, seeds, trial execution, progress, trackers, Ctrl-C and resume. A tracker is "
        "one module under `src/sweepspec/trackers/` and one line in `TRACKERS`. Step by step, "
        "with the protocol member by member: [engines-how-to-add.md](engines-how-to-add.md).",
        "",
    ]
    return "\n".join(lines)
