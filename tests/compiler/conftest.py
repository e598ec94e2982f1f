from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from compiler_helpers import wandb_ppf

from sweepspec.spec import Spec
from sweepspec.spec.models import NestedParam

QUANTILES = [0.0, 1e-6, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-6, 1.0]


def _leaves(
    spec_params: dict[str, Any], config: dict[str, Any], prefix: str = ""
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for name, param in spec_params.items():
        if isinstance(param, NestedParam):
            out += _leaves(param.parameters, config[name]["parameters"], f"{prefix}{name}.")
        else:
            out.append(
                (
                    prefix + name,
                    param.model_dump(exclude_unset=True, exclude={"when"}),
                    config[name],
                )
            )
    return out


def _assert_same_quantiles(spec: Spec, config: dict[str, Any]) -> None:
    for flat, before, after in _leaves(spec.parameters or {}, config["parameters"]):
        expected, got = wandb_ppf(flat, before, QUANTILES), wandb_ppf(flat, after, QUANTILES)
        if all(isinstance(v, (int, float, np.number)) for v in expected):
            assert np.allclose(got, expected, rtol=1e-9, atol=0, equal_nan=True), flat
        else:
            assert got == expected, flat


@pytest.fixture
def assert_same_quantiles() -> Callable[[Spec, dict[str, Any]], None]:
    """Check that W&B's own ``HyperParameter.ppf`` gives every parameter of ``spec`` the same
    quantiles in the compiled W&B ``config``."""
    return _assert_same_quantiles
