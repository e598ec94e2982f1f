"""Run a compiled sweep on Optuna: ask, run the trial over its seeds, tell, log.

* Storage: ``--storage``, else ``optuna.storage`` in the spec, else a journal file under the
  working directory, ``.sweepspec/<study name>.journal`` (Optuna's ``JournalStorage``: durable,
  no server, a few milliseconds per trial). A URL with ``://`` is any Optuna RDB storage
  (``sqlite:///x.db``, ``postgresql://...``); anything else is a journal file path.
* The study is named ``optuna.study_name``, else the spec's ``name``, else the spec file's
  stem. Running the same spec again resumes it; a changed search space (or metric goal) is
  refused, and ``--fresh`` deletes the old study to start over.
* Trials run one at a time in this process. ``--workers N`` starts N worker processes on the
  same storage, Optuna's own multi-process model; the budget is read from the storage, so it
  is the total over every worker.
* Each trial stores, as user attributes: ``sweepspec.params`` (real values),
  ``sweepspec.metrics`` (final values), ``sweepspec.seeds`` (per-seed values, with
  ``seeds:``), ``sweepspec.error`` and ``sweepspec.traceback`` (failures),
  ``sweepspec.cost`` (with ``budget.cost``) and ``sweepspec.worker`` (``host:pid``).
* Ctrl-C: the running trial is stopped and recorded as failed (``interrupted``), the tracker
  is flushed, and KeyboardInterrupt goes on up (exit 130). SIGTERM and SIGHUP do the same
  (:class:`Interrupted`, exit 143 / 129); with several workers the signal is passed on to
  each. Storage writes are shielded from these signals, so no trial is left RUNNING and
  nothing finished is lost. Workers stop as on SIGTERM when the process that started them
  ends, even killed outright; a trial left RUNNING by a process that was killed outright
  (SIGKILL) on this host is marked failed by the next run.
* ``--workers N`` is bounded by the trials left in the budget and by :data:`WORKERS_PER_CPU`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..compiler.base import SearchSpaceChangedError
from ..compiler.optuna import OptunaPlan, compile_optuna, study_name_for
from ..redact import redact
from ..spec import Spec
from ..spec.messages import did_you_mean
from ..trackers import SweepInfo, Tracker, TrackerUnavailable, TrialRecord, make_tracker
from .budget import Budget, FailureStreak, Tally, TrialSummary
from .contract import STATE_DIR, default_journal  # shared with the generated script
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
    process_alive,
    run_command,
    run_function,
)

__all__ = [
    "COST_ATTR",
    "ERROR_ATTR",
    "METRICS_ATTR",
    "SEEDS_ATTR",
    "STATE_DIR",
    "TRACEBACK_ATTR",
    "WORKER_ATTR",
    "Finished",
    "RunError",
    "open_storage",
    "run_sweep",
    "study_name",
    "worker_main",
]

METRICS_ATTR = "sweepspec.metrics"
SEEDS_ATTR = "sweepspec.seeds"
ERROR_ATTR = "sweepspec.error"
TRACEBACK_ATTR = "sweepspec.traceback"
COST_ATTR = "sweepspec.cost"
WORKER_ATTR = "sweepspec.worker"
SWEEP_ID_ATTR = "sweepspec.sweep_id"
SPEC_ATTR = "sweepspec.spec_path"
INTERRUPTED = "interrupted (Ctrl-C)"

Execute = Callable[[dict[str, Any], int, int, Monitor], Outcome]
Echo = Callable[[str, str], None]


class RunError(Exception):
    """An expected failure: one line for the user, no traceback."""


@dataclass
class Finished:
    """How a sweep ended: why it stopped, and the storage's trials by then."""

    reason: str
    tally: Tally
    storage: str


# --------------------------------------------------------------------------- names, storage


def study_name(spec: Spec, path: str) -> str:
    """``optuna.study_name``, else the spec's ``name``, else the spec file's stem."""
    return study_name_for(spec, path) or Path(path).stem


def experiment_name(spec: Spec, path: str) -> str:
    """MLflow's experiment: ``tracking.experiment``, else ``name``, else the file's stem."""
    tracking = spec.tracking
    return (tracking.experiment if tracking else None) or spec.name or Path(path).stem


_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def storage_url(url: str | None, spec: Spec, name: str) -> str:
    """Where the study lives, every relative path made absolute now (a trial that changes
    the working directory must not move it): an RDB URL, or a journal file's path."""
    url = url or (spec.optuna.storage if spec.optuna else None)
    if url is None:
        return os.path.abspath(default_journal(name))
    if "://" not in url:
        return os.path.abspath(os.path.expanduser(url))
    return _absolute_sqlite(url)


