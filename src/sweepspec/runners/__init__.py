"""Runners: one module per engine (``optuna.py``), the trial executors (``trials.py``), the
budget (``budget.py``) and progress (``progress.py``).

Importing this package imports no engine; ``sweepspec.runners.optuna`` imports optuna.
"""

from __future__ import annotations

__all__: list[str] = []
