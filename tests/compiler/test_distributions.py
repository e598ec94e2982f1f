"""W&B distribution kinds -> Optuna: checked against sweeps 0.3.0 itself."""

from __future__ import annotations

import ast
import json
import math
import random
import re
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.samplers import RandomSampler
from scipy.stats import chi2_contingency, ks_2samp

from sweepspec.compiler import _ppf
from sweepspec.compiler.distributions import (
    DISTRIBUTIONS,
    GRID_DISTRIBUTIONS,
    OptunaParam,
    ppf,
    reparam_of,
    to_optuna,
    wandb_grid_values,
)

warnings.filterwarnings("ignore", message="Valid config keys have changed in V2")
warnings.filterwarnings("ignore", message="Support for class-based `config` is deprecated")
from sweeps.config.schema import fill_parameter  # noqa: E402
from sweeps.grid_search import grid_search_next_runs  # noqa: E402
from sweeps.params import HyperParameter  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Valid config keys have changed in V2")
optuna.logging.set_verbosity(optuna.logging.WARNING)

N_DRAWS = 3000
QUANTILES: list[float] = np.linspace(0.0, 1.0, 200).tolist()

# Realistic parameter configs in filled form (fill_parameter leaves them unchanged).
CASES: dict[str, dict[str, Any]] = {
    "constant": {"distribution": "constant", "value": 0.1},
    "constant_list": {"distribution": "constant", "value": [64, 64]},
    "categorical": {"distribution": "categorical", "values": ["adam", "sgd", "rmsprop"]},
    "categorical_ints": {"distribution": "categorical", "values": [16, 32, 64, 128]},
    "categorical_equal_values": {"distribution": "categorical", "values": [1, True, "1"]},
    "categorical_lists": {
        "distribution": "categorical",
        "values": [[32, 32], [64, 64, 64], {"depth": 3}],
    },
    "categorical_w_probabilities": {
        "distribution": "categorical_w_probabilities",
        "values": ["resnet", "vit", "mlp"],
        "probabilities": [0.1, 0.2, 0.7],
    },
    "categorical_w_probabilities_tenths": {
        "distribution": "categorical_w_probabilities",
        "values": list(range(10)),
        "probabilities": [0.1] * 10,
    },
    "int_uniform": {"distribution": "int_uniform", "min": 1, "max": 10},
    "uniform": {"distribution": "uniform", "min": -1.5, "max": 2.5},
    "q_uniform_float_q": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.05},
    "q_uniform_int_q": {"distribution": "q_uniform", "min": 1, "max": 10, "q": 3},
    "log_uniform_v1": {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "inv_log_uniform_v1": {"distribution": "inv_log_uniform", "min": 1, "max": 5},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0},
    "q_log_uniform_v1": {"distribution": "q_log_uniform", "min": 2.0, "max": 6.0, "q": 8},
    "q_log_uniform_values_int_q": {
        "distribution": "q_log_uniform_values",
        "min": 16,
        "max": 512,
        "q": 16,
    },
    "q_log_uniform_values_float_q": {
        "distribution": "q_log_uniform_values",
        "min": 0.001,
        "max": 1.0,
        "q": 0.01,
    },
    "normal": {"distribution": "normal", "mu": 0.5, "sigma": 0.1},
    "q_normal_int_q": {"distribution": "q_normal", "mu": 100, "sigma": 20, "q": 5},
    "q_normal_float_q": {"distribution": "q_normal", "mu": 0, "sigma": 1, "q": 0.5},
    "log_normal": {"distribution": "log_normal", "mu": -3.0, "sigma": 1.0},
    "q_log_normal_int_q": {"distribution": "q_log_normal", "mu": 3, "sigma": 0.5, "q": 2},
    "q_log_normal_float_q": {"distribution": "q_log_normal", "mu": 0, "sigma": 1, "q": 1.0},
    "beta": {"distribution": "beta", "a": 2, "b": 5},
    "beta_arcsine": {"distribution": "beta", "a": 0.5, "b": 0.5},
    "q_beta_float_q": {"distribution": "q_beta", "a": 2, "b": 2, "q": 0.1},
    "q_beta_int_q": {"distribution": "q_beta", "a": 1, "b": 1, "q": 1},
}

