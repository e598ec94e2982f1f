"""compile_wandb: W&B's validator accepts the config, and it means what the spec means."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import yaml
from compiler_helpers import spec_of, wandb_ppf

from sweepspec.compiler.base import Unsupported, UnsupportedError
from sweepspec.compiler.wandb import compile_wandb

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sweeps import schema_violations_from_proposed_config

QUANTILES = [0.0, 1e-9, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0]


def violations(config: dict[str, Any]) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return schema_violations_from_proposed_config(config)


def quantiles(name: str, cfg: dict[str, Any]) -> list[Any]:
    return wandb_ppf(name, cfg, QUANTILES)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"distribution": "log_uniform", "min": -9.21034037, "max": -2.30258509},
            {
                "distribution": "log_uniform_values",
                "min": math.exp(-9.21034037),
                "max": math.exp(-2.30258509),
            },
        ),
        (
            {"distribution": "inv_log_uniform", "min": 0, "max": 3},
            {"distribution": "inv_log_uniform_values", "min": math.exp(-3), "max": 1.0},
        ),
        (
            {"distribution": "q_log_uniform", "min": 3, "max": 7, "q": 8},
            {
                "distribution": "q_log_uniform_values",
                "min": math.exp(3),
                "max": math.exp(7),
                "q": 8,
            },
        ),
        (
            {"distribution": "q_log_uniform", "min": 0.5, "max": 4.5},
            {"distribution": "q_log_uniform_values", "min": math.exp(0.5), "max": math.exp(4.5)},
        ),
    ],
)
def test_exponent_forms_become_values_forms_with_the_same_quantiles(
    given: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = spec_of(f"method: random\nparameters:\n  x: {given!r}\n".replace("'", ""))
    plan = compile_wandb(spec)
    assert plan.config["parameters"]["x"] == expected
    assert violations(plan.config) == []
    assert not violations({"method": "random", "parameters": {"x": given}}) == []
    assert np.allclose(quantiles("x", given), quantiles("x", expected), rtol=1e-12, atol=0)
    assert plan.unsupported == []
    assert plan.notes[0].key == "parameters.x"


def test_yaml_numbers_read_back_by_pyyaml_as_the_same_numbers() -> None:
    spec = spec_of("""
        method: random
        parameters:
          lr: {distribution: log_uniform_values, min: 1.0e-6, max: 1.0e-3}
          big: {distribution: uniform, min: 1.0e+15, max: 1.0e+16}
          n: {values: [1, 2.0, 3.5, 'yes', 'on', null, true]}
        """)
    plan = compile_wandb(spec)
    text = plan.to_yaml()
    assert "min: 1.0e-06" in text
    assert "1e-06" not in text
    assert yaml.safe_load(text) == plan.config
    assert yaml.safe_load(text)["parameters"]["n"]["values"] == [
        1,
        2.0,
        3.5,
        "yes",
        "on",
        None,
        True,
    ]


def test_yaml_header_lists_unsupported_and_removed() -> None:
    spec = spec_of("""
        method: random
        engine: optuna
        seeds: 2
        parameters:
          a: {values: [x, y]}
          b: {values: [1, 2], when: {a: y}}
        """)
    assert compile_wandb(spec).to_yaml("s.yaml").splitlines()[:6] == [
        "# W&B sweep config compiled by sweepspec from s.yaml.",
        "# Unsupported on W&B (the spec says this; this config does not):",
        "#   parameters.b.when: W&B has no conditional parameters; the parameter (active only "
        "when a == 'y') is sampled in every run",
        "#   seeds: W&B runs each configuration once, not once per seed (0, 1)",
        "# Removed or rewritten (same meaning):",
        "#   engine: removed: the default engine is sweepspec's choice, not part of a W&B config",
    ]


def test_json_is_the_bare_config() -> None:
    spec = spec_of("method: grid\nengine: wandb\nparameters:\n  a: {values: [1]}\n")
    assert compile_wandb(spec).to_json() == {"method": "grid", "parameters": {"a": {"values": [1]}}}


def test_strict_raises_with_every_item() -> None:
    spec = spec_of("""
        method: random
        function: train:objective
        metric: {name: loss}
        early_terminate: {type: median}
        parameters:
          a: {values: [1, 2]}
        """)
    with pytest.raises(UnsupportedError) as info:
        compile_wandb(spec, strict=True)
    assert str(info.value) == (
        "unsupported on wandb: early_terminate: W&B stops runs early only with hyperband; "
        "'median' is removed and every run goes to its end\n"
        "unsupported on wandb: function: 'wandb agent' runs a program or command, not the Python "
        "function 'train:objective'; call wandb.agent(sweep_id, function=...) yourself"
    )
    assert [u.kind for u in info.value.items] == ["pruner", "function"]


def test_metrics_need_method_custom_on_wandb() -> None:
    spec = spec_of("""
        method: bayes
        metrics: [{name: acc, goal: maximize}, {name: size}]
        parameters:
          a: {values: [1, 2]}
        """)
    plan = compile_wandb(spec)
    assert plan.config["metric"] == {"name": "acc", "goal": "maximize"}
    assert "metrics" not in plan.config
    assert plan.unsupported == [
        Unsupported(
            "metrics",
            "W&B optimises several metrics ('acc', 'size') only with 'method: custom' "
            "and a custom scheduler; this config optimises 'acc' alone",
            "multi-objective",
        )
    ]
    assert violations(plan.config) == []


def test_hyperband_keeps_wandb_keys_and_drops_brackets() -> None:
    spec = spec_of("""
        method: random
        metric: {name: loss}
        early_terminate: {type: hyperband, min_iter: 3, eta: 2, strict: false, brackets: 2}
        parameters:
          a: {values: [1, 2]}
        """)
    plan = compile_wandb(spec)
    assert plan.config["early_terminate"] == {
        "type": "hyperband",
        "min_iter": 3,
        "eta": 2,
        "strict": False,
    }
    assert [u.feature for u in plan.unsupported] == ["early_terminate.brackets"]
    assert violations(plan.config) == []


def test_run_cap_wins_over_budget_trials() -> None:
    spec = spec_of(
        "method: random\nrun_cap: 5\nbudget: {trials: 9}\nparameters:\n  a: {values: [1]}\n"
    )
    plan = compile_wandb(spec)
    assert plan.config["run_cap"] == 5
    assert plan.notes[0].message == (
        "removed: run_cap=5 is the limit (budget.trials=9 is not used when run_cap is set)"
    )


def test_gpus_per_trial_is_removed_with_how_to_do_it_with_agents() -> None:
    spec = spec_of("method: random\nbudget: {gpus_per_trial: 2}\nparameters:\n  a: {values: [1]}\n")
    plan = compile_wandb(spec)
    assert plan.unsupported == [
        Unsupported(
            "budget.gpus_per_trial",
            "W&B has no such limit (gpus_per_trial=2); removed; start one agent per device "
            "set, each with its CUDA_VISIBLE_DEVICES",
            "budget",
        )
    ]


def test_key_order_is_readable_and_stable() -> None:
    spec = spec_of("""
        parameters:
          a: {values: [1]}
        method: random
        program: train.py
        name: n
        metric: {name: loss}
        """)
    assert list(compile_wandb(spec).config) == ["name", "program", "method", "metric", "parameters"]


def test_compiling_for_wandb_imports_no_engine(imported_modules: Callable[..., set[str]]) -> None:
    imported = imported_modules(
        "from sweepspec.compiler.wandb import compile_wandb\n"
        "from sweepspec.spec import check_text\n"
        "plan = compile_wandb(check_text('method: grid\\nparameters: {a: {values: [1]}}\\n')"
        ".spec)\n"
    )
    assert "sweepspec" in imported
    assert imported & {"optuna", "wandb", "sweeps", "mlflow", "numpy"} == set()