def _absolute_sqlite(url: str) -> str:
    """``sqlite:///relative.db`` with its path made absolute; any other URL as it is."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RunError(
            f"{redact(url)} is not a storage URL: give an Optuna RDB URL "
            "(sqlite:///FILE, postgresql://USER@HOST/DB) or the path of a journal file"
        ) from None
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not database.startswith("file:") and not os.path.isabs(database):
            return parsed.set(database=os.path.abspath(database)).render_as_string(False)
    return url


def open_storage(
    url: str | None,
    spec: Spec,
    name: str,
    *,
    create: bool = True,
    echo: Callable[[str], None] | None = None,
) -> tuple[optuna.storages.BaseStorage, str]:
    """The Optuna storage for ``url`` (``--storage``), else ``optuna.storage``, else the
    default journal; with its label for messages (as the user wrote it, passwords hidden).
    Without ``create``, storage that does not exist yet is a :class:`RunError`. A journal's
    torn or bad lines are set aside first, each said on ``echo``."""
    given = url or (spec.optuna.storage if spec.optuna else None)
    where = storage_url(url, spec, name)
    if "://" in where:
        label = redact(given or where)
        return _rdb(where, label, create), label
    label = str(Path(given)) if given is not None else str(default_journal(name))
    if not create and not os.path.exists(where):
        raise RunError(
            f"no sweep state at {label} (the sweep has not run from this folder); "
            "run 'sweepspec run' first, or pass --storage"
        )
    if given is not None and not os.path.exists(where) and where.endswith(_SQLITE_SUFFIXES):
        raise RunError(
            f"the storage {label!r} is taken as an Optuna journal file, but its name says "
            f"SQLite: for an SQLite database write sqlite:///{given}"
        )
    from .journal import JournalError, SafeFileBackend, repair

    try:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        for note in repair(where, label):
            if echo is not None:
                echo(f"sweepspec: {note}")
        backend = SafeFileBackend(where, label)
    except JournalError as exc:
        raise RunError(str(exc)) from None
    except OSError as exc:
        raise RunError(f"cannot open the journal {label}: {exc.strerror}") from None
    return optuna.storages.JournalStorage(backend), label


def _rdb(url: str, label: str, create: bool) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage on ``url``; what the user can fix is one line."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if not create and parsed.get_backend_name() == "sqlite" and database:
        if database != ":memory:" and not os.path.exists(database):
            raise RunError(
                f"no sweep state at {label}: {database} does not exist; run 'sweepspec run' first"
            )
    try:
        with sqlite_setup_lock(url):  # runs starting together: one creates the tables
            return optuna.storages.RDBStorage(url)
    except ImportError as exc:
        raise RunError(_no_driver(parsed.drivername, label, exc)) from None
    except Exception as exc:
        if _raced(exc):
            raise
        raise RunError(_rdb_failed(exc, parsed.get_backend_name(), label)) from None


@contextlib.contextmanager
def sqlite_setup_lock(url: str | None) -> Iterator[None]:
    """For an SQLite file, a lock beside it while its tables are made or checked: processes
    that start together on a new file otherwise race in the schema set-up (Optuna's tables,
    MLflow's migrations) and all but one fail."""
    database = None
    if url is not None and url.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    folder = os.path.dirname(database)
    if folder and not os.path.isdir(folder):
        yield  # the storage's own error says what is wrong with it
        return
    with _file_lock(_beside(database, "setup")):
        yield


def _no_driver(driver: str, label: str, exc: ImportError) -> str:
    cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
    module = cause.name or "its driver"
    if driver in ("postgresql", "postgresql+psycopg"):
        return (
            f"the storage {label} needs the PostgreSQL driver psycopg, which is not installed: "
            "pip install 'sweepspec[postgres]'"
        )
    return f"the storage {label} needs the Python module {module}, which is not installed"


def _rdb_failed(exc: Exception, backend: str, label: str) -> str:
    kind = type(exc).__name__
    if kind == "NoSuchModuleError":
        scheme = label.split("://", 1)[0]
        return (
            f"unknown storage URL scheme {scheme!r} in {label}: give an Optuna RDB URL "
            "(sqlite:///FILE, postgresql://USER@HOST/DB, mysql+pymysql://USER@HOST/DB) or the "
            "path of a journal file"
        )
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split()) or kind
    if kind == "OperationalError" and backend != "sqlite":
        return f"cannot connect to the storage {label}: {text}"
    return f"cannot open the storage {label}: {text}"


def load_study(storage: optuna.storages.BaseStorage, name: str, label: str) -> optuna.Study:
    """The existing study ``name``; :class:`RunError` when there is none."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = f"; it holds {', '.join(repr(n) for n in names)}" if names else ""
        raise RunError(f"no study {name!r} in {label}{known}") from None


@contextlib.contextmanager
def _file_lock(path: str | None) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX ``flock``) for workers on this machine."""
    if path is None:
        yield
        return
    import fcntl

    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def _open_lock(path: str) -> int:
    """A lock file opened for flock (read-only: another user's file on this host will do)."""
    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)


def lock_path(url: str) -> str | None:
    """Beside a journal file, the lock that makes 'count, then ask' atomic across workers."""
    # not "<journal>.lock": Optuna's own journal lock is a symlink of that name
    return None if "://" in url else f"{url}.budget-lock"


def _hold_path(url: str) -> str | None:
    """Beside a journal or an SQLite file, the lock every run of the sweep holds (shared)
    while it runs, and ``--fresh`` must get alone before it deletes anything."""
    if "://" not in url:
        return f"{url}.run-lock"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return _beside(parsed.database, "run")
    return None


