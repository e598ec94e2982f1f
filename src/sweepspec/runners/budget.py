"""When a sweep stops: trial budget, wall clock, metric target, cost cap, repeated failures.

Everything but the wall clock and the failure streak is read from the engine's storage, so it
holds across every worker that shares the storage and across resumed runs:

* the trial budget (``run_cap`` / ``budget.trials`` / ``--trials``) counts *finished* trials,
  completed or stopped early; failed trials are recorded but use none of it. A worker starts
  no trial when the finished trials plus those running elsewhere already fill the budget, so
  the total is exact (a trial that then fails elsewhere is retried by the worker that ran it).
* ``metric.target`` stops the sweep when a completed trial reaches it (``<=`` when
  minimising, ``>=`` when maximising; with several metrics, every target in one trial).
* ``budget.cost`` stops it once the trials' costs (each trial's final value of the metric,
  summed over its seeds) add up to ``max``.
* ``budget.wall_clock`` counts from the start of this ``run``: no trial starts after it.
* ``budget.max_consecutive_failures`` failed trials in a row (in one worker) stop the sweep
  with an error.

This module imports no engine: :class:`Tally` is built from plain trial summaries.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .contract import FailureStreak  # shared with the generated script

__all__ = [
    "Budget",
    "CachedTally",
    "FailureStreak",
    "Summaries",
    "Tally",
    "TrialSummary",
    "format_seconds",
]


@dataclass(frozen=True)
class TrialSummary:
    """What the budget needs to know of one trial in the storage."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    values: tuple[float, ...] | None = None
    cost: float = 0.0


class Summaries(list[TrialSummary]):
    """An engine's trials, of which the first ``settled`` are finished and come first, in
    the same order, in every later read of the same sweep (so a count may skip them once it
    has counted them). A plain list settles nothing."""

    settled: int = 0


@dataclass
class Tally:
    """The storage's trials, counted once per check."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    cost: float = 0.0
    best: TrialSummary | None = None
    target_hit: TrialSummary | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


@dataclass(frozen=True)
class Budget:
    """The limits of one sweep; ``None`` means no limit of that kind.

    ``trials_source`` names where the trial budget came from (``run_cap``, ``--trials``,
    ``budget.trials``), for the stop message.
    """

    directions: tuple[str, ...] = ("minimize",)
    metric_names: tuple[str, ...] = ()
    trials: int | None = None
    trials_source: str = "run_cap"
    deadline: float | None = None  # time.time() after which no trial starts
    wall_clock: float | None = None
    targets: tuple[float | None, ...] = ()
    cost_metric: str | None = None
    cost_max: float | None = None
    max_consecutive_failures: int = 5
    cpus_per_trial: float | None = None  # what each trial needs (``budget.cpus_per_trial``)

    def tally(self, trials: Iterable[TrialSummary]) -> Tally:
        """Count ``trials``, in any order: among equals the lowest number is the best, and
        the target's hit."""
        out = Tally()
        for trial in trials:
            self.add(out, trial)
        return out

    def add(self, out: Tally, trial: TrialSummary) -> None:
        """Count one trial into ``out``."""
        _count(out, trial)
        if trial.state == "COMPLETE" and trial.values is not None:
            self._rank(out, trial)

    def _rank(self, out: Tally, trial: TrialSummary) -> None:
        assert trial.values is not None
        if len(self.directions) == 1 and _better(trial, out.best, self.directions[0]):
            out.best = trial
        hit = out.target_hit
        if (hit is None or trial.number < hit.number) and self._reaches_target(trial.values):
            out.target_hit = trial

    def _reaches_target(self, values: tuple[float, ...]) -> bool:
        given = [
            (v, t, d)
            for v, t, d in zip(values, self.targets, self.directions, strict=False)
            if t is not None
        ]
        return bool(given) and all(v <= t if d == "minimize" else v >= t for v, t, d in given)

    def stop_reason(self, tally: Tally, now: float | None = None) -> str | None:
        """Why no further trial may start, or None."""
        if tally.target_hit is not None:
            return self._target_message(tally.target_hit)
        if self.trials is not None and tally.finished >= self.trials:
            return (
                f"the trial budget is reached: {tally.finished} finished trials "
                f"({self.trials_source}: {self.trials})"
            )
        if self.cost_max is not None and tally.cost >= self.cost_max:
            return (
                f"the cost cap is reached: the trials' {self.cost_metric} adds up to "
                f"{tally.cost:g} (budget.cost.max: {self.cost_max:g})"
            )
        if self.deadline is not None and (now or time.time()) >= self.deadline:
            return (
                f"the wall-clock limit is reached (budget.wall_clock: "
                f"{format_seconds(self.wall_clock or 0)})"
            )
        if self.trials is not None and tally.finished + tally.running >= self.trials:
            return (
                f"the rest of the trial budget ({self.trials_source}: {self.trials}) is "
                f"taken by {tally.running} trial(s) running in other workers"
            )
        return None

    def _target_message(self, trial: TrialSummary) -> str:
        assert trial.values is not None
        reached = ", ".join(
            f"{name}={value:g} (target {target:g})"
            for name, value, target in zip(
                self.metric_names or ("value",), trial.values, self.targets, strict=False
            )
            if target is not None
        )
        return f"metric.target is reached: trial {trial.number} has {reached}"


_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class CachedTally:
    """:meth:`Budget.tally` for a loop that counts the same sweep before every trial: a
    finished trial never changes, so it is counted once (by number), and only the trials not
    finished are counted again; the leading finished trials of :class:`Summaries` are not
    even looked at again. A sweep of thousands of trials costs what its new trials cost,
    not a count."""

    budget: Budget
    done: Tally = field(default_factory=Tally)
    counted: set[int] = field(default_factory=set)
    settled: int = 0  # the leading trials of the engine's reads, all counted

    def __call__(self, trials: Iterable[TrialSummary]) -> Tally:
        rest: Iterable[TrialSummary] = trials
        if isinstance(trials, Summaries) and trials.settled >= self.settled:
            for trial in trials[self.settled : trials.settled]:
                self._finished(trial)
            self.settled = trials.settled
            rest = itertools.islice(trials, self.settled, None)
        pending = []
        for trial in rest:
            if trial.number in self.counted:
                continue
            if trial.state in _FINISHED:
                self._finished(trial)
            else:
                pending.append(trial)
        out = replace(self.done)
        for trial in pending:
            self.budget.add(out, trial)
        return out

    def _finished(self, trial: TrialSummary) -> None:
        if trial.number not in self.counted:
            self.counted.add(trial.number)
            self.budget.add(self.done, trial)


def _count(out: Tally, trial: TrialSummary) -> None:
    if trial.state == "COMPLETE":
        out.complete += 1
    elif trial.state == "PRUNED":
        out.pruned += 1
    elif trial.state == "FAIL":
        out.failed += 1
    elif trial.state == "RUNNING":
        out.running += 1
    if math.isfinite(trial.cost):
        out.cost += trial.cost


def _better(trial: TrialSummary, best: TrialSummary | None, direction: str) -> bool:
    assert trial.values is not None
    value = trial.values[0]
    if not math.isfinite(value):
        return False
    if best is None or best.values is None:
        return True
    if value == best.values[0]:
        return trial.number < best.number
    return value < best.values[0] if direction == "minimize" else value > best.values[0]


def format_seconds(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``90`` -> ``1m30s``; ``2.5`` -> ``2.5s``."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)
