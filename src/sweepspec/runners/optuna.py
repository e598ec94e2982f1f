"""The Optuna engine: Optuna's study decides, behind :class:`~.base.Engine`.

The engine-neutral loop (:mod:`.sweep`) runs the trials; this module keeps the study.

* Storage: ``--storage``, else ``optuna.storage`` in the spec, else a journal file under the
  working directory, ``.sweepspec/<study name>.journal`` (Optuna's ``JournalStorage``: durable,
  no server, a few milliseconds per trial). A URL with ``://`` is any Optuna RDB storage
  (``sqlite:///x.db``, ``postgresql://...``); anything else is a journal file path. Every
  relative path is made absolute at start. A journal's torn or bad lines are set aside first
  (:mod:`.journal`).
* The study is named ``optuna.study_name``, else the spec's ``name``, else the spec file's
  stem. Running the same spec again resumes it; a changed search space (or metric goal) is
  refused, and ``--fresh`` replaces the old study, but only in :meth:`OptunaEngine.start`,
  once everything the run needs is up. A run holds the sweep (a shared lock beside a journal
  or SQLite file) until :meth:`OptunaEngine.close`; ``--fresh`` needs it alone.
* ``--workers N`` starts N worker processes on the same storage, Optuna's own multi-process
  model. Workers on one machine take turns to count the budget and ask (a lock beside a
  journal); on a database shared between machines, a trial asked past the budget gives its
  place back (the loop's rule).
* Early termination: the objective is reported to the study's pruner at the count of values
  reported so far (W&B hyperband's iteration) or at the trial's own step (``plan.prune_on``).
* Each trial stores, as user attributes: ``sweepspec.params`` (real values),
  ``sweepspec.metrics`` (final values), ``sweepspec.seeds`` (per-seed values, with
  ``seeds:``), ``sweepspec.error`` and ``sweepspec.traceback`` (failures),
  ``sweepspec.cost`` (with ``budget.cost``), ``sweepspec.times`` (the trial's start and end,
  milliseconds since the epoch, as trackers log them) and ``sweepspec.worker`` (``host:pid``). The
  study's user attribute ``sweepspec.decisions`` lists the decisions of ``sweepspec decide``
  (``trial``, ``why``, ``config``, ``time``), oldest first.
* Dead workers: while a trial runs its worker records a heartbeat (:mod:`.heartbeat`),
  Optuna's own on a database (``RDBStorage(heartbeat_interval=..., grace_period=...)``), the
  system attribute :data:`HEARTBEAT_ATTR` in a journal (Optuna's ``JournalStorage`` has no
  heartbeat); :meth:`OptunaEngine.fail_stale` fails the trials silent for the grace period.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState

from ..compiler.base import SearchSpaceChangedError
from ..compiler.optuna import OptunaPlan, compile_optuna, study_name_for
from ..locks import (
    OPEN_ATTEMPTS,
    absolute_sqlite,
    beside,
    file_lock,
    open_lock,
    raced,
    sqlite_setup_lock,
)
from ..redact import redact
from ..spec import Spec
from ..spec.models import Budget
from .base import Asked, EngineError, EngineOptions
from .budget import Summaries, TrialSummary
from .contract import STATE_DIR, default_journal  # shared with the generated script
from .heartbeat import Heartbeat
from .journal import WorkerJournal
from .trials import describe, iso_ms, process_alive, worker_gone

if TYPE_CHECKING:
    from .rdb import WorkerStorage

__all__ = [
    "COST_ATTR",
    "ERROR_ATTR",
    "METRICS_ATTR",
    "SEEDS_ATTR",
    "STATE_DIR",
    "TRACEBACK_ATTR",
    "WORKER_ATTR",
    "OptunaEngine",
    "find_state",
    "load_study",
    "open_engine",
    "open_storage",
    "study_name",
]

METRICS_ATTR = "sweepspec.metrics"
SEEDS_ATTR = "sweepspec.seeds"
ERROR_ATTR = "sweepspec.error"
TRACEBACK_ATTR = "sweepspec.traceback"
COST_ATTR = "sweepspec.cost"
WORKER_ATTR = "sweepspec.worker"
SWEEP_ID_ATTR = "sweepspec.sweep_id"
HOLD_WAIT = 2.0
"""Seconds a run waits for the sweep's hold before it says another run has it: a run that
has just ended may still be letting go (its trials' last processes, killed, are exiting)."""
SPEC_ATTR = "sweepspec.spec_path"
DECISIONS_ATTR = "sweepspec.decisions"
TIMES_ATTR = "sweepspec.times"
HEARTBEAT_ATTR = "sweepspec:heartbeat"
"""In a journal (which has no heartbeat of Optuna's), the trial system attribute that holds
its worker's last heartbeat, as ``time.time()`` on the worker's machine."""


# --------------------------------------------------------------------------- names, storage


def study_name(spec: Spec, path: str) -> str:
    """``optuna.study_name``, else the spec's ``name``, else the spec file's stem."""
    return study_name_for(spec, path) or Path(path).stem


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
    try:
        return absolute_sqlite(url)
    except ValueError:
        raise EngineError(
            f"{redact(url)} is not a storage URL: give an Optuna RDB URL "
            "(sqlite:///FILE, postgresql://USER@HOST/DB) or the path of a journal file"
        ) from None


def open_storage(
    url: str | None,
    spec: Spec,
    name: str,
    *,
    create: bool = True,
    echo: Callable[[str], None] | None = None,
    heartbeat: tuple[float, float] | None = None,
) -> tuple[optuna.storages.BaseStorage, str]:
    """The Optuna storage for ``url`` (``--storage``), else ``optuna.storage``, else the
    default journal; with its label for messages (as the user wrote it, passwords hidden).
    Without ``create``, storage that does not exist yet is an :class:`EngineError`. A journal's
    torn or bad lines are set aside first, each said on ``echo``. ``heartbeat`` (interval,
    grace period) turns on an RDB storage's own heartbeat."""
    given = url or (spec.optuna.storage if spec.optuna else None)
    where = storage_url(url, spec, name)
    if "://" in where:
        label = redact(given or where)
        return _rdb(where, label, create, heartbeat), label
    label = str(Path(given)) if given is not None else str(default_journal(name))
    if not create and not os.path.exists(where):
        raise EngineError(
            f"no sweep state at {label} (the sweep has not run from this folder); "
            "run 'sweepspec run' first, or pass --storage"
        )
    if given is not None and not os.path.exists(where) and where.endswith(_SQLITE_SUFFIXES):
        raise EngineError(
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
        raise EngineError(str(exc)) from None
    except OSError as exc:
        raise EngineError(f"cannot open the journal {label}: {exc.strerror}") from None
    return WorkerJournal(backend), label


def _rdb(
    url: str, label: str, create: bool, heartbeat: tuple[float, float] | None = None
) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage on ``url``, with its heartbeat (interval, grace period; Optuna
    takes whole seconds) when given; what the user can fix is one line."""
    beat: dict[str, Any] = {}
    if heartbeat is not None:
        interval, grace = heartbeat
        beat = {"heartbeat_interval": math.ceil(interval), "grace_period": math.ceil(grace)}
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if not create and parsed.get_backend_name() == "sqlite" and database:
        if database != ":memory:" and not os.path.exists(database):
            raise EngineError(
                f"no sweep state at {label}: {database} does not exist; run 'sweepspec run' first"
            )
    try:
        with sqlite_setup_lock(url), warnings.catch_warnings():  # one creates the tables
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            from .rdb import WorkerStorage, open_rdb  # (a journal's run does not import it)

            return WorkerStorage(open_rdb(url, **beat))
    except ImportError as exc:
        raise EngineError(_no_driver(parsed.drivername, label, exc)) from None
    except Exception as exc:
        if raced(exc):
            raise
        raise EngineError(_rdb_failed(exc, parsed.get_backend_name(), label)) from None


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
    """The existing study ``name``; :class:`EngineError` when there is none."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = f"; it holds {', '.join(repr(n) for n in names)}" if names else ""
        raise EngineError(f"no study {name!r} in {label}{known}") from None


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
        return beside(parsed.database, "run")
    return None


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
        raise EngineError(
            f"the sampler {name} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install "
            f"{' '.join(missing)} (or choose another optuna.sampler)"
        )


# --------------------------------------------------------------------------- the engine


class _Pruning:
    """One trial's reports to Optuna's pruner: at the count of values reported so far (W&B
    hyperband's iteration) or at the trial's own step (``plan.prune_on``); a step already
    reported gives the decision taken then."""

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
        self.trial.report(value, at)
        self.stop = self.trial.should_prune()
        return self.stop


@dataclass
class _Open:
    """The study as :func:`_open_study` found or made it."""

    store: optuna.storages.BaseStorage
    label: str
    study: optuna.Study
    old: bool  # ``--fresh``: the study is the old one, replaced by :meth:`OptunaEngine.start`
    notes: list[str] = field(default_factory=list)


class OptunaEngine:
    """One sweep's Optuna study, shared by every worker that opens it."""

    name = "optuna"
    artifact_name = "optuna.json"

    def __init__(self, spec: Spec, path: str, options: EngineOptions) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.plan = plan = compile_optuna(spec)
        self.path = path
        self.sweep_name = study_name(spec, path)
        self.url = storage_url(options.storage, spec, self.sweep_name)
        self.artifact = plan.to_json()
        self.prunes = plan.pruner["name"] != "NopPruner"
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.hold: int | None = None
        self.messages: list[str] = []
        self.finished: dict[int, TrialSummary] = {}  # by number: what summaries() made
        self.settled: list[TrialSummary] = []  # the leading finished trials, in order
        budget = spec.budget or Budget()
        self.heartbeat_interval = budget.heartbeat_interval
        self.grace_period: float | None = budget.grace
        if "://" in self.url:  # Optuna's RDB heartbeat counts whole seconds
            self.heartbeat_interval = math.ceil(self.heartbeat_interval)
            self.grace_period = math.ceil(self.grace_period)
        self.beating: Heartbeat | None = None
        self.presampled: _Presampled | None = None  # the next trial's TPE, run early
        if "://" in self.url:  # a database: the tracker's files go under ./.sweepspec
            state = str(default_journal(self.sweep_name).with_suffix(""))
        else:
            state = self.url
        self.state_path = os.path.abspath(state)
        if not options.create:
            self.store, self.label = open_storage(
                options.storage, spec, self.sweep_name, create=False, echo=self._note
            )
            self.study = load_study(self.store, self.sweep_name, self.label)
            self.sweep_id = str(self.study.user_attrs.get(SWEEP_ID_ATTR, ""))
            self.fresh = False
            return
        check_sampler(plan)
        opened = self._open(spec, options)
        self.store, self.label, self.study = opened.store, opened.label, opened.study
        self.messages += opened.notes
        self.fresh = opened.old
        self.sweep_id = uuid.uuid4().hex if opened.old else self.study.user_attrs[SWEEP_ID_ATTR]
        if self.database is not None:  # made with the trial, at once
            self.database.new_trial_attrs = {WORKER_ATTR: self.worker}
        self._hold()

    def _note(self, line: str) -> None:
        self.messages.append(line)

    def _open(self, spec: Spec, options: EngineOptions) -> _Open:
        for attempt in range(OPEN_ATTEMPTS):
            notes: list[str] = []
            try:
                store, label = open_storage(
                    options.storage,
                    spec,
                    self.sweep_name,
                    echo=notes.append,
                    heartbeat=(self.heartbeat_interval, self.grace),
                )
                old = _existing(store, self.sweep_name) if options.fresh else None
                if old is not None:
                    return _Open(store, label, old, True, notes)
                study = _study(self.plan, store, self.sweep_name, label, self.path)
                return _Open(store, label, study, False, notes)
            except (EngineError, KeyboardInterrupt):
                raise
            except Exception as exc:  # the storage is the user's: a bad URL, a server down
                if raced(exc) and attempt + 1 < OPEN_ATTEMPTS:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                where = (
                    redact(options.storage) if options.storage else default_journal(self.sweep_name)
                )
                raise EngineError(
                    f"cannot open the Optuna storage {where}: {describe(exc)}"
                ) from None
        raise AssertionError("unreachable")

    # ---- the run's hold on the sweep, and --fresh

    def _hold(self) -> None:
        """Hold the sweep while this run runs (a shared lock beside a journal or SQLite
        file); ``--fresh`` needs it alone: another run on the sweep is refused, not crashed."""
        path = _hold_path(self.url)
        if path is None:
            if self.fresh:
                self._refuse_if_running()
            return
        self.hold = open_lock(path)  # held (shared) until close()
        mode = fcntl.LOCK_EX if self.fresh else fcntl.LOCK_SH
        ends = time.monotonic() + HOLD_WAIT
        while True:
            try:
                fcntl.flock(self.hold, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= ends:
                    self.close()
                    raise EngineError(self._held()) from None
                time.sleep(0.05)

    def _held(self) -> str:
        if self.fresh:
            return (
                f"another 'sweepspec run' is running sweep {self.sweep_name!r} on {self.label} "
                "(it holds the sweep), so --fresh deletes nothing; wait for it to end, or stop "
                "it, then run --fresh again"
            )
        return (
            f"a 'sweepspec run --fresh' is replacing sweep {self.sweep_name!r} on {self.label}; "
            "run again once it has started"
        )

    def _refuse_if_running(self) -> None:
        """Without a lock file in common (a database server), running trials show another
        run."""
        host = socket.gethostname()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
            if owner != host or (pid.isdigit() and process_alive(int(pid))):
                raise EngineError(self._held())

    def start(self) -> None:
        """``--fresh``, once storage, tracker and executor are up: delete the old study,
        create the new one under the sweep id the tracker was started with, let other runs
        in again."""
        if not self.fresh:
            return
        count = len(self.study.get_trials(deepcopy=False))
        optuna.delete_study(study_name=self.sweep_name, storage=self.store)
        self.study = _study(
            self.plan, self.store, self.sweep_name, self.label, self.path, self.sweep_id
        )
        self.fresh = False
        self.finished.clear()
        self.settled.clear()
        if self.hold is not None:
            fcntl.flock(self.hold, fcntl.LOCK_SH)
        self.messages.append(
            f"sweepspec: --fresh: deleted study {self.sweep_name!r} ({count} trials) from "
            f"{self.label}"
        )

    def close(self) -> None:
        """Let go of the sweep (the hold taken when it was opened), once what was written to
        a journal is on disk."""
        if self.beating is not None:
            self.beating.stop()
            self.beating = None
        store = getattr(self, "store", None)  # none when the opening failed
        try:
            if store is not None:  # a database's last trial end, written meanwhile
                self._settle()
        finally:
            if isinstance(store, WorkerJournal):  # its last trial end on disk
                store.flush()
            if self.hold is not None:
                os.close(self.hold)
                self.hold = None

    @property
    def database(self) -> WorkerStorage | None:
        """The database's storage (:mod:`.rdb`); None for a journal, whose run never
        imports it."""
        return None if isinstance(self.store, WorkerJournal) else cast("WorkerStorage", self.store)

    # ---- the protocol

    @property
    def grace(self) -> float:
        assert self.grace_period is not None
        return self.grace_period

    def ask(self) -> Asked | None:
        with self._one_transaction(), warnings.catch_warnings():
            # Optuna's heartbeat is beaten here, not in optimize()
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
            trial = self.study.ask()
            presampled, self.presampled = self.presampled, None
            if presampled is not None:
                presampled.give(trial)
            try:
                params = self.plan.suggest(trial)
            except BaseException:  # the trial is still this worker's (its death fails it)
                with contextlib.suppress(Exception):
                    self._mark(trial)
                raise
            self._mark(trial)  # after the sampler's reads: a journal writes it with them
            self._settle()  # the last trial's end committed, before this commit
        self._beat(trial._trial_id)
        handle = _Pruning(trial, self.plan.prune_on)
        return Asked(trial.number, params, handle)

    def _mark(self, trial: optuna.Trial) -> None:
        """The worker's attribute on a trial it made (a database's are made with it)."""
        if WORKER_ATTR not in trial.user_attrs:
            trial.set_user_attr(WORKER_ATTR, self.worker)

    def report(self, trial: Asked, value: float, step: int) -> bool:
        pruning: _Pruning = trial.handle
        return pruning(value, step)

    def _beat(self, trial_id: int) -> None:
        """While the trial runs, a thread records its heartbeat: in Optuna's heartbeat table
        on a database (at once, then every interval), as a trial attribute in a journal (the
        trial's start is its first). One thread per worker serves its trials in turn."""
        store, database = self.store, self.database
        if database is not None:
            beat = functools.partial(database.record_heartbeat, trial_id)
            if not database.born_beating:
                beat()
        else:
            beat = functools.partial(_journal_beat, store, trial_id)
        if self.beating is None:
            self.beating = Heartbeat(None, self.heartbeat_interval).start()
        self.beating.follow(beat)

    def _one_transaction(self, later: bool = False) -> contextlib.AbstractContextManager[None]:
        """The reads and writes of a block as one: the budget's count and an ask (the trials
        read once; the trial made, its parameters sampled and written with it), a tell (the
        trial's attributes with its end). In a journal (:class:`.journal.WorkerJournal`),
        one write for a trial's parameters and attributes; on a database server
        (:mod:`.rdb`), one transaction, the study's row locked from the making to the
        commit; not in an SQLite file, whose one writer would wait for the others' blocks.
        With ``later`` (a tell), a database server commits the trial's end while the loop
        goes on: :meth:`_settle` waits for it."""
        database = self.database
        if database is None:
            return cast(WorkerJournal, self.store).one_transaction()
        if database.server:
            return database.one_transaction(later=later)
        return contextlib.nullcontext()

    def _settle(self, ends_only: bool = False) -> None:
        """On a database, wait for the commits not waited for: the last ask's (committed
        while its trial ran) and the end of the trial told last (written while the loop
        went on: the next trial's count and ask, or the run's end); with ``ends_only``, that
        end's statement only (:meth:`.rdb.WorkerStorage.told`). One that failed stops the
        run (a trial whose end was not written is left RUNNING: the heartbeat's rule fails
        it; one whose making was not written is not in the study). An end refused because
        another worker had failed the trial is said (:meth:`_refused`)."""
        database = self.database
        if database is None:
            return
        what = database.unsettled(ends_only)
        try:
            if ends_only:
                database.told()
            else:
                database.settle()
        except optuna.exceptions.StorageInternalError as exc:
            raise EngineError(f"{what} could not be written to {self.label}: {exc}") from None
        finally:
            refused, database.refused = database.refused, []
            for number in refused:
                self._refused(number)

    def _refused(self, number: int) -> None:
        """Another worker heard no heartbeat for the grace period and failed the trial."""
        sys.stderr.write(
            f"sweepspec: warning: trial {number} was marked failed by another worker "
            f"(no heartbeat from this one for {self.grace:g}s, budget.grace_period); its "
            "result is logged but not counted\n"
        )

    def _stop_beating(self) -> None:
        if self.beating is not None:
            self.beating.follow(None)

    def tell(self, trial: Asked, record: Any) -> None:
        self._stop_beating()
        live: optuna.Trial = trial.handle.trial
        self._settle()  # one end written at a time
        database = self.database
        if database is not None and database.lost(live._trial_id):
            return  # its making was not committed (_settle said so): it is not in the study
        try:
            # the trial's attributes with its end: a refusal is raised here, except on
            # PostgreSQL, where the end is sent and its result read at the next ask (.rdb),
            # which says a refusal the same way (_settle)
            with self._one_transaction(later=True):
                self._tell(live, record)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._refused(live.number)

    def _tell(self, live: optuna.Trial, record: Any) -> None:
        live.set_user_attr(METRICS_ATTR, record.metrics)
        if record.seeds is not None:
            live.set_user_attr(SEEDS_ATTR, record.seeds)
        if record.error is not None:
            live.set_user_attr(ERROR_ATTR, record.error)
            if record.traceback:
                live.set_user_attr(TRACEBACK_ATTR, record.traceback)
        if self.plan.spec.budget is not None and self.plan.spec.budget.cost is not None:
            live.set_user_attr(COST_ATTR, record.cost)
        if record.start_ms:
            live.set_user_attr(TIMES_ATTR, [record.start_ms, record.end_ms])
        state = TrialState[record.state]
        values = record.values if state == TrialState.COMPLETE else None
        try:
            # study.tell() is this, and a deep copy of the trial it returns (unused here)
            _tell_with_warning(self.study, live, values, state)
        except RuntimeError:
            # GridSampler calls study.stop() after the last point; outside optimize() that
            # raises, after the trial's state is stored.
            if not isinstance(self.study.sampler, optuna.samplers.GridSampler):
                raise

    def summaries(self) -> list[TrialSummary]:
        """Every trial, as one read of the storage (the journal's new lines only, or the
        database's unfinished and new trials: Optuna's own caches); a finished trial does not
        change, so its summary is made once, and the leading finished trials are not looked
        at again (:class:`.budget.Summaries`)."""
        if self.fresh:  # the old study is replaced at start(): nothing of it counts
            return []
        self._settle(ends_only=True)  # (the last trial's end, as the database took it)
        trials = self.study.get_trials(deepcopy=False)
        head, known = self.settled, self.finished
        while len(head) < len(trials) and trials[len(head)].state.is_finished():
            trial = trials[len(head)]
            summary = known.pop(trial.number, None)
            head.append(summary or _summary(trial))
        out = Summaries(head)
        for trial in trials[len(head) :]:
            summary = known.get(trial.number)
            if summary is None:
                summary = _summary(trial)
                if trial.state.is_finished():
                    known[trial.number] = summary
            out.append(summary)
        out.settled = len(head)
        return out

    def exhausted(self) -> str | None:
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(self.study):
            return "the grid is exhausted: every point has been run"
        return None

    def fail_stale(self) -> list[int]:
        """Mark failed the RUNNING trials whose worker is gone: its process on this host has
        ended, or it sent no heartbeat for the grace period (any host)."""
        if self.fresh:
            return []
        failed = []
        for trial, why in self._stale():
            try:
                self.store.set_trial_user_attr(trial._trial_id, ERROR_ATTR, why)
                self.store.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it ended, or another worker failed it first
            failed.append(trial.number)
        return failed

    def _stale(self) -> Iterator[tuple[FrozenTrial, str]]:
        now = time.time()
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        silent = set()
        if running and (database := self.database) is not None:
            # Optuna's own test (as optuna.storages.fail_stale_trials runs it), by the
            # database's clock
            silent = set(database._get_stale_trial_ids(self.study._study_id))
        for trial in running:
            worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
            if (gone := worker_gone(worker)) is not None:
                yield trial, gone
            elif trial._trial_id in silent or self._silent(trial, now):
                yield (
                    trial,
                    (
                        f"its worker ({worker or 'unknown'}) sent no heartbeat for "
                        f"{self.grace:g}s (budget.grace_period): it was killed or lost its machine"
                    ),
                )

    def _silent(self, trial: FrozenTrial, now: float) -> bool:
        """In a journal: no heartbeat for the grace period, by this machine's clock."""
        if self.database is not None:
            return False
        last = trial.system_attrs.get(HEARTBEAT_ATTR)
        if not isinstance(last, (int, float)):
            start = trial.datetime_start
            last = start.timestamp() if start is not None else now
        return now - last > self.grace

    def ask_lock(self) -> contextlib.AbstractContextManager[None]:
        """The count and the ask as one block of reads and writes (the trials read once for
        both); with a journal, under its lock file."""
        if self.database is not None:
            return self._premaking()
        return self._locked_block()

    @contextlib.contextmanager
    def _premaking(self) -> Iterator[None]:
        """A database's block: on PostgreSQL the next trial's making sent first
        (:meth:`.rdb.WorkerStorage.premake`), and TPE's sample for it drawn while the server
        makes it (:func:`_presample`), then the last trial's end read: the sample hides both
        round trips, and the ask checks it is the one the sampler would draw then. An end
        whose result has come already is read before the sample, and its commit sent: the
        server's wait for its disk goes on during the sample, not in the ask, which waits
        for that commit (:meth:`.rdb.WorkerStorage.told_arrived`; the ask waited 0.6 ms per
        trial for it on a 1,000-trial TPE sweep, 0.17 ms with this). At the block's end
        that end is committed (the ask waits for it anyway), so what the loop does next (the
        tracker's log of the trial) comes after. A sample no trial was asked for gives the
        sampler's draws back."""
        with self._one_transaction():
            database = self.database
            if database is not None and not self.fresh:
                database.premake(self.study._study_id)
                if database.told_arrived():  # its commit (and disk) goes on during the sample
                    self._settle(ends_only=True)
                self.presampled = _presample(self.study, database)
            try:
                self._settle(ends_only=True)
                yield
            finally:
                presampled, self.presampled = self.presampled, None
                if presampled is not None:  # no trial asked: TPE's draws given back
                    presampled.undo()
            self._settle()  # (no trial asked: the last end's commit, before the loop goes on)

    @contextlib.contextmanager
    def _locked_block(self) -> Iterator[None]:
        with file_lock(lock_path(self.url)), self._one_transaction():
            yield

    def records(self) -> Iterator[dict[str, Any]]:
        if self.fresh:
            return
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state != TrialState.WAITING:
                yield trial_row(trial, self.plan)

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        """Each trial's reported objective values by step (Optuna's intermediate values: at
        the count of values reported when ``plan.prune_on`` is ``count``, else the step)."""
        if self.fresh:
            return {}
        return {
            t.number: sorted(t.intermediate_values.items())
            for t in self.study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING
        }

    def worker_settings(self) -> dict[str, Any]:
        return {"storage": self.url}

    def decide(self, decision: dict[str, Any]) -> None:
        """A study user attribute (a finished trial's own attributes are read-only)."""
        self.study.set_user_attr(DECISIONS_ATTR, [*self.decisions(), decision])

    def decisions(self) -> list[dict[str, Any]]:
        if self.fresh:
            return []
        return list(self.study.user_attrs.get(DECISIONS_ATTR) or [])


def _journal_beat(store: optuna.storages.BaseStorage, trial_id: int) -> None:
    store.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


@dataclass
class _Presampled:
    """TPE's relative sample for the trial an ask is about to make, drawn while the
    database makes that trial and reads the last trial's end (:func:`_presample`)."""

    sampler: optuna.samplers.TPESampler
    storage: WorkerStorage
    number: int  # the trial's number, unless another worker made a trial meanwhile
    changes: int  # the storage's :attr:`.rdb.WorkerStorage.changes` when it was drawn
    space: dict[str, optuna.distributions.BaseDistribution]
    params: dict[str, Any]
    state: Any  # the sampler's random state before it

    def give(self, trial: optuna.Trial) -> None:
        """``trial``'s relative parameters are the sample, if it is the trial the sample
        was drawn for and no read since has changed the trials it was drawn from; else the
        sampler's draws are given back, and it samples as it would have. Optuna's own
        ``sample_relative`` gives it (and writes, with ``constant_liar``, the trial's
        attributes that share it with other workers)."""
        if trial.number != self.number or self.storage.changes != self.changes:
            self.undo()
            return
        sampler = self.sampler
        sampler._sample_relative = lambda *_: dict(self.params)  # type: ignore[method-assign]
        try:
            # what Trial.relative_params does, the search space being the one drawn in (the
            # trials it is inferred from are the same; the trial made, running, is not one)
            trial.relative_search_space = self.space
            trial._relative_params = sampler.sample_relative(
                trial.study, trial._cached_frozen_trial, self.space
            )
        finally:
            del sampler._sample_relative

    def undo(self) -> None:
        """The sampler's random state as it was before the sample."""
        self.sampler._rng.rng.set_state(self.state)


def _presample(study: optuna.Study, database: WorkerStorage) -> _Presampled | None:
    """The relative sample of the trial an ask will make (its making sent, not read:
    :meth:`.rdb.WorkerStorage.premake`), drawn now from the trials this worker keeps, so
    that the database's round trips (the making, the last trial's end and the study's
    read) go on meanwhile; :meth:`_Presampled.give` checks it is what the sampler would
    draw then. Only for a study's TPE sampler (not ``group``) whose trials are all finished
    (another worker's running trial is read again at every read: the sample would be drawn
    again), and no Hyperband pruner (which gives the sampler the trial's bracket alone)."""
    from .rdb import _running  # (a database's run: imported already)

    sampler = study.sampler
    if type(sampler) is not optuna.samplers.TPESampler or sampler._group:
        return None  # (with ``group``, Optuna samples each group of the space on its own)
    if isinstance(study.pruner, optuna.pruners.HyperbandPruner):
        return None
    if not database.premaking(study._study_id) or not database.all_finished(study._study_id):
        return None
    changes = database.changes
    with database.as_kept():
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        number = trials[-1].number + 1 if trials else 0
        stand_in = _running(number, -1, datetime.now(), {})  # (its id is the making's)
        state = sampler._rng.rng.get_state()
        try:
            space = sampler.infer_relative_search_space(study, stand_in)
            params = sampler._sample_relative(study, stand_in, space)
        except BaseException:
            sampler._rng.rng.set_state(state)
            raise
        finally:
            study._thread_local.cached_all_trials = None  # (the ask reads them again)
    return _Presampled(sampler, database, number, changes, space, params, state)


def trial_row(trial: FrozenTrial, plan: OptunaPlan) -> dict[str, Any]:
    """One trial as ``results --format json`` shows it."""
    attrs = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    metrics = dict(attrs.get(METRICS_ATTR) or {})
    if not metrics and trial.values is not None:
        metrics = dict(zip(plan.metric_names or ["objective"], trial.values, strict=False))
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "params": plan.real_params(trial),
        "metrics": metrics,
        # what the loop told: Optuna gives a pruned trial its last intermediate value too
        "values": list(trial.values) if complete and trial.values is not None else None,
    }
    if plan.spec.seeds is not None:
        row["seeds"] = attrs.get(SEEDS_ATTR, [])
    if ERROR_ATTR in attrs:
        row["error"] = attrs[ERROR_ATTR]
    times = attrs.get(TIMES_ATTR)
    if times:  # the trial's own start and end, as the trackers log them
        row["datetime_start"], row["datetime_complete"] = iso_ms(times[0]), iso_ms(times[1])
    else:
        row["datetime_start"] = _iso(trial.datetime_start)
        row["datetime_complete"] = _iso(trial.datetime_complete)
    return row


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _summary(trial: FrozenTrial) -> TrialSummary:
    values = tuple(trial.values) if trial.state == TrialState.COMPLETE and trial.values else None
    cost = trial.user_attrs.get(COST_ATTR, 0.0)
    return TrialSummary(
        trial.number,
        trial.state.name,
        values,
        float(cost) if isinstance(cost, (int, float)) else 0.0,
    )


def _existing(store: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        return None


def _study(
    plan: OptunaPlan,
    store: optuna.storages.BaseStorage,
    name: str,
    label: str,
    path: str,
    sweep_id: str | None = None,
) -> optuna.Study:
    """The study ``name``, made if it is not there. Its sweep id is set by the run that
    made it (storage makes exactly one): runs starting together on a new study (machines
    sharing a database) all wait for that one's id, so every tracker groups their trials
    under one sweep."""
    try:
        try:
            study = plan.create_study(store, name, load_if_exists=False)
            made = True
        except optuna.exceptions.DuplicatedStudyError:
            study = plan.create_study(store, name, load_if_exists=True)
            made = False
    except SearchSpaceChangedError as exc:  # a changed search space, or metric goal
        raise EngineError(_changed(name, label, store, exc.what)) from None
    if not made:
        _await_sweep_id(study)
    if SWEEP_ID_ATTR not in study.user_attrs:  # made here, or made by a run that died
        study.set_user_attr(SWEEP_ID_ATTR, sweep_id or uuid.uuid4().hex)
        study.set_user_attr(SPEC_ATTR, os.path.abspath(path))
    return study


SWEEP_ID_WAIT = 10.0
"""Seconds a run waits for the run that made a new study to give it its sweep id."""


def _await_sweep_id(study: optuna.Study) -> None:
    """A study another run has just made gets its sweep id from it in a moment; a study
    with trials but no id was made by Optuna itself (no wait)."""
    deadline = time.monotonic() + SWEEP_ID_WAIT
    while SWEEP_ID_ATTR not in study.user_attrs and time.monotonic() < deadline:
        if study.get_trials(deepcopy=False):
            return
        time.sleep(0.05)


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


# --------------------------------------------------------------------------- the registry's


def open_engine(spec: Spec, path: str, options: EngineOptions) -> OptunaEngine:
    """The Optuna engine on the sweep of ``spec`` (read from ``path``)."""
    return OptunaEngine(spec, path, options)


def find_state(spec: Spec, path: str, storage: str | None) -> float | None:
    """When the sweep's journal was last written, or None when there is none; a database
    (only this engine uses one) counts as there, written at time 0. For ``results``."""
    url = storage or (spec.optuna.storage if spec.optuna else None)
    if url is not None and "://" in url:
        return 0.0
    where = url if url is not None else str(default_journal(study_name(spec, path)))
    return os.path.getmtime(where) if os.path.exists(where) else None
