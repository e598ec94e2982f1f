"""compile_ray: the spec on Ray Tune, checked against W&B's own code (sweeps 0.3.0).

Distributions: Tune's sampling functions, decoded, against ``HyperParameter.sample`` for every
kind (KS or chi-square, as tests/compiler/test_distributions.py checks Optuna); grid points
against W&B's grid; bayes through Tune's ``OptunaSearch`` gives what the Optuna engine's
study gives; the hyperband scheduler against ``sweeps.stop_runs``, decision by decision, alone
and in a real Tune run; the ``--format python`` script run with a real local Ray.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from compiler_helpers import spec_of
from hyperband_curves import CASES as HYPERBAND_CASES
from hyperband_curves import Wandb, config, curves, signed
from scipy.stats import ks_2samp
from test_distributions import (
    CASES,
    CONTINUOUS,
    GRID_CASES,
    STAT_CASES,
    _chi_square_p,
    _key,
    _seed,
    _wandb_draws,
    _wandb_grid,
)

from sweepspec.compiler import UnsupportedError
from sweepspec.compiler.optuna import compile_optuna
from sweepspec.compiler.ray import FINAL, RayPlan, compile_ray
from sweepspec.main import main

warnings.filterwarnings("ignore", message="Valid config keys have changed in V2")
optuna.logging.set_verbosity(optuna.logging.WARNING)

N_DRAWS = 3000


def _one(cfg: dict[str, Any], method: str = "random") -> RayPlan:
    text = f"method: {method}\nmetric: {{name: loss}}\nparameters:\n  p: {json.dumps(cfg)}\n"
    return compile_ray(spec_of(text))


def _tune_draws(plan: RayPlan, seed: int, n: int = N_DRAWS) -> list[Any]:
    """What Tune's BasicVariantGenerator samples for ``p`` (one draw at a time, as it
    resolves a trial's config), decoded."""
    domain = plan.param_space()["p"]
    if not hasattr(domain, "sample"):  # a constant: the value itself
        return [plan.decode({"p": domain})["p"] for _ in range(n)]
    state = np.random.RandomState(seed)
    return [plan.decode({"p": domain.sample(random_state=state)})["p"] for _ in range(n)]


@pytest.mark.parametrize("case", STAT_CASES)
def test_tune_samples_what_wandb_samples(case: str) -> None:
    cfg = CASES[case]
    seed = _seed(case) % 2**31
    plan = _one(cfg)
    assert plan.search_alg() is None and plan.scheduler() is None  # Tune's default generator
    ours, theirs = _tune_draws(plan, seed), _wandb_draws(cfg, seed)
    assert {type(v) for v in ours} == {type(v) for v in theirs}
    if case in CONTINUOUS:
        p = float(ks_2samp(ours, theirs).pvalue)
    else:
        p = _chi_square_p(ours, theirs)
    assert p > 0.001, p


def test_the_statistical_test_rejects_tunes_own_quantised_log_uniform() -> None:
    """Negative control: Tune's qloguniform is not W&B's q_log_uniform_values (which is why
    the quantile is used)."""
    from ray import tune

    cfg = {"distribution": "q_log_uniform_values", "min": 1, "max": 8, "q": 1}
    state = np.random.RandomState(7)
    wrong = [int(tune.qlograndint(1, 8, 1).sample(random_state=state)) for _ in range(N_DRAWS)]
    assert _chi_square_p(wrong, _wandb_draws(cfg, 7)) < 1e-6


