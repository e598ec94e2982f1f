"""The one lossy-translation policy shared by every compiler.

A compiler names what its target cannot express with :meth:`Policy.unsupported` (as sqlglot's
generators call ``self.unsupported``). By default that is a warning recorded in the artifact;
under ``strict`` the compiler raises :class:`UnsupportedError` with every item at once, so the
user sees the whole list rather than the first problem.

This module imports neither click nor any engine: the compilers stay usable as a library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CompileError",
    "Note",
    "Plan",
    "Policy",
    "Rendered",
    "SearchSpaceChangedError",
    "Unsupported",
    "UnsupportedError",
    "dump",
]


@dataclass(frozen=True)
class Unsupported:
    """Something the spec says that the target engine cannot express.

    ``feature`` is the spec path it comes from (``parameters.momentum.when``), ``message``
    says what the target does instead, and ``kind`` names its row in
    :data:`sweepspec.compiler.table.UNSUPPORTED`.
    """

    feature: str
    message: str
    kind: str = ""

    def to_json(self) -> dict[str, str]:
        return {"feature": self.feature, "message": self.message, "kind": self.kind}

    def format(self, engine: str) -> str:
        return f"unsupported on {engine}: {self.feature}: {self.message}"


@dataclass(frozen=True)
class Note:
    """A change of form that keeps the meaning: a key the target does not need, a rewrite."""

    key: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "message": self.message}


class CompileError(Exception):
    """The spec cannot be compiled for the target at all (not a matter of ``--strict``)."""


class UnsupportedError(Exception):
    """Raised under ``strict`` when the target cannot express part of the spec."""

    def __init__(self, engine: str, items: list[Unsupported]) -> None:
        self.engine = engine
        self.items = list(items)
        super().__init__("\n".join(item.format(engine) for item in self.items))


class SearchSpaceChangedError(Exception):
    """An existing study was created from a different search space, or with another metric
    goal: ``what`` says which ("search space" or "metric goal")."""

    def __init__(self, message: str, what: str = "search space") -> None:
        super().__init__(message)
        self.what = what


@dataclass
class Policy:
    """Collects the unsupported items and the notes of one compilation."""

    engine: str
    strict: bool = False
    items: list[Unsupported] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def unsupported(self, feature: str, message: str, kind: str = "") -> None:
        self.items.append(Unsupported(feature, message, kind))

    def note(self, key: str, message: str) -> None:
        self.notes.append(Note(key, message))

    def finish(self) -> list[Unsupported]:
        """The items, or :class:`UnsupportedError` under ``strict`` when there are any."""
        if self.strict and self.items:
            raise UnsupportedError(self.engine, self.items)
        return list(self.items)


@dataclass(frozen=True)
class Rendered:
    """A plan rendered in one format: the artifact's ``text``, and the ``notes`` it could not
    carry (``compile`` prints them on stderr, one line each)."""

    text: str
    notes: list[Note] = field(default_factory=list)


class Plan(Protocol):
    """What every compiler returns (``compile_<engine>(spec, strict=...)``): the engine's
    plan, which renders its own formats (those of its line in
    :data:`sweepspec.compiler.COMPILERS`)."""

    unsupported: list[Unsupported]
    notes: list[Note]

    def render(self, fmt: str, source: str, output: str | None) -> Rendered:
        """The artifact in ``fmt``; ``source`` is the spec file, ``output`` where the artifact
        will be written (None: stdout), for artifacts that refer to files beside them."""
        ...


def dump(data: dict[str, Any], fmt: str) -> str:
    """``data`` as strict JSON (NaN and +-Infinity are null: strict parsers take it) or as
    YAML, the two data formats every compiler can render."""
    if fmt == "json":
        from ..escape import strict_json

        return strict_json(data) + "\n"
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096))