CONTINUOUS = {
    "uniform",
    "log_uniform_v1",
    "log_uniform_values",
    "inv_log_uniform_v1",
    "inv_log_uniform_values",
    "normal",
    "log_normal",
    "beta",
    "beta_arcsine",
}

NATIVE_EXPECTED: dict[str, BaseDistribution] = {
    "constant": CategoricalDistribution([0.1]),
    "categorical": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    "categorical_ints": CategoricalDistribution([16, 32, 64, 128]),
    "int_uniform": IntDistribution(1, 10),
    "uniform": FloatDistribution(-1.5, 2.5),
    "log_uniform_values": FloatDistribution(1e-5, 0.1, log=True),
    "log_uniform_v1": FloatDistribution(math.exp(-9.2), math.exp(-2.3), log=True),
    "inv_log_uniform_values": FloatDistribution(0.01, 1.0, log=True),
    "inv_log_uniform_v1": FloatDistribution(math.exp(-5), math.exp(-1), log=True),
}
INDEX_ENCODED = {"constant_list": 1, "categorical_equal_values": 3, "categorical_lists": 3}
QUANTILE_CASES = [c for c in CASES if c not in NATIVE_EXPECTED and c not in INDEX_ENCODED]


def _wandb_ppf(cfg: dict[str, Any], u: float) -> Any:
    with np.errstate(invalid="ignore"):  # astype(int) of +-inf at u = 0 or 1
        return HyperParameter("p", cfg).ppf(u)


def _plain(value: Any) -> Any:
    """numpy scalar -> Python scalar."""
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> tuple[str, str]:
    """A hashable identity that keeps 1, 1.0 and True apart."""
    value = _plain(value)
    return type(value).__name__, repr(value)


def _assert_same(got: Any, expected: Any, discrete: bool) -> None:
    """Exact for discrete results, 1e-12 relative otherwise; int vs float must match."""
    expected = _plain(expected)
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, float) and not discrete:
        if math.isnan(expected):
            assert math.isnan(got)
        else:
            assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-300), (got, expected)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected, (got, expected)


def _seed(case: str) -> int:
    return zlib.crc32(case.encode())


# --------------------------------------------------------------------------- #
# the cases themselves
# --------------------------------------------------------------------------- #


def test_cases_cover_all_18_kinds_in_filled_form() -> None:
    assert len(DISTRIBUTIONS) == 18
    assert {cfg["distribution"] for cfg in CASES.values()} == set(DISTRIBUTIONS)
    for name, cfg in CASES.items():
        filled = fill_parameter(name, cfg)
        assert filled is not None and filled[1] == cfg, name


# --------------------------------------------------------------------------- #
# (1) ppf / to_value == sweeps' HyperParameter.ppf
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("case", list(CASES))
def test_ppf_matches_wandb_at_200_quantiles(case: str) -> None:
    cfg = CASES[case]
    discrete = case not in CONTINUOUS
    reparam = reparam_of(cfg)
    param = to_optuna(cfg)
    for u in QUANTILES:
        expected = _wandb_ppf(cfg, u)
        _assert_same(ppf(reparam, u), expected, discrete)
        if case in QUANTILE_CASES:
            _assert_same(param.to_value(u), expected, discrete)


@pytest.mark.parametrize("case", QUANTILE_CASES)
def test_reparam_is_json_and_survives_a_round_trip(case: str) -> None:
    reparam = to_optuna(CASES[case]).reparam
    assert reparam is not None
    loaded = json.loads(json.dumps(reparam))
    assert loaded == reparam
    for u in QUANTILES[::7]:
        assert _key(ppf(loaded, u)) == _key(ppf(reparam, u))


def test_reparam_shape_example() -> None:
    assert to_optuna({"distribution": "q_normal", "mu": 0, "sigma": 1, "q": 0.5}).reparam == {
        "kind": "normal",
        "mu": 0,
        "sigma": 1,
        "q": 0.5,
    }
    assert reparam_of({"distribution": "normal", "mu": 0.0, "sigma": 1.0}) == {
        "kind": "normal",
        "mu": 0.0,
        "sigma": 1.0,
        "q": None,
    }