def _beside(database: str, kind: str) -> str:
    """A lock for an SQLite file, in the temporary folder (not beside the user's file, so
    no stray file appears in their project): one per file, whoever opens it on this host."""
    import tempfile

    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"sweepspec-{kind}-{digest}.lock")


# ------------------------------------------------------------------- Ctrl-C, SIGTERM, SIGHUP


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's kill, a closed terminal), handled as Ctrl-C is: the
    running trial ends as failed, nothing finished is lost; the exit code is 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done (storage writes must not be
    cut in half); then the first one held is delivered to the handler it had before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


# --------------------------------------------------------------------------- executors


def make_executor(
    spec: Spec, path: str, objectives: list[str], echo: Echo | None, grace: float = TERM_GRACE
) -> Execute:
    """How each run of a trial executes: the spec's function, or its command. Both get what
    W&B's agent gives a run (WANDB_SWEEP_ID is the sweep's name)."""
    folder = os.path.dirname(os.path.abspath(path))
    sweep = study_name(spec, path)
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
        )
    if spec.program is None and spec.command is None:
        raise RunError("nothing to run: give 'function' (module:callable) or 'program'/'command'")
    _check_command(spec, objectives)
    command = Command(spec.command, spec.program, folder, grace, echo, sweep)
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


class _Pruning:
    """Passes the objective to Optuna's pruner: at the count of values reported so far
    (W&B hyperband's iteration) or at the trial's own step (``plan.prune_on``)."""

    def __init__(self, trial: optuna.Trial, prune_on: str) -> None:
        self.trial = trial
        self.prune_on = prune_on
        self.count = 0
        self.steps: set[int] = set()
        self.stop = False

    def __call__(self, value: float, step: int) -> bool:
        self.count += 1
        at = self.count if self.prune_on == "count" else step
        if at in self.steps:
            return self.stop
        self.steps.add(at)
        with deferred_interrupt():
            self.trial.report(value, at)
            self.stop = self.trial.should_prune()
        return self.stop


_AGGREGATE: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
}


