"""Compilers: one spec to each engine's native artifact, under one lossy-translation policy.

``compile_wandb`` (:mod:`.wandb`, imports no engine) and ``compile_optuna`` (:mod:`.optuna`,
imports optuna) are loaded on first use, so that importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    CompileError,
    Note,
    Policy,
    SearchSpaceChangedError,
    Unsupported,
    UnsupportedError,
)

if TYPE_CHECKING:
    from .optuna import OptunaPlan, compile_optuna
    from .wandb import WandbPlan, compile_wandb

__all__ = [
    "CompileError",
    "Note",
    "OptunaPlan",
    "Policy",
    "SearchSpaceChangedError",
    "Unsupported",
    "UnsupportedError",
    "WandbPlan",
    "compile_optuna",
    "compile_wandb",
]

_LAZY = {
    "compile_optuna": "optuna",
    "OptunaPlan": "optuna",
    "compile_wandb": "wandb",
    "WandbPlan": "wandb",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
