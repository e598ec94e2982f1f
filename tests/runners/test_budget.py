"""The budget's arithmetic, on plain trial summaries (the runs are in test_optuna.py)."""

from __future__ import annotations

import pytest

from sweepspec.runners.budget import (
    Budget,
    CachedTally,
    FailureStreak,
    TrialSummary,
    format_seconds,
)


def _trials(*specs: tuple[str, float | None, float]) -> list[TrialSummary]:
    return [
        TrialSummary(i, state, (value,) if value is not None else None, cost)
        for i, (state, value, cost) in enumerate(specs)
    ]


TRIALS = _trials(
    ("COMPLETE", 3.0, 0.5),
    ("PRUNED", None, 0.25),
    ("FAIL", None, 1.0),
    ("COMPLETE", 1.0, 0.5),
    ("RUNNING", None, 0.0),
    ("COMPLETE", float("nan"), 0),
)


def test_tally_counts_states_cost_and_best() -> None:
    tally = Budget().tally(TRIALS)
    assert (tally.complete, tally.pruned, tally.failed, tally.running) == (3, 1, 1, 1)
    assert (tally.finished, tally.cost) == (4, 2.25)
    assert tally.best == TRIALS[3]
    assert Budget(directions=("maximize",)).tally(TRIALS).best == TRIALS[0]


def test_failed_trials_use_no_trial_budget() -> None:
    budget = Budget(trials=4, trials_source="--trials")
    assert budget.stop_reason(budget.tally(TRIALS[:4])) is None  # 3 finished, 1 failed
    assert budget.stop_reason(budget.tally(TRIALS[:4] + TRIALS[:1])) == (
        "the trial budget is reached: 4 finished trials (--trials: 4)"
    )


def test_trials_running_elsewhere_take_their_share() -> None:
    budget = Budget(trials=5)
    assert budget.stop_reason(budget.tally(TRIALS)) == (
        "the rest of the trial budget (run_cap: 5) is taken by 1 trial(s) running in other workers"
    )


@pytest.mark.parametrize(
    "goal, target, hit",
    [("minimize", 1.0, 3), ("minimize", 0.5, None), ("maximize", 3.0, 0), ("maximize", 4, None)],
)
def test_target(goal: str, target: float, hit: int | None) -> None:
    budget = Budget(directions=(goal,), metric_names=("loss",), targets=(target,))
    reason = budget.stop_reason(budget.tally(TRIALS))
    if hit is None:
        assert reason is None
    else:
        value = TRIALS[hit].values[0]  # type: ignore[index]
        assert reason == (
            f"metric.target is reached: trial {hit} has loss={value:g} (target {target:g})"
        )


def test_several_targets_must_all_be_reached_in_one_trial() -> None:
    budget = Budget(
        directions=("minimize", "maximize"), metric_names=("loss", "acc"), targets=(1.0, 0.9)
    )
    trials = [TrialSummary(0, "COMPLETE", (0.5, 0.8)), TrialSummary(1, "COMPLETE", (2.0, 0.95))]
    assert budget.stop_reason(budget.tally(trials)) is None
    trials.append(TrialSummary(2, "COMPLETE", (1.0, 0.9)))
    assert budget.stop_reason(budget.tally(trials)) == (
        "metric.target is reached: trial 2 has loss=1 (target 1), acc=0.9 (target 0.9)"
    )


def test_cost_cap_sums_every_trial_including_failures() -> None:
    budget = Budget(cost_metric="cost_usd", cost_max=2.25)
    assert budget.stop_reason(budget.tally(TRIALS[:4])) == (
        "the cost cap is reached: the trials' cost_usd adds up to 2.25 (budget.cost.max: 2.25)"
    )
    assert budget.stop_reason(budget.tally(TRIALS[:3])) is None


def test_wall_clock() -> None:
    budget = Budget(deadline=100.0, wall_clock=5400)
    assert budget.stop_reason(budget.tally([]), now=99.0) is None
    assert budget.stop_reason(budget.tally([]), now=100.0) == (
        "the wall-clock limit is reached (budget.wall_clock: 1h30m)"
    )


def test_failure_streak() -> None:
    streak = FailureStreak(2)
    assert streak.add(0, "FAIL", "boom") is None
    assert streak.add(1, "COMPLETE", None) is None
    assert streak.add(2, "FAIL", "boom") is None
    assert streak.add(3, "FAIL", "ValueError: bad") == (
        "2 trials failed in a row (budget.max_consecutive_failures: 2); the last one, trial 3, "
        "failed with: ValueError: bad"
    )


@pytest.mark.parametrize(
    "seconds, text", [(2.5, "2.5s"), (90, "1m30s"), (3600, "1h"), (86461, "24h1m1s")]
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_a_cached_tally_counts_as_a_full_count_whatever_order_trials_end_in() -> None:
    """The loop counts the sweep before every trial; finished trials are counted once. Trials
    ending out of order (other workers) give the same best and target hit: among equals, the
    lowest number."""
    budget = Budget(directions=("minimize",), targets=(1.0,), trials=10)
    counted = CachedTally(budget)
    first, second = TrialSummary(0, "RUNNING"), TrialSummary(1, "RUNNING")
    steps = [
        [first, second],
        [first, TrialSummary(1, "COMPLETE", (1.0,), 0.5)],
        [TrialSummary(0, "COMPLETE", (1.0,), 0.5), TrialSummary(1, "COMPLETE", (1.0,), 0.5)],
    ]
    tallies = [counted(step) for step in steps]
    assert tallies == [budget.tally(step) for step in steps]
    assert [t.running for t in tallies] == [2, 1, 0]
    assert tallies[2].best == tallies[2].target_hit == steps[2][0]  # trial 0: lower number
    assert budget.tally(reversed(steps[2])).best == steps[2][0]
