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
  database at once, so a killed worker loses only its running trial, as before.
* A read of a study's trials first asks the database, in one query, which trials are new or
  unfinished (their ids and states); only those that are new, or unfinished and not this
  process's, are read whole, as Optuna reads them. A trial this process runs that another
  worker ended (the heartbeat's dead-worker rule) is read whole from then on.
* On PostgreSQL the writes to a trial this process runs are single statements that check
  the trial is still running in the statement itself (what Optuna checks with a query
  first): a trial made with its worker's attribute, a parameter, an attribute, an
  intermediate value (an upsert), the end (state and values), and the heartbeat. A write
  refused because the trial has ended raises Optuna's ``UpdateFinishedTrialError``, as
  Optuna does. Other databases take Optuna's own writes.
* :meth:`WorkerStorage.one_transaction` makes several reads and writes one transaction.

The tables are Optuna's, written as Optuna writes them (naive UTC datetimes, its value
types, JSON attributes), so Optuna, its dashboard and other workers read them as their own.
This relies on Optuna's private ``_CachedStorage``, ``RDBStorage.scoped_session`` and its
table models; tests/runners/test_rdb.py checks every rule against a real database.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.storages import RDBStorage, _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, with_loader_criteria

__all__ = ["WorkerStorage"]

_TRIALS = models.TrialModel.__table__
_STUDIES = models.StudyModel.__table__
_PARAMS = models.TrialParamModel.__table__
_VALUES = models.TrialValueModel.__table__
_INTERMEDIATE = models.TrialIntermediateValueModel.__table__
_USER_ATTRS = models.TrialUserAttributeModel.__table__
_SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__
_HEARTBEATS = models.TrialHeartbeatModel.__table__


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
        self._reading = threading.local()  # this thread's transaction and its state
        # reads outside a transaction: no commit to wait for
        self._reader = backend.engine.execution_options(isolation_level="AUTOCOMMIT")
        event.listen(backend.scoped_session.session_factory, "do_orm_execute", self._leave_out)

    # ---- trials made and run here

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None and self.direct:
            return self._create_running(study_id)
        if template_trial is None and self.new_trial_attrs:
            # the worker's attributes in the transaction that makes the trial
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs=_stored(self.new_trial_attrs),
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            with self._lock:
                study = self._studies[study_id]
                self._own[trial_id] = study.trials[
                    self._trial_id_to_study_id_and_number[trial_id][1]
                ]
        return trial_id

    def _create_running(self, study_id: int) -> int:
        """A running trial, in one transaction: the study's row locked while its trials are
        counted for the number, as Optuna does; the trial made with the worker's attributes
        and its first heartbeat in the same statement."""
        now = datetime.now()
        with self._connection() as connection:
            found = connection.execute(
                select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id).with_for_update()
            ).first()
            if found is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            trial_id, number = connection.execute(_made(study_id, now, self.new_trial_attrs)).one()
        trial = FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=now,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs=_stored(self.new_trial_attrs),
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            self._add_trials_to_cache(study_id, [trial])
            self._own[trial_id] = trial
        return int(trial_id)

    @property
    def born_beating(self) -> bool:
        """Whether a trial made here has its first heartbeat from the start."""
        return self.direct

    def get_trial(self, trial_id: int) -> FrozenTrial:
        own = self._own.get(trial_id)
        if own is not None:
            return copy.deepcopy(own)
        return super().get_trial(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._writing(trial_id) as own:
            known = None
            if own is not None and self.direct:
                with self._lock:
                    study_id = self._trial_id_to_study_id_and_number[trial_id][0]
                    known = self._studies[study_id].param_distribution.get(param_name)
            if known is None:  # the study's first use of the name: Optuna checks its kind
                self._flush()
                super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
            else:
                check_distribution_compatibility(known, distribution)
                row = {
                    "trial_id": trial_id,
                    "param_name": param_name,
                    "param_value": param_value_internal,
                    "distribution_json": optuna.distributions.distribution_to_json(distribution),
                }
                self._write_running(_PARAMS, row, ("trial_id", "param_name"), update=False)
        if own is not None:
            own.params[param_name] = distribution.to_external_repr(param_value_internal)
            own.distributions[param_name] = distribution

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._writing(trial_id) as own:
            if own is not None and self.direct:
                self._write_attr(_USER_ATTRS, trial_id, key, value)
            else:
                self._flush()
                super().set_trial_user_attr(trial_id, key, value)
        if own is not None:
            own.user_attrs[key] = _stored(value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._writing(trial_id) as own:
            if own is not None and self.direct:
                self._write_attr(_SYSTEM_ATTRS, trial_id, key, value)
            else:
                self._flush()
                super().set_trial_system_attr(trial_id, key, value)
        if own is not None:
            own.system_attrs[key] = _stored(value)

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
                self._write_running(_INTERMEDIATE, row, ("trial_id", "step"))
            else:
                self._flush()
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
                self._flush()
                done = super().set_trial_state_values(trial_id, state, values)
                ended = datetime.now()
        if own is not None and done and state.is_finished():
            own.state, own.values = state, None if values is None else list(values)
            own.datetime_complete = ended
            with self._lock:
                self._own.pop(trial_id, None)
            if not self.direct:  # Optuna wrote the end: read it back as the database has it
                self._forget(trial_id)
            ended_here = getattr(self._reading, "ended", None)
            if ended_here is not None:
                ended_here.append(own)
        return done

    def _end(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None, when: datetime
    ) -> None:
        """The trial's state, end and values in one statement, if it is still running."""
        ended = (
            update(_TRIALS)
            .where(_TRIALS.c.trial_id == trial_id, _TRIALS.c.state == TrialState.RUNNING)
            .values(state=state, datetime_complete=_utc(when))
            .returning(_TRIALS.c.trial_id)
            .cte("ended")
        )
        rows = []
        for objective, value in enumerate(values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            rows.append((objective, stored, kind))
        statement: Any = select(ended.c.trial_id)
        if rows:
            given = sqlalchemy.values(
                sqlalchemy.column("objective", _VALUES.c.objective.type),
                sqlalchemy.column("value", _VALUES.c.value.type),
                sqlalchemy.column("value_type", _VALUES.c.value_type.type),
                name="given",
            ).data(rows)
            columns = ["trial_id", "objective", "value", "value_type"]
            chosen = select(
                ended.c.trial_id, *(_typed(given.c[c], _VALUES.c[c]) for c in columns[1:])
            ).select_from(ended.join(given, sqlalchemy.true()))  # one row each
            kept = _upsert(_VALUES, chosen, ("trial_id", "objective"), columns).cte("kept")
            statement = statement.add_cte(kept)
        with self._connection() as connection:
            self._flush()
            if connection.execute(statement).first() is None:
                self._refused(trial_id)

    def record_heartbeat(self, trial_id: int) -> None:
        if not self.direct:
            super().record_heartbeat(trial_id)
            return
        beat = insert(_HEARTBEATS).values(trial_id=trial_id, heartbeat=func.now())
        with self._connection() as connection:
            connection.execute(
                beat.on_conflict_do_update(
                    index_elements=["trial_id"], set_={"heartbeat": func.now()}
                )
            )

    def delete_study(self, study_id: int) -> None:
        for trial_id in [t for t, (s, _) in self._trial_id_to_study_id_and_number.items()]:
            if self._trial_id_to_study_id_and_number[trial_id][0] == study_id:
                self._own.pop(trial_id, None)
        self._seen.pop(study_id, None)
        super().delete_study(study_id)

    # ---- the writes of this module (PostgreSQL)

    def _write_attr(self, table: sqlalchemy.Table, trial_id: int, key: str, value: Any) -> None:
        row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        self._write_running(table, row, ("trial_id", "key"))

    def _write_running(
        self,
        table: sqlalchemy.Table,
        row: dict[str, Any],
        key: tuple[str, ...],
        update: bool = True,
    ) -> None:
        """``row`` into ``table`` if its trial is still running (else Optuna's error), over
        the row of the same ``key`` (or, without ``update``, leaving that one). In
        :meth:`one_transaction`, the rows of a table are written together, as one statement,
        before the next other write and at the end."""
        pending = getattr(self._reading, "pending", None)
        if pending is not None:
            pending.setdefault((table, key, update, row["trial_id"]), []).append(row)
            return
        self._write_rows(table, [row], key, update)

    def _flush(self) -> None:
        """The rows :meth:`_write_running` holds in this thread's transaction, written."""
        pending = getattr(self._reading, "pending", None)
        while pending:
            (table, key, update, _), rows = pending.popitem()
            self._write_rows(table, rows, key, update)

    def _write_rows(
        self,
        table: sqlalchemy.Table,
        rows: list[dict[str, Any]],
        key: tuple[str, ...],
        update: bool,
    ) -> None:
        trial_id = rows[0]["trial_id"]
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}  # a key's last write (or first)
        for row in rows:
            if update or tuple(row[k] for k in key) not in latest:
                latest[tuple(row[k] for k in key)] = row
        columns = list(rows[0])
        given = sqlalchemy.values(
            *(sqlalchemy.column(c, table.c[c].type) for c in columns), name="given"
        ).data([tuple(row[c] for c in columns) for row in latest.values()])
        running = sqlalchemy.exists().where(
            _TRIALS.c.trial_id == trial_id, _TRIALS.c.state == TrialState.RUNNING
        )
        chosen = select(*(_typed(given.c[c], table.c[c]) for c in columns)).where(running)
        with self._connection() as connection:
            upsert = _upsert(table, chosen, key, columns, update)
            written = connection.execute(upsert.execution_options(preserve_rowcount=True)).rowcount
            if written < len(latest):
                found = connection.execute(
                    select(_TRIALS.c.state).where(_TRIALS.c.trial_id == trial_id)
                ).first()
                if found is None or found[0] != TrialState.RUNNING:
                    self._refused(trial_id)
                # only rows of the same key were there, and kept (a parameter written twice)

    def _refused(self, trial_id: int) -> None:
        """Optuna's error for a write to a trial that has ended (or its KeyError if none)."""
        self._forget(trial_id)
        trial = self._backend.get_trial(trial_id)
        self.check_trial_is_updatable(trial_id, trial.state)
        raise optuna.exceptions.StorageInternalError(f"trial {trial_id} was not written")

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """This thread's transaction (:meth:`one_transaction`), or one of its own committed at
        the end; a database error as Optuna raises it."""
        bound: Connection | None = getattr(self._reading, "connection", None)
        if bound is not None:
            yield bound
            return
        try:
            with self._backend.engine.begin() as connection:
                yield connection
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise optuna.exceptions.StorageInternalError(
                f"An exception is raised during the commit: {exc}"
            ) from exc

    @contextmanager
    def _reading_connection(self) -> Iterator[Connection]:
        """This thread's transaction, or a connection that commits nothing (a read)."""
        bound: Connection | None = getattr(self._reading, "connection", None)
        if bound is not None:
            yield bound
            return
        try:
            with self._reader.connect() as connection:
                yield connection
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise optuna.exceptions.StorageInternalError(f"A read failed: {exc}") from exc

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
            self._own.pop(trial_id, None)
            if trial_id in self._trial_id_to_study_id_and_number:
                study_id = self._trial_id_to_study_id_and_number[trial_id][0]
                self._studies[study_id].unfinished_trial_ids.add(trial_id)

    # ---- several reads and writes as one

    @contextmanager
    def one_transaction(self) -> Iterator[None]:
        """This thread's reads and writes as one transaction, committed at the end (none of
        them if the block fails), the trials read from the database at most once: each is a
        round trip to the server fewer. Optuna's session commits inside it do nothing."""
        registry = self._backend.scoped_session.registry
        before = registry()  # this thread's session, put back after
        with self._backend.engine.connect() as connection, connection.begin():
            made = self._backend.scoped_session.session_factory  # with its events
            registry.set(made(bind=connection, join_transaction_mode="rollback_only"))
            self._reading.once, self._reading.ended = set(), []
            self._reading.connection, self._reading.pending = connection, {}
            try:
                yield
                self._flush()
            except BaseException:  # none of it was written: read the trials back
                for trial_id in list(self._own):
                    self._forget(trial_id)
                for trial in self._reading.ended:  # not ended after all
                    trial.state, trial.values, trial.datetime_complete = (
                        TrialState.RUNNING,
                        None,
                        None,
                    )
                    self._forget(trial._trial_id)
                raise
            finally:
                self._reading.once, self._reading.ended = None, None
                self._reading.connection, self._reading.pending = None, None
                registry().close()
                registry.set(before)

    # ---- reading the others' trials

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """The study's new and unfinished trials, asked for by id and state in one query;
        those new, or unfinished and not running here, or running here but ended by another
        worker, read whole as Optuna reads them. In :meth:`one_transaction`, only the first
        read of the study asks the database."""
        once: set[int] | None = getattr(self._reading, "once", None)
        if once is not None:
            if study_id in once:
                return
            once.add(study_id)
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            watched = set(study.unfinished_trial_ids)
            own = {t for t in self._own if self._trial_id_to_study_id_and_number[t][0] == study_id}
            seen = self._seen.get(study_id, -1)
            known = set(self._trial_id_to_study_id_and_number)
        asked = (
            select(_TRIALS.c.trial_id, _TRIALS.c.state)
            .where(_TRIALS.c.study_id == study_id)
            .where(or_(_TRIALS.c.trial_id > seen, _TRIALS.c.trial_id.in_(watched | own)))
        )
        with self._reading_connection() as connection:
            rows = connection.execute(asked).all()
        wanted = set()
        for trial_id, state in rows:
            if trial_id in own:
                if state != TrialState.RUNNING:  # another worker ended it
                    self._forget(trial_id)
                    wanted.add(trial_id)
            elif trial_id not in known or trial_id in watched:
                wanted.add(trial_id)
        if rows:
            with self._lock:
                self._seen[study_id] = max(seen, *(row[0] for row in rows))
        if not wanted:
            return
        self._reading.left_out = {t for t in own if t not in wanted}
        try:
            trials = self._backend._get_trials(study_id, None, wanted, max(wanted))
        finally:
            self._reading.left_out = set()
        with self._lock:
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if trial.state.is_finished():
                    study.unfinished_trial_ids.discard(trial._trial_id)
                else:
                    study.unfinished_trial_ids.add(trial._trial_id)

    def _leave_out(self, state: ORMExecuteState) -> None:
        left_out: set[int] = getattr(self._reading, "left_out", set())
        if left_out and state.is_select:
            state.statement = state.statement.options(
                with_loader_criteria(models.TrialModel, models.TrialModel.trial_id.not_in(left_out))
            )


def _made(study_id: int, now: datetime, attrs: dict[str, Any]) -> Any:
    """One statement: a running trial numbered by the count of the study's trials, with
    the user attributes ``attrs`` and its first heartbeat; it gives the trial's id and
    number."""
    count = (
        select(func.count()).select_from(_TRIALS).where(_TRIALS.c.study_id == study_id)
    ).scalar_subquery()
    made = (
        sqlalchemy.insert(_TRIALS)
        .values(number=count, study_id=study_id, state=TrialState.RUNNING, datetime_start=_utc(now))
        .returning(_TRIALS.c.trial_id, _TRIALS.c.number)
        .cte("made")
    )
    beat = sqlalchemy.insert(_HEARTBEATS).from_select(
        ["trial_id", "heartbeat"], select(made.c.trial_id, func.now())
    )
    statement = select(made.c.trial_id, made.c.number).add_cte(beat.cte("beat"))
    if attrs:
        given = sqlalchemy.values(
            sqlalchemy.column("key", _USER_ATTRS.c.key.type),
            sqlalchemy.column("value_json", _USER_ATTRS.c.value_json.type),
            name="given",
        ).data([(key, json.dumps(value)) for key, value in attrs.items()])
        named = sqlalchemy.insert(_USER_ATTRS).from_select(
            ["trial_id", "key", "value_json"],
            select(
                made.c.trial_id,
                _typed(given.c.key, _USER_ATTRS.c.key),
                _typed(given.c.value_json, _USER_ATTRS.c.value_json),
            ).select_from(made.join(given, sqlalchemy.true())),  # a row per attribute
        )
        statement = statement.add_cte(named.cte("named"))
    return statement


def _upsert(
    table: sqlalchemy.Table,
    rows: Any,
    key: tuple[str, ...],
    columns: list[str] | None = None,
    update: bool = True,
) -> Any:
    """PostgreSQL's insert of ``rows`` (values, or a select of ``columns``) over the row of
    the same ``key``: replacing its other columns, or, without ``update``, leaving it."""
    if columns is None:
        made = insert(table).values(rows)
        columns = list(rows)
    else:
        made = insert(table).from_select(columns, rows)
    if not update:
        return made.on_conflict_do_nothing(index_elements=list(key))
    replaced = {c: made.excluded[c] for c in columns if c not in key}
    return made.on_conflict_do_update(index_elements=list(key), set_=replaced)


def _typed(given: Any, column: sqlalchemy.Column[Any]) -> Any:
    """A column of a VALUES list as the table's column takes it (PostgreSQL reads untyped
    VALUES as text, which an enum or a number column refuses)."""
    return sqlalchemy.cast(given, column.type).label(column.name)


def _utc(moment: datetime) -> datetime:
    """A local time as Optuna's database storage keeps it: naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _stored(value: Any) -> Any:
    """``value`` as the database gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(value))
