"""Optuna's database storage as a sweep's worker uses it: what it wrote, it does not read back.

``optuna.create_study`` wraps an ``RDBStorage`` in Optuna's cache (``_CachedStorage``), which
keeps finished trials and reads every new or unfinished trial again, with its parameters,
values and attributes (seven queries through SQLAlchemy's ORM), whenever a list of trials is
asked for. A worker asks for one several times per trial (the budget's count, Optuna's
``ask``, the sampler), and each time read back the trial it was running, all of which it had
written itself; each write looked the trial up first. On a database server every query is a
round trip, and the ORM's work per query costs more than the round trip: together they were
most of a durable sweep's cost (issue 10 item 4).

:class:`WorkerStorage` is that cache, with these rules:

* A trial this process made and runs is kept as this process writes it (its parameters,
  attributes, intermediate values, its end), not read back. Every write still goes to the
  database at once (or at the end of its block, below), so a killed worker loses only its
  running trial, as before.
* A read of a study's trials first asks the database, in one query, which trials are new or
  unfinished (their ids and states); only those that are new, or unfinished and not this
  process's, are read whole, as Optuna reads them. A trial this process runs that another
  worker ended (the heartbeat's dead-worker rule) is read whole from then on.
* On PostgreSQL the writes to a trial this process runs are SQL statements run by the
  driver (psycopg), each checking in itself that the trial is still running (what Optuna
  checks with a query first): a parameter, an attribute, an intermediate value (upserts),
  the end (state and values). A trial is made with its worker's attribute and its first
  heartbeat in one statement, after the study's row is locked (as Optuna numbers trials);
  the heartbeat is an upsert. A write refused because the trial has ended raises Optuna's
  ``UpdateFinishedTrialError``, with Optuna's message. A parameter's first use here is
  checked against the kind the study's trials have (one query, as Optuna checks it). The
  study's making, its id by name and its user attributes are one statement each too: a
  fresh sweep run by one worker goes through none of Optuna's ORM (whose first use costs a
  run's start 0.1 to 0.25 s). Other databases take Optuna's writes.
  A statement outside a transaction (the count's read, a heartbeat, a write outside a block)
  goes on a connection its thread holds, where each statement commits itself, with no
  check-out from SQLAlchemy's pool; the study's lock and ``SET LOCAL`` of the ask's commit
  are one statement.
* :meth:`WorkerStorage.one_transaction` makes several reads and writes one: the trials are
  read at most once in it; on PostgreSQL the writes to a running trial wait until the block
  ends and go as one statement (with the trial's end, when the block ends it), and a
  database transaction is begun only for what needs one (making a trial, Optuna's own
  writes); its statements and its commit go in libpq's pipeline mode, one round trip each,
  and its commit does not wait for the disk (the trial's end, which does, makes it durable
  too). A block that fails leaves its trials to be read again from the database, and drops
  the trials it made if its transaction was rolled back.
* A tell's block (``one_transaction(later=True)``) that needs no transaction sends its
  statement (the trial's attributes and end) in a transaction of its own, on a connection of
  its own, and returns: :meth:`WorkerStorage.told` reads its result (a refusal is kept in
  :attr:`WorkerStorage.refused`) and sends the commit, whose result is not waited for
  either: the trial's rows are that transaction's until the server has committed it (and
  waited for its disk), which goes on while the worker asks for its next trial. The next
  ask's block reads that result just after it has sent its making (below), so the two round
  trips are waited for once (if it has come already, before TPE's sample, so that the
  commit's wait for the disk goes on during the sample: :meth:`WorkerStorage.told_arrived`);
  :meth:`WorkerStorage.settle` waits for the commit (the ask does, before its own commit,
  and the end of the run). A worker killed before the commit
  left leaves its trial RUNNING, as one killed before its tell: the heartbeat's rule fails
  it. The study's next read (which trials are new or unfinished) goes in the same message,
  after the statement; the read that follows (the budget's count) uses it if what it would
  ask is unchanged, so it sees the other workers' trials as they were at the tell.
* An ask's block on PostgreSQL (the trial made, its parameters written) runs on a second
  connection of the storage's own, with no check-out from SQLAlchemy's pool: BEGIN, the
  study's lock and the making in one message, sent when the block begins
  (:meth:`WorkerStorage.premake`) and read when Optuna makes the trial (a block that makes
  none rolls it back); at the block's end its writes and its
  commit go in one message whose result is not waited for: the trial runs meanwhile.
  :meth:`WorkerStorage.settle` (before the trial's end is written, and before the next
  trial is made) reads it; a commit that failed is raised there, and the trials it made are
  dropped from what this worker lists.
  If the block needs Optuna's own write (a queued trial taken, a trial not run here), what
  it made is committed first, waited for, and Optuna's write is a transaction of its own.
* On those two connections of the storage's own (:class:`_Channel`) the statements go at
  libpq's level, not through psycopg's cursors: each prepared once per connection, its
  values sent as text. psycopg's layer (converting each query and its values, its pipeline
  object) took more of a worker's CPU per trial than the server's work.

* :meth:`WorkerStorage.as_kept` gives a study's trials as this process keeps them, asking
  the database nothing: the Optuna engine draws TPE's sample for the next trial so while
  that trial's making and the last trial's end are on their way, and uses it if
  :attr:`WorkerStorage.changes` (the reads that changed what is kept) says the study's read
  that follows brought nothing.

:func:`open_rdb` opens the storage without Optuna's start-up checks (alembic's import and
scripts, about 0.2 s) when the database's schema is already the head of Optuna's migrations
(as its scripts give it); any other database (new, older, newer) gets Optuna's start-up and
its messages.

The tables are Optuna's, written as Optuna writes them (naive UTC datetimes, its value
types, JSON attributes), so Optuna, its dashboard and other workers read them as their own.
This relies on Optuna's private ``_CachedStorage``, ``RDBStorage.scoped_session`` and its
table models; tests/runners/test_rdb.py checks every rule against a real database.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import json
import math
import os
import re
import threading
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from select import select as wait_on  # (sqlalchemy has a select)
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.storages import RDBStorage, _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb import storage as rdb_storage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event, or_, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, with_loader_criteria
from sqlalchemy.pool import PoolProxiedConnection

from .journal import listed

__all__ = ["WorkerStorage", "open_rdb"]

_TRIALS = models.TrialModel.__table__
_PARAMS = models.TrialParamModel.__table__
_VALUES = models.TrialValueModel.__table__
_INTERMEDIATE = models.TrialIntermediateValueModel.__table__
_USER_ATTRS = models.TrialUserAttributeModel.__table__
_SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__

_T = TypeVar("_T")
_Group = tuple[sqlalchemy.Table, tuple[str, ...], bool, int]
"""Rows waiting to be written: their table, key, whether a row of the same key is replaced
(else kept), and their trial's id."""


@dataclass
class _Block:
    """This thread's :meth:`WorkerStorage.one_transaction`."""

    once: set[int] = field(default_factory=set)  # the studies read in it
    ended: list[int] = field(default_factory=list)  # trials ended in it
    made: list[int] = field(default_factory=list)  # trials made in it
    pending: dict[_Group, list[dict[str, Any]]] = field(default_factory=dict)
    ends: dict[int, tuple[TrialState, datetime]] = field(default_factory=dict)  # waiting too
    connection: Connection | None = None  # its database transaction, once begun
    raw: _Channel | None = None  # or its transaction on the storage's asking connection
    committed: bool = False  # that transaction
    before: Any = None  # this thread's ORM session before it
    premade: _Premade | None = None  # a making sent on ``raw``, its result not read yet


@dataclass
class _Premade:
    """A trial's making sent when its block began (:meth:`WorkerStorage.premake`)."""

    study_id: int
    now: datetime  # the trial's start (its statement: :func:`_making`)


_Written = tuple[list[int], list[tuple[int, str]]]
"""A tell's statement's counts (:func:`_writing_pending`) and the study's next read."""


@dataclass
class _Told:
    """A trial's end sent (:meth:`WorkerStorage._send`), its result not read yet."""

    channel: _Channel | None  # None: it could not be sent
    write: Callable[[_Channel], _Written]  # the same, sent and read at once
    expected: list[tuple[int, int]]
    ends: list[int]  # the trials it ends
    asked: dict[str, Any]  # the study's read sent with it (its study: ``asked["study"]``)


