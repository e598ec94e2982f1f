"""Every real-world fixture that sweepspec accepts compiles to every engine, faithfully.

W&B: the config passes W&B's own validator, reads back from YAML as the same data, and W&B's
``HyperParameter.ppf`` gives the same quantiles for every parameter before and after. Optuna:
the sampler of the method, ``NopPruner`` unless early termination is asked for, native
distributions wherever Optuna has the same one, and a few trials run on the real study. Ray
Tune: every parameter's sampling function, decoded, has W&B's quantiles (or W&B's grid).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from compiler_helpers import wandb_ppf

from sweepspec.compiler._wandb_hyperband import WandbHyperbandPruner
from sweepspec.compiler.distributions import wandb_grid_values
from sweepspec.compiler.optuna import compile_optuna
from sweepspec.compiler.ray import compile_ray
from sweepspec.compiler.wandb import compile_wandb
from sweepspec.main import main
from sweepspec.spec import Spec, check

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sweeps import schema_violations_from_proposed_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "real_world"
ACCEPTED = sorted(p.name for p in HERE.glob("*.yaml") if check(str(p)).ok)
NATIVE = {
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "log_uniform",
    "log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
}
SAMPLER = {"grid": "GridSampler", "random": "RandomSampler", "bayes": "TPESampler"}


def test_most_fixtures_are_accepted() -> None:
    assert len(ACCEPTED) >= 40


@pytest.mark.parametrize("name", ACCEPTED)
def test_wandb(name: str, assert_same_quantiles: Callable[[Spec, dict[str, Any]], None]) -> None:
    spec = check(str(HERE / name)).spec
    assert spec is not None
    plan = compile_wandb(spec, strict=True)
    back = yaml.safe_load(plan.to_yaml(name))
    assert back == plan.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert schema_violations_from_proposed_config(back) == []
    assert_same_quantiles(spec, back)


@pytest.mark.parametrize("name", ACCEPTED)
def test_optuna(name: str) -> None:
    spec = check(str(HERE / name)).spec
    assert spec is not None
    plan = compile_optuna(spec)
    assert plan.sampler["name"] == SAMPLER[spec.method]
    expected = WandbHyperbandPruner if spec.early_terminate else optuna.pruners.NopPruner
    assert plan.pruner["name"] == expected.__name__
    assert isinstance(plan.create_pruner(), expected)
    for flat, param in spec.flat_parameters().items():
        if param.distribution in NATIVE or spec.method == "grid":
            compiled = plan.params[flat]  # Optuna's own distribution, or its choices by index
            assert compiled.native or compiled.reparam["kind"] == "index", flat
    study = plan.create_study(seed=0)
    study.optimize(lambda t: float(len(repr(plan.suggest(t)))), n_trials=3)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


# --------------------------------------------------------------------------- Ray Tune

# interior quantiles that no bound of a real-world fixture's discrete parameters makes exact
# (at an exact multiple, Tune's floor and scipy's ceil - 1 part by convention only)
RAY_QUANTILES = [1e-6, 0.0123, 0.1234, 0.3141, 0.5077, 0.7182, 0.9012, 0.9876, 1 - 1e-6]


def _tune_ppf(dim: dict[str, Any], u: float) -> Any:
    """The inverse CDF of the Tune sampling function ``dim`` (as Tune draws it from one
    uniform: ``rng.uniform``, ``base ** rng.uniform`` of the log bounds, ``rng.integers``,
    ``rng.choice`` of the indices)."""
    if "value" in dim:
        return dim["value"]
    args = dim["args"]
    if dim["domain"] == "uniform":
        return args[0] + u * (args[1] - args[0])
    if dim["domain"] == "loguniform":
        low, high = math.log(args[0]), math.log(args[1])
        return math.exp(low + u * (high - low))
    if dim["domain"] == "randint":
        return args[0] + math.floor(u * (args[1] - args[0]))
    assert dim["domain"] == "choice", dim
    return args[0][math.floor(u * len(args[0]))]


@pytest.mark.parametrize("name", ACCEPTED)
def test_ray(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compile --engine ray``: every parameter's Tune sampling function, decoded, has W&B's
    quantiles (grid: W&B's grid points); what Tune cannot keep is an unsupported line."""
    monkeypatch.chdir(HERE)
    code = main(["compile", name, "--engine", "ray"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for line in err.splitlines():
        assert line.startswith(f"{name}: warning: unsupported on ray: "), line
    spec = check(str(HERE / name)).spec
    assert spec is not None
    plan = compile_ray(spec)
    artifact = json.loads(out)
    assert artifact["param_space"] == plan.space
    for flat, param in spec.flat_parameters().items():
        cfg = param.model_dump(exclude_unset=True, exclude={"when"})
        dim = artifact["param_space"][flat]
        if spec.method == "grid":
            points = dim["args"][0] if "args" in dim else [dim["value"]]
            got = [plan.decode({flat: v})[flat] for v in points]
            assert got == wandb_grid_values(param.model_dump(exclude={"when"})), flat
            continue
        got = [plan.decode({flat: _tune_ppf(dim, u)})[flat] for u in RAY_QUANTILES]
        expected = [
            v.item() if isinstance(v, np.generic) else v
            for v in wandb_ppf(flat, cfg, RAY_QUANTILES)
        ]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in expected):
            assert np.allclose(got, expected, rtol=1e-9, atol=0), (flat, got, expected)
        else:
            assert got == expected, flat
