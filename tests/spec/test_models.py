"""The parameter models against W&B's own schema code (``sweeps.config.schema.fill_parameter``):
the same inference of the distribution, the same defaults, the same acceptance."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from sweepspec.spec import models

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sweeps import schema_violations_from_proposed_config
    from sweeps.config.schema import fill_parameter

W_AND_B_NAMES = {
    "param_single_value": "constant",
    "param_categorical": "categorical",
    "param_categorical_w_probabilities": "categorical_w_probabilities",
    "param_int_uniform": "int_uniform",
    "param_uniform": "uniform",
    "param_quniform": "q_uniform",
    "param_loguniform": "log_uniform",
    "param_loguniform_v2": "log_uniform_values",
    "param_inv_loguniform": "inv_log_uniform",
    "param_inv_loguniform_v2": "inv_log_uniform_values",
    "param_qloguniform": "q_log_uniform",
    "param_qloguniform_v2": "q_log_uniform_values",
    "param_normal": "normal",
    "param_qnormal": "q_normal",
    "param_lognormal": "log_normal",
    "param_qlognormal": "q_log_normal",
    "param_beta": "beta",
    "param_qbeta": "q_beta",
}
ADAPTER = TypeAdapter(models.Parameter)


def wandb_fill(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """W&B's verdict on one parameter; its refusal of the exponent forms (deprecated, still
    valid specs: SPEC section 1) does not count."""
    violations = schema_violations_from_proposed_config(
        {"method": "random", "parameters": {"p": cfg}}
    )
    if [v for v in violations if "min/max specify base-e exponents" not in v]:
        return None
    try:
        result = fill_parameter("p", cfg)
    except ValueError:  # min >= max
        return None
    if result is None:
        return None
    kind, filled = result
    return W_AND_B_NAMES[kind], filled


def ours(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    try:
        param = ADAPTER.validate_python(cfg)
    except ValidationError:
        return None
    return param.distribution, param.model_dump(exclude={"when"})


CASES = [
    {"values": [1, 2, 3]},
    {"values": ["a"], "probabilities": [1.0]},
    {"value": 3},
    {"value": None},
    {"min": 1, "max": 10},
    {"min": 1, "max": 10.0},
    {"min": 0.1, "max": 0.5},
    {"distribution": "uniform", "min": 1, "max": 2},
    {"distribution": "q_uniform", "min": 0, "max": 10},
    {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
    {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
    {"distribution": "inv_log_uniform", "min": 1, "max": 5},
    {"distribution": "inv_log_uniform_values", "min": 1, "max": 5},
    {"distribution": "q_log_uniform", "min": 0, "max": 5, "q": 1},
    {"distribution": "q_log_uniform_values", "min": 1, "max": 256, "q": 1},
    {"distribution": "normal"},
    {"distribution": "normal", "mu": 1, "sigma": 2.5},
    {"distribution": "q_normal", "q": 0.5},
    {"distribution": "log_normal", "mu": -3, "sigma": 1},
    {"distribution": "q_log_normal"},
    {"distribution": "beta", "a": 2, "b": 5},
    {"distribution": "q_beta", "q": 0.1},
    {"distribution": "categorical", "values": [[1, 2], {"a": 1}]},
    {"distribution": "constant", "value": [1, 2]},
    {"distribution": "int_uniform", "min": 1, "max": 5},
]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: str(c))
def test_inference_and_defaults_match_wandb(cfg: dict[str, Any]) -> None:
    expected = wandb_fill(cfg)
    assert expected is not None
    got = ours(cfg)
    assert got is not None
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    for key, value in expected[1].items():  # int stays int, float stays float (q matters)
        assert type(got[1][key]) is type(value), key


REFUSED = [
    {"min": 1, "max": 1},
    {"min": 2, "max": 1.5},
    {"distribution": "int_uniform", "min": 1.0, "max": 5.0},
    {"min": 1, "max": 10, "q": 2},
    {"values": []},
    {"values": [1, 2], "probabilities": [0.5, 0.4]},
    {"values": [1, 2], "probabilities": [1.0]},
    {"distribution": "log_uniform_values", "min": 0, "max": 1},
    {"distribution": "normal", "sigma": -1},
    {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0},
    {"distribution": "uniform", "min": "1e-5", "max": 1},
    {"distribution": "uniform", "min": True, "max": 2},
    {"vales": [1, 2]},
    {"distribution": "gaussian"},
]


@pytest.mark.parametrize("cfg", REFUSED, ids=lambda c: str(c))
def test_refused_like_wandb(cfg: dict[str, Any]) -> None:
    assert wandb_fill(cfg) is None
    assert ours(cfg) is None


_scalars = st.one_of(
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["a", "1e-5", "x"]),
)
_keys = st.sampled_from(["min", "max", "q", "mu", "sigma", "a", "b", "value"])
_dists = st.sampled_from(list(models.DISTRIBUTION_MODELS) + ["bogus"])


@st.composite
def param_dicts(draw: st.DrawFn) -> dict[str, Any]:
    cfg: dict[str, Any] = draw(st.dictionaries(_keys, _scalars, max_size=4))
    if draw(st.booleans()):
        cfg["distribution"] = draw(_dists)
    if draw(st.integers(0, 3)) == 0:
        cfg["values"] = draw(st.lists(_scalars, max_size=3))
    if draw(st.integers(0, 5)) == 0:
        cfg["probabilities"] = draw(st.lists(st.sampled_from([0.5, 1.0, 0.25]), max_size=3))
    return cfg


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(param_dicts())
def test_random_parameters_agree_with_wandb(cfg: dict[str, Any]) -> None:
    """Accept exactly what W&B accepts, with W&B's inferred distribution and defaults."""
    expected, got = wandb_fill(cfg), ours(cfg)
    if expected is None:
        assert got is None, cfg
    else:
        assert got is not None, cfg
        assert got[0] == expected[0]
        assert {k: v for k, v in got[1].items()} == expected[1] or _nan_equal(got[1], expected[1])


def _nan_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in ((a[k], b[k]) for k in a)
    )


def test_the_written_out_unions_list_every_registered_model():
    """Parameter and EarlyTerminate are written out for type checkers; they must not drift
    from the registries that inference and messages use."""
    import typing

    from sweepspec.spec import models

    def members(annotated: object) -> dict[str, type]:
        union = typing.get_args(annotated)[0]
        out = {}
        for member in typing.get_args(union):
            model, tag = typing.get_args(member)
            out[tag.tag] = model
        return out

    params = members(models.Parameter)
    assert params.pop(models.NESTED) is models.NestedParam
    assert params == models.DISTRIBUTION_MODELS
    assert members(models.EarlyTerminate) == models.STOPPING_MODELS
