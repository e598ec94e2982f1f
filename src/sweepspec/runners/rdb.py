"""Optuna's database storage as a sweep's worker uses it: what it wrote, it does not read back.

``optuna.create_study`` wraps an ``RDBStorage`` in Optuna's cache (``_CachedStorage``), which
keeps finished trials and reads every unfinished trial again, with its parameters, values and
attributes (seven queries), whenever a list of trials is asked for. A worker asks for one
several times per trial (the budget's count, Optuna's ``ask``, the sampler), and each time
read back the trial it was running, all of which it had written itself; ``Trial`` and
``Study.tell`` read it once more each. On a database server every query is a round trip, and
those were most of a durable sweep's cost (issue 10 item 4).

:class:`WorkerStorage` is that cache, with one more rule: a trial this process made and runs
is kept as this process writes it (its parameters, attributes, intermediate values), not read
back while it runs; once it ends (or another worker's write says it ended: the heartbeat's
dead-worker rule) it is read from the database again like any other. Every write still goes
to the database at once, so a killed worker loses only its running trial, as before; other
workers' trials are read as Optuna reads them. A new trial is made with its worker's
attribute (``sweepspec.worker``) in the same transaction.

On PostgreSQL, the transactions that do not end a trial commit without waiting for the disk
(``synchronous_commit = off``): PostgreSQL writes its log in order, so the commit that ends a
trial (its state and values, which waits for the disk as before) makes the trial's earlier
writes durable too; a server crash can only lose writes of trials still running, which the
dead-worker rule fails and runs again.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage, _CachedStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, with_loader_criteria

__all__ = ["WorkerStorage"]


class WorkerStorage(_CachedStorage):
    """Optuna's trial cache over ``backend``, keeping the trials this process runs as it
    wrote them; ``new_trial_attrs`` are user attributes every trial made here is born with."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self.new_trial_attrs: dict[str, Any] = {}
        self.server = backend.engine.dialect.name != "sqlite"  # a round trip per query
        self._own: dict[int, FrozenTrial] = {}  # trial id -> this process's running trial
        self._reading = threading.local()  # this thread's left_out, once and ended
        event.listen(backend.scoped_session.session_factory, "do_orm_execute", self._leave_out)

    # ---- trials made and run here

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
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
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        if own is not None:
            own.params[param_name] = distribution.to_external_repr(param_value_internal)
            own.distributions[param_name] = distribution

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._writing(trial_id) as own:
            super().set_trial_user_attr(trial_id, key, value)
        if own is not None:
            own.user_attrs[key] = _stored(value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._writing(trial_id) as own:
            super().set_trial_system_attr(trial_id, key, value)
        if own is not None:
            own.system_attrs[key] = _stored(value)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._writing(trial_id) as own:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        if own is not None:
            own.intermediate_values[step] = intermediate_value

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._writing(trial_id) as own:
            done = super().set_trial_state_values(trial_id, state, values)
        if own is not None and done and state.is_finished():
            # as ended here until the next read, which reads it back from the database
            own.state, own.values = state, None if values is None else list(values)
            own.datetime_complete = datetime.now()
            self._forget(trial_id)
            ended = getattr(self._reading, "ended", None)
            if ended is not None:
                ended.append(own)
        return done

    def delete_study(self, study_id: int) -> None:
        for trial_id in [t for t, (s, _) in self._trial_id_to_study_id_and_number.items()]:
            if self._trial_id_to_study_id_and_number[trial_id][0] == study_id:
                self._own.pop(trial_id, None)
        super().delete_study(study_id)

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
            if self._own.pop(trial_id, None) is not None:
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
            try:
                yield
            except BaseException:  # none of it was written: read the trials back
                for trial_id in list(self._own):
                    self._forget(trial_id)
                for trial in self._reading.ended:  # not ended after all
                    trial.state, trial.values, trial.datetime_complete = (
                        TrialState.RUNNING,
                        None,
                        None,
                    )
                raise
            finally:
                self._reading.once, self._reading.ended = None, None
                registry().close()
                registry.set(before)

    # ---- reading the others' trials

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """Optuna's read of new and unfinished trials, leaving out those running here; each
        stays among the unfinished, to be read once it has ended. In
        :meth:`one_transaction`, only the first read of the study reads the database."""
        once: set[int] | None = getattr(self._reading, "once", None)
        if once is not None:
            if study_id in once:
                return
            once.add(study_id)
        with self._lock:
            own = {t for t in self._own if self._trial_id_to_study_id_and_number[t][0] == study_id}
            if study_id in self._studies:
                self._studies[study_id].unfinished_trial_ids.update(own)
        self._reading.left_out = own
        try:
            super()._read_trials_from_remote_storage(study_id)
        finally:
            self._reading.left_out = set()

    def _leave_out(self, state: ORMExecuteState) -> None:
        left_out: set[int] = getattr(self._reading, "left_out", set())
        if left_out and state.is_select:
            from optuna.storages._rdb.models import TrialModel

            state.statement = state.statement.options(
                with_loader_criteria(TrialModel, TrialModel.trial_id.not_in(left_out))
            )


def _stored(value: Any) -> Any:
    """``value`` as the database gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(value))
