"""sweepspec: one YAML file for a hyperparameter sweep, on Optuna or W&B."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "compile_optuna", "compile_wandb", "load"]

if TYPE_CHECKING:
    from .compiler.optuna import compile_optuna
    from .compiler.wandb import compile_wandb
    from .spec import Spec


def load(path: str) -> Spec:
    """The validated spec at ``path``; raises ``sweepspec.spec.SpecError`` when invalid."""
    from .spec import load as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    # PEP 562: the compilers load on first use; ``import sweepspec`` imports no engine.
    if name in ("compile_optuna", "compile_wandb"):
        from . import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'sweepspec' has no attribute {name!r}")