@pytest.mark.parametrize(
    ("case", "domain"),
    [
        ("uniform", "uniform"),
        ("log_uniform_values", "loguniform"),
        ("log_uniform_v1", "loguniform"),
        ("inv_log_uniform_v1", "loguniform"),
        ("inv_log_uniform_values", "loguniform"),
        ("int_uniform", "randint"),
        ("categorical", "choice"),
        ("normal", "uniform"),
        ("q_uniform_int_q", "uniform"),
        ("categorical_w_probabilities", "uniform"),
    ],
)
def test_native_where_tune_has_the_same_distribution(case: str, domain: str) -> None:
    plan = _one(CASES[case])
    assert plan.space["p"]["domain"] == domain
    native = "p" not in plan.optuna.to_json()["reparametrised"]
    assert native is (case in ("uniform", "int_uniform", "categorical") or "log_uniform" in case)
    if not native:
        assert plan.space["p"]["args"] == [0.0, 1.0]  # the quantile


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_grid_is_wandbs_grid_each_point_once(case: str) -> None:
    plan = _one(GRID_CASES[case], "grid")
    assert plan.num_samples == 1
    points = plan.param_space()["p"]
    if isinstance(points, dict):
        got = [plan.decode({"p": v})["p"] for v in points["grid_search"]]
    else:
        got = [plan.decode({"p": points})["p"]]
    assert list(map(_key, got)) == list(map(_key, _wandb_grid(GRID_CASES[case])))


BAYES = """
method: bayes
metric: {name: loss, goal: maximize}
parameters:
  optimizer:
    parameters:
      name: {values: [adam, sgd]}
      momentum: {min: 0.0, max: 0.99, when: {name: sgd}}
  noise: {distribution: normal, mu: 0, sigma: 0.1}
  layout: {values: [[1, 2], [3]]}
  c: {value: 3}
"""


def test_bayes_is_optuna_search_with_the_optuna_engines_sampler_and_space() -> None:
    plan = compile_ray(spec_of(BAYES))
    assert plan.searcher["name"] == "OptunaSearch" and plan.param_space() == {}
    assert (plan.metric, plan.mode, plan.num_samples) == ("loss", "max", -1)
    searcher = plan.search_alg(seed=3)
    study_plan = compile_optuna(spec_of(BAYES))
    study = study_plan.create_study(seed=3)
    for i in range(15):
        config = searcher.suggest(f"t{i}")
        trial = study.ask()
        assert plan.decode(config) == study_plan.suggest(trial)
        value = float(len(repr(config)))
        searcher.on_trial_complete(f"t{i}", {"loss": value})
        study.tell(trial, value)
    assert type(searcher._ot_study.sampler).__name__ == "TPESampler"
    assert pickle.loads(pickle.dumps(searcher)).suggest("again")  # Tune saves it


def test_metric_absent_and_several_metrics() -> None:
    none = compile_ray(spec_of("method: random\nparameters:\n  a: {values: [1, 2]}\n"))
    assert (none.metric, none.mode) == ("objective", "min")
    several = compile_ray(
        spec_of(
            "method: custom\nmetrics: [{name: a, goal: maximize}, {name: b}]\n"
            "parameters:\n  x: {min: 0.0, max: 1.0}\n"
        )
    )
    assert (several.metric, several.mode) == (["a", "b"], ["max", "min"])
    assert several.searcher["kwargs"]["sampler"]["name"] == "NSGAIISampler"


# --------------------------------------------------------------------------- hyperband

CURVES = curves()


def _hyperband_plan(form: dict[str, Any], strict: bool, goal: str) -> RayPlan:
    et = json.dumps({"type": "hyperband", **form, "strict": strict})
    return compile_ray(
        spec_of(
            f"method: random\nmetric: {{name: loss, goal: {goal}}}\nearly_terminate: {et}\n"
            "parameters:\n  x: {min: 0.0, max: 1.0}\n"
        )
    )


