"""The engine-neutral sweep loop: ask the engine, run the trial over its seeds, tell, log.

Everything here is the same for every engine (:mod:`.base`): the worker loop over
``engine.ask`` / ``engine.report`` / ``engine.tell``, the budget counted over every worker
through ``engine.summaries()`` under ``engine.ask_lock()``, seeds and their aggregate, trial
execution (:mod:`.trials`), progress, tracker calls, stale-trial recovery
(``engine.fail_stale()``), worker processes (``python -m sweepspec.runners.sweep``) and the
policy for Ctrl-C, SIGTERM and SIGHUP:

* Ctrl-C: the running trial is stopped and told to the engine as failed (``interrupted``),
  the tracker is flushed, and KeyboardInterrupt goes on up (exit 130). SIGTERM and SIGHUP do
  the same (:class:`Interrupted`, exit 143 / 129); with several workers the signal is passed
  on to each. Engine writes are shielded from these signals, so no trial is left RUNNING and
  nothing finished is lost. Workers stop as on SIGTERM when the process that started them
  ends, even killed outright; a trial left RUNNING by a process that was killed outright
  (SIGKILL, a lost machine) is marked failed by the other workers once its heartbeat is
  older than the engine's grace period (:mod:`.heartbeat`), and its place runs again.
* ``--workers N`` is bounded by the trials left in the budget, by the GPU sets to share out
  (``--gpus``, ``budget.gpus_per_trial``: each worker's trials see only its devices,
  :mod:`.gpus`) and by :data:`WORKERS_PER_CPU`.

This module imports no engine: :func:`sweepspec.runners.base.open_engine` imports the one
named (``--engine``), from :data:`sweepspec.runners.base.ENGINES`.

Scoring (the spec's ``objective``): with ``best`` (the default, W&B's rule) a trial of one
metric is scored by the best value of it over what it reported and returned
(``SweepRun.metric_extremum`` in W&B's controller); with ``last`` by its final value. Every
engine is told the same score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..locks import OPEN_ATTEMPTS, raced, sqlite_setup_lock
from ..spec import Spec
from ..spec.messages import did_you_mean
from ..spec.paths import leaf_paths, nest
from ..trackers import SweepInfo, Tracker, TrackerUnavailable, TrialRecord, make_tracker
from .base import Asked, Drives, Engine, EngineError, EngineOptions, drives, open_engine
from .budget import Budget, CachedTally, FailureStreak, Tally
from .gpus import GpuError, Gpus, plan_gpus, trial_env
from .progress import Progress
from .trials import (
    TERM_GRACE,
    Command,
    FunctionError,
    Monitor,
    Outcome,
    calls_bare,
    describe,
    die_with_parent,
    load_function,
    module_file,
    reap_trials,
    run_command,
    run_function,
)

__all__ = [
    "WORKERS_PER_CPU",
    "Finished",
    "Interrupted",
    "Loop",
    "RunError",
    "TrialRun",
    "Worker",
    "run_engine",
    "run_sweep",
    "sweep_name",
    "sync_sweep",
    "worker_main",
]

INTERRUPTED = "interrupted (Ctrl-C)"

STALE_CHECK = 1.0
"""Seconds between a worker's checks for trials of dead workers (and its polls while it
waits for trials running elsewhere): such a trial is failed within ``budget.grace_period``
plus this after its worker died."""

Execute = Callable[[dict[str, Any], int, int, Monitor], Outcome]
Echo = Callable[[str, str], None]


class RunError(Exception):
    """An expected failure: one line for the user, no traceback."""


@dataclass
class Finished:
    """How a sweep ended: why it stopped, and the engine's trials by then (None when the
    engine keeps no trials here: W&B's server mode)."""

    reason: str
    tally: Tally | None
    storage: str


# --------------------------------------------------------------------------- names


def sweep_name(spec: Spec, path: str) -> str:
    """The spec's ``name``, else the spec file's stem."""
    return spec.name or Path(path).stem


def experiment_name(spec: Spec, path: str) -> str:
    """MLflow's experiment: ``tracking.experiment``, else ``name``, else the file's stem."""
    tracking = spec.tracking
    return (tracking.experiment if tracking else None) or spec.name or Path(path).stem


def spec_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------- Ctrl-C, SIGTERM, SIGHUP


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's kill, a closed terminal), handled as Ctrl-C is: the
    running trial ends as failed, nothing finished is lost; the exit code is 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_DEFERRED = (signal.SIGINT, *STOP_SIGNALS)


def interrupt_reason(exc: BaseException) -> str:
    """What a trial cut short by ``exc`` records as its error."""
    return f"interrupted ({exc.name})" if isinstance(exc, Interrupted) else INTERRUPTED


