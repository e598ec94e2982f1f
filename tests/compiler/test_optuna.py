"""compile_optuna: the plan, the real Optuna objects it builds, and W&B's behaviour kept."""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
import pytest
from compiler_helpers import spec_of
from optuna.distributions import CategoricalDistribution, FloatDistribution

from sweepspec.compiler._wandb_hyperband import WandbHyperbandPruner
from sweepspec.compiler.base import (
    CompileError,
    SearchSpaceChangedError,
    UnsupportedError,
)
from sweepspec.compiler.optuna import (
    HASH_ATTR,
    OptunaPlan,
    compile_optuna,
    wandb_bands,
)
from sweepspec.spec.models import HyperbandStopping

optuna.logging.set_verbosity(optuna.logging.WARNING)

LLM = """
    method: {method}
    metric: {{name: loss}}
    parameters:
      learning_rate: {{distribution: log_uniform_values, min: 1.0e-6, max: 1.0e-3}}
      batch_size: {{values: [8, 16, 32]}}
      lora_rank: {{values: [4, 8, 16, 32]}}
      warmup_ratio: {{min: 0.0, max: 0.1}}
    """


def loss(params: dict[str, Any]) -> float:
    return (
        abs(params["learning_rate"] - 1e-4) * 1e3
        + params["batch_size"] / 32
        + params["lora_rank"] / 64
        + params["warmup_ratio"]
    )


def hand_written(trial: optuna.Trial) -> float:
    return loss(
        {
            "learning_rate": trial.suggest_float("learning_rate", 1e-6, 1e-3, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32]),
            "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 16, 32]),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.1),
        }
    )


@pytest.mark.parametrize(
    ("method", "sampler"),
    [("bayes", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler)],
)
def test_same_seed_same_sequence_as_a_hand_written_study(method: str, sampler: Any) -> None:
    plan = compile_optuna(spec_of(LLM.format(method=method)))
    compiled = plan.create_study(seed=7)
    compiled.optimize(lambda t: loss(plan.suggest(t)), n_trials=25)
    manual = optuna.create_study(sampler=sampler(seed=7), pruner=optuna.pruners.NopPruner())
    manual.optimize(hand_written, n_trials=25)
    assert [t.params for t in compiled.trials] == [t.params for t in manual.trials]
    assert [t.value for t in compiled.trials] == [t.value for t in manual.trials]
    assert plan.real_params(compiled.trials[3]) == compiled.trials[3].params


def test_plan_fields_for_the_reference_space() -> None:
    plan = compile_optuna(spec_of(LLM.format(method="bayes")))
    assert plan.directions == ["minimize"]
    assert plan.metric_names == ["loss"]
    assert plan.n_trials is None
    assert plan.prune_on == "step"
    assert plan.conditions == {}
    assert plan.unsupported == []
    assert plan.distributions == {
        "learning_rate": FloatDistribution(1e-6, 1e-3, log=True),
        "batch_size": CategoricalDistribution([8, 16, 32]),
        "lora_rank": CategoricalDistribution([4, 8, 16, 32]),
        "warmup_ratio": FloatDistribution(0.0, 0.1),
    }
    assert isinstance(plan.create_sampler(), optuna.samplers.TPESampler)
    assert isinstance(plan.create_pruner(), optuna.pruners.NopPruner)


def test_no_metric_minimises_the_returned_number() -> None:
    plan = compile_optuna(spec_of("method: random\nparameters:\n  a: {values: [1, 2]}\n"))
    assert (plan.directions, plan.metric_names, plan.targets) == (["minimize"], [], [])


def test_target_is_recorded_not_a_pruner() -> None:
    plan = compile_optuna(
        spec_of(
            "method: random\nmetric: {name: acc, goal: maximize, "
            "target: 0.9}\nparameters:\n  a: {values: [1, 2]}\n"
        )
    )
    assert plan.targets == [0.9]
    assert plan.to_json()["pruner"] == {"name": "NopPruner", "kwargs": {}}