@pytest.mark.parametrize(("form", "strict", "goal"), HYPERBAND_CASES)
def test_scheduler_stops_where_wandb_stops_one_trial_at_a_time(
    form: dict[str, Any], strict: bool, goal: str
) -> None:
    scheduler = _hyperband_plan(form, strict, goal).scheduler()
    wandb = Wandb(config({**form, "strict": strict}, goal))
    ours: list[int | None] = []
    theirs: list[int | None] = []
    for number, curve in enumerate(CURVES):
        run, stopped_w, stopped_r = wandb.start(), None, None
        for logged, value in enumerate(signed(curve, goal), start=1):
            if stopped_w is None:
                wandb.log(run, value)
                if wandb.stop():
                    stopped_w = logged
            if stopped_r is None and scheduler.record(str(number), value):
                stopped_r = logged
            if stopped_w is not None and stopped_r is not None:
                break
        if stopped_w is None:
            run.state = "finished"
        ours.append(stopped_r)
        theirs.append(stopped_w)
    assert ours == theirs
    assert 20 < sum(s is not None for s in theirs) < len(CURVES) - 5


@pytest.mark.parametrize(("form", "strict", "goal"), HYPERBAND_CASES[::3])
def test_scheduler_decides_as_wandb_after_every_value_of_four_running_trials(
    form: dict[str, Any], strict: bool, goal: str
) -> None:
    """Four trials at once, one value each in turn; after each value Tune asks the scheduler
    about that trial, W&B's agent asks stop_runs about its run: the same verdicts, including
    re-checks at a band a trial has passed."""
    from sweeps import stop_runs

    scheduler = _hyperband_plan(form, strict, goal).scheduler()
    wandb = Wandb(config({**form, "strict": strict}, goal))
    queue = [(str(i), signed(c, goal)) for i, c in enumerate(CURVES)]
    running: list[list[Any]] = []
    decisions = 0
    while queue or running:
        while queue and len(running) < 4:
            key, curve = queue.pop(0)
            running.append([key, curve, 0, wandb.start()])
        for slot in list(running):
            key, curve, at, run = slot
            wandb.log(run, curve[at])
            slot[2] = at = at + 1
            by_wandb = run in stop_runs(wandb.cfg, wandb.runs)
            assert scheduler.record(key, curve[at - 1]) == by_wandb
            decisions += 1
            if by_wandb:
                run.state = "killed"
                running.remove(slot)
            elif at == len(curve):
                run.state = "finished"
                running.remove(slot)
    assert decisions > len(CURVES)


def test_hyperband_needs_no_band_list_in_the_artifact() -> None:
    plan = _hyperband_plan({"min_iter": 6, "eta": 3}, True, "minimize")
    assert plan.to_json()["scheduler"] == {
        "name": "WandbHyperbandScheduler",
        "kwargs": {"min_iter": 6, "eta": 3, "strict": True},
    }
    assert plan.scheduler().bands[:3] == [6, 18, 54]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("early_terminate", "kind"),
    [
        ("{type: median}", "early-termination"),
        ("{type: hyperband, min_iter: 1, brackets: 2}", "early-termination"),
    ],
)
def test_what_tune_cannot_keep_is_named_and_refused_under_strict(
    early_terminate: str, kind: str
) -> None:
    text = (
        f"method: random\nmetric: {{name: loss}}\nearly_terminate: {early_terminate}\n"
        "parameters:\n  x: {min: 0.0, max: 1.0}\n"
    )
    plan = compile_ray(spec_of(text))
    assert [u.kind for u in plan.unsupported] == [kind]
    assert plan.scheduler() is None
    with pytest.raises(UnsupportedError, match="unsupported on ray: early_terminate"):
        compile_ray(spec_of(text), strict=True)


def test_grid_with_conditions_is_named() -> None:
    plan = compile_ray(
        spec_of(
            "method: grid\nparameters:\n  a: {values: [x, y]}\n"
            "  b: {values: [1, 2], when: {a: y}}\n"
        )
    )
    assert [u.kind for u in plan.unsupported] == ["grid-condition"]