class _Channel:
    """A psycopg connection a :class:`WorkerStorage` holds from its engine's pool, for
    transactions of its own. Commands go at libpq's level, in its pipeline mode, several in
    one message: each statement prepared once per connection, its values sent as text;
    their results are read then (:meth:`run`) or later (:meth:`send`, :meth:`results`).
    psycopg's own layer (its queries' conversion, cursors and pipelines) cost a sweep more
    CPU per trial than the server's work; what goes through it (a rollback, a rare check)
    goes with no pipeline open."""

    def __init__(self, held: Any, driver: Any, errors: tuple[type[Exception], ...]) -> None:
        self.held = held  # as the pool lent it
        self.driver = driver
        self.errors = errors
        self.dropped = False
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}  # statement -> its name
        self.names = itertools.count()
        self.sent: list[bytes | None] = []  # per result to come: the statement it prepares

    def send(self, *commands: tuple[str, dict[str, Any] | None]) -> None:
        """``commands`` (statements with ``%(name)s`` parameters, and their values) sent,
        not waited for: :meth:`results` reads them. A failure to send lets the connection
        go (``StorageInternalError``)."""
        try:
            self._send(commands)
        except self.errors as exc:
            self.drop()
            raise _failed(exc) from exc

    def run(self, *commands: tuple[str, dict[str, Any] | None]) -> list[Any]:
        """``commands`` sent and their results waited for; a database error as psycopg
        raises it (a connection the server closed is then ``driver.broken``)."""
        self._send(commands)
        return self.collect()

    def collect(self) -> list[Any]:
        """The results of the commands sent (:meth:`send`), waited for, as :meth:`run` gives
        them."""
        return self._read(raised=True)

    def results(self) -> list[Any]:
        """The results of the commands sent (:meth:`send`), waited for: one per command (a
        statement's rows, or none); a command the server refused raises
        ``StorageInternalError`` with the server's message, its transaction rolled back."""
        try:
            return self._read(raised=False)
        except self.errors as exc:
            self.drop()
            raise _failed(exc) from exc

    def _send(self, commands: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        encoding = self.driver.info.encoding
        given = []  # (every value converted before anything is sent)
        for statement, params in commands:
            query, names = _numbered(statement)
            given.append((query, *_as_text([(params or {})[name] for name in names], encoding)))
        connection = self.driver.pgconn
        self.sent = []
        try:
            connection.enter_pipeline_mode()
            for query, values, types in given:
                name = self.prepared.get((query, types))
                if name is None and len(self.prepared) < _PREPARED:
                    name = self.prepared[query, types] = f"sweepspec_{next(self.names)}".encode()
                    connection.send_prepare(name, query.encode(encoding), types)
                    self.sent.append(name)
                if name is None:  # (too many kinds of statement: the rest are not kept)
                    connection.send_query_params(query.encode(encoding), values, types)
                else:
                    connection.send_query_prepared(name, values)
                self.sent.append(None)
            connection.pipeline_sync()
            while connection.flush():  # (a non-blocking connection: wait until it is sent)
                wait_on([], [connection.socket], [])
        except self.errors:
            raise  # (the caller lets the connection go, or rolls it back)
        except BaseException:  # (Ctrl-C while sending) what was sent is not known: a new one
            self.drop()
            raise

    def _read(self, raised: bool) -> list[Any]:
        sent, self.sent = self.sent, []
        connection = self.driver.pgconn
        found = []
        try:
            while True:
                while connection.is_busy():
                    wait_on([connection.socket], [], [])
                    connection.consume_input()
                result = connection.get_result()
                if result is None:  # (between one command's results and the next's)
                    continue
                if result.status == psycopg.pq.ExecStatus.PIPELINE_SYNC:
                    break
                found.append(result)
            connection.exit_pipeline_mode()
        except self.errors:
            raise  # (the caller lets the connection go, or rolls it back)
        except BaseException:  # (Ctrl-C while waiting) its results are not read: a new one
            self.drop()
            raise
        good = (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK)
        for result in found:
            if result.status in good or result.status == psycopg.pq.ExecStatus.PIPELINE_ABORTED:
                continue
            # a statement prepared in this message may not be there: prepared again
            self.prepared = {k: v for k, v in self.prepared.items() if v not in sent}
            error = psycopg.errors.error_from_result(result, self.driver.info.encoding)
            self.rollback()
            if raised:
                raise error
            raise _failed(result.error_message.decode(errors="replace"))
        return [result for result, prepares in zip(found, sent, strict=True) if prepares is None]

    def rollback(self) -> None:
        """Its transaction rolled back (a new connection next time if that fails)."""
        if self.dropped:
            return
        try:
            self.driver.rollback()
        except self.errors:
            self.drop()

    def drop(self) -> None:
        """It failed: let go of it (a new one next time)."""
        self.dropped = True
        with contextlib.suppress(Exception):
            self.held.invalidate()


class WorkerStorage(_CachedStorage):
    """Optuna's trial cache over ``backend``, keeping the trials this process runs as it
    wrote them; ``new_trial_attrs`` are user attributes every trial made here is born with."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self.new_trial_attrs: dict[str, Any] = {}
        dialect = backend.engine.dialect.name
        self.server = dialect != "sqlite"  # a round trip per query
        self.direct = dialect == "postgresql"  # this module's own writes (see above)
        self._own: dict[int, FrozenTrial] = {}  # trial id -> this process's running trial
        self._seen: dict[int, int] = {}  # study id -> the largest trial id read
        self._ordered: dict[int, list[FrozenTrial]] = {}  # study id -> its trials by number
        self._thread = threading.local()  # this thread's block, and the trials a read leaves out
        self._ender: _Channel | None = None  # the connection the trials' ends are sent on
        self._asker: _Channel | None = None  # the one the trials are made on
        self._sending: list[int] | None = None  # the trials whose end is being committed
        # the trials whose making is being committed, and what the write sent with it must count
        self._asking: tuple[list[int], list[tuple[int, int]]] | None = None
        self._ahead: dict[int, tuple[dict[str, Any], list[Any]]] = {}  # a read sent early
        self._lost: set[int] = set()  # trials made here whose making was not committed
        self._told: _Told | None = None  # the last trial's end sent, its result not read
        self.refused: list[int] = []  # trials whose end was refused there (their numbers)
        self.changes = 0  # times a read, a refused end or an unmade trial changed what is kept
        # one statement, outside a transaction: no BEGIN nor COMMIT to wait for
        self._single = backend.engine.execution_options(isolation_level="AUTOCOMMIT")
        # what a database error is, through SQLAlchemy or from the driver itself (:func:`_sql`)
        self._errors: tuple[type[Exception], ...] = (
            sqlalchemy.exc.SQLAlchemyError,
            backend.engine.dialect.loaded_dbapi.Error,
        )
        event.listen(backend.scoped_session.session_factory, "do_orm_execute", self._leave_out)

    @property
    def born_beating(self) -> bool:
        """Whether a trial made here has its first heartbeat from the start."""
        return self.direct

    # ---- trials made and run here

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None and self.direct:
            return self._create_running(study_id)
        if template_trial is None and self.new_trial_attrs:
            # the worker's attributes in the transaction that makes the trial
            template_trial = _running(-1, -1, datetime.now(), self.new_trial_attrs)
        self._before_optuna()
        trial_id = super().create_new_trial(study_id, template_trial)
        self._made(trial_id)
        with self._lock:
            study = self._studies[study_id]
            trial = study.trials[self._trial_id_to_study_id_and_number[trial_id][1]]
            if template_trial is None or template_trial.state == TrialState.RUNNING:
                self._own[trial_id] = trial
            elif not trial.state.is_finished():  # queued here: read back as the others' are
                study.unfinished_trial_ids.add(trial_id)
        return trial_id

    def _create_running(self, study_id: int) -> int:
        """A running trial, in a transaction: the study's row locked while it is numbered,
        as Optuna does (:func:`_making`); the trial made with the worker's attributes and its
        first heartbeat in the same statement."""
        block = self._block()
        premade = block.premade if block is not None else None
        if premade is not None and premade.study_id == study_id:
            assert block is not None and block.raw is not None
            return self._made_running(study_id, premade.now, self._premade(block, premade))
        if block is not None and premade is not None:
            self._unmake(block)
        now = datetime.now()
        made, params = _making(study_id, now, self.new_trial_attrs)
        channel = None
        if block is not None and block.connection is None:
            channel = block.raw or self._channel("_asker")
        if channel is not None:
            assert block is not None
            self._settle_asking()  # the making before (long committed, as a rule)
            fresh = block.raw is None  # a transaction of its own: it can begin again
            block.raw = channel  # the block's transaction, committed at its end
            block.raw, found = self._retrying(
                "_asker", channel, lambda on: self._make_on(on, study_id, made, params), fresh
            )
        else:
            with self._transaction() as connection:
                found = self._make(_driver(connection), study_id, made, params)
        return self._made_running(study_id, now, found)

    def premake(self, study_id: int) -> None:
        """The study's next trial's making (:meth:`_create_running`) sent now, at the start
        of the block that will ask for it, not waited for: its round trip goes on while the
        block does the rest (the last trial's end read, :meth:`told`), and its result is read
        when Optuna makes the trial. Only in a block with no transaction yet, on PostgreSQL
        with psycopg; a block that makes no trial rolls it back (:meth:`_unmake`)."""
        block = self._block()
        if block is None or block.connection is not None or block.raw is not None:
            return
        channel = self._channel("_asker")
        if channel is None:
            return
        self._settle_asking()  # the making before (long committed, as a rule)
        now = datetime.now()
        made, params = _making(study_id, now, self.new_trial_attrs)
        try:
            channel.send(*_making_message(channel, study_id, made, params))
        except optuna.exceptions.StorageInternalError:
            return  # (the connection is let go: the trial is made when asked, on a new one)
        block.raw = channel
        block.premade = _Premade(study_id, now)

    def premaking(self, study_id: int) -> bool:
        """Whether this thread's block has sent the making of a trial of ``study_id``
        (:meth:`premake`) and not read it yet."""
        block = self._block()
        premade = block.premade if block is not None else None
        return premade is not None and premade.study_id == study_id

    def all_finished(self, study_id: int) -> bool:
        """Whether every trial of ``study_id`` this storage keeps is finished (none running
        here, none of another worker's unfinished when last read), without looking at each."""
        with self._lock:
            study = self._studies.get(study_id)
            if study is not None and study.unfinished_trial_ids:
                return False
            known = self._trial_id_to_study_id_and_number
            return all(known[t][0] != study_id for t in self._own)

    @contextmanager
    def as_kept(self) -> Iterator[None]:
        """Reads of a study in it give the trials as this storage keeps them, asking the
        database nothing (no read is waited for; the block's read of the study is still to
        come). :attr:`changes` tells whether a later read changed what they gave."""
        self._thread.as_kept = True
        try:
            yield
        finally:
            self._thread.as_kept = False

    def _premade(self, block: _Block, premade: _Premade) -> tuple[int, int]:
        """The trial's id and number, from the making sent at the block's start; made
        again on a new connection if the server had closed that one (nothing of it was
        committed); Optuna's error (the transaction rolled back) if the server refused it."""
        block.premade = None
        sent = block.raw

        def make(on: _Channel) -> tuple[int, int]:
            if on is sent:
                return _trial_made(on.collect(), premade.study_id)
            made, params = _making(premade.study_id, premade.now, self.new_trial_attrs)
            return self._make_on(on, premade.study_id, made, params)

        assert sent is not None
        block.raw, found = self._retrying("_asker", sent, make, again=True)
        return found

    def _unmake(self, block: _Block) -> None:
        """A making sent at the block's start that the block did not use: its result read
        and its transaction rolled back (a connection that failed is let go)."""
        block.premade = None
        channel, block.raw = block.raw, None
        assert channel is not None
        try:
            channel.collect()
        except self._errors:  # (rolled back by then, unless the connection is broken)
            if channel.driver.broken:
                channel.drop()
            return
        channel.rollback()

    def _made_running(self, study_id: int, now: datetime, found: tuple[Any, ...]) -> int:
        """The trial made (its id and number ``found``) kept as this process runs it."""
        trial_id, number = found
        trial = _running(number, trial_id, now, self.new_trial_attrs)
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            self._add_trials_to_cache(study_id, [trial])
            self._own[trial_id] = trial
        self._made(trial_id)
        return int(trial_id)

    @staticmethod
    def _make(driver: Any, study_id: int, made: str, params: dict[str, Any]) -> tuple[Any, ...]:
        """:func:`_making`'s statement, after the study's row is locked (:data:`_LOCK_STUDY`),
        in the block's transaction through SQLAlchemy: the trial's id and number."""
        with _pipeline(driver):  # one round trip (BEGIN included)
            driver.execute(_LOCK_STUDY, {"study": study_id})
            making = driver.execute(made, params)
        found = making.fetchone()
        if found is None:
            raise KeyError(f"No study with study_id {study_id} exists.")
        return tuple(found)

    @staticmethod
    def _make_on(
        channel: _Channel, study_id: int, made: str, params: dict[str, Any]
    ) -> tuple[int, int]:
        """:meth:`_make` on the storage's asking connection: its message
        (:func:`_making_message`) in one round trip."""
        return _trial_made(channel.run(*_making_message(channel, study_id, made, params)), study_id)

    def _made(self, trial_id: int) -> None:
        block = self._block()
        if block is not None:
            block.made.append(trial_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        own = self._own.get(trial_id)
        if own is not None:
            return _copied(own)
        return super().get_trial(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._writing(trial_id) as own:
            if own is None or not self.direct:
                self._before_optuna()
                super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
            else:
                with self._lock:
                    study_id = self._trial_id_to_study_id_and_number[trial_id][0]
                    params = self._studies[study_id].param_distribution
                    known = params.get(param_name)
                if known is None:  # the name's first use here: its kind in the study, if any
                    known = self._param_kind(study_id, param_name)
                if known is not None:
                    check_distribution_compatibility(known, distribution)
                with self._lock:
                    params.setdefault(param_name, distribution)  # (as Optuna's cache keeps it)
                row = {
                    "trial_id": trial_id,
                    "param_name": param_name,
                    "param_value": param_value_internal,
                    "distribution_json": optuna.distributions.distribution_to_json(distribution),
                }
                self._write(_PARAMS, row, ("trial_id", "param_name"), update=False)
        if own is not None:
            own.params[param_name] = distribution.to_external_repr(param_value_internal)
            own.distributions[param_name] = distribution

    def _param_kind(self, study_id: int, param_name: str) -> BaseDistribution | None:
        """The distribution of a parameter ``param_name`` of the study's trials, as Optuna
        looks for one before a parameter's first use (any one: they are compatible); None
        if none has it. One query on this thread's connection (in the ask's transaction),
        not Optuna's ORM."""
        with self._direct() as driver:
            found = driver.execute(_PARAM_KIND, {"study": study_id, "name": param_name})
            row = found.fetchone()
        return None if row is None else optuna.distributions.json_to_distribution(row[0])

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attr(_USER_ATTRS, super().set_trial_user_attr, trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attr(_SYSTEM_ATTRS, super().set_trial_system_attr, trial_id, key, value)

    def _set_attr(
        self,
        table: sqlalchemy.Table,
        optunas: Callable[[int, str, Any], None],
        trial_id: int,
        key: str,
        value: Any,
    ) -> None:
        """An attribute (a row of ``table``): this module's write for a trial running here
        on PostgreSQL, else Optuna's (``optunas``); kept on the trial as the database has it."""
        with self._writing(trial_id) as own:
            if own is not None and self.direct:
                self._write_attr(table, trial_id, key, value)
            else:
                self._before_optuna()
                optunas(trial_id, key, value)
        if own is not None:
            attrs = own.user_attrs if table is _USER_ATTRS else own.system_attrs
            attrs[key] = _stored(value)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._writing(trial_id) as own:
            if own is not None and self.direct:
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                    intermediate_value
                )
                row = {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": stored,
                    "intermediate_value_type": kind,
                }
                self._write(_INTERMEDIATE, row, ("trial_id", "step"))
            else:
                self._before_optuna()
                super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        if own is not None:
            own.intermediate_values[step] = intermediate_value

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        ended = datetime.now()
        with self._writing(trial_id) as own:
            if own is not None and self.direct and state.is_finished():
                self._end(trial_id, state, values, ended)
                done = True
            else:
                self._before_optuna()
                done = super().set_trial_state_values(trial_id, state, values)
                ended = datetime.now()
        if own is not None and done and state.is_finished():
            own.state, own.values = state, None if values is None else list(values)
            own.datetime_complete = ended
            with self._lock:
                self._own.pop(trial_id, None)
            if not self.direct:  # Optuna wrote the end: read it back as the database has it
                self._forget(trial_id)
            block = self._block()
            if block is not None:
                block.ended.append(trial_id)
        return done

    def record_heartbeat(self, trial_id: int) -> None:
        if not self.direct:
            super().record_heartbeat(trial_id)
            return
        with self._direct() as driver:
            driver.execute(_BEAT, {"trial": trial_id})

    def delete_study(self, study_id: int) -> None:
        for trial_id in [t for t, (s, _) in self._trial_id_to_study_id_and_number.items()]:
            if self._trial_id_to_study_id_and_number[trial_id][0] == study_id:
                self._own.pop(trial_id, None)
        self._seen.pop(study_id, None)
        self._ordered.pop(study_id, None)
        self._ahead.pop(study_id, None)
        super().delete_study(study_id)

    # ---- the study (PostgreSQL): one statement each, no ORM

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        """Optuna's, on PostgreSQL one statement (the study and its directions) on this
        thread's connection, not Optuna's ORM: its first use configures SQLAlchemy's mappers
        and compiles each statement, 0.1 to 0.25 s of a run's start (a fresh sweep run by one
        worker uses the ORM for nothing else)."""
        if not self.direct or study_name is None or self._block() is not None:
            return super().create_new_study(directions, study_name)
        rows = ", ".join(f"(%(direction{i})s, {i})" for i in range(len(directions)))
        given = {f"direction{i}": d.name for i, d in enumerate(directions)}
        with self._direct() as driver:
            try:
                made = driver.execute(_MAKE_STUDY % rows, {"name": study_name, **given})
            except psycopg.errors.UniqueViolation:
                raise optuna.exceptions.DuplicatedStudyError from None
            study_id = int(_one(made)[0])
        with self._lock:
            study = self._studies[study_id] = _StudyInfo()
            study.name, study.directions = study_name, list(directions)
        return study_id

    def get_study_id_from_name(self, study_name: str) -> int:
        if not self.direct:
            return super().get_study_id_from_name(study_name)
        with self._direct() as driver:
            found = driver.execute(_STUDY_ID, {"name": study_name}).fetchone()
        if found is None:
            raise KeyError(models.NOT_FOUND_MSG)
        return int(found[0])

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        if not self.direct:
            return super().get_study_user_attrs(study_id)
        with self._direct() as driver:
            rows = driver.execute(_STUDY_USER_ATTRS, {"study": study_id}).fetchall()
        if not rows:
            raise KeyError(models.NOT_FOUND_MSG)
        return {key: json.loads(value) for key, value in rows if key is not None}

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        if not self.direct or self._block() is not None:
            super().set_study_user_attr(study_id, key, value)
            return
        with self._direct() as driver:
            try:
                driver.execute(
                    _SET_STUDY_USER_ATTR,
                    {"study": study_id, "key": key, "value": json.dumps(value)},
                )
            except psycopg.errors.ForeignKeyViolation:
                raise KeyError(models.NOT_FOUND_MSG) from None

    # ---- the writes of this module (PostgreSQL)

    def _write_attr(self, table: sqlalchemy.Table, trial_id: int, key: str, value: Any) -> None:
        row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        self._write(table, row, ("trial_id", "key"))

    def _write(
        self,
        table: sqlalchemy.Table,
        row: dict[str, Any],
        key: tuple[str, ...],
        update: bool = True,
    ) -> None:
        """``row`` into ``table`` if its trial is still running (else Optuna's error), over
        the row of the same ``key`` (or, without ``update``, leaving that one). In
        :meth:`one_transaction` it waits for the block's end (or the trial's)."""
        block = self._block()
        if block is not None:
            block.pending.setdefault((table, key, update, row["trial_id"]), []).append(row)
            return
        self._write_pending({(table, key, update, row["trial_id"]): [row]})

    def _end(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None, when: datetime
    ) -> None:
        """The trial's state, end and values, with the writes to it waiting in this block,
        if it is still running: one statement, at once or at the block's end."""
        block = self._block()
        pending = block.pending if block is not None else {}
        for objective, value in enumerate(values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            row = {"trial_id": trial_id, "objective": objective, "value": stored}
            group = (_VALUES, ("trial_id", "objective"), True, trial_id)
            pending.setdefault(group, []).append({**row, "value_type": kind})
        if block is not None:
            block.ends[trial_id] = (state, when)
            return
        self._write_pending(pending, {trial_id: (state, when)})

    def _flush(self) -> None:
        """The writes waiting in this thread's block, written."""
        block = self._block()
        if block is not None and (block.pending or block.ends):
            pending, block.pending = block.pending, {}
            ends, block.ends = block.ends, {}
            self._write_pending(pending, ends)

    def _write_pending(
        self,
        pending: dict[_Group, list[dict[str, Any]]],
        ends: dict[int, tuple[TrialState, datetime]] | None = None,
    ) -> None:
        """One statement: each group's rows into its table if its trial is running, and the
        trials of ``ends`` ended (state, time), their rows written only if their end is; a
        write to a trial that is not running is refused, as Optuna refuses it."""
        written = _writing_pending(pending, ends)
        if written is not None:
            with self._direct() as driver:
                self._check(_one(driver.execute(*written[:2])), written[2], driver)

    def _check(
        self, written: Sequence[int], expected: list[tuple[int, int]], driver: Any = None
    ) -> None:
        """Refuse the write of :func:`_writing_pending` (the counts it ``written``) if a
        trial it wrote to was not running (asked on ``driver``, else this thread's)."""
        ends = [t for t, wanted in expected if wanted == 0]
        done = {t for t, n in zip(ends, written, strict=False) if n}  # (ends come first)
        for (trial_id, wanted), count in zip(expected, written, strict=True):
            if count >= max(wanted, 1) or trial_id in done:  # (the trial's end was written)
                continue
            if driver is None:
                with self._direct() as driver:
                    self._check(written, expected, driver)
                return
            found = driver.execute(_TRIAL_STATE, {"trial": trial_id}).fetchone()
            if found is None or found[1] != TrialState.RUNNING.name:
                self._refused(driver, trial_id)
            # only rows of the same key were there, and kept (a parameter written twice)

    def _refused(self, driver: Any, trial_id: int) -> None:
        """Optuna's error for a write to a trial that has ended (or its KeyError if none)."""
        self._forget(trial_id)
        found = driver.execute(_TRIAL_STATE, {"trial": trial_id}).fetchone()
        if found is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        raise optuna.exceptions.UpdateFinishedTrialError(
            f"Trial#{found[0]} has already finished and can not be updated."
        )

    # ---- connections

    def _block(self) -> _Block | None:
        return getattr(self._thread, "block", None)

    @contextmanager
    def _statement(self) -> Iterator[Connection]:
        """This thread's database transaction, if its block began one; else a connection
        on which each statement commits itself. A database error as Optuna raises it."""
        block = self._block()
        if block is not None and block.connection is not None:
            yield block.connection
            return
        try:
            with self._single.connect() as connection:
                yield connection
        except self._errors as exc:
            raise _failed(exc) from exc

    @contextmanager
    def _direct(self) -> Iterator[Any]:
        """On PostgreSQL, the driver's connection for this thread's statements: its block's
        transaction's if it has begun one; else one this thread holds, on which each
        statement commits itself (no BEGIN nor COMMIT to wait for), with no check-out from
        SQLAlchemy's pool between (it cost as much CPU as the statement). A database error as
        Optuna raises it (the connection held is let go: a new one next time)."""
        block = self._block()
        if block is not None and block.connection is not None:
            yield _driver(block.connection)
            return
        if block is not None and block.raw is not None and block.premade is None:
            try:
                yield block.raw.driver
            except self._errors as exc:
                raise _failed(exc) from exc
            return
        held = getattr(self._thread, "held", None)
        try:
            if held is None:
                held = self._backend.engine.raw_connection()
                _driver(held).autocommit = True
                self._thread.held = held
            yield _driver(held)
        except self._errors as exc:
            self._thread.held = None
            if held is not None:
                with contextlib.suppress(Exception):
                    held.invalidate()
            raise _failed(exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """This thread's database transaction (begun in its block if it has none yet), or
        one of its own, committed at the end."""
        block = self._block()
        if block is not None:
            yield self._begin(block)
            return
        try:
            with self._backend.engine.begin() as connection:
                yield connection
        except self._errors as exc:
            raise _failed(exc) from exc

    def _begin(self, block: _Block) -> Connection:
        """The block's database transaction, begun now if it has none; Optuna's own reads
        and writes (its session) join it."""
        if block.connection is None:
            connection = self._backend.engine.connect()
            connection.begin()
            registry = self._backend.scoped_session.registry
            block.before = registry()
            made = self._backend.scoped_session.session_factory  # with its events
            registry.set(made(bind=connection, join_transaction_mode="rollback_only"))
            block.connection = connection
        return block.connection

    def _before_optuna(self) -> None:
        """Before Optuna's own write: in a block, it joins the block's transaction, after
        the writes waiting there."""
        block = self._block()
        if block is not None:
            if block.premade is not None:  # (a making sent for nothing: Optuna makes its own)
                self._unmake(block)
            if block.raw is not None:  # what it made committed first, with the writes waiting
                self._commit_raw(block)
            self._begin(block)
            self._flush()

    @contextmanager
    def _writing(self, trial_id: int) -> Iterator[FrozenTrial | None]:
        """A write to a trial; one refused because the trial has ended (another worker
        failed it) makes this process read it from the database again."""
        try:
            yield self._own.get(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._forget(trial_id)
            raise

    def _forget(self, trial_id: int) -> None:
        """Read ``trial_id`` from the database from now on (at the next read of its study)."""
        with self._lock:
            self.changes += 1
            self._own.pop(trial_id, None)
            if trial_id in self._trial_id_to_study_id_and_number:
                study_id = self._trial_id_to_study_id_and_number[trial_id][0]
                self._studies[study_id].unfinished_trial_ids.add(trial_id)

    def _drop(self, trial_id: int) -> None:
        """``trial_id`` out of the cache: its making was rolled back."""
        with self._lock:
            self.changes += 1
            self._own.pop(trial_id, None)
            found = self._trial_id_to_study_id_and_number.pop(trial_id, None)
            if found is not None:
                study_id, number = found
                self._study_id_and_number_to_trial_id.pop(found, None)
                study = self._studies[study_id]
                study.trials.pop(number, None)
                study.unfinished_trial_ids.discard(trial_id)
                self._ordered.pop(study_id, None)

    # ---- several reads and writes as one

    @contextmanager
    def one_transaction(self, later: bool = False) -> Iterator[None]:
        """This thread's reads and writes as one, all written at the end or none of them if
        the block fails; the trials read from the database at most once. Optuna's session
        commits inside it do nothing. On PostgreSQL a database transaction is begun only if
        something needs one (see the module's docstring). With ``later``, a block that ends
        a trial and needs no transaction returns before its commit is done: :meth:`settle`
        waits for it."""
        if self._block() is not None:  # within another: part of it
            yield
            return
        block = self._thread.block = _Block()
        try:
            if not self.direct:
                self._begin(block)
            yield
            if block.premade is not None:  # no trial made: the making sent is rolled back
                self._unmake(block)
            if block.raw is not None:  # made on the asking connection: its commit not waited
                self._send_raw(block)
            elif block.connection is None and later and block.ends:
                pending, block.pending = block.pending, {}
                ends, block.ends = block.ends, {}
                self._send(pending, ends)
            elif block.connection is None:
                self._flush()
            elif not self.direct:  # Optuna's writes only
                block.connection.commit()
                block.committed = True
            else:  # the writes waiting and the commit: one round trip
                written = _writing_pending(block.pending, block.ends)
                block.pending, block.ends = {}, {}
                driver = _driver(block.connection)
                with _pipeline(driver):
                    cursor = driver.execute(*written[:2]) if written is not None else None
                    block.connection.commit()
                block.committed = True
                if written is not None:
                    self._check(_one(cursor), written[2], driver)
        except BaseException:  # none of it was written, or it is not known what was
            if block.premade is not None and block.raw is not None:  # its result unread: let go
                block.raw.drop()
            if block.raw is not None and not block.committed:
                block.raw.rollback()
            if (block.connection or block.raw) is not None and not block.committed:
                # rolled back: the trials it made are not there
                for trial_id in block.made:
                    self._drop(trial_id)
            for trial_id in [*self._own, *block.ended]:  # read as the database has them
                self._forget(trial_id)
            raise
        finally:
            self._thread.block = None
            if block.connection is not None:
                registry = self._backend.scoped_session.registry
                registry().close()
                registry.set(block.before)
                block.connection.close()

    def _commit_raw(self, block: _Block) -> None:
        """The block's transaction on the asking connection (the trials it made), with the
        writes waiting in it, committed now; the block goes on as any other."""
        channel = block.raw
        assert channel is not None
        written = _writing_pending(block.pending, block.ends)
        block.pending, block.ends = {}, {}

        writes = [] if written is None else [written[:2]]
        _, results = self._retrying(
            "_asker", channel, lambda on: on.run(*writes, ("COMMIT", None)), again=False
        )
        block.raw = None
        block.made.clear()  # committed: a later rollback of the block leaves them
        if written is not None:
            self._check(_counts(results[0]), written[2], channel.driver)

    def _send_raw(self, block: _Block) -> None:
        """The block's transaction on the asking connection (the trials it made), with the
        writes waiting in it, sent with its commit in one message and not waited for:
        :meth:`settle` (or the next trial's making) reads the result, while the trial runs."""
        channel = block.raw
        assert channel is not None
        written = _writing_pending(block.pending, block.ends)
        block.pending, block.ends = {}, {}
        writes, expected = [], list[tuple[int, int]]()
        if written is not None:
            writes, expected = [written[:2]], written[2]
        channel.send(*writes, ("COMMIT", None))
        self._asking = (list(block.made), expected)
        block.committed = True
        block.raw = None

    def _settle_asking(self) -> None:
        """The result of :meth:`_send_raw`, waited for: the trials it made are in the
        database, or (``StorageInternalError``) they are not, and are dropped here."""
        asking, self._asking = self._asking, None
        if asking is None:
            return
        made, expected = asking
        try:
            results = _results(self._asker)
            if expected:
                try:
                    self._check(_counts(results[0]), expected)
                except optuna.exceptions.UpdateFinishedTrialError as exc:
                    raise optuna.exceptions.StorageInternalError(str(exc)) from None
        except BaseException:
            for trial_id in made:
                self._drop(trial_id)
            self._lost.update(made)
            raise

    def lost(self, trial_id: int) -> bool:
        """Whether ``trial_id`` was made here and its making was not committed (:meth:`settle`
        said so): it is not in the study, and nothing can be written to it."""
        return trial_id in self._lost

    def _send(
        self,
        pending: dict[_Group, list[dict[str, Any]]],
        ends: dict[int, tuple[TrialState, datetime]],
    ) -> None:
        """:meth:`_write_pending` in a transaction on a connection of this storage's own,
        sent and not waited for: :meth:`told` reads the statement's result (the next ask's
        block does, once it has sent its making) and sends the commit, whose result
        :meth:`settle` reads; the trials' rows are this transaction's until it commits. One
        at a time: the one before is settled first. The study's next read (its new and
        unfinished trials) goes in the same message and is kept for it. Without psycopg's
        libpq interface, written at once."""
        self.settle()
        written = _writing_pending(pending, ends)
        if written is None:
            return
        statement, params, expected = written
        channel = self._channel("_ender")
        if channel is None:
            self._write_pending(pending, ends)
            return
        study_id = self._trial_id_to_study_id_and_number[next(iter(ends))][0]
        asked = self._next_read(study_id)[0]
        commands = (statement, params), (_NEW_OR_UNFINISHED, asked)

        def write(on: _Channel) -> _Written:  # BEGIN, the statement, the read: one round trip
            return _ended(on.run(*_begin(on), *commands))

        told = _Told(channel, write, expected, list(ends), asked)
        try:
            channel.send(*_begin(channel), *commands)
        except optuna.exceptions.StorageInternalError:  # (let go: sent again by told())
            told.channel = None
        self._told = told
        self._ahead.pop(study_id, None)

    def told(self) -> None:
        """The result of the trial's end sent last (:meth:`_send`), read, and its commit
        sent (:meth:`settle` reads that): the study's next read, sent with it, kept. A
        connection the server had closed (nothing of it was committed): written again on a
        new one. Refused because the trial had ended (another worker failed it): its number
        kept in :attr:`refused`, and the trial read as the database has it from then on.
        ``StorageInternalError`` if the server failed it (the trial read again too)."""
        told, self._told = self._told, None
        if told is None:
            return
        sent = told.channel

        def read(on: _Channel) -> _Written:
            return _ended(on.collect()) if on is sent else told.write(on)

        try:
            channel = sent or self._channel("_ender")
            assert channel is not None
            channel, (counts, rows) = self._retrying("_ender", channel, read, again=True)
            try:
                self._check(counts, told.expected)
            except BaseException:
                channel.rollback()
                raise
        except optuna.exceptions.UpdateFinishedTrialError:
            numbers = self._trial_id_to_study_id_and_number
            self.refused.extend(numbers[t][1] for t in told.ends)
            for trial_id in told.ends:
                self._forget(trial_id)
            return
        except BaseException:
            for trial_id in told.ends:
                self._forget(trial_id)
            raise
        channel.send(("COMMIT", None))  # (psycopg reads the transaction's state from libpq)
        self._sending = told.ends
        self._ahead[told.asked["study"]] = (told.asked, rows)

    def told_arrived(self) -> bool:
        """Whether the result of the trial's end sent last (:meth:`_send`) has begun to
        come back, so that :meth:`told` reads it without waiting for the server (and sends
        its commit at once)."""
        told = self._told
        if told is None or told.channel is None or told.channel.dropped:
            return False
        return bool(wait_on([told.channel.driver.pgconn.socket], [], [], 0)[0])

    def unsettled(self, ends_only: bool = False) -> str:
        """What :meth:`settle` waits for (with ``ends_only``, :meth:`told`), in words ("the
        start of trial 4", "the end of trial 3"), for a message."""
        starts = [] if ends_only else (self._asking or ([], []))[0]
        if self._told is not None:  # (its commit, in _sending, comes after it)
            ends = self._told.ends
        else:
            ends = [] if ends_only else self._sending or []
        parts = []
        for what, ids in (("the start", starts), ("the end", ends)):
            numbers = [self._trial_id_to_study_id_and_number[t][1] for t in ids]
            if numbers:
                parts.append(f"{what} of trial {', '.join(map(str, numbers))}")
        return " and ".join(parts) or "a trial"

    def settle(self) -> None:
        """Wait for the commits sent and not waited for: the making of the last trial
        (:meth:`one_transaction`'s block that made it), then the end of the last trial
        told (``later``, read first if it was not, :meth:`told`); ``StorageInternalError``
        if one failed (the trials made are then dropped, the trials ended read as the
        database has them)."""
        self._settle_asking()
        self.told()
        trial_ids, self._sending = self._sending, None
        if trial_ids is None:
            return
        try:
            _results(self._ender)
        except BaseException:
            for trial_id in trial_ids:
                self._forget(trial_id)
            raise

    def _retrying(
        self, name: str, channel: _Channel, work: Callable[[_Channel], _T], again: bool
    ) -> tuple[_Channel, _T]:
        """``work(channel)`` on the storage's connection ``name`` (``channel``), and with
        ``again``, once more on a new one if the server had closed it (nothing of its
        transaction was committed); the connection it ran on, and its result. A database
        error as Optuna raises it, the connection rolled back (let go, if it is broken)."""
        while True:
            driver = channel.driver
            try:
                return channel, work(channel)
            except self._errors as exc:
                broken = driver.broken
                if broken:
                    channel.drop()
                else:
                    channel.rollback()
                if not (broken and again):
                    raise _failed(exc) from exc
                again = False
                fresh = self._channel(name)
                assert fresh is not None
                channel = fresh

    def _channel(self, name: str) -> _Channel | None:
        """The storage's connection ``name`` (``_ender``: the trials' ends are sent on it,
        ``_asker``: the trials are made on it), held from the engine's pool, a new one if
        it failed; None with a driver other than psycopg (with pipelines)."""
        channel: _Channel | None = getattr(self, name)
        if channel is None or channel.dropped:
            if not _PIPELINES:
                return None
            held = self._backend.engine.raw_connection()
            driver = held.driver_connection
            if not isinstance(driver, psycopg.Connection):
                held.close()
                return None
            driver.autocommit = False
            # psycopg prepares none of its own here: its rollback would then deallocate
            # every prepared statement, this module's too (DEALLOCATE ALL)
            driver.prepare_threshold = None
            try:
                if driver.info.server_version >= 120000:
                    driver.execute(_GENERIC_PLANS)
                    driver.commit()
            except self._errors as exc:
                held.invalidate()
                raise _failed(exc) from exc
            channel = _Channel(held, driver, self._errors)
            setattr(self, name, channel)
        return channel

    # ---- reading the others' trials

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """Optuna's, with the trials sorted by number once after each change, not at every
        call (a sweep's loop lists them several times per trial). The WAITING trials alone
        (Optuna's ask looks for them first, at every trial) are found among the study's
        unfinished trials, not among all of them, as Optuna's in-memory storage does."""
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            if states == (TrialState.WAITING,):
                return listed(self._still_waiting(study_id), None, deepcopy)
            ordered = self._ordered.get(study_id)
            if ordered is None:
                trials = self._studies[study_id].trials
                ordered = self._ordered[study_id] = sorted(trials.values(), key=_number)
            return listed(ordered, states, deepcopy)

    def _still_waiting(self, study_id: int) -> list[FrozenTrial]:
        """The study's WAITING trials, by number, among its unfinished ones (Optuna's cache
        keeps those and reads them again; a trial is WAITING only from its making)."""
        study = self._studies[study_id]
        numbers = sorted(
            self._trial_id_to_study_id_and_number[t][1] for t in study.unfinished_trial_ids
        )
        return [t for t in map(study.trials.__getitem__, numbers) if t.state == TrialState.WAITING]

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        """Optuna's; the study's trials by number kept if the trials come after them, in
        order (a trial made, or the others' new trials), else sorted again when asked for
        (a study's cost must not grow with its trials at every trial)."""
        ordered = self._ordered.pop(study_id, None)
        super()._add_trials_to_cache(study_id, trials)
        numbers = [ordered[-1].number if ordered else -1, *(t.number for t in trials)]
        if ordered is not None and all(a < b for a, b in itertools.pairwise(numbers)):
            ordered.extend(trials)
            self._ordered[study_id] = ordered

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """The study's new and unfinished trials, asked for by id and state in one query;
        those new, or unfinished and not running here, or running here but ended by another
        worker, read whole as Optuna reads them. In :meth:`one_transaction`, only the first
        read of the study asks the database."""
        if getattr(self._thread, "as_kept", False):
            with self._lock:
                self._studies.setdefault(study_id, _StudyInfo())  # (none kept yet: none)
            return
        block = self._block()
        if block is not None:
            if study_id in block.once:
                return
            block.once.add(study_id)
        if self._told is not None and self._told.asked["study"] == study_id:
            self.told()  # (the study's read sent with it, and what it ended)
        asked, watched, own = self._next_read(study_id)
        known = self._trial_id_to_study_id_and_number  # (this thread alone adds to it)
        seen = asked["seen"]
        study = self._studies[study_id]
        ahead = self._ahead.pop(study_id, None)
        rows: Sequence[Any]
        if ahead is not None and ahead[0] == asked:  # sent with the last end, as it is now
            rows = ahead[1]
        elif self.direct:
            with self._direct() as driver:
                rows = driver.execute(_NEW_OR_UNFINISHED, asked).fetchall()
        else:
            with self._statement() as connection:
                rows = connection.execute(_new_or_unfinished(asked)).all()
        wanted = set()
        for trial_id, state in rows:
            if trial_id in own:
                if _state(state) != TrialState.RUNNING:  # another worker ended it
                    self._forget(trial_id)
                    wanted.add(trial_id)
            elif trial_id not in known or trial_id in watched:
                wanted.add(trial_id)
        if rows:
            with self._lock:
                self._seen[study_id] = max(seen, *(row[0] for row in rows))
        if not wanted:
            return
        with self._lock:
            self.changes += 1
        self._thread.left_out = {t for t in own if t not in wanted}
        try:
            trials = self._backend._get_trials(study_id, None, wanted, max(wanted))
        finally:
            self._thread.left_out = set()
        with self._lock:
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if trial.state.is_finished():
                    study.unfinished_trial_ids.discard(trial._trial_id)
                else:
                    study.unfinished_trial_ids.add(trial._trial_id)

    def _next_read(self, study_id: int) -> tuple[dict[str, Any], set[int], set[int]]:
        """What the study's read asks the database (:data:`_NEW_OR_UNFINISHED`'s
        parameters), the study's unfinished trials known, and those running here."""
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            watched = set(study.unfinished_trial_ids)
            own = {t for t in self._own if self._trial_id_to_study_id_and_number[t][0] == study_id}
            seen = self._seen.get(study_id, -1)
        asked = {"study": study_id, "seen": seen, "ids": sorted(watched | own)}
        return asked, watched, own

    def _leave_out(self, state: ORMExecuteState) -> None:
        left_out: set[int] = getattr(self._thread, "left_out", set())
        if left_out and state.is_select:
            state.statement = state.statement.options(
                with_loader_criteria(models.TrialModel, models.TrialModel.trial_id.not_in(left_out))
            )


# ---- opening: Optuna's start-up checks only where they can find something


def open_rdb(url: str, **options: Any) -> RDBStorage:
    """Optuna's ``RDBStorage(url, **options)``. Its start-up makes the tables that are not
    there, records the schema's version and checks it against Optuna's migrations (importing
    alembic and reading its scripts: about 0.2 s). On a database whose schema is already the
    head of those migrations (its ``alembic_version`` as Optuna's scripts give it, and its
    ``version_info`` row), that is all done already: the storage is opened without them.
    Anything else (a new database, an older or newer schema, scripts this cannot read) gets
    Optuna's own start-up, and what it says."""
    storage = _open_current(url, options)
    if storage is not None:
        return storage
    return RDBStorage(url, **options)


def _open_current(url: str, options: dict[str, Any]) -> RDBStorage | None:
    head = _head_revision()
    if head is None:
        return None
    opened = rdb_storage._VersionManager
    rdb_storage._VersionManager = _CurrentSchema  # type: ignore[misc]
    try:
        storage = RDBStorage(
            url, skip_compatibility_check=True, skip_table_creation=True, **options
        )
    finally:
        rdb_storage._VersionManager = opened  # type: ignore[misc]
    try:
        with storage.engine.connect() as connection:
            revisions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            recorded = connection.execute(text("SELECT count(*) FROM version_info")).scalar()
    except sqlalchemy.exc.DBAPIError:  # no such table: a new database
        revisions, recorded = [], 0
    if revisions == [(head,)] and recorded == 1:
        return storage
    storage.engine.dispose()
    return None


class _CurrentSchema(rdb_storage._VersionManager):
    """Optuna's version manager, on a schema :func:`_open_current` found current: its
    start-up (recording the versions, alembic's look at the database) is not needed; its
    other methods (``upgrade``, the versions) are Optuna's."""

    def _init_version_info_model(self) -> None:
        pass

    def _init_alembic(self) -> None:
        pass


_REVISION = re.compile(r"^(down_)?revision\s*(?::[^=\n]*)?=\s*(?:[\"']([^\"'\n]*)[\"']|None)", re.M)


def _head_revision() -> str | None:
    """The head of Optuna's migration scripts (alembic's), read from their ``revision`` and
    ``down_revision`` lines; None if a script has not exactly one of each, or the scripts
    have not exactly one head."""
    folder = os.path.join(os.path.dirname(rdb_storage.__file__), "alembic", "versions")
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".py")]
        for name in names:
            with open(os.path.join(folder, name), encoding="utf-8") as script:
                found = _REVISION.findall(script.read())
            kinds = sorted(kind for kind, _ in found)
            if kinds != ["", "down_"]:
                return None
            for kind, revision in found:
                (parents if kind else revisions).add(revision)
    except OSError:
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and names else None


# ---- the statements of this module's own writes and reads (PostgreSQL; SQL text, so no
# statement is compiled again per call; Optuna's tables, as Optuna's models declare them)

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_SQL_TYPES = {
    table.name: {c.name: c.type.compile(dialect=_DIALECT) for c in table.c}
    for table in (_PARAMS, _VALUES, _INTERMEDIATE, _USER_ATTRS, _SYSTEM_ATTRS)
}
_STUDY_DIRECTION = models.StudyDirectionModel.__table__.c.direction.type.compile(dialect=_DIALECT)
# the study's row locked, and (SET LOCAL, in the same statement) an ask's commit need not
# wait for the disk: the trial's end, which does, makes it durable too (PostgreSQL writes its
# log in order); a server that crashes in between loses a trial that had not ended
_LOCK_STUDY = (
    "SELECT study_id, set_config('synchronous_commit', 'off', true) FROM studies "
    "WHERE study_id = %(study)s FOR UPDATE"
)
try:
    import psycopg

    _PIPELINES = psycopg.Pipeline.is_supported()
except ImportError:  # another driver: the statements one by one
    _PIPELINES = False
_TRIAL_STATE = "SELECT number, state FROM trials WHERE trial_id = %(trial)s"
# the study and its directions (``%s``: their rows), as Optuna's create_new_study makes them
_MAKE_STUDY = (
    "WITH made AS (INSERT INTO studies (study_name) VALUES (%%(name)s) RETURNING study_id), "
    "directions AS (INSERT INTO study_directions (direction, study_id, objective) "
    f"SELECT CAST(given.direction AS {_STUDY_DIRECTION}), made.study_id, given.objective "
    "FROM made, (VALUES %s) AS given(direction, objective)) "
    "SELECT study_id FROM made"
)
_STUDY_ID = "SELECT study_id FROM studies WHERE study_name = %(name)s"
_PARAM_KIND = (
    "SELECT p.distribution_json FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id "
    "WHERE t.study_id = %(study)s AND p.param_name = %(name)s LIMIT 1"
)
_STUDY_USER_ATTRS = (  # one row with no key: the study is there, with no attribute
    "SELECT a.key, a.value_json FROM studies s LEFT JOIN study_user_attributes a "
    "ON a.study_id = s.study_id WHERE s.study_id = %(study)s"
)
_SET_STUDY_USER_ATTR = (
    "INSERT INTO study_user_attributes (study_id, key, value_json) "
    "VALUES (%(study)s, %(key)s, %(value)s) "
    "ON CONFLICT (study_id, key) DO UPDATE SET value_json = EXCLUDED.value_json"
)
_BEAT = (
    "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (%(trial)s, now()) "
    "ON CONFLICT (trial_id) DO UPDATE SET heartbeat = now()"
)
# the study's trials after the last seen, and the unfinished ones known (of the study, and
# seen already), each part on the trials' primary key (``study_id + 0``: not on the study's
# index, which goes through every trial of the study): with the plans below, 0.05 ms per read
# at 1,000 trials, where one condition with OR took 0.34 ms, and grew with the study
_NEW_OR_UNFINISHED = (
    "SELECT trial_id, state FROM trials WHERE trial_id > %(seen)s AND study_id + 0 = %(study)s "
    "UNION ALL SELECT trial_id, state FROM trials "
    "WHERE trial_id = ANY(%(ids)s) AND trial_id <= %(seen)s"
)
# on the storage's own connections (PostgreSQL 12 and later), each statement's plan is made
# once: every one of them finds its rows by an index whatever its values, and planning one
# afresh at each run (as PostgreSQL does for a range such as the read's) cost 0.1 to 0.2 ms
_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


def _begin(channel: _Channel) -> list[tuple[str, None]]:
    """BEGIN, if ``channel`` has no transaction open."""
    idle = channel.driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return [("BEGIN", None)] if idle else []


def _making_message(
    channel: _Channel, study_id: int, made: str, params: dict[str, Any]
) -> list[tuple[str, dict[str, Any] | None]]:
    """A trial's making on ``channel``, as one message: BEGIN (unless its transaction has
    begun), the study's lock, and the making (:func:`_making`); sent at once
    (:meth:`WorkerStorage._make_on`) or when a block begins (:meth:`WorkerStorage.premake`)."""
    return [*_begin(channel), (_LOCK_STUDY, {"study": study_id}), (made, params)]


def _ended(results: list[Any]) -> _Written:
    """A tell's statement's counts and the study's read after it, from their ``results``."""
    *_, done, ahead = results
    found = range(ahead.ntuples)
    rows = [(int(ahead.get_value(r, 0)), ahead.get_value(r, 1).decode()) for r in found]
    return _counts(done), rows


def _trial_made(results: list[Any], study_id: int) -> tuple[int, int]:
    """The id and number of the trial made (:func:`_making`) in study ``study_id``, from its
    message's ``results``."""
    *_, making = results
    if making.ntuples == 0:
        raise KeyError(f"No study with study_id {study_id} exists.")
    return int(making.get_value(0, 0)), int(making.get_value(0, 1))


def _counts(result: Any) -> list[int]:
    """The one row of integers of a statement's ``result``."""
    return [int(result.get_value(0, i)) for i in range(result.nfields)]


def _failed(error: object) -> optuna.exceptions.StorageInternalError:
    """Optuna's error for a statement that failed, with the database's words on one line
    (the server's CONTEXT, the driver's hints and SQLAlchemy's statement are on lines of
    their own)."""
    return optuna.exceptions.StorageInternalError(
        f"A statement failed: {' '.join(str(error).split())}"
    )


def _results(channel: _Channel | None) -> list[Any]:
    """The results of the command sent on ``channel`` and not waited for, waited for."""
    if channel is None or channel.dropped:
        raise optuna.exceptions.StorageInternalError("the connection was lost")
    return channel.results()


_PREPARED = 64
"""Statements a :class:`_Channel` prepares (a sweep's are a handful); any others go
unnamed."""
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=256)
def _numbered(statement: str) -> tuple[str, tuple[str, ...]]:
    """``statement`` with its ``%(name)s`` parameters as PostgreSQL numbers them (``$1``),
    and their names in that order."""
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        if found[1] not in names:
            names.append(found[1])
        return f"${names.index(found[1]) + 1}"

    return _PLACEHOLDER.sub(number, statement), tuple(names)


def _as_text(values: list[Any], encoding: str) -> tuple[list[bytes | None], tuple[int, ...]]:
    """``values`` as PostgreSQL reads them in text, and their types as psycopg gives them
    (bool, int8, float8, timestamp; a string's left to the server, as psycopg leaves it; an
    enum as its name; a list as an array of integers)."""
    texts: list[bytes | None] = []
    types: list[int] = []
    for value in values:
        if isinstance(value, enum.Enum):
            value = value.name
        elif type(value).__module__ == "numpy":  # a NumPy number: the Python one it holds
            value = value.item()
        oid = 0
        if value is None:
            text = None
        elif isinstance(value, bool):
            text, oid = (b"t" if value else b"f"), 16
        elif isinstance(value, int):
            text, oid = str(int(value)).encode(), 20 if -(2**63) <= value < 2**63 else 1700
        elif isinstance(value, float):
            shown = float.__repr__(value)
            text, oid = (shown.encode() if math.isfinite(value) else _FLOATS[shown]), 701
        elif isinstance(value, datetime):  # (timestamptz with a zone, else timestamp)
            text, oid = value.isoformat(sep=" ").encode(), 1184 if value.tzinfo else 1114
        elif isinstance(value, list):
            text, oid = ("{" + ",".join(str(int(v)) for v in value) + "}").encode(), 1016
        else:
            text = str(value).encode(encoding)
        texts.append(text)
        types.append(oid)
    return texts, tuple(types)


_FLOATS = {"inf": b"Infinity", "-inf": b"-Infinity", "nan": b"NaN"}


def _driver(connection: Connection | PoolProxiedConnection) -> Any:
    """``connection``'s own connection of the driver (psycopg), in its transaction if it has
    one: no SQLAlchemy between, whose work per statement costs more than the round trip to a
    server on this machine."""
    proxied = connection if isinstance(connection, PoolProxiedConnection) else connection.connection
    driver = proxied.driver_connection
    assert driver is not None
    return driver


def _pipeline(driver: Any) -> Any:
    """psycopg's pipeline mode where libpq has it: the statements sent together, their
    results read at the end (or at the first read), one round trip."""
    return driver.pipeline() if _PIPELINES else contextlib.nullcontext()


def _one(cursor: Any) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _new_or_unfinished(asked: dict[str, Any]) -> Any:
    """:data:`_NEW_OR_UNFINISHED` for any database."""
    return (
        select(_TRIALS.c.trial_id, _TRIALS.c.state)
        .where(_TRIALS.c.study_id == asked["study"])
        .where(or_(_TRIALS.c.trial_id > asked["seen"], _TRIALS.c.trial_id.in_(asked["ids"])))
    )


def _writing_pending(
    pending: dict[_Group, list[dict[str, Any]]],
    ends: dict[int, tuple[TrialState, datetime]] | None = None,
) -> tuple[str, dict[str, Any], list[tuple[int, int]]] | None:
    """The statement of :meth:`WorkerStorage._write_pending`, its parameters, and what it
    must count: per trial ended, ``(trial id, 0)`` (one row), then per group ``(trial id,
    rows)``; ``None`` if there is nothing to write."""
    parts, params, expected = [], {}, []
    ended: dict[int, str] = {}
    for trial_id, (state, when) in (ends or {}).items():
        name = ended[trial_id] = f"ended{len(ended)}"
        parts.append(
            f"{name} AS (UPDATE trials SET state = CAST(%({name}_state)s AS trialstate), "
            f"datetime_complete = %({name}_at)s WHERE trial_id = %({name}_trial)s "
            "AND state = 'RUNNING' RETURNING trial_id)"
        )
        params.update(
            {f"{name}_state": state.name, f"{name}_at": _utc(when), f"{name}_trial": trial_id}
        )
        expected.append((name, trial_id, 0))
    for number, (group, rows) in enumerate(pending.items()):
        table, key, replace, trial_id = group
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}  # a key's last write (or first)
        for row in rows:
            if replace or tuple(row[k] for k in key) not in latest:
                latest[tuple(row[k] for k in key)] = row
        name, columns = f"written{number}", list(rows[0])
        given = ", ".join(
            "(" + ", ".join(f"%({name}_{r}_{c})s" for c in range(len(columns))) + ")"
            for r in range(len(latest))
        )
        for r, row in enumerate(latest.values()):
            for c, column in enumerate(columns):
                value = row[column]
                params[f"{name}_{r}_{c}"] = value.name if isinstance(value, enum.Enum) else value
        typed = ", ".join(
            f"CAST(given.c{c} AS {_SQL_TYPES[table.name][column]})"
            for c, column in enumerate(columns)
        )
        source = f"(VALUES {given}) AS given({', '.join(f'c{c}' for c in range(len(columns)))})"
        if trial_id in ended:  # written only if the end is
            source += f" JOIN {ended[trial_id]} ON true"
        else:
            source += (
                f" WHERE EXISTS (SELECT 1 FROM trials WHERE trial_id = %({name}_trial)s "
                "AND state = 'RUNNING')"
            )
            params[f"{name}_trial"] = trial_id
        others = [c for c in columns if c not in key]
        conflict = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others)
            if replace and others
            else "DO NOTHING"
        )
        parts.append(
            f"{name} AS (INSERT INTO {table.name} ({', '.join(columns)}) SELECT {typed} "
            f"FROM {source} ON CONFLICT ({', '.join(key)}) {conflict} RETURNING trial_id)"
        )
        expected.append((name, trial_id, len(latest)))
    if not parts:
        return None
    counts = ", ".join(f"(SELECT count(*) FROM {name})" for name, _, _ in expected)
    statement = f"WITH {', '.join(parts)} SELECT {counts}"
    return statement, params, [(trial_id, wanted) for _, trial_id, wanted in expected]


def _running(number: int, trial_id: int, start: datetime, attrs: dict[str, Any]) -> FrozenTrial:
    """A trial just made, running, with the user attributes ``attrs`` (as the database gives
    them back)."""
    return FrozenTrial(
        number=number,
        state=TrialState.RUNNING,
        value=None,
        values=None,
        datetime_start=start,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs=_stored(attrs),
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )


def _copied(trial: FrozenTrial) -> FrozenTrial:
    """A trial this process runs, as ``get_trial`` gives it: a copy that this storage's
    later writes leave as it is, and that Optuna's ``Trial`` writes to (its parameters,
    attributes and intermediate values, each its own dict; the values themselves are
    shared, as Optuna's own storages share whole trials). A deep copy cost a sampled trial
    about 0.13 ms (two per trial: Optuna's ``Trial`` and its tell). Made by FrozenTrial's
    constructor, not ``copy.copy``, which reads the trial's ``__dict__``: CPython then keeps
    that trial's attributes in a dict of its own, not in the object, and every later read of
    them (the sampler's, through every trial of the study at each ask) costs a quarter more."""
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=trial._values,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=dict(trial._params),
        distributions=dict(trial._distributions),
        user_attrs=dict(trial._user_attrs),
        system_attrs=dict(trial._system_attrs),
        intermediate_values=dict(trial.intermediate_values),
        trial_id=trial._trial_id,
    )


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _state(state: Any) -> TrialState:
    return state if isinstance(state, TrialState) else TrialState[state]


def _making(study_id: int, now: datetime, attrs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One statement: a running trial numbered as Optuna numbers it (the count of the
    study's trials before it), with the user attributes ``attrs`` and its first heartbeat;
    it gives the trial's id and number.

    Each trial is made with the study's row locked (:data:`_LOCK_STUDY`, as Optuna makes
    them), so a study's trials are numbered 0, 1, 2... in the order of their ids: the count
    is the number of the study's last trial (by id) plus one, found at the end of the
    trials' primary key (``study_id + 0``: not through the study's index), where counting
    went through every trial of the study (0.28 ms at 1,000 trials, against 0.07 ms)."""
    params: dict[str, Any] = {"study": study_id, "start": _utc(now)}
    parts = [
        "made AS (INSERT INTO trials (number, study_id, state, datetime_start) "
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM trials WHERE study_id = %(study)s) THEN "
        "(SELECT number + 1 FROM trials WHERE study_id + 0 = %(study)s "
        "ORDER BY trial_id DESC LIMIT 1) ELSE 0 END, study_id, 'RUNNING', "
        "%(start)s FROM studies WHERE study_id = %(study)s RETURNING trial_id, number)",
        "beat AS (INSERT INTO trial_heartbeats (trial_id, heartbeat) SELECT trial_id, now() "
        "FROM made)",
    ]
    if attrs:
        types = _SQL_TYPES[_USER_ATTRS.name]
        given = ", ".join(f"(%(key{i})s, %(value{i})s)" for i in range(len(attrs)))
        for i, (key, value) in enumerate(attrs.items()):
            params[f"key{i}"], params[f"value{i}"] = key, json.dumps(value)
        parts.append(
            "named AS (INSERT INTO trial_user_attributes (trial_id, key, value_json) "
            f"SELECT made.trial_id, CAST(given.k AS {types['key']}), "
            f"CAST(given.v AS {types['value_json']}) FROM made, (VALUES {given}) AS given(k, v))"
        )
    return f"WITH {', '.join(parts)} SELECT trial_id, number FROM made", params


def _utc(moment: datetime) -> datetime:
    """A local time as Optuna's database storage keeps it: naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _stored(value: Any) -> Any:
    """``value`` as the database gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(value))
