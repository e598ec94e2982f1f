"""sweepspec: one YAML file for a hyperparameter sweep, on Optuna or W&B."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]

if TYPE_CHECKING:
    from .spec import Spec


def load(path: str) -> Spec:
    """The validated spec at ``path``; raises ``sweepspec.spec.SpecError`` when invalid."""
    from .spec import load as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'sweepspec' has no attribute {name!r}")
