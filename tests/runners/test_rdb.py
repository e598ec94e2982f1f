"""WorkerStorage on a real database file (SQLite through Optuna's RDBStorage): the trial a
worker runs is written at once and not read back; once it ends, or another worker ends it,
it is read from the database like any other."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sqlalchemy import event

from sweepspec.runners.rdb import WorkerStorage


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=url, study_name="s")
    return url


@pytest.fixture
def worker(url: str) -> Iterator[WorkerStorage]:
    storage = WorkerStorage(optuna.storages.RDBStorage(url))
    storage.new_trial_attrs = {"sweepspec.worker": "host:1"}
    yield storage
    storage._backend.engine.dispose()


def _queries(storage: WorkerStorage) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    def statement(*args: object) -> None:
        counts["statements"] += 1

    event.listen(storage._backend.engine, "before_cursor_execute", statement)
    return counts


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
    sent = _queries(worker)
    mine = worker.get_trial(trial_id)
    (listed,) = worker.get_all_trials(study_id)
    assert (mine.params, mine.user_attrs, mine.intermediate_values) == (
        seen.params,
        seen.user_attrs,
        seen.intermediate_values,
    )
    assert (listed.params, listed.user_attrs) == (seen.params, seen.user_attrs)
    assert sent["statements"] == 2  # the study is there; no trial new or changed elsewhere


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