def interrupt_signal(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise :class:`Interrupted` (a KeyboardInterrupt)
    in the main thread, so they stop the sweep the way Ctrl-C does. A signal the process was
    told to ignore (``nohup`` ignores SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, _raise_interrupted)
        for sig in STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _handler_setter() -> Callable[[int, Any], Any]:
    """``signal.signal`` without its enum conversion of the old handler (a failed look-up,
    an exception caught, per call: ten times the call itself). :func:`deferred_interrupt`
    swaps four handlers twice per block, several blocks per trial; the handlers it gets
    back it only puts back."""
    try:
        return cast("Callable[[int, Any], Any]", importlib.import_module("_signal").signal)
    except (ImportError, AttributeError):  # pragma: no cover - not CPython
        return signal.signal


_set_handler = _handler_setter()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done (engine writes must not be
    cut in half); then the first one held is delivered to the handler it had before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {sig: _set_handler(sig, hold) for sig in _DEFERRED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            _set_handler(sig, handler)
        if received:
            signal.raise_signal(received[0])


# --------------------------------------------------------------------------- executors


def make_executor(
    spec: Spec,
    path: str,
    objectives: list[str],
    echo: Echo | None,
    grace: float = TERM_GRACE,
    env: dict[str, str] | None = None,
) -> Execute:
    """How each run of a trial executes: the spec's function, or its command. Both get what
    W&B's agent gives a run (WANDB_SWEEP_ID is the sweep's name), and ``env`` (the GPUs the
    trial may see, :func:`.gpus.trial_env`)."""
    folder = os.path.dirname(os.path.abspath(path))
    sweep = sweep_name(spec, path)
    if spec.function is not None:
        try:
            function = load_function(spec.function, folder)
            bare = calls_bare(spec.function, function)
        except FunctionError as exc:
            raise RunError(str(exc)) from None
        argv0 = module_file(spec.function.partition(":")[0])
        return lambda params, seed, number, monitor: run_function(
            function,
            params,
            seed,
            number,
            monitor,
            objectives,
            grace=grace,
            argv0=argv0,
            folder=folder,
            sweep=sweep,
            bare=bare,
            env=env,
        )
    if spec.program is None and spec.command is None:
        raise RunError("nothing to run: give 'function' (module:callable) or 'program'/'command'")
    _check_command(spec, objectives)
    command = Command(spec.command, spec.program, folder, grace, echo, sweep, dict(env or {}))
    return lambda params, seed, number, monitor: run_command(
        command, params, seed, number, monitor, objectives
    )


def _check_command(spec: Spec, objectives: list[str]) -> None:
    template = [str(item) for item in spec.command or ["${program}"]]
    if spec.program is None and "${program}" in template:
        raise RunError("the command uses ${program}, but the spec gives no 'program'")
    if not objectives:
        raise RunError(
            "a command reports its metrics by name: give 'metric' (the objective "
            "sweepspec reads from what the command reports)"
        )


# --------------------------------------------------------------------------- one worker


_AGGREGATE: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
}


class TrialRun:
    """One trial, run exactly as the loop runs it: over the spec's seeds, each run the spec's
    function (forked) or command with ``report``/``should_stop`` and ``budget.trial_timeout``,
    the seeds' aggregate and cost, as a :class:`TrialRecord`. An engine that drives its own
    trials (:class:`~.base.Drives`) runs each trial through one of these, wherever it runs
    them: it is picklable (the executor is made on first use, in the process that runs the
    trial), unless the loop was given an executor of its own (``compare``).

    One trial at a time: :meth:`abandon` records the one running as failed.
    """

    def __init__(
        self,
        spec: Spec,
        path: str,
        *,
        cost_metric: str | None = None,
        grace: float = TERM_GRACE,
        env: dict[str, str] | None = None,
        gpus: tuple[str, ...] | None = None,
        execute: Execute | None = None,
        echo: Echo | None = None,
    ) -> None:
        self.spec, self.path, self.cost_metric = spec, path, cost_metric
        self.grace, self.env, self.gpus = grace, env, gpus
        self.execute, self.echo = execute, echo
        self.made = execute is None  # an executor this object makes is made again anywhere
        self.metric_names = [m.name for m in spec.objectives]
        self.paths = leaf_paths(spec.parameters)
        self.seeds = spec.seeds.values if spec.seeds else [0]
        self.aggregate = _AGGREGATE[spec.seeds.aggregate if spec.seeds else "mean"]
        self.seeded = spec.seeds is not None
        self.timeout = spec.budget.trial_timeout if spec.budget else None
        # W&B's score (spec ``objective: best``): the best value of the one objective
        single = len(self.metric_names) == 1 and spec.objective == "best"
        self.best = spec.objectives[0].goal if single else None
        self.runs: list[tuple[int, Outcome]] = []
        self.monitor: Monitor | None = None
        self.params: dict[str, Any] = {}
        self.number = -1
        self.started = 0.0

    def __getstate__(self) -> dict[str, Any]:
        if not self.made:
            raise TypeError("a TrialRun given an executor of its own cannot be sent elsewhere")
        return self.__dict__ | {"execute": None, "echo": None, "monitor": None}

    def executor(self) -> Execute:
        """The executor, made from the spec on first use (:func:`make_executor`)."""
        if self.execute is None:
            names = self.metric_names
            self.execute = make_executor(
                self.spec, self.path, names, self.echo, self.grace, self.env
            )
        return self.execute

    def __call__(
        self,
        number: int,
        params: dict[str, Any],
        report: Callable[[float, int], bool] | None = None,
    ) -> TrialRecord:
        """Run trial ``number`` with ``params`` (real values by dotted name). ``report(value,
        step)`` gets each finite value of the objective reported by the first seed's run and
        returns True to stop the trial early (None: it never stops early)."""
        execute = self.executor()
        with deferred_interrupt():
            self.number, self.runs, self.params = number, [], dict(params)
            self.started = time.time()
        nested = nest(self.params, self.paths)
        for i, seed in enumerate(self.seeds):
            outcome = self._run_seed(execute, nested, seed, number, report if i == 0 else None)
            self.runs.append((seed, outcome))
            if outcome.state != "COMPLETE":
                break
        return self.record()

    def _run_seed(
        self,
        execute: Execute,
        nested: dict[str, Any],
        seed: int,
        number: int,
        report: Callable[[float, int], bool] | None,
    ) -> Outcome:
        self.monitor = Monitor(
            self.metric_names[0] if self.metric_names else None,
            report,
            self.timeout,
            f"seed_{seed}/" if self.seeded else "",
            best=self.best,
        )
        outcome = execute(nested, seed, number, self.monitor)
        self.monitor = None
        return outcome

    def record(self) -> TrialRecord:
        """The trial's record from the runs so far."""
        seed, last = self.runs[-1]
        history = [p for _, run in self.runs for p in run.history]
        seeds = (
            [{"seed": s, "metrics": run.metrics} for s, run in self.runs] if self.seeded else None
        )
        record = TrialRecord(
            self.number,
            self.params,
            last.state,
            dict(last.metrics),
            history,
            seeds,
            start_ms=int(self.started * 1000),
            end_ms=int(time.time() * 1000),
            gpus=None if self.gpus is None else ",".join(self.gpus),
        )
        if last.state == "FAIL":
            several = self.seeded and len(self.seeds) > 1
            record.error = f"seed {seed}: {last.error}" if several else last.error
            record.traceback = last.traceback
        elif last.state == "COMPLETE":
            record.metrics, record.values = self._aggregate()
        record.cost = self._cost()
        return record

    def _cost(self) -> float:
        """``budget.cost.metric`` summed over the trial's runs (seeds); 0 without one."""
        if self.cost_metric is None:
            return 0.0
        costs = [run.metrics.get(self.cost_metric, 0.0) for _, run in self.runs]
        return math.fsum(c for c in costs if math.isfinite(c))

    def _aggregate(self) -> tuple[dict[str, float], list[float]]:
        outcomes = [run for _, run in self.runs]
        width = len(outcomes[0].values or [])
        values = [self.aggregate([o.values[k] for o in outcomes if o.values]) for k in range(width)]
        names = [n for n in outcomes[0].metrics if all(n in o.metrics for o in outcomes)]
        metrics = {n: self.aggregate([o.metrics[n] for o in outcomes]) for n in names}
        return metrics, values

    def abandon(self, number: int, params: dict[str, Any], reason: str) -> TrialRecord:
        """The record of trial ``number``, cut short by ``reason`` (Ctrl-C, an error): failed,
        with what it reported."""
        if number != self.number:  # cut short before it started
            self.number, self.runs, self.params = number, [], dict(params)
            self.started = time.time()
        if self.monitor is not None:
            self.runs.append(
                (
                    self.seeds[len(self.runs)],
                    Outcome(
                        "FAIL", dict(self.monitor.last), error=reason, history=self.monitor.history
                    ),
                )
            )
            self.monitor = None
        if not self.runs:
            self.runs.append((self.seeds[0], Outcome("FAIL", {}, error=reason)))
        record = self.record()
        record.state, record.error = "FAIL", reason
        return record


@dataclass
class Worker:
    """One process's loop over trials, until the budget says stop."""

    spec: Spec
    engine: Engine
    budget: Budget
    tracker: Tracker
    execute: Execute
    progress: Progress | None = None
    current: Asked | None = None
    gpus: tuple[str, ...] | None = None  # the devices this worker's trials see

    def __post_init__(self) -> None:
        spec = self.spec
        self.metric_names = [m.name for m in spec.objectives]
        self.run_trial = TrialRun(
            spec,
            "",
            cost_metric=self.budget.cost_metric,
            gpus=self.gpus,
            execute=self.execute,
        )
        self.seeded = spec.seeds is not None
        self.prunable = len(self.metric_names) == 1 and self.engine.prunes
        self.streak = FailureStreak(self.budget.max_consecutive_failures)
        self.counted = CachedTally(self.budget)
        self.warned = False
        self.waited = False
        self.next_check = 0.0
        self.last: TrialRecord | None = None  # the trial ended last, until its line is shown
        self.unlogged: TrialRecord | None = None  # the trial told last, until it is logged

    # ---- the loop

    def run(self) -> str:
        """Run trials until a limit is reached; return why. Ctrl-C records the running trial
        as failed before it goes on up."""
        try:
            return self._loop()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the trial told last, logged all the same
                self._log_told()
            with deferred_interrupt():
                self._abandon(
                    interrupt_reason(exc)
                    if isinstance(exc, KeyboardInterrupt)
                    else f"sweepspec stopped: {describe(exc)}"
                )
            with contextlib.suppress(Exception):  # its line, if the storage still answers
                self._ended(self.tally())
            raise

    def _loop(self) -> str:
        while True:
            with deferred_interrupt(), self.engine.ask_lock():
                self._fail_stale()
                tally = self.tally()
                self._ended(tally)
                reason = self.budget.stop_reason(tally) or self.engine.exhausted()
                asked = self.current = self.engine.ask() if reason is None else None
            self._log_told()
            if asked is None:
                if reason is not None and self._others_may_fail(tally):
                    self._wait_for_others(tally)
                    continue
                return (
                    reason
                    or self.engine.exhausted()
                    or "the trial budget is filled by trials of other workers"
                )
            if self._over_budget(asked):
                return "the trial budget is filled by trials of other workers"
            self.last = self._trial(asked)

    def _ended(self, tally: Tally) -> None:
        """The last trial's line, with the count that comes before the next ask (the
        storage is read once per trial), and what it says of the sweep: a metric never
        reported, or failures in a row, stop it."""
        record, self.last = self.last, None
        if record is None:
            return
        if self.progress is not None:  # workers in other processes show none
            self.progress.trial(record.number, record.state, record.metrics, tally, record.error)
        self._check_objective(record)
        failure = self.streak.add(record.number, record.state, record.error)
        if failure is not None:
            raise RunError(failure)

    def _fail_stale(self) -> None:
        """Fail the trials of workers that are gone (no heartbeat for the engine's grace
        period), at most once per :data:`STALE_CHECK` seconds: their places run again."""
        if self.engine.grace_period is None:
            return
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + STALE_CHECK
        for number in self.engine.fail_stale():
            self._warn(
                f"sweepspec: trial {number} was left RUNNING by a worker that is gone; marked "
                "FAIL, its place in the budget runs again"
            )

    def _others_may_fail(self, tally: Tally) -> bool:
        """Only trials running elsewhere keep this worker from the budget's last places,
        and the engine fails those whose worker dies: wait for them, not stop."""
        if self.engine.grace_period is None or tally.running == 0:
            return False
        alone = dataclasses.replace(tally, running=0)
        return self.budget.stop_reason(alone) is None and self.engine.exhausted() is None

    def _wait_for_others(self, tally: Tally) -> None:
        if not self.waited:
            self.waited = True
            self._warn(
                f"sweepspec: the rest of the trial budget is taken by {tally.running} trial(s) "
                "running in other workers; waiting for them (a trial whose worker is gone is "
                f"failed after {self.engine.grace_period:g}s, budget.grace_period)",
                quiet=True,
            )
        time.sleep(STALE_CHECK)
        self.next_check = 0.0  # check again at once

    def _check_objective(self, record: TrialRecord) -> None:
        """A metric name the trial never reports (a typo) would fail every trial: stop after
        the first. Early termination on a metric reported once has nothing to act on: warn."""
        runs = self.run_trial.runs
        seed, run = runs[-1]
        if run.missing and self.metric_names and not self._any_complete():
            raise RunError(_never_reported(record.number, run))
        if not self.prunable or self.warned or record.state != "COMPLETE":
            return
        metric = self.metric_names[0]
        seed, run = runs[0]
        key = (f"seed_{seed}/" if self.seeded else "") + metric
        if sum(p.key == key for p in run.history) <= 1:
            self.warned = True
            self._warn(
                f"sweepspec: warning: early_terminate is set, but trial {record.number} "
                f"reported {metric!r} only at the end, so stopping early had nothing to act "
                f"on; report it at each step (trial.report({{{metric!r}: ...}}, step), or a "
                "metric line per step from a command)"
            )

    def _any_complete(self) -> bool:
        return any(s.state == "COMPLETE" for s in self.engine.summaries())

    def _warn(self, line: str, quiet: bool = False) -> None:
        """A line for the user; ``quiet`` ones only where progress is shown."""
        if self.progress is not None:
            self.progress.write(line)
        elif not quiet:
            sys.stderr.write(line + "\n")

    def tally(self) -> Tally:
        return self.counted(self.engine.summaries())

    # ---- one trial

    def _over_budget(self, asked: Asked) -> bool:
        """Workers that share no lock (a database shared by machines) can ask at the same
        moment: engines number trials in order, so the later ones give their place back.
        Under a lock shared by every worker, the budget was counted just before the ask and
        this never happens."""
        if self.budget.trials is None or asked.number < self.budget.trials:
            return False  # fewer trials than the budget come before it, whatever their state
        taken = ("COMPLETE", "PRUNED", "RUNNING")
        summaries = self.engine.summaries()
        ahead = sum(1 for t in summaries if t.number < asked.number and t.state in taken)
        if ahead < self.budget.trials:
            return False
        record = TrialRecord(asked.number, dict(asked.params), "FAIL", {})
        record.error = "not run: the trial budget was filled by trials of other workers"
        with deferred_interrupt():
            self.engine.tell(asked, record)
            self.current = None
        return True

    def _trial(self, asked: Asked) -> TrialRecord:
        """Run the trial asked (already :attr:`current`: the ask set it), tell its end. The
        tracker logs it after the next count and ask (:meth:`_log_told`): an engine may
        finish writing the end there (a database reads the end's result with the next
        trial's making), so the tracker never holds that write up."""
        pruning = functools.partial(self._report, asked) if self.prunable else None
        record = self.run_trial(asked.number, asked.params, pruning)
        with deferred_interrupt():
            self.engine.tell(asked, record)
            self.current = None
            self.unlogged = record
        return record

    def _log_told(self) -> None:
        """The trial told last, logged to the tracker."""
        record, self.unlogged = self.unlogged, None
        if record is not None:
            self.tracker.log_trial(record)

    def _report(self, asked: Asked, value: float, step: int) -> bool:
        with deferred_interrupt():
            return self.engine.report(asked, value, step)

    def _abandon(self, reason: str) -> None:
        """The running trial ends as failed; it is logged with what it reported."""
        asked, self.current = self.current, None
        if asked is None:
            return
        record = self.run_trial.abandon(asked.number, asked.params, reason)
        self.engine.tell(asked, record)
        self.tracker.log_trial(record)


def _never_reported(number: int, outcome: Outcome) -> str:
    name = outcome.missing[0]
    given = sorted(outcome.metrics)
    what = f"it reported {', '.join(map(repr, given))}" if given else "it reported no metrics"
    return (
        f"trial {number} never reported {name!r}, the spec's metric; {what}"
        f"{did_you_mean(name, given) or '.'} Stopped after this trial: fix metric.name in "
        "the spec, or what the trial reports"
    )


# --------------------------------------------------------------------------- set-up


def make_budget(spec: Spec, trials: int | None, deadline: float | None = None) -> Budget:
    """The budget of ``spec``: ``--trials``, else ``run_cap``, else ``budget.trials``."""
    budget = spec.budget
    objectives = spec.objectives
    source = "--trials" if trials else "run_cap" if spec.run_cap else "budget.trials"
    wall = budget.wall_clock if budget else None
    if deadline is None and wall is not None:
        deadline = time.time() + wall
    return Budget(
        directions=tuple(m.goal for m in objectives) or ("minimize",),
        metric_names=tuple(m.name for m in objectives),
        trials=trials or spec.run_cap or (budget.trials if budget else None),
        trials_source=source,
        deadline=deadline,
        wall_clock=wall,
        targets=tuple(m.target for m in objectives),
        cost_metric=budget.cost.metric if budget and budget.cost else None,
        cost_max=budget.cost.max if budget and budget.cost else None,
        max_consecutive_failures=budget.max_consecutive_failures if budget else 5,
        cpus_per_trial=budget.cpus_per_trial if budget else None,
    )


def open_sweep(name: str, spec: Spec, path: str, options: EngineOptions) -> Engine:
    """The engine ``name`` on the sweep's state; what goes wrong is a :class:`RunError`."""
    try:
        return open_engine(name, spec, path, options)
    except ImportError as exc:
        raise RunError(
            f"the {name} engine needs {exc.name or name}: pip install 'sweepspec[{name}]', "
            "or run on another engine (--engine)"
        ) from None
    except EngineError as exc:
        raise RunError(str(exc)) from None


# --------------------------------------------------------------------------- the sweep


def run_sweep(
    spec: Spec,
    path: str,
    *,
    engine: str,
    tracker: str = "mlflow",
    storage: str | None = None,
    trials: int | None = None,
    workers: int = 1,
    fresh: bool = False,
    grace: float = TERM_GRACE,
    stream: Any = None,
    tty: bool | None = None,
    gpus: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Finished:
    """Run (or resume) the sweep of ``spec`` (read from ``path``) on ``engine`` until a limit
    is reached. ``gpus`` (``--gpus``) lists the devices the workers share out (:mod:`.gpus`);
    ``extra``, the engine's own options (``EngineOptions.extra``).

    Raises :class:`RunError` for expected failures (unreadable state, changed search space, a
    function that cannot be imported, repeated trial failures) and lets KeyboardInterrupt
    through after recording the running trial as failed and flushing the tracker.
    """
    objectives = [m.name for m in spec.objectives]
    budget = make_budget(spec, trials)
    progress = Progress(
        sweep_name(spec, path),
        budget.trials,
        objectives[0] if objectives else None,
        stream,
        tty,
    )
    devices = _plan_gpus(spec, gpus)
    env = None if devices is None else trial_env(devices.share(0))
    execute = make_executor(spec, path, objectives, progress.echo, grace, env)  # refuse early
    try:
        with stop_signals():
            options = EngineOptions(storage=storage, fresh=fresh, extra=dict(extra or {}))
            sweep = open_sweep(engine, spec, path, options)
            try:
                driver = drives(sweep)
                if driver is not None:
                    loop = Loop(
                        spec, path, sweep, budget, progress, tracker, workers, grace, gpus, env
                    )
                    return loop.hand_over(driver)
                return _run(
                    sweep, spec, path, tracker, budget, workers, progress, execute, grace, devices
                )
            finally:
                reap_trials()  # the trial process holds a copy of the sweep's locks
                sweep.close()
    except EngineError as exc:  # an engine's write that failed (a full disk) included
        raise RunError(str(exc)) from None


@dataclass
class Loop:
    """What the loop hands an engine that runs its own trials (:class:`~.base.Drives`):
    everything the loop would use to run the sweep itself.

    Attributes:
        spec, path: the sweep's spec and the file it was read from.
        engine: the engine driving (its ``summaries()`` count the budget).
        budget: the budget (``--trials``/``run_cap``, wall clock, targets, cost, failures).
        progress: the progress shown (``progress.write(line)`` for a line to the user).
        tracker_name: the tracker asked for (``--tracker``); :meth:`start` starts it.
        workers: ``--workers`` (trials at a time, for an engine that runs several).
        grace: seconds a stopped trial gets between SIGTERM and SIGKILL.
        gpus: ``--gpus`` as given, None without it.
        trial: runs one trial as the loop does (:class:`TrialRun`, picklable).
    """

    spec: Spec
    path: str
    engine: Engine
    budget: Budget
    progress: Progress
    tracker_name: str
    workers: int
    grace: float
    gpus: str | None = None
    env: dict[str, str] | None = None
    sink: Tracker | None = None
    failure: str | None = None

    def __post_init__(self) -> None:
        self.trial = TrialRun(
            self.spec,
            os.path.abspath(self.path),  # the trial may run in another working directory
            cost_metric=self.budget.cost_metric,
            grace=self.grace,
            env=self.env,
        )
        self.streak = FailureStreak(self.budget.max_consecutive_failures)
        self.counted = CachedTally(self.budget)

    def start(self) -> Tracker:
        """Start the tracker on the sweep, then the engine (``Engine.start``: ``--fresh``
        replaces the old state only now); shows the opening line. Call once."""
        _show(self.engine, self.progress)
        self.progress.write(_opening(self.engine, self.tracker_name, self.workers))
        sink = _tracker(self.tracker_name, self.spec, self.path, self.engine, self.progress.write)
        try:
            with deferred_interrupt():
                self.engine.start()
        except BaseException:
            sink.close("FAILED")
            raise
        self.sink = sink
        _show(self.engine, self.progress)
        self.progress.update(self.tally())
        return sink

    def tally(self) -> Tally:
        """The budget's count of the engine's trials now."""
        return self.counted(self.engine.summaries())

    def stop_reason(self) -> str | None:
        """Why no further trial may start (a budget limit, the engine exhausted), or None."""
        return self.budget.stop_reason(self.tally()) or self.engine.exhausted()

    def finished(self, record: TrialRecord) -> bool:
        """A trial has ended and the engine has recorded it: log it to the tracker, show it,
        count a failure streak. False when the sweep must stop for failures in a row (the run
        then ends with that error, exit 1, once ``drive`` returns)."""
        if self.sink is not None:
            self.sink.log_trial(record)
        self.progress.trial(record.number, record.state, record.metrics, self.tally(), record.error)
        failure = self.streak.add(record.number, record.state, record.error)
        if failure is not None and self.failure is None:
            self.failure = failure
        return self.failure is None

    def hand_over(self, driver: Drives) -> Finished:
        """Let ``driver`` run the sweep; close the tracker (if started) whatever happens."""
        status = "FAILED"
        try:
            reason = driver.drive(self)
            status = "FINISHED" if self.failure is None else "FAILED"
        except KeyboardInterrupt as exc:
            status = "KILLED"
            self.progress.close()
            self.progress.write(_interrupted(self.engine, self.budget, exc))
            raise
        finally:
            self.progress.close()
            if self.sink is not None:
                self.sink.close(status)
        if self.failure is not None:
            raise RunError(self.failure)
        if self.sink is not None:
            where = self.sink.where()
            if where:
                self.progress.write(where)
        summaries = self.engine.summaries()
        kept = summaries or self.sink is not None  # W&B's server keeps its runs itself
        return Finished(reason, self.budget.tally(summaries) if kept else None, self.engine.label)


def run_engine(
    sweep: Engine,
    spec: Spec,
    path: str,
    *,
    tracker: str,
    budget: Budget,
    progress: Progress,
    execute: Execute,
    grace: float = TERM_GRACE,
) -> Finished:
    """Run the trials ``sweep`` (an engine already open, or one that wraps another) gives,
    in this process, until ``budget`` or the engine stops: the loop of :func:`run_sweep`
    for a caller that chooses the engine and the executor itself (``compare``)."""
    return _run(sweep, spec, path, tracker, budget, 1, progress, execute, grace)


def _run(
    sweep: Engine,
    spec: Spec,
    path: str,
    tracker: str,
    budget: Budget,
    workers: int,
    progress: Progress,
    execute: Execute,
    grace: float,
    gpus: Gpus | None = None,
) -> Finished:
    _show(sweep, progress)
    for number in sweep.fail_stale():
        progress.write(
            f"sweepspec: trial {number} was left RUNNING by a worker that is gone; marked FAIL"
        )
    workers = bound_workers(workers, sweep, budget, progress.write, gpus)
    progress.write(_opening(sweep, tracker, workers))
    if gpus is not None:
        progress.write(_shares(gpus, workers))
    sink = _tracker(tracker, spec, path, sweep, progress.write)
    try:
        with deferred_interrupt():
            sweep.start()  # --fresh: only now that everything is up
    except BaseException:
        sink.close("FAILED")
        raise
    _show(sweep, progress)
    progress.update(budget.tally(sweep.summaries()))
    reason = _drive(spec, path, sweep, budget, workers, sink, progress, execute, grace, gpus)
    where = sink.where()
    if where:
        progress.write(where)
    return Finished(reason, budget.tally(sweep.summaries()), sweep.label)


def _show(sweep: Engine, progress: Progress) -> None:
    """The engine's lines for the user, each once."""
    for line in sweep.messages:
        progress.write(line)
    sweep.messages.clear()


WORKERS_PER_CPU = 4
"""``--workers`` is capped at this many worker processes per CPU (``os.cpu_count()``)."""


def bound_workers(
    asked: int,
    engine: Engine,
    budget: Budget,
    echo: Callable[[str], None],
    gpus: Gpus | None = None,
) -> int:
    """``asked`` workers, but never more than the trials left in the budget, nor more than
    have devices of their own (``gpus``), nor more than the CPUs hold at
    ``budget.cpus_per_trial`` each, nor more than :data:`WORKERS_PER_CPU` per CPU; one line
    says so when capped."""
    cpus = os.cpu_count() or 1
    tally = budget.tally(engine.summaries())
    caps: list[tuple[int, str]] = []
    if budget.trials is not None:
        left = max(1, budget.trials - tally.finished - tally.running)
        caps.append((left, f"{left} trial{'s' if left != 1 else ''} left in the budget"))
    most = gpus.most_workers() if gpus is not None else None
    if gpus is not None and most is not None:
        caps.append((most, gpus.capped()))
    per_trial = budget.cpus_per_trial
    if per_trial is not None:
        fit = max(1, int(cpus // per_trial))
        caps.append((fit, f"budget.cpus_per_trial: {per_trial:g} of {cpus} CPUs each"))
    caps.append((cpus * WORKERS_PER_CPU, f"at most {WORKERS_PER_CPU} per CPU, {cpus} CPUs"))
    count, why = min(caps, key=lambda cap: cap[0])  # the first of the smallest
    if count >= asked:
        return asked
    echo(f"sweepspec: {asked} workers asked, {count} started ({why})")
    return count


def _plan_gpus(spec: Spec, flag: str | None) -> Gpus | None:
    try:
        return plan_gpus(flag, spec.budget.gpus_per_trial if spec.budget else None)
    except GpuError as exc:
        raise RunError(str(exc)) from None


def _shares(gpus: Gpus, workers: int) -> str:
    """The line that says which devices each worker's trials see."""
    if gpus.per_trial == 0:
        return "sweepspec: GPUs: none (budget.gpus_per_trial: 0)"
    shares = "; ".join(f"worker {i}: {','.join(gpus.share(i))}" for i in range(workers))
    return f"sweepspec: GPUs ({gpus.per_trial} per trial, from {gpus.source}): {shares}"


def _drive(
    spec: Spec,
    path: str,
    engine: Engine,
    budget: Budget,
    workers: int,
    sink: Tracker,
    progress: Progress,
    execute: Execute,
    grace: float,
    gpus: Gpus | None = None,
) -> str:
    """Run the trials here or in worker processes; close the tracker whatever happens."""
    status = "FAILED"
    try:
        if workers == 1:
            mine = None if gpus is None else gpus.share(0)
            reason = Worker(spec, engine, budget, sink, execute, progress, gpus=mine).run()
        else:
            reason = _supervise(path, engine, budget, workers, sink, progress, grace, gpus)
        status = "FINISHED"
        return reason
    except KeyboardInterrupt as exc:
        status = "KILLED"
        progress.close()
        progress.write(_interrupted(engine, budget, exc))
        raise
    finally:
        progress.close()
        # the trial process first: forked after the tracker started, it holds copies of the
        # tracker's pipes (a logger process waits for their end) and of the sweep's locks
        reap_trials()
        sink.close(status)  # bounded; Ctrl-C stops it, what is not logged stays queued


def _interrupted(engine: Engine, budget: Budget, exc: BaseException) -> str:
    tally = budget.tally(engine.summaries())
    by = f" by {exc.name}" if isinstance(exc, Interrupted) else ""
    return (
        f"sweepspec: interrupted{by}; {tally.finished} finished trials are kept in "
        f"{engine.label} (a trial that was running is recorded as failed); run the same "
        "command again to resume"
    )


def _opening(engine: Engine, tracker: str, workers: int) -> str:
    done = len(engine.summaries())
    where = f"storage {engine.label}, tracker {tracker}"
    several = f", {workers} workers" if workers > 1 else ""
    resumed = f"; resuming after {done} trials" if done else ""
    return f"sweepspec: sweep {engine.sweep_name!r} on {engine.name} ({where}{several}){resumed}"


def _tracker(
    name: str, spec: Spec, path: str, engine: Engine, echo: Callable[[str], None]
) -> Tracker:
    """The tracker ``name``, started on the sweep; a store that runs starting together are
    still setting up is tried again."""
    info = sweep_info(spec, path, engine)
    for attempt in range(OPEN_ATTEMPTS):
        try:
            sink = _make_tracker(name, spec, path, echo)
            with sqlite_setup_lock(sink.uri):  # runs starting together: one makes the tables
                sink.start(info)
            return sink
        except RunError:
            raise
        except ImportError as exc:
            raise RunError(_needs(name, exc)) from None
        except TrackerUnavailable as exc:
            raise RunError(str(exc)) from None
        except Exception as exc:  # the tracking server is the user's
            if raced(exc) and attempt + 1 < OPEN_ATTEMPTS:  # runs starting on one new store
                time.sleep(0.2 * (attempt + 1))
                continue
            raise RunError(f"cannot start the {name} tracker: {describe(exc)}") from None
    raise AssertionError("unreachable")


def _make_tracker(
    name: str, spec: Spec, path: str, echo: Callable[[str], None] | None = None
) -> Tracker:
    uri = spec.tracking.uri if spec.tracking else None
    try:
        return make_tracker(name, uri=uri, experiment=experiment_name(spec, path), echo=echo)
    except ImportError as exc:
        raise RunError(_needs(name, exc)) from None


def _needs(tracker: str, exc: ImportError) -> str:
    return (
        f"the {tracker} tracker needs {exc.name or tracker}: pip install "
        f"'sweepspec[{tracker}]', or run with --tracker none"
    )


def sweep_info(spec: Spec, path: str, engine: Engine) -> SweepInfo:
    """What a tracker records about the sweep."""
    objectives = spec.objectives
    return SweepInfo(
        name=engine.sweep_name,
        engine=engine.name,
        sweep_id=engine.sweep_id,
        spec_path=os.path.abspath(path),
        spec_hash=spec_hash(path),
        artifact=engine.artifact,
        artifact_name=engine.artifact_name,
        objective=objectives[0].name if len(objectives) == 1 else None,
        direction=objectives[0].goal if len(objectives) == 1 else "minimize",
        state_path=engine.state_path,
    )


def sync_sweep(
    spec: Spec, path: str, *, engine: str, tracker: str, storage: str | None = None
) -> int:
    """Log to ``tracker`` what earlier runs of the sweep could not; return how many trials."""
    sweep = open_sweep(engine, spec, path, EngineOptions(storage=storage, create=False))
    try:
        if not sweep.sweep_id:
            raise RunError(
                f"sweep {sweep.sweep_name!r} in {sweep.label} was not made by 'sweepspec run'"
            )
        sink = _make_tracker(tracker, spec, path)
        try:
            return sink.sync(sweep_info(spec, path, sweep))
        except TrackerUnavailable as exc:
            raise RunError(str(exc)) from None
    finally:
        sweep.close()


# --------------------------------------------------------------------------- several workers


def _supervise(
    path: str,
    engine: Engine,
    budget: Budget,
    workers: int,
    sink: Tracker,
    progress: Progress,
    grace: float,
    gpus: Gpus | None = None,
) -> str:
    """Start ``workers`` processes on the engine's state and follow their trials until all
    stop. Worker ``i`` gets ``gpus.share(i)``: in its own environment (for what its function's
    module does on import) and in each trial's."""
    settings = {
        "engine": engine.name,
        "settings": engine.worker_settings(),
        "spec": os.path.abspath(path),
        "trials": budget.trials,
        "deadline": budget.deadline,
        "tracker": sink.name,
        "tracking": sink.worker_settings(),
        "grace": grace,
    }
    seen = {r["number"] for r in engine.records() if r["state"] != "RUNNING"}
    # a worker stops as on SIGTERM when this process ends, even killed outright (SIGKILL)
    orphaned = functools.partial(die_with_parent, signal.SIGTERM, os.getpid())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            share = None if gpus is None else gpus.share(i)
            argv = [
                sys.executable,
                "-m",
                "sweepspec.runners.sweep",
                json.dumps(settings | {"gpus": share}),
            ]
            env = None if share is None else {**os.environ, **trial_env(share)}
            procs.append(
                subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=orphaned)
            )
        counted = CachedTally(budget)
        while any(p.poll() is None for p in procs):
            time.sleep(0.25)
            _follow(engine, counted, seen, progress)
        _follow(engine, counted, seen, progress)
    except KeyboardInterrupt as exc:
        _interrupt(procs, interrupt_signal(exc))
        raise
    codes = [p.returncode for p in procs]
    failed = sum(code != 0 for code in codes)
    if failed:
        raise RunError(f"{failed} of {workers} workers stopped with an error (see above)")
    tally = budget.tally(engine.summaries())
    return budget.stop_reason(tally) or engine.exhausted() or "every worker stopped"


def _follow(engine: Engine, counted: CachedTally, seen: set[int], progress: Progress) -> None:
    tally = counted(engine.summaries())
    for row in engine.records():
        if row["state"] != "RUNNING" and row["number"] not in seen:
            seen.add(row["number"])
            progress.trial(row["number"], row["state"], row["metrics"], tally, row.get("error"))
    progress.update(tally)


def _interrupt(procs: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Pass the signal on to the workers (each records its trial as failed) and wait."""
    with deferred_interrupt():
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)
        for proc in procs:
            proc.wait()


def worker_main(argv: list[str]) -> int:
    """One worker process of ``run --workers N`` (``python -m sweepspec.runners.sweep``)."""
    settings = json.loads(argv[0])
    from ..spec import SpecError, load

    try:
        with stop_signals():
            return _work(settings, load)
    except KeyboardInterrupt as exc:
        return 128 + interrupt_signal(exc)
    except (RunError, SpecError, EngineError) as exc:
        sys.stderr.write(f"sweepspec: worker {os.getpid()}: error: {exc}\n")
        return 1


def _work(settings: dict[str, Any], load: Callable[[str], Spec]) -> int:
    sink: Tracker | None = None
    try:
        spec = load(settings["spec"])
        engine_settings = dict(settings["settings"])
        options = EngineOptions(storage=engine_settings.pop("storage", None), extra=engine_settings)
        engine = open_sweep(settings["engine"], spec, settings["spec"], options)
        budget = make_budget(spec, settings["trials"], settings["deadline"])
        objectives = [m.name for m in spec.objectives]
        share = settings.get("gpus")
        gpus = None if share is None else tuple(share)
        env = None if gpus is None else trial_env(gpus)
        grace = settings["grace"]
        execute = make_executor(spec, settings["spec"], objectives, None, grace, env)
        sink = make_tracker(settings["tracker"])
        sink.attach(settings["tracking"])
        try:
            Worker(spec, engine, budget, sink, execute, gpus=gpus).run()
        finally:
            engine.close()
        return 0
    finally:
        reap_trials()  # before the tracker (see _drive)
        if sink is not None:
            with deferred_interrupt():
                sink.close()


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
