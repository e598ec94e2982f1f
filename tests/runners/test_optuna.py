"""The Optuna runner on real journal storage: failures, pruning, every budget kind, seeds,
resume, a changed search space, several workers, Ctrl-C inside a trial."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweepspec.runners.optuna import (
    COST_ATTR,
    ERROR_ATTR,
    METRICS_ATTR,
    SEEDS_ATTR,
    TRACEBACK_ATTR,
    WORKER_ATTR,
    load_study,
    open_storage,
)
from sweepspec.runners.sweep import Finished, RunError, run_sweep
from sweepspec.spec import load

Write = Callable[..., Path]

HEAD = """
method: random
metric: {name: loss}
function: trial_mod:objective
parameters:
  x: {min: 0.0, max: 1.0}
"""


@pytest.fixture
def sweep(sweep_dir: Path, write_spec: Write) -> Callable[..., tuple[Finished, str]]:
    """Write the spec (and the trial module), run it; return how it ended and its output."""

    def run(spec: str, module: str | None = None, **kwargs: Any) -> tuple[Finished, str]:
        path = write_spec(spec)
        if module is not None:
            write_spec(module, "trial_mod.py")
        out = io.StringIO()
        kwargs.setdefault("tracker", "none")
        finished = run_sweep(
            load(str(path)), str(path), engine="optuna", stream=out, tty=False, **kwargs
        )
        return finished, out.getvalue()

    return run


def _study(name: str = "sweep") -> optuna.Study:
    spec = load("sweep.yaml")
    storage, label = open_storage(None, spec, name, create=False)
    return load_study(storage, name, label)


def _states() -> list[str]:
    return [t.state.name for t in _study().get_trials()]


def test_a_crashing_trial_is_recorded_and_the_sweep_goes_on(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    finished, out = sweep(
        HEAD + "run_cap: 3\n",
        """
        def objective(trial):
            if trial.number % 2:
                raise ValueError(f"odd trial {trial.number}")
            return trial.params["x"]
    """,
    )
    assert finished.reason == "the trial budget is reached: 3 finished trials (run_cap: 3)"
    trials = _study().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[3].user_attrs[ERROR_ATTR] == "ValueError: odd trial 3"
    assert 'raise ValueError(f"odd trial {trial.number}")' in trials[3].user_attrs[TRACEBACK_ATTR]
    assert (
        f"trial 1 FAIL: ValueError: odd trial 1 | 1/3 finished, 0 stopped early, 1 failed, "
        f"best loss={trials[0].values[0]:.6g} (trial 0)"
    ) in out.splitlines()


def test_consecutive_failures_stop_the_sweep(sweep: Callable[..., tuple[Finished, str]]) -> None:
    with pytest.raises(
        RunError,
        match=r"^3 trials failed in a row \(budget\."
        r"max_consecutive_failures: 3\); the last one, trial 2, failed with: "
        r"KeyError: 'y'$",
    ):
        sweep(
            HEAD + "budget: {max_consecutive_failures: 3}\n",
            """
            def objective(trial):
                return trial.params["y"]
        """,
        )
    assert _states() == ["FAIL", "FAIL", "FAIL"]


def test_wall_clock_limit(sweep: Callable[..., tuple[Finished, str]]) -> None:
    finished, _ = sweep(
        HEAD + "budget: {wall_clock: 0.6}\n",
        """
        import time
        def objective(trial):
            time.sleep(0.25)
            return 1.0
    """,
    )
    assert finished.reason == "the wall-clock limit is reached (budget.wall_clock: 0.6s)"
    assert 1 <= len(_states()) <= 3


def test_metric_target_ends_the_sweep(sweep: Callable[..., tuple[Finished, str]]) -> None:
    spec = HEAD.replace("{name: loss}", "{name: loss, target: 7}")
    finished, _ = sweep(
        spec,
        """
        def objective(trial):
            return 10 - trial.number
    """,
    )
    assert finished.reason == "metric.target is reached: trial 3 has loss=7 (target 7)"
    assert _states() == ["COMPLETE"] * 4


def test_cost_cap_on_a_logged_metric(sweep: Callable[..., tuple[Finished, str]]) -> None:
    finished, _ = sweep(
        HEAD + "budget: {cost: {metric: cost_usd, max: 1.2}}\n",
        """
        def objective(trial):
            trial.report({"cost_usd": 0.2}, 0)
            if trial.number == 1:
                raise RuntimeError("spent, then failed")
            return {"loss": trial.params["x"], "cost_usd": 0.4}
    """,
    )
    assert finished.reason == (
        "the cost cap is reached: the trials' cost_usd adds up to 1.4 (budget.cost.max: 1.2)"
    )
    assert [t.user_attrs[COST_ATTR] for t in _study().get_trials()] == [0.4, 0.2, 0.4, 0.4]


def test_stopped_early_trials_use_the_budget(sweep: Callable[..., tuple[Finished, str]]) -> None:
    spec = HEAD + "run_cap: 6\nearly_terminate: {type: hyperband, min_iter: 1, eta: 2}\n"
    finished, out = sweep(
        spec,
        """
        def objective(trial):
            for step in range(4):
                trial.report({"loss": trial.number + 1.0 / (step + 1)}, step)
                if trial.should_stop():
                    return {"stopped_at": step}
            return {}
    """,
    )
    assert finished.tally.finished == 6
    trials = _study().get_trials()
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and {t.state.name for t in trials} == {"COMPLETE", "PRUNED"}
    assert pruned[0].user_attrs[METRICS_ATTR] == {"loss": pruned[0].number + 1.0, "stopped_at": 0.0}
    # W&B hyperband's iteration: the 1-based count of reported values
    assert list(pruned[0].intermediate_values) == [1]
    number = pruned[0].number
    done = trials[: number + 1]
    best = min((t for t in done if t.state.name == "COMPLETE"), key=lambda t: t.values[0])
    stopped = sum(t.state.name == "PRUNED" for t in done)
    assert (
        f"trial {number} PRUNED loss={number + 1} | {number + 1}/6 finished, {stopped} stopped "
        f"early, 0 failed, best loss={best.values[0]:.6g} (trial {best.number})"
    ) in out.splitlines()


def test_seeds_repeat_a_configuration_and_aggregate(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    spec = HEAD + "run_cap: 2\nseeds: {values: [0, 1, 5], aggregate: median}\n"
    sweep(
        spec,
        """
        def objective(trial):
            return {"loss": trial.params["x"] + trial.seed, "seed_seen": trial.seed}
    """,
    )
    trials = _study().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    for trial in trials:
        x = trial.params["x"]  # native: Optuna holds the real value
        assert trial.values == [pytest.approx(x + 1)]
        assert trial.user_attrs[SEEDS_ATTR] == [
            {"seed": s, "metrics": {"loss": pytest.approx(x + s), "seed_seen": s}}
            for s in (0, 1, 5)
        ]
        assert trial.user_attrs[METRICS_ATTR] == {"loss": pytest.approx(x + 1), "seed_seen": 1.0}


def test_a_failing_seed_fails_the_trial(sweep: Callable[..., tuple[Finished, str]]) -> None:
    spec = HEAD + "run_cap: 1\nseeds: 3\nbudget: {max_consecutive_failures: 1}\n"
    with pytest.raises(RunError) as failed:
        sweep(
            spec,
            """
            def objective(trial):
                if trial.seed == 1:
                    raise ValueError("seed 1")
                return 0.0
        """,
        )
    assert str(failed.value) == (
        "1 trials failed in a row (budget.max_consecutive_failures: 1); the last one, trial 0, "
        "failed with: seed 1: ValueError: seed 1"
    )
    assert [run["seed"] for run in _study().trials[0].user_attrs[SEEDS_ATTR]] == [0, 1]


def test_same_spec_resumes_and_a_changed_space_is_refused(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    module = "def objective(trial):\n    return trial.params['x']\n"
    sweep(HEAD + "run_cap: 2\n", module)
    finished, out = sweep(HEAD + "run_cap: 2\n", trials=4)
    assert out.startswith(
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, "
        "tracker none); resuming after 2 trials\n"
    )
    assert (finished.tally.finished, len(_states())) == (4, 4)
    changed = HEAD.replace("max: 1.0", "max: 2.0")
    message = (
        f"the search space differs from that of study 'sweep' in "
        f".sweepspec/sweep.journal (created from {Path('sweep.yaml').resolve()}), which "
        "has 4 trials; to start a fresh sweep, run again with --fresh (deletes that "
        "study), or give the new one another name (optuna.study_name)"
    )
    with pytest.raises(RunError) as refused:
        sweep(changed)
    assert str(refused.value) == message
    finished, out = sweep(changed + "run_cap: 1\n", fresh=True)
    assert out.startswith(
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none)\n"
        "sweepspec: --fresh: deleted study 'sweep' (4 trials) from .sweepspec/sweep.journal\n"
    )
    assert _states() == ["COMPLETE"]


def test_a_changed_goal_is_refused(sweep: Callable[..., tuple[Finished, str]]) -> None:
    sweep(HEAD + "run_cap: 1\n", "def objective(trial):\n    return 1.0\n")
    with pytest.raises(RunError) as refused:
        sweep(HEAD.replace("{name: loss}", "{name: loss, goal: maximize}") + "run_cap: 1\n")
    assert str(refused.value) == (
        f"the metric goal differs from that of study 'sweep' in .sweepspec/sweep.journal "
        f"(created from {Path('sweep.yaml').resolve()}), which has 1 trials; to start a fresh "
        "sweep, run again with --fresh (deletes that study), or give the new one another name "
        "(optuna.study_name)"
    )


def test_a_changed_space_and_goal_is_refused_as_a_changed_space(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    sweep(HEAD + "run_cap: 1\n", "def objective(trial):\n    return 1.0\n")
    changed = HEAD.replace("max: 1.0", "max: 2.0").replace(
        "{name: loss}", "{name: loss, goal: maximize}"
    )
    with pytest.raises(RunError) as refused:
        sweep(changed + "run_cap: 1\n")
    assert str(refused.value) == (
        f"the search space differs from that of study 'sweep' in .sweepspec/sweep.journal "
        f"(created from {Path('sweep.yaml').resolve()}), which has 1 trials; to start a fresh "
        "sweep, run again with --fresh (deletes that study), or give the new one another name "
        "(optuna.study_name)"
    )


def test_create_study_refuses_a_changed_goal_for_every_caller(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    from sweepspec.compiler.base import SearchSpaceChangedError
    from sweepspec.compiler.optuna import compile_optuna

    sweep(HEAD + "run_cap: 1\n", "def objective(trial):\n    return 1.0\n")
    storage, _ = open_storage(None, load("sweep.yaml"), "sweep", create=False)
    Path("sweep.yaml").write_text(HEAD.replace("{name: loss}", "{name: loss, goal: maximize}"))
    plan = compile_optuna(load("sweep.yaml"))
    with pytest.raises(SearchSpaceChangedError) as refused:
        plan.create_study(storage, "sweep")
    assert str(refused.value) == (
        "study 'sweep' was created with another metric goal (directions ['minimize'], the "
        "spec now gives ['maximize']); start a fresh study (another study_name or storage) to "
        "optimise the new goal"
    )
    assert refused.value.what == "metric goal"
    assert [d.name for d in _study().directions] == ["MINIMIZE"]


def test_workers_share_one_trial_budget(sweep: Callable[..., tuple[Finished, str]]) -> None:
    finished, out = sweep(
        HEAD + "run_cap: 6\n",
        """
        import time
        def objective(trial):
            time.sleep(0.2)
            return trial.params["x"]
    """,
        workers=2,
    )
    assert finished.reason == "the trial budget is reached: 6 finished trials (run_cap: 6)"
    trials = _study().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) == 2
    assert out.count(" COMPLETE loss=") == 6


def test_grid_runs_every_point_once(sweep: Callable[..., tuple[Finished, str]]) -> None:
    spec = HEAD.replace("random", "grid").replace("{min: 0.0, max: 1.0}", "{values: [1, 2, 3]}")
    finished, _ = sweep(spec, "def objective(trial):\n    return trial.params['x']\n")
    assert finished.reason == "the grid is exhausted: every point has been run"
    assert sorted(t.params["x"] for t in _study().get_trials()) == [1, 2, 3]


def test_a_trial_left_running_by_a_killed_worker_is_failed(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    module = "def objective(trial):\n    return 1.0\n"
    sweep(HEAD + "run_cap: 1\n", module)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = _study().ask()
    stale.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{gone}")
    _, out = sweep(HEAD + "run_cap: 2\n")
    trial = _study().trials[1]
    assert (trial.state.name, trial.user_attrs[ERROR_ATTR]) == (
        "FAIL",
        f"its worker (pid {gone} on {socket.gethostname()}) ended while the trial ran: it was "
        "killed, or stopped by an error (a full disk)",
    )
    assert (
        "sweepspec: trial 1 was left RUNNING by a worker that is gone; marked FAIL"
        in out.splitlines()
    )
    assert _states() == ["COMPLETE", "FAIL", "COMPLETE"]


def test_ctrl_c_inside_a_trial_leaves_nothing_running(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    module = """
        import os, signal
        def objective(trial):
            trial.report({"loss": 5.0}, 0)
            if trial.number == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return 1.0
    """
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        sweep(HEAD + "run_cap: 5\n", module)
    trials = _study().get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs[ERROR_ATTR] == "interrupted (Ctrl-C)"
    assert trials[2].user_attrs[METRICS_ATTR] == {"loss": 5.0}
    finished, _ = sweep(HEAD + "run_cap: 5\n")
    assert finished.tally.finished == 5


def test_rdb_storage_url_and_journal_path(
    sweep: Callable[..., tuple[Finished, str]], sweep_dir: Path
) -> None:
    module = "def objective(trial):\n    return 1.0\n"
    url = f"sqlite:///{sweep_dir / 'optuna.db'}"
    finished, out = sweep(HEAD + "run_cap: 2\n", module, storage=url)
    assert (finished.storage, finished.tally.finished) == (url, 2)
    assert len(optuna.load_study(study_name="sweep", storage=url).trials) == 2
    finished, _ = sweep(HEAD + "run_cap: 1\n", storage="state/here.journal")
    assert (finished.storage, finished.tally.finished) == ("state/here.journal", 1)
    assert not (sweep_dir / ".sweepspec").exists()


def test_a_storage_that_cannot_open(sweep: Callable[..., tuple[Finished, str]]) -> None:
    with pytest.raises(RunError) as refused:
        sweep(
            HEAD, "def objective(trial):\n    return 1.0\n", storage="sqlite:////no/such/dir/x.db"
        )
    assert str(refused.value) == (
        "cannot open the storage sqlite:////no/such/dir/x.db: unable to open database file"
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            HEAD.replace("function: trial_mod:objective\n", ""),
            "nothing to run: give 'function' (module:callable) or 'program'/'command'",
        ),
        (
            HEAD.replace(
                "function: trial_mod:objective", 'command: ["${interpreter}", "${program}"]'
            ),
            "the command uses ${program}, but the spec gives no 'program'",
        ),
        (
            HEAD.replace("metric: {name: loss}\n", "").replace(
                "function: trial_mod:objective", "program: train.py"
            ),
            "a command reports its metrics by name: give 'metric' (the objective sweepspec reads "
            "from what the command reports)",
        ),
        (
            HEAD.replace("trial_mod:objective", "trial_mod:missing"),
            "function 'trial_mod:missing': 'trial_mod' has no attribute 'missing'",
        ),
    ],
)
def test_what_cannot_run_is_refused_before_any_trial(
    sweep: Callable[..., tuple[Finished, str]], spec: str, message: str
) -> None:
    with pytest.raises(RunError) as refused:
        sweep(spec, "def objective(trial):\n    return 1.0\n")
    assert str(refused.value) == message


def test_a_command_trial_end_to_end(
    sweep: Callable[..., tuple[Finished, str]], write_spec: Write
) -> None:
    write_spec(
        """
        import argparse
        from sweepspec import reporter
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=float)
        parser.add_argument("--opt")
        args = parser.parse_args()
        for epoch in range(3):
            reporter.report({"loss": args.x + 1.0 / (epoch + 1)}, step=epoch)
        print(f"loss={args.x}")
    """,
        "train.py",
    )
    spec = HEAD.replace("function: trial_mod:objective", "program: train.py") + (
        "  opt:\n    parameters:\n      lr: {value: 0.1}\nrun_cap: 2\n"
    )
    finished, out = sweep(spec)
    assert finished.tally.complete == 2
    for trial in _study().get_trials():
        x = trial.params["x"]  # native: Optuna holds the real value
        assert trial.values == [pytest.approx(x)]
    assert os.path.exists(".sweepspec/sweep.journal")


def test_workers_never_overshoot_the_trial_budget(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    """Four workers on the default journal take turns to count and ask: exactly the budget."""
    finished, _ = sweep(
        HEAD + "run_cap: 7\n",
        """
        def objective(trial):
            return {"loss": trial.params["x"]}
    """,
        workers=4,
    )
    assert _states() == ["COMPLETE"] * 7
    assert finished.tally.finished == 7


def test_a_worker_that_asked_too_late_gives_its_place_back(
    sweep: Callable[..., tuple[Finished, str]],
) -> None:
    """Workers on other machines share no lock: when two ask at once for the last place, the
    later trial number is recorded as not run (the worker's loop then returns)."""
    sweep(
        HEAD + "run_cap: 1\n",
        """
        def objective(trial):
            return {"loss": trial.params["x"]}
    """,
    )
    from sweepspec.runners.base import EngineOptions, open_engine
    from sweepspec.runners.budget import Budget
    from sweepspec.runners.sweep import Worker
    from sweepspec.trackers.none import NoneTracker

    spec = load("sweep.yaml")
    engine = open_engine("optuna", spec, "sweep.yaml", EngineOptions())
    elsewhere = engine.ask()  # another machine's worker took a place at the same moment
    assert elsewhere is not None and elsewhere.number == 1
    late = engine.ask()
    assert late is not None
    worker = Worker(spec, engine, Budget(trials=2), NoneTracker(), lambda *a: None)  # type: ignore[arg-type, return-value]
    assert worker._over_budget(late)
    engine.close()
    frozen = _study().get_trials()[late.number]
    assert frozen.state.name == "FAIL"
    assert frozen.user_attrs["sweepspec.error"] == (
        "not run: the trial budget was filled by trials of other workers"
    )


def test_a_sweep_on_a_journal_does_not_import_the_database_storage(tmp_path: Path) -> None:
    """A run on the journal file starts without the database worker's storage (SQLAlchemy's
    table models, the PostgreSQL dialect and driver: about 0.4 s of every run's start)."""
    (tmp_path / "trial.py").write_text("def objective(trial):\n    return {'loss': 1.0}\n")
    (tmp_path / "sweep.yaml").write_text(
        "name: light\nmethod: random\nmetric: {name: loss, goal: minimize}\n"
        "function: trial:objective\nparameters:\n  x: {min: 0.0, max: 1.0}\n"
    )
    code = (
        "import sys\n"
        "from sweepspec.main import main\n"
        "assert main(['run', 'sweep.yaml', '--trials', '1', '--tracker', 'none']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sweepspec.runners.rdb', "
        "'psycopg', 'optuna.storages._rdb.models'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