def test_wandb_edge_quirks_are_reproduced() -> None:
    int_cfg = CASES["int_uniform"]
    assert ppf(reparam_of(int_cfg), 0.0) == _wandb_ppf(int_cfg, 0.0) == 0  # min - 1
    cat_cfg = CASES["categorical"]
    assert ppf(reparam_of(cat_cfg), 0.0) == _wandb_ppf(cat_cfg, 0.0) == "rmsprop"  # last value
    prob_cfg = CASES["categorical_w_probabilities"]
    assert ppf(reparam_of(prob_cfg), 1.0) == _wandb_ppf(prob_cfg, 1.0) == "resnet"  # first
    tenths = CASES["categorical_w_probabilities_tenths"]
    u = 0.9999999999999999  # >= the float cumulative sum 0.9999999999999999
    assert ppf(reparam_of(tenths), u) == _wandb_ppf(tenths, u) == 0
    q_cfg = CASES["q_uniform_int_q"]
    assert ppf(reparam_of(q_cfg), 0.05) == _wandb_ppf(q_cfg, 0.05) == 0  # below min
    qn_cfg = CASES["q_normal_int_q"]
    assert ppf(reparam_of(qn_cfg), 1.0) == _wandb_ppf(qn_cfg, 1.0) == -(2**63)  # int64(inf)


def test_ppf_outside_unit_interval_raises_wandb_message() -> None:
    message = "^" + re.escape("Can't call ppf on value outside of [0,1]") + "$"
    with pytest.raises(ValueError, match=message):
        ppf(reparam_of(CASES["normal"]), 1.5)
    with pytest.raises(ValueError, match=message):
        HyperParameter("p", CASES["normal"]).ppf(1.5)