@dataclass
class Worker:
    """One process's loop over trials, until the budget says stop."""

    plan: OptunaPlan
    study: optuna.Study
    budget: Budget
    tracker: Tracker
    execute: Execute
    progress: Progress | None = None
    lock_path: str | None = None  # a file beside a journal: workers take turns to ask
    current: optuna.Trial | None = None
    runs: list[tuple[int, Outcome]] = field(default_factory=list)
    monitor: Monitor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0

    def __post_init__(self) -> None:
        spec = self.plan.spec
        self.seeds = spec.seeds.values if spec.seeds else [0]
        self.aggregate = _AGGREGATE[spec.seeds.aggregate if spec.seeds else "mean"]
        self.seeded = spec.seeds is not None
        self.timeout = spec.budget.trial_timeout if spec.budget else None
        self.prunable = len(self.plan.metric_names) == 1 and self.plan.pruner["name"] != "NopPruner"
        # W&B's score (spec ``objective: best``): the best value of the one objective
        self.best = self.plan.directions[0] if self.plan.objective == "best" else None
        self.streak = FailureStreak(self.budget.max_consecutive_failures)
        self.warned = False
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"

    # ---- the loop

    def run(self) -> str:
        """Run trials until a limit is reached; return why. Ctrl-C records the running trial
        as failed before it goes on up."""
        try:
            return self._loop()
        except BaseException as exc:
            with deferred_interrupt():
                self._abandon(
                    interrupt_reason(exc)
                    if isinstance(exc, KeyboardInterrupt)
                    else f"sweepspec stopped: {describe(exc)}"
                )
            raise

    def _loop(self) -> str:
        while True:
            with deferred_interrupt(), _file_lock(self.lock_path):
                reason = self.budget.stop_reason(self.tally()) or self._grid_done()
                trial = self.current = self.study.ask() if reason is None else None
            if trial is None or self._over_budget(trial):
                return reason or "the trial budget is filled by trials of other workers"
            record = self._trial(trial)
            if self.progress is not None:  # workers in other processes show none
                self.progress.trial(
                    record.number, record.state, record.metrics, self.tally(), record.error
                )
            self._check_objective(record)
            failure = self.streak.add(record.number, record.state, record.error)
            if failure is not None:
                raise RunError(failure)

    def _check_objective(self, record: TrialRecord) -> None:
        """A metric name the trial never reports (a typo) would fail every trial: stop after
        the first. Early termination on a metric reported once has nothing to act on: warn."""
        seed, run = self.runs[-1]
        if run.missing and self.plan.metric_names and not self._any_complete():
            raise RunError(_never_reported(record.number, run))
        if not self.prunable or self.warned or record.state != "COMPLETE":
            return
        metric = self.plan.metric_names[0]
        seed, run = self.runs[0]
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
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def _warn(self, line: str) -> None:
        if self.progress is not None:
            self.progress.write(line)
        else:
            sys.stderr.write(line + "\n")

    def tally(self) -> Tally:
        return self.budget.tally(summaries(self.study))

    def _grid_done(self) -> str | None:
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(self.study):
            return "the grid is exhausted: every point has been run"
        return None

    # ---- one trial

    def _over_budget(self, trial: optuna.Trial) -> bool:
        """Workers that share no lock (other machines) can ask at the same moment: the
        storage numbers trials in order, so the later ones give their place back."""
        # under the lock, budget.stop_reason has just made sure finished + running < trials
        if self.lock_path is not None or self.budget.trials is None:
            return False
        taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        ahead = sum(
            1
            for t in self.study.get_trials(deepcopy=False, states=taken)
            if t.number < trial.number
        )
        if ahead < self.budget.trials:
            return False
        with deferred_interrupt():
            trial.set_user_attr(
                ERROR_ATTR, "not run: the trial budget was filled by trials of other workers"
            )
            self.study.tell(trial, state=TrialState.FAIL)
            self.current = None
        return True

    def _trial(self, trial: optuna.Trial) -> TrialRecord:
        with deferred_interrupt():
            self.current, self.runs, self.params = trial, [], {}
            self.started = time.time()
            trial.set_user_attr(WORKER_ATTR, self.worker_id)
            params = self.params = self.plan.suggest(trial)
        nested = self.plan.nest(params)
        pruning = _Pruning(trial, self.plan.prune_on) if self.prunable else None
        for i, seed in enumerate(self.seeds):
            outcome = self._run_seed(nested, seed, trial.number, pruning if i == 0 else None)
            self.runs.append((seed, outcome))
            if outcome.state != "COMPLETE":
                break
        record = self._record(trial.number, params)
        with deferred_interrupt():
            self._tell(trial, record)
            self.current = None
        self.tracker.log_trial(record)
        return record

    def _run_seed(
        self, nested: dict[str, Any], seed: int, number: int, pruning: _Pruning | None
    ) -> Outcome:
        self.monitor = Monitor(
            self.plan.metric_names[0] if self.plan.metric_names else None,
            pruning,
            self.timeout,
            f"seed_{seed}/" if self.seeded else "",
            best=self.best,
        )
        outcome = self.execute(nested, seed, number, self.monitor)
        self.monitor = None
        return outcome

    def _record(self, number: int, params: dict[str, Any]) -> TrialRecord:
        seed, last = self.runs[-1]
        history = [p for _, run in self.runs for p in run.history]
        seeds = (
            [{"seed": s, "metrics": run.metrics} for s, run in self.runs] if self.seeded else None
        )
        record = TrialRecord(
            number,
            params,
            last.state,
            dict(last.metrics),
            history,
            seeds,
            start_ms=int(self.started * 1000),
            end_ms=int(time.time() * 1000),
        )
        if last.state == "FAIL":
            several = self.seeded and len(self.seeds) > 1
            record.error = f"seed {seed}: {last.error}" if several else last.error
        elif last.state == "COMPLETE":
            record.metrics, record.values = self._aggregate()
        return record

    def _aggregate(self) -> tuple[dict[str, float], list[float]]:
        outcomes = [run for _, run in self.runs]
        width = len(outcomes[0].values or [])
        values = [self.aggregate([o.values[k] for o in outcomes if o.values]) for k in range(width)]
        names = [n for n in outcomes[0].metrics if all(n in o.metrics for o in outcomes)]
        metrics = {n: self.aggregate([o.metrics[n] for o in outcomes]) for n in names}
        return metrics, values

    def _cost(self) -> float | None:
        name = self.budget.cost_metric
        if name is None:
            return None
        costs = [run.metrics.get(name, 0.0) for _, run in self.runs]
        return math.fsum(c for c in costs if math.isfinite(c))

    def _tell(self, trial: optuna.Trial, record: TrialRecord) -> None:
        trial.set_user_attr(METRICS_ATTR, record.metrics)
        if record.seeds is not None:
            trial.set_user_attr(SEEDS_ATTR, record.seeds)
        if record.error is not None:
            trial.set_user_attr(ERROR_ATTR, record.error)
            failed = self.runs[-1][1].traceback if self.runs else None
            if failed:
                trial.set_user_attr(TRACEBACK_ATTR, failed)
        cost = self._cost()
        if cost is not None:
            trial.set_user_attr(COST_ATTR, cost)
        state = TrialState[record.state]
        try:
            self.study.tell(
                trial, record.values if state == TrialState.COMPLETE else None, state=state
            )
        except RuntimeError:
            # GridSampler calls study.stop() after the last point; outside optimize() that
            # raises, after the trial's state is stored.
            if not isinstance(self.study.sampler, optuna.samplers.GridSampler):
                raise

    def _abandon(self, reason: str) -> None:
        """The running trial ends as failed; it is logged with what it reported."""
        trial, self.current = self.current, None
        if trial is None:
            return
        if self.monitor is not None:
            self.runs.append(
                (
                    self.seeds[len(self.runs)],
                    Outcome(
                        "FAIL", dict(self.monitor.last), error=reason, history=self.monitor.history
                    ),
                )
            )
        if not self.runs:
            self.runs.append((self.seeds[0], Outcome("FAIL", {}, error=reason)))
        record = self._record(trial.number, self.params)
        record.state, record.error = "FAIL", reason
        self._tell(trial, record)
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