def test_multi_objective_defaults_to_nsga2_without_pruning() -> None:
    plan = compile_optuna(
        spec_of("""
        method: custom
        metrics: [{name: acc, goal: maximize}, {name: size}]
        early_terminate: {type: median}
        parameters:
          a: {values: [1, 2]}
        """)
    )
    assert plan.directions == ["maximize", "minimize"]
    assert plan.sampler == {"name": "NSGAIISampler", "kwargs": {}}
    assert plan.pruner == {"name": "NopPruner", "kwargs": {}}
    assert [u.kind for u in plan.unsupported] == ["multi-objective-pruning"]
    study = plan.create_study(seed=0)
    study.optimize(lambda t: (plan.suggest(t)["a"], -plan.suggest(t)["a"]), n_trials=3)
    assert len(study.directions) == 2


def test_strict_raises_unsupported_error() -> None:
    spec = spec_of("""
        method: random
        metrics: [{name: acc, goal: maximize}, {name: size}]
        early_terminate: {type: hyperband, min_iter: 1}
        parameters:
          a: {values: [1, 2]}
        """)
    with pytest.raises(
        UnsupportedError,
        match=r"^unsupported on optuna: early_terminate: "
        r"Optuna's pruners take one objective, and this spec has 2 metrics; no "
        r"trial is stopped early \(NopPruner\)$",
    ):
        compile_optuna(spec, strict=True)


# --------------------------------------------------------------------------- samplers


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
        ("qmc", optuna.samplers.QMCSampler),
        ("nsgaii", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
        ("grid", optuna.samplers.GridSampler),
        ("bruteforce", optuna.samplers.BruteForceSampler),
    ],
)
def test_the_engine_section_picks_any_sampler(name: str, cls: type) -> None:
    plan = compile_optuna(
        spec_of(f"""
        method: bayes
        metric: {{name: loss}}
        optuna: {{sampler: {name}}}
        parameters:
          a: {{values: [1, 2]}}
          b: {{min: 1, max: 3}}
        """)
    )
    assert plan.sampler["name"] == cls.__name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = plan.create_study(seed=0)
        study.optimize(lambda t: float(sum(plan.suggest(t).values())), n_trials=1)
    assert isinstance(study.sampler, cls)


def test_sampler_options_are_its_kwargs_and_seed_overrides() -> None:
    plan = compile_optuna(
        spec_of("""
        method: bayes
        optuna: {sampler: {name: tpe, options: {n_startup_trials: 3, seed: 1}}}
        parameters:
          a: {values: [1, 2]}
        """)
    )
    assert plan.sampler == {"name": "TPESampler", "kwargs": {"n_startup_trials": 3, "seed": 1}}
    assert plan.create_sampler(seed=5)._n_startup_trials == 3
    assert plan.sampler["kwargs"]["seed"] == 1

    def draws(sampler: optuna.samplers.BaseSampler) -> list[Any]:
        study = optuna.create_study(sampler=sampler)
        return [
            study.ask({"a": optuna.distributions.FloatDistribution(0, 1)}).params["a"]
            for _ in range(3)
        ]

    assert draws(plan.create_sampler(seed=5)) == draws(
        optuna.samplers.TPESampler(n_startup_trials=3, seed=5)
    )
    assert draws(plan.create_sampler()) == draws(
        optuna.samplers.TPESampler(n_startup_trials=3, seed=1)
    )
    assert draws(plan.create_sampler(seed=5)) != draws(plan.create_sampler())


