"""WandbHyperbandPruner against W&B's own ``sweeps.stop_runs``, decision by decision: the same
learning curves in the same order, on a real Optuna study and on W&B's SweepRuns."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from hyperband_curves import CASES, FORMS, Wandb, config, curves, signed
from optuna.trial import TrialState

from sweepspec.compiler._wandb_hyperband import WandbHyperbandPruner, hyperband_bands

optuna.logging.set_verbosity(optuna.logging.WARNING)

CURVES = curves()


def _study(form: dict[str, Any], strict: bool, goal: str) -> optuna.Study:
    pruner = WandbHyperbandPruner(**form, strict=strict)
    return optuna.create_study(direction=goal, pruner=pruner)


def _stop_steps_optuna(form: dict[str, Any], strict: bool, goal: str) -> list[int | None]:
    """One trial at a time; the runner's rule: only finite values are reported, at step =
    their count. The stop step is the number of values logged (NaN included) when stopped."""
    study = _study(form, strict, goal)
    out: list[int | None] = []
    for curve in CURVES:
        trial, count, stopped = study.ask(), 0, None
        for logged, value in enumerate(signed(curve, goal), start=1):
            if not math.isfinite(value):
                continue
            count += 1
            trial.report(value, count)
            if trial.should_prune():
                stopped = logged
                break
        study.tell(trial, None if stopped else count, state=_state(stopped))
        out.append(stopped)
    return out


def _state(stopped: int | None) -> TrialState:
    return TrialState.PRUNED if stopped else TrialState.COMPLETE


def _stop_steps_wandb(form: dict[str, Any], strict: bool, goal: str) -> list[int | None]:
    wandb = Wandb(config({**form, "strict": strict}, goal))
    out: list[int | None] = []
    for curve in CURVES:
        run, stopped = wandb.start(), None
        for logged, value in enumerate(signed(curve, goal), start=1):
            wandb.log(run, value)
            if wandb.stop():
                stopped = logged
                break
        run.state = "finished" if stopped is None else run.state
        out.append(stopped)
    return out


@pytest.mark.parametrize(("form", "strict", "goal"), CASES)
def test_one_worker_every_trial_stops_where_wandb_stops_it(
    form: dict[str, Any], strict: bool, goal: str
) -> None:
    wandb = _stop_steps_wandb(form, strict, goal)
    assert _stop_steps_optuna(form, strict, goal) == wandb
    stopped = sum(s is not None for s in wandb)
    assert 20 < stopped < len(CURVES) - 5, "the curves must exercise both decisions"


def test_late_bloomers_are_stopped_only_where_wandb_stops_them() -> None:
    """Non-strict W&B compares the best value so far; Optuna's pruners the value at the rung.
    Late bloomers (every fourth curve) are where the two part."""
    form = FORMS["min_iter 1, eta 3"][0]
    wandb = _stop_steps_wandb(form, False, "minimize")
    optuna_steps = _stop_steps_optuna(form, False, "minimize")
    bloomers = range(3, len(CURVES), 4)
    assert [optuna_steps[i] for i in bloomers] == [wandb[i] for i in bloomers]
    late = [wandb[i] for i in bloomers]
    assert None in late and any(s is not None and s > 3 for s in late)


@pytest.mark.parametrize(("form", "strict", "goal"), CASES[::3] + CASES[2:3])
@pytest.mark.parametrize("width", [4])
def test_several_workers_same_decisions_after_every_value(
    form: dict[str, Any], strict: bool, goal: str, width: int
) -> None:
    """``width`` trials run at once, one value each in turn; after every value W&B's
    controller stops some runs, and each running trial asks the pruner (as a worker does at
    its next report): the same set is stopped, and a trial is re-checked at a band it has
    passed when the threshold there tightens."""
    study = _study(form, strict, goal)
    wandb = Wandb(config({**form, "strict": strict}, goal))
    queue = [signed(c, goal) for c in CURVES]
    running: list[dict[str, Any]] = []
    rechecked = 0
    while queue or running:
        while queue and len(running) < width:
            curve = queue.pop(0)
            running.append({"curve": curve, "at": 0, "count": 0, "run": wandb.start(),
                            "trial": study.ask()})  # fmt: skip
        for slot in list(running):
            value = slot["curve"][slot["at"]]
            slot["at"] += 1
            wandb.log(slot["run"], value)
            if math.isfinite(value):
                slot["count"] += 1
                slot["trial"].report(value, slot["count"])
            by_wandb = {run.name for run in wandb.stop()}
            by_optuna = {s["run"].name for s in running if s["trial"].should_prune()}
            assert by_optuna == by_wandb
            rechecked += len(by_wandb - {slot["run"].name})
            for done in list(running):
                if done["run"].name in by_wandb:
                    study.tell(done["trial"], state=TrialState.PRUNED)
                    running.remove(done)
                elif done["at"] == len(done["curve"]):
                    study.tell(done["trial"], done["count"])
                    done["run"].state = "finished"
                    running.remove(done)
    assert rechecked > 0, "some trial must be stopped by another trial's value"


def test_each_worker_asks_at_its_own_report_as_wandbs_agent_does() -> None:
    """What the runner does with --workers 4: a trial learns whether to stop after each of its
    own reports; W&B's agent after each of its own logs (stop_runs' verdict on its run)."""
    form = FORMS["min_iter 1, eta 3"][0]
    study = _study(form, False, "minimize")
    wandb = Wandb(config({**form, "strict": False}, "minimize"))
    queue, running = list(CURVES), []
    decisions = 0
    while queue or running:
        while queue and len(running) < 4:
            running.append([queue.pop(0), 0, 0, wandb.start(), study.ask()])
        for slot in list(running):
            curve, at, count, run, trial = slot
            wandb.log(run, curve[at])
            slot[1] = at = at + 1
            if math.isfinite(curve[at - 1]):
                slot[2] = count = count + 1
                trial.report(curve[at - 1], count)
            from sweeps import stop_runs

            by_wandb = run in stop_runs(wandb.cfg, wandb.runs)
            assert trial.should_prune() == by_wandb
            decisions += 1
            if by_wandb:
                run.state = "killed"
                study.tell(trial, state=TrialState.PRUNED)
                running.remove(slot)
            elif at == len(curve):
                run.state = "finished"
                study.tell(trial, count)
                running.remove(slot)
    assert decisions > len(CURVES)


@pytest.mark.parametrize(
    ("form", "bands"),
    [
        ({"max_iter": 27, "s": 3, "eta": 3}, [1, 3, 9]),
        ({"max_iter": 100, "s": 3, "eta": 3}, [3, 11, 33]),
        ({"max_iter": 81, "s": 2, "eta": 3}, [9, 27]),
        ({"max_iter": 20, "s": 2, "eta": 2}, [5, 10]),
        ({"min_iter": 3, "eta": 2}, [3, 6, 12, 24, 48]),
        ({"min_iter": 2, "eta": 2.5}, [2, 5, 12, 31, 78]),
    ],
)
def test_bands_are_wandbs(form: dict[str, Any], bands: list[int]) -> None:
    ours = hyperband_bands(**form)
    assert ours[: len(bands)] == bands
    assert len(ours) == (100 if "min_iter" in form else len(bands))
    wandb = Wandb(config(form, "minimize"))
    wandb.log(wandb.start(), 1.0)
    wandb.stop()
    assert wandb.runs[0].early_terminate_info["bands"] == ours


def test_bands_stop_where_the_floats_end() -> None:
    assert len(hyperband_bands(min_iter=1, eta=1e300)) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_iter": 1, "eta": 1}, "`eta > 1` must hold, but got eta=1."),
        (
            {"min_iter": 1, "max_iter": 9, "s": 2},
            "Give exactly one of `bands`, `min_iter`, or `max_iter` with `s`, but got "
            "bands=None, min_iter=1, max_iter=9, s=2.",
        ),
        ({"max_iter": 9}, "`max_iter` and `s` go together, but got max_iter=9, s=None."),
        ({"min_iter": 0}, "`min_iter >= 1` must hold, but got min_iter=0."),
        (
            {"max_iter": 2, "s": 2, "eta": 3},
            "There must be at least one band, each >= 1, but got bands=[] (max_iter=2, s=2, "
            "eta=3): increase max_iter or s, or lower eta.",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        WandbHyperbandPruner(**kwargs)
    assert str(info.value) == message


def test_explicit_bands() -> None:
    pruner = WandbHyperbandPruner(bands=[9, 3, 1], eta=3)
    assert pruner.bands == [1, 3, 9]
    study = optuna.create_study(pruner=pruner)
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    trial = study.ask()
    trial.report(3.5, 1)  # 4 values at band 1: threshold sorted[int(4/3)] = 2.0
    assert trial.should_prune()