def summaries(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of the study, as the budget counts it."""
    return [_summary(t) for t in study.get_trials(deepcopy=False)]


def _summary(trial: FrozenTrial) -> TrialSummary:
    values = tuple(trial.values) if trial.state == TrialState.COMPLETE and trial.values else None
    cost = trial.user_attrs.get(COST_ATTR, 0.0)
    return TrialSummary(
        trial.number,
        trial.state.name,
        values,
        float(cost) if isinstance(cost, (int, float)) else 0.0,
    )


# --------------------------------------------------------------------------- set-up


# What Optuna's samplers import only when they first need it (optuna/samplers/, _LazyImport):
# missing, the sweep would fail at the first trial past the random start-up ones.
SAMPLER_NEEDS: dict[str, tuple[str, ...]] = {
    "GPSampler": ("torch", "scipy"),
    "CmaEsSampler": ("cmaes",),
    "QMCSampler": ("scipy",),
}


def check_sampler(plan: OptunaPlan) -> None:
    """Refuse, before any trial, a sampler whose dependencies are not installed."""
    import importlib.util

    name = plan.sampler["name"]
    missing = [m for m in SAMPLER_NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise RunError(
            f"the sampler {name} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install "
            f"{' '.join(missing)} (or choose another optuna.sampler)"
        )


@dataclass
class Setup:
    """Everything one sweep needs, shared by the supervisor and its workers."""

    path: str
    plan: OptunaPlan
    name: str
    storage: optuna.storages.BaseStorage
    label: str
    study: optuna.Study
    budget: Budget
    url: str = ""  # the storage with every path absolute: what the workers open
    sweep_id: str = ""
    fresh: bool = False  # the study is replaced (replace_study) once everything is up
    hold: int | None = None  # the lock file held while the sweep runs (a descriptor)


def prepare(
    spec: Spec,
    path: str,
    *,
    storage: str | None = None,
    trials: int | None = None,
    fresh: bool = False,
    deadline: float | None = None,
    echo: Callable[[str], None] | None = None,
    plan: OptunaPlan | None = None,
) -> Setup:
    """Compile, open the storage, create (or resume) the study. With ``fresh``, nothing is
    deleted here: the old study stays until :func:`replace_study`, once the run is up."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = plan or compile_optuna(spec)
    check_sampler(plan)
    name = study_name(spec, path)
    url = storage_url(storage, spec, name)
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            store, label = open_storage(storage, spec, name, echo=echo)
            old = _existing(store, name) if fresh else None
            study = _study(plan, store, name, label, path) if old is None else old
            break
        except (RunError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the storage is the user's: a bad URL, a server down
            if _raced(exc) and attempt + 1 < _OPEN_ATTEMPTS:
                time.sleep(0.2 * (attempt + 1))
                continue
            where = redact(storage) if storage else default_journal(name)
            raise RunError(f"cannot open the Optuna storage {where}: {describe(exc)}") from None
    budget = make_budget(spec, plan, trials, deadline)
    sweep_id = uuid.uuid4().hex if old else study.user_attrs[SWEEP_ID_ATTR]
    return Setup(path, plan, name, store, label, study, budget, url, sweep_id, old is not None)


_OPEN_ATTEMPTS = 8


def _raced(exc: BaseException) -> bool:
    """Workers started together on an empty database all create Optuna's tables; all but
    one hit "duplicate key", "already exists" (PostgreSQL) or "UNIQUE constraint failed",
    "database is locked" (SQLite), and find the tables there on a second try."""
    text = str(exc)
    return type(exc).__name__ in ("IntegrityError", "ProgrammingError", "OperationalError") and (
        any(sign in text for sign in _RACE_SIGNS)
    )


_RACE_SIGNS = ("already exists", "duplicate key", "UNIQUE constraint failed", "database is locked")


def _existing(store: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        return None


def hold_sweep(setup: Setup) -> None:
    """Hold the sweep while this run runs (a shared lock beside a journal or SQLite file);
    ``--fresh`` needs it alone: another run on the sweep is refused, not crashed."""
    path = _hold_path(setup.url)
    if path is None:
        if setup.fresh:
            _refuse_if_running(setup)
        return
    import fcntl

    setup.hold = _open_lock(path)  # held (shared) until the run ends
    mode = fcntl.LOCK_EX if setup.fresh else fcntl.LOCK_SH
    try:
        fcntl.flock(setup.hold, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        release_sweep(setup)
        raise RunError(_held(setup)) from None


def _held(setup: Setup) -> str:
    if setup.fresh:
        return (
            f"another 'sweepspec run' is running sweep {setup.name!r} on {setup.label} (it "
            "holds the sweep), so --fresh deletes nothing; wait for it to end, or stop it, "
            "then run --fresh again"
        )
    return (
        f"a 'sweepspec run --fresh' is replacing sweep {setup.name!r} on {setup.label}; "
        "run again once it has started"
    )


def _refuse_if_running(setup: Setup) -> None:
    """Without a lock file in common (a database server), running trials show another run."""
    host = socket.gethostname()
    for trial in setup.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner != host or (pid.isdigit() and process_alive(int(pid))):
            raise RunError(_held(setup))


def release_sweep(setup: Setup) -> None:
    if setup.hold is not None:
        os.close(setup.hold)
        setup.hold = None


def replace_study(setup: Setup, echo: Callable[[str], None] | None) -> None:
    """``--fresh``, once storage, tracker and executor are up: delete the old study, create
    the new one under the sweep id the tracker was started with, let other runs in again."""
    if not setup.fresh:
        return
    count = len(setup.study.get_trials(deepcopy=False))
    with deferred_interrupt():
        optuna.delete_study(study_name=setup.name, storage=setup.storage)
        setup.study = _study(
            setup.plan, setup.storage, setup.name, setup.label, setup.path, setup.sweep_id
        )
    setup.fresh = False
    if setup.hold is not None:
        import fcntl

        fcntl.flock(setup.hold, fcntl.LOCK_SH)
    if echo is not None:
        echo(
            f"sweepspec: --fresh: deleted study {setup.name!r} ({count} trials) from {setup.label}"
        )


def _study(
    plan: OptunaPlan,
    store: optuna.storages.BaseStorage,
    name: str,
    label: str,
    path: str,
    sweep_id: str | None = None,
) -> optuna.Study:
    try:
        study = plan.create_study(store, name, load_if_exists=True)
    except SearchSpaceChangedError as exc:  # a changed search space, or metric goal
        raise RunError(_changed(name, label, store, exc.what)) from None
    if SWEEP_ID_ATTR not in study.user_attrs:
        study.set_user_attr(SWEEP_ID_ATTR, sweep_id or uuid.uuid4().hex)
        study.set_user_attr(SPEC_ATTR, os.path.abspath(path))
    return study


def _changed(name: str, label: str, store: optuna.storages.BaseStorage, what: str) -> str:
    study = optuna.load_study(study_name=name, storage=store)
    origin = study.user_attrs.get(SPEC_ATTR)
    source = f" (created from {origin})" if origin else ""
    count = len(study.get_trials(deepcopy=False))
    return (
        f"the {what} differs from that of study {name!r} in {label}{source}, which has "
        f"{count} trials; to start a fresh sweep, run again with --fresh (deletes that "
        "study), or give the new one another name (optuna.study_name)"
    )


def make_budget(
    spec: Spec, plan: OptunaPlan, trials: int | None, deadline: float | None = None
) -> Budget:
    budget = spec.budget
    source = "--trials" if trials else "run_cap" if spec.run_cap else "budget.trials"
    wall = budget.wall_clock if budget else None
    if deadline is None and wall is not None:
        deadline = time.time() + wall
    return Budget(
        directions=tuple(plan.directions),
        metric_names=tuple(plan.metric_names),
        trials=trials or plan.n_trials,
        trials_source=source,
        deadline=deadline,
        wall_clock=wall,
        targets=tuple(plan.targets),
        cost_metric=budget.cost.metric if budget and budget.cost else None,
        cost_max=budget.cost.max if budget and budget.cost else None,
        max_consecutive_failures=budget.max_consecutive_failures if budget else 5,
    )


def spec_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fail_stale(study: optuna.Study) -> list[int]:
    """Mark failed the RUNNING trials whose worker process on this host is gone."""
    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        study._storage.set_trial_user_attr(
            trial._trial_id, ERROR_ATTR, f"its worker (pid {pid} on {host}) was killed"
        )
        study.tell(trial.number, state=TrialState.FAIL)
        failed.append(trial.number)
    return failed


# --------------------------------------------------------------------------- the sweep


def run_sweep(
    spec: Spec,
    path: str,
    *,
    tracker: str = "mlflow",
    storage: str | None = None,
    trials: int | None = None,
    workers: int = 1,
    fresh: bool = False,
    grace: float = TERM_GRACE,
    stream: Any = None,
    tty: bool | None = None,
    plan: OptunaPlan | None = None,
) -> Finished:
    """Run (or resume) the sweep of ``spec`` (read from ``path``) until a limit is reached.

    Raises :class:`RunError` for expected failures (bad storage, changed search space, a
    function that cannot be imported, repeated trial failures) and lets KeyboardInterrupt
    through after recording the running trial as failed and flushing the tracker.
    """
    plan = plan or compile_optuna(spec)
    objectives = list(plan.metric_names)
    progress = Progress(
        study_name(spec, path),
        trials or plan.n_trials,
        objectives[0] if objectives else None,
        stream,
        tty,
    )
    execute = make_executor(spec, path, objectives, progress.echo, grace)  # refuse early
    from .journal import JournalError

    try:
        with stop_signals():
            setup = prepare(
                spec,
                path,
                storage=storage,
                trials=trials,
                fresh=fresh,
                echo=progress.write,
                plan=plan,
            )
            hold_sweep(setup)
            try:
                return _run(setup, spec, path, tracker, workers, progress, execute, grace)
            finally:
                release_sweep(setup)
    except JournalError as exc:  # a full disk: nothing of the failed write is left behind
        raise RunError(str(exc)) from None


def _run(
    setup: Setup,
    spec: Spec,
    path: str,
    tracker: str,
    workers: int,
    progress: Progress,
    execute: Execute,
    grace: float,
) -> Finished:
    if not setup.fresh:
        for number in fail_stale(setup.study):
            progress.write(
                f"sweepspec: trial {number} was left RUNNING by a killed worker; marked FAIL"
            )
    workers = bound_workers(workers, setup, progress.write)
    progress.write(_opening(setup, tracker, workers))
    sink = _tracker(tracker, spec, path, setup, progress.write)
    try:
        replace_study(setup, progress.write)  # --fresh: only now that everything is up
    except BaseException:
        with deferred_interrupt():
            sink.close("FAILED")
        raise
    progress.update(setup.budget.tally(summaries(setup.study)))
    reason = _drive(setup, workers, sink, progress, execute, grace)
    where = sink.where()
    if where:
        progress.write(where)
    return Finished(reason, setup.budget.tally(summaries(setup.study)), setup.label)


WORKERS_PER_CPU = 4
"""``--workers`` is capped at this many worker processes per CPU (``os.cpu_count()``)."""


def bound_workers(asked: int, setup: Setup, echo: Callable[[str], None]) -> int:
    """``asked`` workers, but never more than the trials left in the budget, nor more than
    :data:`WORKERS_PER_CPU` per CPU; one line says so when capped."""
    cpus = os.cpu_count() or 1
    tally = setup.budget.tally(summaries(setup.study))
    left = None
    if setup.budget.trials is not None:
        left = max(1, setup.budget.trials - tally.finished - tally.running)
    count = min(asked, cpus * WORKERS_PER_CPU, left or asked)
    if count < asked:
        why = (
            f"{left} trial{'s' if left != 1 else ''} left in the budget"
            if count == left
            else f"at most {WORKERS_PER_CPU} per CPU, {cpus} CPUs"
        )
        echo(f"sweepspec: {asked} workers asked, {count} started ({why})")
    return count


def _drive(
    setup: Setup, workers: int, sink: Tracker, progress: Progress, execute: Execute, grace: float
) -> str:
    """Run the trials here or in worker processes; close the tracker whatever happens."""
    status = "FAILED"
    try:
        if workers == 1:
            reason = Worker(
                setup.plan,
                setup.study,
                setup.budget,
                sink,
                execute,
                progress,
                lock_path(setup.url),
            ).run()
        else:
            reason = _supervise(setup, workers, sink, progress, grace)
        status = "FINISHED"
        return reason
    except KeyboardInterrupt as exc:
        status = "KILLED"
        progress.close()
        progress.write(_interrupted(setup, exc))
        raise
    finally:
        progress.close()
        sink.close(status)  # bounded; Ctrl-C stops it, what is not logged stays queued


def _interrupted(setup: Setup, exc: BaseException) -> str:
    tally = setup.budget.tally(summaries(setup.study))
    by = f" by {exc.name}" if isinstance(exc, Interrupted) else ""
    return (
        f"sweepspec: interrupted{by}; {tally.finished} finished trials are kept in "
        f"{setup.label} (a trial that was running is recorded as failed); run the same "
        "command again to resume"
    )


def _opening(setup: Setup, tracker: str, workers: int) -> str:
    done = 0 if setup.fresh else len(setup.study.get_trials(deepcopy=False))
    where = f"storage {setup.label}, tracker {tracker}"
    several = f", {workers} workers" if workers > 1 else ""
    resumed = f"; resuming after {done} trials" if done else ""
    return f"sweepspec: sweep {setup.name!r} on optuna ({where}{several}){resumed}"


def _tracker(
    name: str, spec: Spec, path: str, setup: Setup, echo: Callable[[str], None]
) -> Tracker:
    uri = _tracking_uri(spec)
    info = sweep_info(setup)
    uri = absolute_uri(uri) if name == "mlflow" else uri
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with sqlite_setup_lock(uri):  # runs starting together: one creates the tables
                sink = make_tracker(
                    name, uri=uri, experiment=experiment_name(spec, path), echo=echo
                )
                sink.start(info)
            return sink
        except ImportError as exc:
            raise RunError(
                f"the {name} tracker needs {exc.name or name}: pip install "
                f"'sweepspec[{name}]', or run with --tracker none"
            ) from None
        except TrackerUnavailable as exc:
            raise RunError(str(exc)) from None
        except Exception as exc:  # the tracking server is the user's
            if _raced(exc) and attempt + 1 < _OPEN_ATTEMPTS:  # runs starting on one new store
                time.sleep(0.2 * (attempt + 1))
                continue
            raise RunError(f"cannot start the {name} tracker: {describe(exc)}") from None
    raise AssertionError("unreachable")


def absolute_uri(uri: str | None) -> str | None:
    """MLflow's store with a relative path made absolute (``tracking.uri``, else
    ``MLFLOW_TRACKING_URI``, else MLflow's default ``./mlruns`` or ``sqlite:///mlflow.db``),
    so that a trial that changes the working directory does not move it."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:"):
        return _absolute_sqlite(uri)
    if uri.startswith("file:") and not uri.startswith("file:///"):
        return Path(os.path.abspath(uri[len("file:") :])).as_uri()
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        return os.path.abspath(uri)
    return uri


def _tracking_uri(spec: Spec) -> str | None:
    return spec.tracking.uri if spec.tracking else None


def sweep_info(setup: Setup) -> SweepInfo:
    """What a tracker records about the sweep of ``setup``."""
    single = len(setup.plan.metric_names) == 1
    if "://" in setup.url:  # a database: the tracker's files go under ./.sweepspec
        state = str(default_journal(setup.name).with_suffix(""))
    else:
        state = setup.url or setup.label
    return SweepInfo(
        name=setup.name,
        engine="optuna",
        sweep_id=setup.sweep_id or setup.study.user_attrs[SWEEP_ID_ATTR],
        spec_path=os.path.abspath(setup.path),
        spec_hash=spec_hash(setup.path),
        artifact=setup.plan.to_json(),
        objective=setup.plan.metric_names[0] if single else None,
        direction=setup.plan.directions[0] if single else "minimize",
        state_path=os.path.abspath(state),
    )


def sync_sweep(spec: Spec, path: str, *, tracker: str, storage: str | None = None) -> int:
    """Log to ``tracker`` what earlier runs of the sweep could not; return how many trials."""
    plan = compile_optuna(spec)
    name = study_name(spec, path)
    store, label = open_storage(storage, spec, name, create=False)
    study = load_study(store, name, label)
    if SWEEP_ID_ATTR not in study.user_attrs:
        raise RunError(f"study {name!r} in {label} was not made by 'sweepspec run'")
    url = storage_url(storage, spec, name)
    budget = make_budget(spec, plan, None)
    setup = Setup(
        path, plan, name, store, label, study, budget, url, study.user_attrs[SWEEP_ID_ATTR]
    )
    uri = _tracking_uri(spec)
    try:
        sink = make_tracker(
            tracker,
            uri=absolute_uri(uri) if tracker == "mlflow" else uri,
            experiment=experiment_name(spec, path),
        )
        return sink.sync(sweep_info(setup))
    except ImportError as exc:
        raise RunError(
            f"the {tracker} tracker needs {exc.name or tracker}: pip install 'sweepspec[{tracker}]'"
        ) from None
    except TrackerUnavailable as exc:
        raise RunError(str(exc)) from None


# --------------------------------------------------------------------------- several workers


def _supervise(setup: Setup, workers: int, sink: Tracker, progress: Progress, grace: float) -> str:
    """Start ``workers`` processes on the storage and follow their trials until all stop."""
    settings = {
        "spec": os.path.abspath(setup.path),
        "storage": setup.url,
        "name": setup.name,
        "trials": setup.budget.trials,
        "deadline": setup.budget.deadline,
        "tracker": sink.name,
        "tracking": sink.worker_settings(),
        "grace": grace,
    }
    argv = [sys.executable, "-m", "sweepspec.runners.optuna", json.dumps(settings)]
    seen = {t.number for t in setup.study.get_trials(deepcopy=False) if t.state.is_finished()}
    # a worker stops as on SIGTERM when this process ends, even killed outright (SIGKILL)
    orphaned = functools.partial(die_with_parent, signal.SIGTERM, os.getpid())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen(argv, start_new_session=True, preexec_fn=orphaned))
        while any(p.poll() is None for p in procs):
            time.sleep(0.25)
            _follow(setup, seen, progress)
        _follow(setup, seen, progress)
    except KeyboardInterrupt as exc:
        _interrupt(procs, interrupt_signal(exc))
        raise
    codes = [p.returncode for p in procs]
    failed = sum(code != 0 for code in codes)
    if failed:
        raise RunError(f"{failed} of {workers} workers stopped with an error (see above)")
    tally = setup.budget.tally(summaries(setup.study))
    return setup.budget.stop_reason(tally) or "every worker stopped"


def _follow(setup: Setup, seen: set[int], progress: Progress) -> None:
    trials = setup.study.get_trials(deepcopy=False)
    tally = setup.budget.tally(_summary(t) for t in trials)
    for trial in trials:
        if trial.state.is_finished() and trial.number not in seen:
            seen.add(trial.number)
            progress.trial(
                trial.number,
                trial.state.name,
                trial.user_attrs.get(METRICS_ATTR, {}),
                tally,
                trial.user_attrs.get(ERROR_ATTR),
            )
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
    """One worker process of ``run --workers N`` (``python -m sweepspec.runners.optuna``)."""
    settings = json.loads(argv[0])
    from ..spec import SpecError, load
    from .journal import JournalError

    try:
        with stop_signals():
            return _work(settings, load)
    except KeyboardInterrupt as exc:
        return 128 + interrupt_signal(exc)
    except (RunError, SpecError, JournalError) as exc:
        sys.stderr.write(f"sweepspec: worker {os.getpid()}: error: {exc}\n")
        return 1


def _work(settings: dict[str, Any], load: Callable[[str], Spec]) -> int:
    sink: Tracker | None = None
    try:
        spec = load(settings["spec"])
        setup = prepare(
            spec,
            settings["spec"],
            storage=settings["storage"],
            trials=settings["trials"],
            deadline=settings["deadline"],
        )
        objectives = list(setup.plan.metric_names)
        execute = make_executor(spec, settings["spec"], objectives, None, settings["grace"])
        sink = make_tracker(settings["tracker"])
        sink.attach(settings["tracking"])
        Worker(
            setup.plan,
            setup.study,
            setup.budget,
            sink,
            execute,
            lock_path=lock_path(setup.url),
        ).run()
        return 0
    finally:
        if sink is not None:
            with deferred_interrupt():
                sink.close()


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
