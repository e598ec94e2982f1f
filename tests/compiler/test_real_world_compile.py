"""Every real-world fixture that sweepspec accepts compiles to both engines, faithfully.

W&B: the config passes W&B's own validator, reads back from YAML as the same data, and W&B's
``HyperParameter.ppf`` gives the same quantiles for every parameter before and after. Optuna:
the sampler of the method, ``NopPruner`` unless early termination is asked for, native
distributions wherever Optuna has the same one, and a few trials run on the real study.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from sweepspec.compiler._wandb_hyperband import WandbHyperbandPruner
from sweepspec.compiler.optuna import compile_optuna
from sweepspec.compiler.wandb import compile_wandb
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