def test_importing_the_compiler_does_not_import_ray() -> None:
    code = (
        "import sys, sweepspec.compiler.table as t, sweepspec.compiler.ray; t.markdown_table(); "
        "print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------- with a real Ray


def test_a_tune_run_stops_the_trials_wandb_stops(
    ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler in a real Tune run, one trial at a time in the curves' order: every
    trial ends at the value where W&B's controller stops its run."""
    from ray import tune

    # Tune's fit() takes SIGINT and leaves its handler behind: the tests that run next in
    # this process expect Python's own (sweepspec's engine restores it itself)
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "1")

    form, goal = {"min_iter": 1, "eta": 3}, "minimize"
    plan = _hyperband_plan(form, True, goal)
    # eight curves: stops at bands 1, 3 and 9, two that run to their end (one of them
    # short), a late bloomer and a NaN among them (asserted below)
    chosen = CURVES[:8]

    def trainable(cfg: dict[str, Any]) -> None:
        for value in chosen[cfg["i"]]:
            tune.report({"loss": value})
        tune.report({"loss": min(v for v in chosen[cfg["i"]] if math.isfinite(v)), FINAL: True})

    tuner = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(len(chosen))))},
        tune_config=tune.TuneConfig(
            metric=plan.metric,
            mode=plan.mode,
            scheduler=plan.scheduler(),
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    ended = {r.config["i"]: len(r.metrics_dataframe) for r in results}
    wandb = Wandb(config({**form, "strict": True}, goal))
    stops: dict[int, int | None] = {}
    for i, curve in enumerate(chosen):
        run, stopped = wandb.start(), None
        for logged, value in enumerate(signed(curve, goal), start=1):
            wandb.log(run, value)
            if wandb.stop():
                stopped = logged
                break
        if stopped is None:
            run.state = "finished"
        stops[i] = stopped
        assert ended[i] == (stopped if stopped is not None else len(curve) + 1), i
    assert set(stops.values()) == {1, 3, 9, None}, stops
    assert any(math.isnan(v) for curve in chosen for v in curve)
    assert len({len(curve) for curve in chosen}) > 1  # one ends early


TRAIN = """
def objective(trial):
    p = trial.params
    loss = 0.0
    for step in range(1, 6):
        loss = abs(p["opt"]["lr"] - 0.01) * 10 + p["noise"] ** 2 + 1.0 / step
        if p["kind"] == "b":
            loss += sum(p["layout"]) / 1000
        trial.report({"loss": loss}, step)
    return {"loss": loss}
"""

SCRIPT_SPEC = """
method: {method}
name: "it's a \\"test\\""
function: train:objective
metric: {{name: loss}}
early_terminate: {{type: hyperband, min_iter: 1, eta: 3}}
run_cap: 4
parameters:
  opt:
    parameters:
      lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}}
  noise: {{distribution: normal, mu: 0, sigma: 0.1}}
  kind: {{values: [a, b]}}
  layout: {{values: [[1, 2], [3]], when: {{kind: b}}}}
  c: {{value: 3}}
"""


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_the_python_script_runs_on_ray_without_sweepspec(
    ray_cluster: str, method: str, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(SCRIPT_SPEC.format(method=method))
    (spec.parent / "train.py").write_text(TRAIN)
    out = tmp_path / "out" / "tune_script.py"
    out.parent.mkdir()
    code = main(["compile", str(spec), "--engine", "ray", "--format", "python", "-o", str(out)])
    assert code == 0
    block = tmp_path / "block"
    block.mkdir()
    (block / "sweepspec.py").write_text("raise ImportError('sweepspec must not be needed')\n")
    env = {**os.environ, "PYTHONPATH": str(block)}
    done = subprocess.run(
        [sys.executable, str(out), "--address", ray_cluster, "--storage", str(tmp_path / "s")],
        capture_output=True, text=True, env=env, cwd=out.parent, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.splitlines()[-1])
    assert len(rows) == 4
    for row in rows:
        params = row["params"]
        assert params["c"] == 3 and 1e-4 <= params["opt.lr"] <= 1e-1
        assert ("layout" in params) == (params["kind"] == "b")
        assert row["error"] is None
