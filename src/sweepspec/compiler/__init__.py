"""Compilers: one spec to each engine's native artifact, under one lossy-translation policy.

:data:`COMPILERS` is the one registry of compilers: per engine, the module, its compile
function, the formats its plan renders and the default one, and the package it needs. The
``compile`` command, ``run`` and the engines table (:mod:`.table`) read it; none of them
names an engine. Compiler modules are loaded on first use, so that importing this package
stays light (``compile_wandb`` imports no engine, ``compile_optuna`` imports optuna).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import (
    CompileError,
    Note,
    Plan,
    Policy,
    Rendered,
    SearchSpaceChangedError,
    Unsupported,
    UnsupportedError,
)

if TYPE_CHECKING:
    from types import ModuleType

    from ..spec import Spec
    from .optuna import OptunaPlan, compile_optuna
    from .wandb import WandbPlan, compile_wandb

__all__ = [
    "COMPILERS",
    "DEFAULT_ENGINE",
    "CompileError",
    "Compiler",
    "Note",
    "OptunaPlan",
    "Plan",
    "Policy",
    "Rendered",
    "SearchSpaceChangedError",
    "Unsupported",
    "UnsupportedError",
    "WandbPlan",
    "compile_optuna",
    "compile_wandb",
    "compile_for",
    "compiler_formats",
    "compiler_formats_help",
    "compiler_module",
    "compiler_names",
    "load_compiler",
]


@dataclass(frozen=True)
class Compiler:
    """One engine's compiler.

    Attributes:
        module: the module; it defines ``function`` and ``COLUMN``, the engine's column of
            the engines table (:class:`sweepspec.compiler.table.Column`).
        function: ``function(spec, strict=False)`` returns the engine's :class:`~.base.Plan`.
        formats: what the plan renders (``plan.render(fmt, ...)``).
        default_format: the format ``compile`` writes without ``--format``.
        needs: the package the module imports (an extra installs it), None for none.
    """

    module: str
    function: str
    formats: tuple[str, ...]
    default_format: str
    needs: str | None = None


COMPILERS: dict[str, Compiler] = {
    "wandb": Compiler("sweepspec.compiler.wandb", "compile_wandb", ("yaml", "json"), "yaml"),
    "optuna": Compiler(
        "sweepspec.compiler.optuna", "compile_optuna", ("json", "yaml", "python"), "json", "optuna"
    ),
    "ray": Compiler(
        "sweepspec.compiler.ray", "compile_ray", ("json", "yaml", "python"), "json", "optuna"
    ),
}
"""Engine name -> its compiler. W&B first: the spec's own words, the reference column."""

DEFAULT_ENGINE = "optuna"
"""The engine ``compile`` and ``run`` use when neither ``--engine`` nor the spec names one."""


def compiler_names() -> tuple[str, ...]:
    """Every engine sweepspec compiles for, for ``compile --engine``'s choices."""
    return tuple(COMPILERS)


def compiler_formats() -> tuple[str, ...]:
    """Every format some compiler renders, for ``compile --format``'s choices."""
    return tuple(dict.fromkeys(f for c in COMPILERS.values() for f in c.formats))


def compiler_formats_help() -> str:
    """``compile --format``'s help: each engine's formats, its default first."""
    return "; ".join(
        f"{name}: {c.default_format} (default)"
        + "".join(f", {f}" for f in c.formats if f != c.default_format)
        for name, c in COMPILERS.items()
    )


def compiler_module(name: str) -> ModuleType:
    """The compiler module of engine ``name`` (ImportError when its package is missing)."""
    return importlib.import_module(COMPILERS[name].module)


def load_compiler(name: str) -> Callable[..., Plan]:
    """Engine ``name``'s compile function: ``function(spec, strict=False) -> Plan``."""
    function: Callable[..., Plan] = getattr(compiler_module(name), COMPILERS[name].function)
    return function


def compile_for(name: str, spec: Spec, *, strict: bool = False) -> Plan:
    """``spec`` compiled for engine ``name``."""
    return load_compiler(name)(spec, strict=strict)


_LAZY = {
    "compile_optuna": "optuna",
    "OptunaPlan": "optuna",
    "compile_wandb": "wandb",
    "WandbPlan": "wandb",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
