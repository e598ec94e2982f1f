"""sweepspec: one YAML file for a hyperparameter sweep, on Optuna or W&B."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "compile_optuna", "compile_wandb", "load", "results"]

if TYPE_CHECKING:
    import pandas

    from .compiler.optuna import compile_optuna
    from .compiler.wandb import compile_wandb
    from .spec import Spec


def load(path: str) -> Spec:
    """The validated spec at ``path``; raises ``sweepspec.spec.SpecError`` when invalid."""
    from .spec import load as _load

    return _load(path)


def results(
    path: str,
    *,
    storage: str | None = None,
    source: str = "engine",
    per_seed: bool = False,
) -> pandas.DataFrame:
    """The sweep of the spec at ``path`` as a pandas DataFrame, one row per trial (per trial
    and seed with ``per_seed``), the columns of ``sweepspec results`` (``params.lr``,
    ``metrics.val_loss``, ``state``, ``duration``, ...). ``source``: ``engine`` (the engine's
    storage), ``mlflow`` or ``wandb``. Raises ``sweepspec.analysis.table.TableError`` when
    the sweep cannot be read, ``sweepspec.spec.SpecError`` when the spec is invalid."""
    from .analysis.table import load_table

    table = load_table(load(path), path, storage=storage, source=source)
    return table.frame(per_seed=per_seed)


def __getattr__(name: str) -> Any:
    # PEP 562: the compilers load on first use; ``import sweepspec`` imports no engine.
    if name in ("compile_optuna", "compile_wandb"):
        from . import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'sweepspec' has no attribute {name!r}")
