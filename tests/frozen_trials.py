"""What a stored trial is, field by field, for comparing a worker's storage with what plain
Optuna reads back (tests/runners/test_rdb.py, tests/runners/test_journal.py)."""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import FrozenTrial


def trial_fields(trial: FrozenTrial) -> tuple[object, ...]:
    """Every field Optuna stores, NaN written as ``"nan"`` (it equals nothing)."""
    return (
        trial.number,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        _nan(trial.user_attrs),
        trial.system_attrs,
        _nan(trial.intermediate_values),
        trial.datetime_start,
        trial.datetime_complete,
    )


def _nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return value