def test_ppf_module_is_standard_library_only() -> None:
    tree = ast.parse(Path(_ppf.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections", "math", "statistics", "functools", "typing"}


quantised = st.sampled_from(["q_uniform", "q_log_uniform_values", "q_normal", "q_beta"])


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    kind=quantised,
    low=st.floats(0.01, 50),
    width=st.floats(0.5, 500),
    q=st.one_of(st.integers(1, 7), st.sampled_from([0.1, 0.25, 0.05, 1.0, 2.5])),
    u=st.floats(0.0, 1.0),
)
def test_quantised_ppf_matches_wandb_property(
    kind: str, low: float, width: float, q: float, u: float
) -> None:
    shape = {
        "q_uniform": {"min": low, "max": low + width},
        "q_log_uniform_values": {"min": low, "max": low + width},
        "q_normal": {"mu": low, "sigma": width / 10},
        "q_beta": {"a": 0.5 + low / 10, "b": 0.5 + width / 100},
    }[kind]
    cfg = {"distribution": kind, **shape, "q": q}
    got, expected = ppf(reparam_of(cfg), u), _wandb_ppf(cfg, u)
    unrounded = ppf({**reparam_of(cfg), "q": None}, u) / q
    if math.isfinite(unrounded) and abs(unrounded - math.floor(unrounded) - 0.5) < 1e-9:
        # r / q within float error of a rounding tie: np.exp / ndtri vs math may round apart.
        assert abs(_plain(expected) - got) <= q
    else:
        _assert_same(got, expected, discrete=True)


# --------------------------------------------------------------------------- #
# (2) Optuna RandomSampler + to_value vs W&B's own sampler
# --------------------------------------------------------------------------- #


def _optuna_draws(param: OptunaParam, seed: int, n: int = N_DRAWS) -> list[Any]:
    """Optuna's RandomSampler, called as ``study.ask`` calls it for a new parameter
    (``sample_independent``: random sampling has no relative search space), on one trial:
    the same draws as ``n`` asks (``_asked_draws``), without creating ``n`` trials, which
    was most of this test's time."""
    sampler = RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    study.ask()
    trial = study.trials[0]
    return [
        param.to_value(sampler.sample_independent(study, trial, "p", param.distribution))
        for _ in range(n)
    ]


def _asked_draws(param: OptunaParam, seed: int, n: int) -> list[Any]:
    study = optuna.create_study(sampler=RandomSampler(seed=seed))
    return [param.to_value(study.ask({"p": param.distribution}).params["p"]) for _ in range(n)]


def _wandb_draws(cfg: dict[str, Any], seed: int, n: int = N_DRAWS) -> list[Any]:
    """W&B's sampler: ``HyperParameter.sample()`` is ``ppf(random.uniform(0, 1))``; the same
    uniforms through one vectorised ``ppf`` call are the same draws (``_sampled_draws``), at a
    fraction of the cost."""
    random.seed(seed)
    np.random.seed(seed)
    hp = HyperParameter("p", cfg)
    uniforms = np.array([random.uniform(0.0, 1.0) for _ in range(n)])
    if hp.type in (HyperParameter.CONSTANT, HyperParameter.CATEGORICAL_PROB):
        # a constant's ppf is not vectorised; categorical_w_probabilities' vectorised ppf is
        # not its scalar one (argmin(cdf >= p) vs argmin(x >= cdf)), and sample() is scalar
        return [_plain(hp.ppf(u)) for u in uniforms]
    return [_plain(v) for v in hp.ppf(uniforms)]


def _sampled_draws(cfg: dict[str, Any], seed: int, n: int) -> list[Any]:
    random.seed(seed)
    np.random.seed(seed)
    hp = HyperParameter("p", cfg)
    return [_plain(hp.sample()) for _ in range(n)]


def _chi_square_p(ours: list[Any], theirs: list[Any]) -> float:
    """Two-sample chi-square on counts; values seen < 10 times in total share one bin."""
    a, b = Counter(map(_key, ours)), Counter(map(_key, theirs))
    bins: list[tuple[int, int]] = []
    rare = [0, 0]
    for key in set(a) | set(b):
        if a[key] + b[key] >= 10:
            bins.append((a[key], b[key]))
        else:
            rare[0] += a[key]
            rare[1] += b[key]
    if sum(rare):
        bins.append((rare[0], rare[1]))
    if len(bins) == 1:
        return 1.0
    return float(chi2_contingency(np.array(bins).T).pvalue)


# Every kind, int-q and float-q variants, probabilities, v1 forms, index-encoded values.
STAT_CASES = [
    c for c in CASES if c not in {"categorical_ints", "categorical_w_probabilities_tenths"}
]


@pytest.mark.parametrize("case", STAT_CASES)
def test_optuna_random_sampler_matches_wandb_sampler(case: str) -> None:
    cfg = CASES[case]
    seed = _seed(case) % 2**31
    ours = _optuna_draws(to_optuna(cfg), seed)
    theirs = _wandb_draws(cfg, seed)
    # the fast paths draw what study.ask and W&B's sample() draw
    assert ours[:50] == _asked_draws(to_optuna(cfg), seed, 50)
    assert list(map(_key, theirs[:50])) == list(map(_key, _sampled_draws(cfg, seed, 50)))
    assert {type(v) for v in ours} == {type(v) for v in theirs}
    if case in CONTINUOUS:
        p = float(ks_2samp(ours, theirs).pvalue)
    else:
        p = _chi_square_p(ours, theirs)
    assert p > 0.001, p


def test_statistical_test_rejects_a_wrong_mapping() -> None:
    """Negative control: Int(log=True) is not W&B's q_log_uniform_values (P(1) .39 vs .19)."""
    cfg = {"distribution": "q_log_uniform_values", "min": 1, "max": 8, "q": 1}
    wrong = OptunaParam(IntDistribution(1, 8, log=True), native=True)
    assert _chi_square_p(_optuna_draws(wrong, 7), _wandb_draws(cfg, 7)) < 1e-6


# --------------------------------------------------------------------------- #
# (3) grid
# --------------------------------------------------------------------------- #

GRID_CASES: dict[str, dict[str, Any]] = {
    "categorical": CASES["categorical"],
    "categorical_lists": CASES["categorical_lists"],
    "categorical_repeats": {"distribution": "categorical", "values": [1, 2, 1.0, "a", 2, True]},
    "constant": CASES["constant"],
    "constant_list": CASES["constant_list"],
    "int_uniform": CASES["int_uniform"],
    "q_uniform_int_q": CASES["q_uniform_int_q"],
    "q_uniform_float_q": CASES["q_uniform_float_q"],
    "q_uniform_quarters": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
    "q_uniform_inexact": {"distribution": "q_uniform", "min": 1.0, "max": 1.3, "q": 0.1},
    "q_uniform_int_q_float_bounds": {"distribution": "q_uniform", "min": 0.5, "max": 4.0, "q": 1},
}


def _wandb_grid(cfg: dict[str, Any]) -> list[Any]:
    sweep = {"method": "grid", "parameters": {"p": cfg}}
    runs = grid_search_next_runs([], sweep, n=1000)
    assert runs[-1] is None
    return [run.config["p"]["value"] for run in runs[:-1]]


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_grid_values_match_wandb_grid_search(case: str) -> None:
    cfg = GRID_CASES[case]
    assert list(map(_key, wandb_grid_values(cfg))) == list(map(_key, _wandb_grid(cfg)))


def test_grid_dedupes_like_wandb() -> None:
    assert wandb_grid_values(GRID_CASES["categorical_repeats"]) == [1.0, 2, "a", True]
    # np.arange's float length rounding puts a 4th point *above* max (1.3 + 3e-16).
    assert wandb_grid_values(GRID_CASES["q_uniform_inexact"]) == [
        1.0,
        1.1,
        1.2000000000000002,
        1.3000000000000003,
    ]


@pytest.mark.parametrize(
    "case", [c for c in CASES if CASES[c]["distribution"] not in GRID_DISTRIBUTIONS]
)
def test_grid_refuses_what_wandb_refuses(case: str) -> None:
    cfg = CASES[case]
    kind = cfg["distribution"]
    message = (
        f"W&B grid search cannot enumerate distribution '{kind}': grid search accepts only "
        "categorical, constant, int_uniform and q_uniform parameters"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        wandb_grid_values(cfg)
    with pytest.raises(ValueError, match="is a disallowed type with grid search"):
        _wandb_grid(cfg)


# --------------------------------------------------------------------------- #
# (4) the compiled Optuna distributions
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("case", list(NATIVE_EXPECTED))
def test_native_kinds_compile_to_the_documented_distribution(case: str) -> None:
    param = to_optuna(CASES[case])
    assert distribution_to_json(param.distribution) == distribution_to_json(NATIVE_EXPECTED[case])
    assert param.native and param.reparam is None and param.note is None
    assert param.to_value(0.123) == 0.123


@pytest.mark.parametrize(
    "case",
    [
        "uniform",
        "log_uniform_v1",
        "log_uniform_values",
        "inv_log_uniform_v1",
        "inv_log_uniform_values",
    ],
)
def test_native_float_support_and_median_match_wandb(case: str) -> None:
    cfg = CASES[case]
    dist = to_optuna(cfg).distribution
    assert isinstance(dist, FloatDistribution)
    assert math.isclose(_wandb_ppf(cfg, 0.0), dist.low, rel_tol=1e-12)
    assert math.isclose(_wandb_ppf(cfg, 1.0), dist.high, rel_tol=1e-12)
    middle = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    assert math.isclose(_wandb_ppf(cfg, 0.5), middle, rel_tol=1e-12)


INDEX_NOTE = (
    ", so Optuna sees the string indices '0', '1', ... and to_value maps them back to the values."
)
INDEX_REASONS = {
    "constant_list": "Optuna's categorical choices must be None/bool/int/float/str but [64, 64] is "
    "a list",
    "categorical_equal_values": "Optuna's categorical cannot tell apart 1 and True because they "
    "compare equal",
    "categorical_lists": "Optuna's categorical choices must be None/bool/int/float/str but "
    "[32, 32] is a list",
}
QUANTILE_NOTE = (
    ", so Optuna samples the quantile u in [0, 1] (and stores u, not the value) and "
    "to_value(u) applies W&B's inverse CDF."
)
_WEIGHTED = (
    "Optuna has no weighted categorical distribution, and model-based samplers will see "
    "the values ordered by cumulative probability"
)
_Q_UNIFORM = (
    "Optuna's step grid starts at min and weights every point equally, whereas W&B "
    "rounds U(min, max) to multiples of q counted from 0 with half weight at both ends"
)
_LOG_STEP = "Optuna cannot combine log=True with a step"
_NORMAL = "Optuna has no normal distribution (all of its distributions are bounded)"
_LOG_NORMAL = "Optuna has no log-normal distribution (all of its distributions are bounded)"
_BETA = "Optuna has no beta distribution"
QUANTILE_REASONS = {
    "categorical_w_probabilities": _WEIGHTED,
    "categorical_w_probabilities_tenths": _WEIGHTED,
    "q_uniform_float_q": _Q_UNIFORM,
    "q_uniform_int_q": _Q_UNIFORM,
    "q_log_uniform_v1": _LOG_STEP,
    "q_log_uniform_values_int_q": _LOG_STEP,
    "q_log_uniform_values_float_q": _LOG_STEP,
    "normal": _NORMAL,
    "q_normal_int_q": _NORMAL,
    "q_normal_float_q": _NORMAL,
    "log_normal": _LOG_NORMAL,
    "q_log_normal_int_q": _LOG_NORMAL,
    "q_log_normal_float_q": _LOG_NORMAL,
    "beta": _BETA,
    "beta_arcsine": _BETA,
    "q_beta_float_q": _BETA,
    "q_beta_int_q": _BETA,
}


@pytest.mark.parametrize("case", list(INDEX_ENCODED))
def test_unstorable_categoricals_use_string_indices(case: str) -> None:
    cfg = CASES[case]
    param = to_optuna(cfg)
    n = INDEX_ENCODED[case]
    expected = CategoricalDistribution([str(i) for i in range(n)])
    assert distribution_to_json(param.distribution) == distribution_to_json(expected)
    assert not param.native and param.note == INDEX_REASONS[case] + INDEX_NOTE
    values = cfg["values"] if "values" in cfg else [cfg["value"]]
    assert [_key(param.to_value(str(i))) for i in range(n)] == list(map(_key, values))


@pytest.mark.parametrize("case", QUANTILE_CASES)
def test_quantile_kinds_compile_to_unit_float(case: str) -> None:
    param = to_optuna(CASES[case])
    expected = FloatDistribution(0.0, 1.0)
    assert distribution_to_json(param.distribution) == distribution_to_json(expected)
    assert not param.native and param.reparam is not None
    assert param.note == QUANTILE_REASONS[case] + QUANTILE_NOTE


def test_collision_note_names_the_values() -> None:
    note = to_optuna(CASES["categorical_equal_values"]).note
    assert note == (
        "Optuna's categorical cannot tell apart 1 and True because they compare equal, so "
        "Optuna sees the string indices '0', '1', ... and to_value maps them back to the values."
    )


def test_bad_configs_raise() -> None:
    with pytest.raises(
        ValueError,
        match=r"^unknown W&B distribution 'gaussian'; expected one of: "
        r"constant, categorical, categorical_w_probabilities, int_uniform, "
        r"uniform, q_uniform, log_uniform, log_uniform_values, inv_log_uniform, "
        r"inv_log_uniform_values, q_log_uniform, q_log_uniform_values, normal, "
        r"q_normal, log_normal, q_log_normal, beta, q_beta$",
    ):
        to_optuna({"distribution": "gaussian"})
    with pytest.raises(
        ValueError,
        match=r"^W&B parameter config must be a dict with a 'distribution' key \(filled form\)$",
    ):
        to_optuna({"values": [1, 2]})
    with pytest.raises(
        ValueError,
        match=r"^ppf: unknown reparam kind 'gaussian'; expected one "
        r"of \['beta', 'categorical', 'categorical_w_probabilities', "
        r"'constant', 'int_uniform', 'inv_log_uniform', 'inv_log_uniform_values', "
        r"'log_normal', 'log_uniform', 'log_uniform_values', 'normal', "
        r"'uniform'\]$",
    ):
        ppf({"kind": "gaussian"}, 0.5)