def test_grid_enumerates_exactly_wandbs_grid() -> None:
    config = {
        "method": "grid",
        "parameters": {
            "layers": {"min": 1, "max": 3},
            "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.125},
            "opt": {"values": ["adam", "sgd", "adam"]},
            "epochs": {"value": 27},
        },
    }
    plan = compile_optuna(spec_of(json.dumps(config)))
    study = plan.create_study(seed=0)
    seen: list[dict[str, Any]] = []
    study.optimize(lambda t: seen.append(plan.suggest(t)) or 0.0, n_trials=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import SweepRun, next_run

        runs: list[Any] = []
        while (run := next_run(config, runs)) is not None:
            runs.append(SweepRun(name=str(len(runs)), config=run.config))
    wandb = sorted(
        json.dumps({k: v["value"] for k, v in r.config.items()}, sort_keys=True) for r in runs
    )
    assert sorted(json.dumps(s, sort_keys=True) for s in seen) == wandb
    assert len(seen) == 3 * 4 * 2


def test_grid_refuses_what_it_cannot_enumerate() -> None:
    spec = spec_of("method: grid\nparameters:\n  lr: {min: 0.1, max: 0.2}\n")
    with pytest.raises(
        CompileError,
        match=r"^parameters\.lr: grid search cannot enumerate "
        r"'uniform' \(W&B's grid raises on it too\); give 'values', or use "
        r"int_uniform or q_uniform$",
    ):
        compile_optuna(spec)


# --------------------------------------------------------------------------- pruners


@pytest.mark.parametrize(
    "et",
    [
        {"type": "hyperband", "min_iter": 3, "eta": 2},
        {"type": "hyperband", "min_iter": 1, "eta": 3},
        {"type": "hyperband", "min_iter": 2, "eta": 2.5},
        {"type": "hyperband", "max_iter": 27, "s": 3},
        {"type": "hyperband", "max_iter": 100, "s": 3, "eta": 3},
        {"type": "hyperband", "max_iter": 81, "s": 2},
        {"type": "hyperband", "max_iter": 81, "s": 2, "min_iter": 5},
    ],
)
def test_bands_are_wandbs(et: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import RunState, SweepRun, stop_runs

    config = {
        "method": "random",
        "metric": {"name": "loss"},
        "early_terminate": et,
        "parameters": {"a": {"values": [1]}},
    }
    run = SweepRun(name="r", state=RunState.running, history=[{"loss": 1.0}])
    stop_runs(config, [run])
    assert wandb_bands(HyperbandStopping(**et)) == run.early_terminate_info["bands"]


@pytest.mark.parametrize(
    ("et", "kwargs"),
    [
        ("{type: hyperband, min_iter: 3, eta: 2}", {"min_iter": 3, "eta": 2, "strict": True}),
        (
            "{type: hyperband, max_iter: 15, s: 2, eta: 3, strict: false}",
            {"max_iter": 15, "s": 2, "eta": 3, "strict": False},
        ),
        (
            "{type: hyperband, min_iter: 2, max_iter: 27, s: 2, eta: 2.5}",
            {"max_iter": 27, "s": 2, "eta": 2.5, "strict": True},
        ),
    ],
)
def test_hyperband_is_wandbs_own_rule_with_nothing_unsupported(
    et: str, kwargs: dict[str, Any]
) -> None:
    plan = compile_optuna(
        spec_of(f"""
        method: random
        metric: {{name: loss}}
        early_terminate: {et}
        parameters:
          a: {{min: 0.0, max: 1.0}}
        """)
    )
    assert plan.pruner == {"name": "WandbHyperbandPruner", "kwargs": kwargs}
    assert plan.prune_on == "count"
    assert plan.unsupported == []
    pruner = plan.create_pruner()
    assert isinstance(pruner, WandbHyperbandPruner)
    assert pruner.bands == wandb_bands(plan.spec.early_terminate)
    assert (pruner.eta, pruner.strict) == (kwargs["eta"], kwargs["strict"])


def test_hyperband_without_any_band_cannot_compile() -> None:
    spec = spec_of("""
        method: random
        metric: {name: loss}
        early_terminate: {type: hyperband, max_iter: 2, s: 2, eta: 3}
        parameters:
          a: {min: 0.0, max: 1.0}
        """)
    with pytest.raises(
        CompileError,
        match=r"^early_terminate: hyperband with max_iter=2, s=2, "
        r"eta=3 has no band \(W&B stops with 'Bands must be an array of length "
        r"at least 1'\); increase max_iter or s, or lower eta$",
    ):
        compile_optuna(spec)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(
    ("et", "name", "kwargs"),
    [
        (
            "{type: median}",
            "MedianPruner",
            {"n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1},
        ),
        (
            "{type: percentile, percentile: 25}",
            "PercentilePruner",
            {
                "percentile": 25,
                "n_startup_trials": 5,
                "n_warmup_steps": 0,
                "interval_steps": 1,
                "n_min_trials": 1,
            },
        ),
        (
            "{type: successive_halving, min_resource: 2}",
            "SuccessiveHalvingPruner",
            {
                "min_resource": 2,
                "reduction_factor": 4,
                "min_early_stopping_rate": 0,
                "bootstrap_count": 0,
            },
        ),
        (
            "{type: threshold, lower: 0.1}",
            "ThresholdPruner",
            {"lower": 0.1, "upper": None, "n_warmup_steps": 0, "interval_steps": 1},
        ),
        ("{type: wilcoxon}", "WilcoxonPruner", {"p_threshold": 0.1, "n_startup_steps": 2}),
        (
            "{type: patient, patience: 2}",
            "PatientPruner",
            {"wrapped_pruner": None, "patience": 2, "min_delta": 0.0},
        ),
        (
            "{type: hyperband, min_iter: 1, brackets: 3}",
            "HyperbandPruner",
            {"min_resource": 1, "max_resource": 9, "reduction_factor": 3},
        ),
    ],
)
def test_each_early_termination_type_has_its_pruner(
    et: str, name: str, kwargs: dict[str, Any]
) -> None:
    plan = compile_optuna(
        spec_of(
            f"method: random\nmetric: {{name: loss}}\n"
            f"early_terminate: {et}\nparameters:\n  a: {{values: [1]}}\n"
        )
    )
    assert plan.pruner == {"name": name, "kwargs": kwargs}
    assert type(plan.create_pruner()).__name__ == name
    assert plan.unsupported == []


def test_hyperband_brackets_give_optunas_bracket_count() -> None:
    plan = compile_optuna(
        spec_of("""
        method: random
        metric: {name: loss}
        early_terminate: {type: hyperband, min_iter: 1, brackets: 3}
        parameters:
          a: {min: 0.0, max: 1.0}
        """)
    )
    study = plan.create_study(seed=0)
    study.optimize(lambda t: t.report(1.0, 1) or t.should_prune() or 1.0, n_trials=1)
    assert study.pruner._n_brackets == 3


# --------------------------------------------------------------------------- define-by-run


CONDITIONAL = """
    method: random
    metric: {name: loss}
    parameters:
      optimizer:
        parameters:
          name: {values: [adam, sgd]}
          momentum: {min: 0.0, max: 0.99, when: {name: sgd}}
          nesterov: {values: [true, false], when: {momentum_on: true}}
          momentum_on: {values: [true, false], when: {name: [sgd]}}
      schedule: {values: [constant, cosine]}
      warmup:
        when: {schedule: cosine}
        parameters:
          steps: {values: [100, 500]}
      c: {value: 3}
    """


def test_conditions_are_dotted_and_inherited_by_nested_groups() -> None:
    plan = compile_optuna(spec_of(CONDITIONAL))
    assert plan.conditions == {
        "optimizer.momentum": {"optimizer.name": ["sgd"]},
        "optimizer.nesterov": {"optimizer.momentum_on": [True]},
        "optimizer.momentum_on": {"optimizer.name": ["sgd"]},
        "warmup.steps": {"schedule": ["cosine"]},
    }
    assert plan.order == [
        "optimizer.name",
        "optimizer.momentum",
        "optimizer.momentum_on",
        "optimizer.nesterov",
        "schedule",
        "warmup.steps",
        "c",
    ]


def test_suggest_raw_then_decode_is_suggest() -> None:
    """A search algorithm that wraps Optuna's trial (Ray Tune's OptunaSearch) keeps what
    Optuna holds; decode gives the real values suggest gives, conditions and quantiles
    included, and leaves out what is inactive even when a value is there."""
    spec = CONDITIONAL.replace("c: {value: 3}", "c: {value: 3}\n      n: {distribution: normal}")
    plan = compile_optuna(spec_of(spec))
    for seed in range(20):
        sampler = optuna.samplers.RandomSampler(seed=seed)
        raw = plan.suggest_raw(optuna.create_study(sampler=sampler).ask())
        real = plan.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask())
        assert "c" not in raw and 0 <= raw["n"] <= 1
        assert plan.decode(raw) == real
        assert plan.decode({**raw, "warmup.steps": 100}) == real | (
            {"warmup.steps": 100} if real["schedule"] == "cosine" else {}
        )


def test_suggest_is_define_by_run() -> None:
    plan = compile_optuna(spec_of(CONDITIONAL))
    study = plan.create_study(seed=3)
    study.optimize(lambda t: float(len(plan.suggest(t))), n_trials=40)
    for trial in study.trials:
        real = plan.real_params(trial)
        assert ("optimizer.momentum" in real) == (real["optimizer.name"] == "sgd")
        assert ("optimizer.nesterov" in real) == (real.get("optimizer.momentum_on") is True)
        assert ("warmup.steps" in real) == (real["schedule"] == "cosine")
        assert real["c"] == 3 and trial.params["c"] == 3  # recorded, as best_params shows
        assert plan.real_params(trial) == real
        assert list(real) == [n for n in plan.params if n in real]


def test_a_cycle_of_conditions_cannot_compile() -> None:
    spec = spec_of("""
        method: random
        parameters:
          a: {values: [1, 2], when: {b: 1}}
          b: {values: [1, 2], when: {a: 1}}
        """)
    with pytest.raises(
        CompileError,
        match=r"^the 'when' conditions form a cycle: "
        r"a -> b -> a$",
    ):
        compile_optuna(spec)


def test_reparametrised_values_are_real_everywhere_but_optunas_own_params() -> None:
    plan = compile_optuna(
        spec_of("""
        method: random
        parameters:
          init: {distribution: normal, mu: 5.0, sigma: 0.001}
          layout: {values: [[64, 64], [128]]}
        """)
    )
    study = plan.create_study(seed=0)
    study.optimize(lambda t: abs(plan.suggest(t)["init"] - 5.0), n_trials=5)
    best = plan.real_params(study.best_trial)
    assert abs(best["init"] - 5.0) < 0.01
    assert best["layout"] in ([64, 64], [128])
    assert 0.0 <= study.best_trial.params["init"] <= 1.0
    assert set(plan.to_json()["reparametrised"]) == {"init", "layout"}


def test_nest_static_splits_dots_and_the_plan_follows_the_spec() -> None:
    assert OptunaPlan.nest({"opt.lr": 1, "a": 2}) == {"opt": {"lr": 1}, "a": 2}
    plan = compile_optuna(
        spec_of("""
        method: random
        parameters:
          trainer.epochs: {values: [1]}
          opt:
            parameters:
              lr: {values: [0.1]}
        """)
    )
    assert plan.nest({"trainer.epochs": 1, "opt.lr": 0.1}) == {
        "trainer.epochs": 1,
        "opt": {"lr": 0.1},
    }


# --------------------------------------------------------------------------- studies


def test_create_study_stamps_and_guards_the_search_space(tmp_path: Any) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    plan = compile_optuna(spec_of(LLM.format(method="random")))
    study = plan.create_study(storage=storage, study_name="s")
    assert study.user_attrs[HASH_ATTR] == plan.search_space_hash()
    assert plan.create_study(storage=storage, study_name="s").study_name == "s"
    changed = compile_optuna(spec_of(LLM.format(method="random").replace("0.1}", "0.2}")))
    assert changed.search_space_hash() != plan.search_space_hash()
    with pytest.raises(SearchSpaceChangedError) as refused:
        changed.create_study(storage=storage, study_name="s")
    assert str(refused.value) == (
        f"study 's' was created from a different search space (hash "
        f"{plan.search_space_hash()[:12]}, the spec now gives {changed.search_space_hash()[:12]}); "
        "start a fresh study (another study_name or storage) to sample the new space"
    )


def test_search_space_hash_is_stable_and_sees_reparam_changes() -> None:
    text = "method: random\nparameters:\n  x: {distribution: normal, mu: 0, sigma: 1}\n"
    a = compile_optuna(spec_of(text)).search_space_hash()
    assert a == compile_optuna(spec_of(text)).search_space_hash()
    assert a != compile_optuna(spec_of(text.replace("mu: 0", "mu: 1"))).search_space_hash()


def test_the_spec_optuna_section_gives_storage_and_study_name(tmp_path: Any) -> None:
    db = tmp_path / "o.db"
    plan = compile_optuna(
        spec_of(f"""
        method: random
        optuna: {{storage: 'sqlite:///{db}', study_name: from-spec}}
        parameters:
          a: {{values: [1]}}
        """)
    )
    study = plan.create_study()
    assert study.study_name == "from-spec"
    assert db.exists()


def test_budget_and_seeds_are_in_the_json() -> None:
    plan = compile_optuna(
        spec_of("""
        method: random
        seeds: [3, 4]
        budget: {trials: 12, wall_clock: 30m, workers: 4}
        parameters:
          a: {value: 1}
        """)
    )
    data = plan.to_json()
    assert data["n_trials"] == 12
    assert data["budget"] == {
        "n_trials": 12,
        "wall_clock": 1800.0,
        "workers": 4,
        "cost": None,
        "trial_timeout": None,
        "max_consecutive_failures": 5,
        "seeds": {"values": [3, 4], "aggregate": "mean"},
    }
    assert data["distributions"] == {
        "a": {"name": "CategoricalDistribution", "attributes": {"choices": [1]}}
    }
    assert data["constants"] == {"a": 1}


def test_gpus_per_trial_is_in_the_budget_only_when_set() -> None:
    plan = compile_optuna(
        spec_of("method: random\nbudget: {gpus_per_trial: 2}\nparameters:\n  a: {value: 1}\n")
    )
    assert plan.to_json()["budget"]["gpus_per_trial"] == 2


def test_random_sampler_draws_wandbs_values_for_a_quantile_parameter() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.params import HyperParameter
    plan = compile_optuna(
        spec_of(
            "method: random\nparameters:\n  x: {distribution: q_normal, mu: 3, sigma: 2, q: 0.5}\n"
        )
    )
    trial = optuna.trial.FixedTrial({"x": 0.3})
    cfg = {"distribution": "q_normal", "mu": 3, "sigma": 2, "q": 0.5}
    assert plan.suggest(trial) == {"x": float(HyperParameter("x", cfg).ppf(0.3))}


def test_a_grid_may_have_up_to_grid_limit_points() -> None:
    from sweepspec.compiler.optuna import GRID_LIMIT

    space = "method: grid\nparameters:\n  a: {{min: 1, max: 1000}}\n  b: {{min: 1, max: {b}}}\n"
    plan = compile_optuna(spec_of(space.format(b=1000)))
    assert [len(v) for v in plan.sampler["kwargs"]["search_space"].values()] == [1000, 1000]
    assert GRID_LIMIT == 1000 * 1000
    with pytest.raises(
        CompileError,
        match=r"^method: grid: the grid has 1,001,000 points \(a: 1,000 x b: 1,001\), more "
        r"than the limit of 1,000,000; coarsen q or narrow the ranges, or use method: random$",
    ):
        compile_optuna(spec_of(space.format(b=1001)))
