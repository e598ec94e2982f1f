"""A torn journal, through the CLI: the end of a write cut short, garbage or a NUL fill in the
middle, and a disk that fills up mid-sweep (a real tmpfs, in a mount namespace of its own).
And :class:`WorkerJournal`'s blocks on a real journal file, against what plain Optuna reads
from the same file."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from frozen_trials import trial_fields
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sweepspec.main import main
from sweepspec.runners import journal
from sweepspec.runners.journal import SafeFileBackend, WorkerJournal

SPEC = """
method: random
metric: {name: loss}
function: trial_mod:objective
run_cap: 4
parameters:
  x: {min: 0.0, max: 1.0}
"""
TRIAL = """
def objective(trial):
    trial.report({"loss": trial.params["x"] + 1.0}, 0)
    return trial.params["x"]
"""
JOURNAL = ".sweepspec/sweep.journal"


def _run(folder: Path, *args: str) -> None:
    """``sweepspec run sweep.yaml`` in a process of its own (its trials' worker then is gone,
    as after a crash)."""
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "none", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr


def _swept(folder: Path) -> list[bytes]:
    (folder / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (folder / "trial_mod.py").write_text(textwrap.dedent(TRIAL).lstrip())
    _run(folder)
    return (folder / JOURNAL).read_bytes().splitlines(keepends=True)


def _results(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, object]], str]:
    code = main(["results", "sweep.yaml", "--format", "json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else [], err


def _op(line: bytes) -> int:
    return int(json.loads(line)["op_code"])


def test_a_torn_last_line_is_set_aside_and_the_sweep_resumes(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash mid-write, or a copy cut short: the last record lost its end."""
    lines = _swept(sweep_dir)
    whole = b"".join(lines[:-1])
    torn = lines[-1][:-20]
    (sweep_dir / JOURNAL).write_bytes(whole + torn)
    code, rows, err = _results(capsys)
    assert (code, [r["state"] for r in rows]) == (0, ["COMPLETE"] * 3 + ["RUNNING"])
    assert err == (
        f"sweepspec: {JOURNAL}: line {len(lines)} is torn: a record cut short "
        f"({len(torn)} bytes)\n"
        f"sweepspec: {JOURNAL}: readable: {len(lines) - 1} whole records (4 trials), and the "
        f"sweep goes on from them; the 1 bad line is kept in {JOURNAL}.bad-1\n"
    )
    assert (sweep_dir / f"{JOURNAL}.bad-1").read_bytes() == torn
    assert (sweep_dir / JOURNAL).read_bytes() == whole
    # the run resumes: the trial whose end was lost is failed, the budget is filled
    _run(sweep_dir, "--trials", "5")
    code, rows, err = _results(capsys)
    assert (code, err) == (0, "")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["FAIL"] + ["COMPLETE"] * 2


def test_garbage_in_the_middle_is_set_aside_and_every_whole_record_kept(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _swept(sweep_dir)
    at = next(i for i, line in enumerate(lines) if _op(line) == 8)  # a trial's user attribute
    garbage = b"\x89PNG\r\x1a garbage " + bytes(range(200, 230)) + b"\n"
    (sweep_dir / JOURNAL).write_bytes(b"".join(lines[:at] + [garbage] + lines[at + 1 :]))
    code, rows, err = _results(capsys)
    assert (code, [r["state"] for r in rows]) == (0, ["COMPLETE"] * 4)
    assert err == (
        f"sweepspec: {JOURNAL}: line {at + 1} is not a journal record ({len(garbage)} bytes)\n"
        f"sweepspec: {JOURNAL}: readable: {len(lines) - 1} whole records (4 trials), and the "
        f"sweep goes on from them; the 1 bad line is kept in {JOURNAL}.bad-1\n"
    )
    assert (sweep_dir / f"{JOURNAL}.bad-1").read_bytes() == garbage
    _run(sweep_dir, "--trials", "6")
    assert [r["state"] for r in _results(capsys)[1]] == ["COMPLETE"] * 6


def test_a_nul_fill_over_a_trial_cuts_the_journal_there(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lost line created trial 1: the records after it would land on the wrong trials, so
    they are set aside with it, and trial 0 is what is readable."""
    lines = _swept(sweep_dir)
    at = [i for i, line in enumerate(lines) if _op(line) == 4][1]  # creates trial 1
    nul = b"\0" * (len(lines[at]) - 1) + b"\n"
    (sweep_dir / JOURNAL).write_bytes(b"".join(lines[:at] + [nul] + lines[at + 1 :]))
    code, rows, err = _results(capsys)
    assert (code, [r["state"] for r in rows]) == (0, ["COMPLETE"])
    assert err == (
        f"sweepspec: {JOURNAL}: line {at + 1} is a NUL fill ({len(nul)} bytes)\n"
        f"sweepspec: {JOURNAL}: line {at + 2} refers to a trial or study that a bad line above "
        f"may have created, so the journal is cut at line {at + 1}\n"
        f"sweepspec: {JOURNAL}: readable: {at} whole records (1 trials), and the sweep goes on "
        f"from them; the {len(lines) - at} bad lines are kept in {JOURNAL}.bad-1\n"
    )
    assert (sweep_dir / f"{JOURNAL}.bad-1").read_bytes() == b"".join([nul] + lines[at + 1 :])
    _run(sweep_dir)
    assert [r["state"] for r in _results(capsys)[1]] == ["COMPLETE"] * 4


# The disk fills up during trial 2 (the trial itself fills it, as a checkpoint would); then
# room is made and the same command runs again. Every step runs in a mount namespace whose
# tmpfs of 256 KiB holds the working folder; the journal is copied out after each step, and
# `results` reads it while the disk is still full.
_FULL_DISK = """
set -u
mount -t tmpfs -o size=256k tmpfs "$DISK" || exit 97
cp sweep.yaml trial_mod.py "$DISK"/
cd "$DISK"
"$PY" -m sweepspec run sweep.yaml --tracker none > "$OUT/run1.out" 2> "$OUT/run1.err"
echo $? > "$OUT/run1.code"
cp .sweepspec/sweep.journal "$OUT/after-enospc.journal"
"$PY" -m sweepspec results sweep.yaml --format json > "$OUT/full.json" 2> "$OUT/full.err"
echo $? > "$OUT/full.code"
rm filler
"$PY" -m sweepspec run sweep.yaml --tracker none > "$OUT/run2.out" 2> "$OUT/run2.err"
echo $? > "$OUT/run2.code"
"$PY" -m sweepspec results sweep.yaml --format json > "$OUT/results.json" 2> "$OUT/results.err"
exit 0
"""
FILLING_TRIAL = """
def objective(trial):
    if trial.number == 2:
        with open("filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"x" * 4096)
                    fh.flush()
            except OSError:
                pass
    return trial.params["x"]
"""


def test_a_full_disk_mid_sweep_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a tmpfs of its own")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "trial_mod.py").write_text(textwrap.dedent(FILLING_TRIAL).lstrip())
    (tmp_path / "disk").mkdir()
    (tmp_path / "out").mkdir()
    env = {
        **os.environ,
        "DISK": str(tmp_path / "disk"),
        "OUT": str(tmp_path / "out"),
        "PY": sys.executable,
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", _FULL_DISK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert (out / "run1.code").read_text() == "1\n"
    assert (out / "run1.err").read_text().splitlines()[-1] == (
        "Error: cannot write to .sweepspec/sweep.journal: the disk is full (No space left on "
        "device); every finished trial is kept there: make room, then run the same command "
        "again to resume"
    )
    # what the full disk stopped is a whole journal: every line a record
    records = [
        json.loads(line) for line in (out / "after-enospc.journal").read_bytes().split(b"\n")[:-1]
    ]
    assert sum(r["op_code"] == 4 for r in records) == 3
    # with the disk still full, results shows every whole trial (the third was running)
    assert ((out / "full.code").read_text(), (out / "full.err").read_text()) == ("0\n", "")
    full = json.loads((out / "full.json").read_text())
    assert [(r["number"], r["state"]) for r in full] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "RUNNING"),
    ]
    assert (out / "run2.code").read_text() == "0\n", (out / "run2.err").read_text()
    rows = json.loads((out / "results.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "FAIL"] + ["COMPLETE"] * 2
    assert str(rows[2]["error"]).endswith(
        ") ended while the trial ran: it was killed, or stopped by an error (a full disk)"
    )


def _spy_fsync(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[int]:
    """The journal's size at each ``fsync`` of it (the real one is made: the spy only
    records where the journal was forced)."""
    forced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == str(path):
            forced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(os, "fsync", fsync)
    return forced


def test_the_journal_is_forced_to_disk_at_trial_ends_not_at_each_record(
    sweep_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optuna's backend forces (``fsync``) every record, five or more per trial: most of
    what a durable 1,000-trial sweep cost beyond the sampler. Every change to the study is
    forced before its write returns; a trial's end, and with it everything written before,
    by a thread: at once when it is idle, else at the end of its window (trial ends within it
    go together), and the run's end waits for the last (cutting the window short). Nothing
    else is forced."""
    (sweep_dir / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (sweep_dir / "trial_mod.py").write_text(textwrap.dedent(TRIAL).lstrip())
    monkeypatch.setattr(journal, "SYNC_WINDOW", 3600.0)  # every end after the first waits
    forced = _spy_fsync(monkeypatch, sweep_dir / JOURNAL)
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    lines = (sweep_dir / JOURNAL).read_bytes().splitlines(keepends=True)
    study, ends, offset = [], [], 0
    for line in lines:
        offset += len(line)
        record = json.loads(line)
        if record["op_code"] in (0, 1, 2, 3):
            study.append(offset)
        elif record["op_code"] == 6 and record["state"] in (1, 2, 3):  # COMPLETE, PRUNED, FAIL
            ends.append(offset)
    assert len(ends) == 4  # run_cap: 4
    assert forced[: len(study)] == study  # each forced as it was written
    # the first trial's end at once (the rest, or all, if the thread started late), the
    # others at the run's end: two fsyncs at most for four trial ends
    by_thread = forced[len(study) :]
    assert 1 <= len(by_thread) <= 2, (by_thread, ends)
    assert ends[0] <= by_thread[0]
    assert by_thread[-1] == offset
    capsys.readouterr()


def test_trial_ends_within_the_window_are_forced_with_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sweep.journal"
    path.write_bytes(b"one\n")
    forced = _spy_fsync(monkeypatch, path)
    syncer = journal._Syncer(str(path), "sweep.journal", window=3600.0)
    syncer.request()  # the thread is idle: forced at once
    for _ in range(1000):
        if syncer.done == 1:
            break
        time.sleep(0.01)
    assert (syncer.done, forced) == (1, [4])
    with path.open("ab") as file:
        file.write(b"two\n")
    for _ in range(3):  # within the window: they wait
        syncer.request()
    assert (syncer.asked, syncer.done, forced) == (4, 1, [4])
    syncer.flush()  # waiting for the disk cuts the window short: one fsync for the three
    assert (syncer.done, forced) == (4, [4, 8])


def test_an_fsync_that_fails_in_the_thread_is_said_at_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk refuses the thread's ``fsync`` (an I/O error): the run's end, which waits for
    it, says so in one line; nothing is raised twice."""
    path = tmp_path / "sweep.journal"
    path.write_bytes(b"one\n")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    syncer = journal._Syncer(str(path), ".sweepspec/sweep.journal", window=3600.0)
    syncer.request()
    syncer.request()  # within the window: waits, and is cut short by the flush
    with pytest.raises(journal.JournalWriteError) as raised:
        syncer.flush()
    assert str(raised.value) == (
        "cannot write to .sweepspec/sweep.journal: Input/output error; run the same command "
        "again to resume once it can be written"
    )
    assert syncer.done == syncer.asked == 2
    syncer.flush()  # said once


KILLING_TRIAL = """
import os, signal


def objective(trial):
    if trial.number == 3:
        os.kill(os.getppid(), signal.SIGKILL)  # its worker, killed outright mid-trial
        signal.pause()
    return trial.params["x"]
"""


def test_a_run_killed_outright_keeps_every_finished_trial(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial's end is written before the next trial starts; the disk is forced by a thread
    of the worker, so a worker killed before that thread ran loses nothing: the kernel has
    the records. The next run fails the trial that was running and goes on."""
    (sweep_dir / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (sweep_dir / "trial_mod.py").write_text(textwrap.dedent(KILLING_TRIAL).lstrip())
    killed = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "none"],
        cwd=sweep_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    code, rows, _ = _results(capsys)
    assert (code, [r["state"] for r in rows]) == (0, ["COMPLETE"] * 3 + ["RUNNING"])
    _run(sweep_dir)
    code, rows, _ = _results(capsys)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]
    assert str(rows[3]["error"]).startswith("its worker (pid ")


# --------------------------------------------------------------------------- WorkerJournal


def _journals(path: Path) -> tuple[WorkerJournal, int]:
    """A worker's journal on ``path`` holding one empty study 's', and the study's id."""
    worker = WorkerJournal(SafeFileBackend(str(path), str(path)))
    return worker, worker.create_new_study([StudyDirection.MINIMIZE], "s")


def _plain(path: Path) -> JournalStorage:
    """The same journal as plain Optuna reads it (another process would)."""
    return JournalStorage(JournalFileBackend(str(path)))


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def test_a_block_writes_a_trials_records_together_and_a_read_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    with worker.one_transaction():
        trial_id = worker.create_new_trial(study_id)  # at once: its id is read back
        made = _lines(path)
        worker.set_trial_param(trial_id, "x", 0.25, FloatDistribution(0.0, 1.0))
        worker.set_trial_user_attr(trial_id, "sweepspec.worker", "host:1")
        assert _lines(path) == made  # they wait
        (seen,) = _plain(path).get_all_trials(study_id)
        assert (seen.params, seen.user_attrs) == ({}, {})
        # a read of this process's sees what it wrote: they are written first, together
        mine = worker.get_trial(trial_id)
        assert (mine.params, mine.user_attrs) == ({"x": 0.25}, {"sweepspec.worker": "host:1"})
        assert _lines(path) == made + 2
        worker.set_trial_param(trial_id, "n", 3, IntDistribution(1, 10))
        worker.set_trial_system_attr(trial_id, "tpe:relative_params:0", '{"n": 3}')
        assert _lines(path) == made + 2
    assert _lines(path) == made + 4  # at the block's end
    (seen,) = _plain(path).get_all_trials(study_id)
    assert (seen.state, seen.params, seen.system_attrs) == (
        TrialState.RUNNING,
        {"x": 0.25, "n": 3},
        {"tpe:relative_params:0": '{"n": 3}'},
    )


def test_a_trials_end_takes_what_waits_with_it_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    trial_id = worker.create_new_trial(study_id)
    sizes: list[int] = []
    real_append = SafeFileBackend.append

    def append(backend: SafeFileBackend, logs: list[dict[str, object]]) -> tuple[int, list[bytes]]:
        sizes.append(len(logs))
        return real_append(backend, logs)  # the real write: the spy only counts them

    backend = worker._backend
    assert isinstance(backend, SafeFileBackend)
    backend.append = append.__get__(backend)  # type: ignore[method-assign]
    with worker.one_transaction():
        worker.set_trial_user_attr(trial_id, "sweepspec.metrics", {"loss": 0.5})
        worker.set_trial_user_attr(trial_id, "sweepspec.times", [1, 2])
        assert worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
        assert worker.get_trial(trial_id).state == TrialState.COMPLETE
    assert sizes == [3]
    (seen,) = _plain(path).get_all_trials(study_id)
    assert (seen.state, seen.values, seen.user_attrs) == (
        TrialState.COMPLETE,
        [0.5],
        {"sweepspec.metrics": {"loss": 0.5}, "sweepspec.times": [1, 2]},
    )


def test_writes_to_a_trial_another_worker_failed_are_refused_once(tmp_path: Path) -> None:
    """The dead-worker rule: another worker fails a trial it heard nothing from; the worker
    that ran it, back, cannot end it (Optuna's error, at the end), and no later read raises
    it again for the records that went with it."""
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    trial_id = worker.create_new_trial(study_id)
    other = _plain(path)
    other.set_trial_user_attr(trial_id, "sweepspec.error", "its worker sent no heartbeat")
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    with worker.one_transaction():
        worker.set_trial_user_attr(trial_id, "sweepspec.metrics", {"loss": 1.0})
        worker.set_trial_user_attr(trial_id, "sweepspec.times", [1, 2])
        with pytest.raises(UpdateFinishedTrialError) as refused:
            worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    assert str(refused.value) == ("Trial#0 has already finished and can not be updated.")
    (listed,) = worker.get_all_trials(study_id)
    assert (listed.state, listed.user_attrs) == (
        TrialState.FAIL,
        {"sweepspec.error": "its worker sent no heartbeat"},
    )
    assert [t.state for t in _plain(path).get_all_trials(study_id)] == [TrialState.FAIL]


def test_a_tpe_study_through_blocks_is_what_plain_optuna_reads(tmp_path: Path) -> None:
    """Asks and tells in blocks, as the engine makes them (pruned, failed, infinite and NaN
    values too): what the worker keeps equals what plain Optuna reads back, field by field."""
    path = tmp_path / "s.journal"
    worker, _ = _journals(path)
    study = optuna.load_study(
        study_name="s", storage=worker, sampler=optuna.samplers.TPESampler(seed=3)
    )
    ends = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    for number in range(24):
        with worker.one_transaction():
            trial = study.ask()
            x = trial.suggest_float("x", -5.0, 5.0)
            trial.suggest_categorical("kind", ["a", "b"])
            trial.set_user_attr("sweepspec.worker", "host:1")
        trial.report(x, 0)
        state = ends[number % 3]
        value = [math.inf, math.nan, x**2][number % 3] if number % 5 == 0 else x**2
        with worker.one_transaction():
            trial.set_user_attr("sweepspec.metrics", {"loss": value})
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    kept = worker.get_all_trials(0)
    read = _plain(path).get_all_trials(0)
    assert [trial_fields(t) for t in kept] == [trial_fields(t) for t in read]
    assert len(read) == 24 and {t.state for t in read} == set(ends)


def test_a_workers_list_of_trials_follows_the_journal_without_listing_it_again(
    tmp_path: Path,
) -> None:
    """Two workers and a trial enqueued on one file, makings, ends and a failure between
    the reads: each listing (all trials, and the WAITING ones) equals what plain Optuna
    reads, while Optuna's full listing of the study ran once (later reads bring the
    unfinished and new trials up to date)."""
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    other = WorkerJournal(SafeFileBackend(str(path), str(path)))
    replay = worker._replay_result
    full = []
    real_listing = replay.get_all_trials

    def listing(study: int, states):  # type: ignore[no-untyped-def]
        full.append(study)
        return real_listing(study, states)

    replay.get_all_trials = listing  # type: ignore[method-assign,assignment]
    x = FloatDistribution(0.0, 1.0)

    def same() -> None:
        seen = _plain(path)
        for states in (None, (TrialState.WAITING,), (TrialState.COMPLETE, TrialState.FAIL)):
            kept = worker.get_all_trials(study_id, deepcopy=False, states=states)
            read = seen.get_all_trials(study_id, deepcopy=False, states=states)
            assert [trial_fields(t) for t in kept] == [trial_fields(t) for t in read]

    first = worker.create_new_trial(study_id)
    worker.set_trial_param(first, "x", 0.5, x)
    same()
    waiting = other.create_new_trial(
        study_id,
        template_trial=optuna.trial.create_trial(
            state=TrialState.WAITING, params={"x": 0.25}, distributions={"x": x}
        ),
    )
    theirs = other.create_new_trial(study_id)
    same()
    worker.set_trial_state_values(first, TrialState.COMPLETE, [0.5])
    other.set_trial_state_values(theirs, TrialState.FAIL)
    same()
    other.set_trial_state_values(waiting, TrialState.RUNNING)
    last = worker.create_new_trial(study_id)
    same()
    other.set_trial_state_values(waiting, TrialState.COMPLETE, [0.25])
    worker.set_trial_state_values(last, TrialState.PRUNED)
    same()
    assert [t.state for t in worker.get_all_trials(study_id)] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
    ]
    assert full == [study_id]


def _counting_reads(worker: WorkerJournal) -> list[int]:
    """Records the worker reads from the file (a spy around its backend's real read)."""
    read: list[int] = []
    backend = worker._backend
    assert isinstance(backend, SafeFileBackend)
    real_read = SafeFileBackend.read_logs

    def read_logs(backend: SafeFileBackend, log_number_from: int):  # type: ignore[no-untyped-def]
        for log in real_read(backend, log_number_from):
            read.append(log["op_code"])
            yield log

    backend.read_logs = read_logs.__get__(backend)  # type: ignore[method-assign]
    return read


def test_a_workers_own_records_are_applied_as_written_not_read_back(tmp_path: Path) -> None:
    """No other process wrote: the worker's records count as read, parsed from the lines
    it wrote (so a tuple is a list and a number key a string, as every reader sees them)."""
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    read = _counting_reads(worker)
    with worker.one_transaction():
        trial_id = worker.create_new_trial(study_id)
        worker.set_trial_param(trial_id, "x", 0.25, FloatDistribution(-1.0, 1.0))
        worker.set_trial_user_attr(trial_id, "sweepspec.times", (1, 2))
        worker.set_trial_user_attr(trial_id, "sweepspec.metrics", {1: 0.5})
    with worker.one_transaction():
        worker.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    assert read == []
    (kept,) = worker.get_all_trials(study_id)
    assert kept.user_attrs == {"sweepspec.times": [1, 2], "sweepspec.metrics": {"1": 0.5}}
    (seen,) = _plain(path).get_all_trials(study_id)
    assert trial_fields(kept) == trial_fields(seen)


def test_records_another_process_wrote_first_are_read_in_the_files_order(
    tmp_path: Path,
) -> None:
    """Another process wrote after this one's last read: this one's records are read back
    with the others', in the file's order (its trial is the second, not the first)."""
    path = tmp_path / "s.journal"
    worker, study_id = _journals(path)
    worker.get_all_trials(study_id)
    other = _plain(path)
    first = other.create_new_trial(study_id)
    other.set_trial_user_attr(first, "sweepspec.worker", "elsewhere:1")
    read = _counting_reads(worker)
    with worker.one_transaction():
        mine = worker.create_new_trial(study_id)
        worker.set_trial_user_attr(mine, "sweepspec.worker", "here:2")
    # theirs (a trial made, its attribute), then this one's trial made, read back with
    # them; its attribute, written right after that read, is applied as written
    assert read == [4, 8, 4]
    assert [worker.get_trial(i).number for i in (first, mine)] == [0, 1]
    assert [t.user_attrs for t in worker.get_all_trials(study_id)] == [
        {"sweepspec.worker": "elsewhere:1"},
        {"sweepspec.worker": "here:2"},
    ]
    seen = _plain(path).get_all_trials(study_id)
    assert [trial_fields(t) for t in worker.get_all_trials(study_id)] == [
        trial_fields(t) for t in seen
    ]


def _counting_writes(worker: WorkerJournal) -> list[int]:
    """How many records each of the worker's writes holds (a spy around the real write)."""
    sizes: list[int] = []
    backend = worker._backend
    assert isinstance(backend, SafeFileBackend)
    real_append = SafeFileBackend.append

    def append(backend: SafeFileBackend, logs: list[dict[str, object]]) -> tuple[int, list[bytes]]:
        sizes.append(len(logs))
        return real_append(backend, logs)

    backend.append = append.__get__(backend)  # type: ignore[method-assign]
    return sizes


def test_a_tell_writes_the_trials_attributes_with_its_end_in_one_write(tmp_path: Path) -> None:
    """Optuna's tell reads the trial before it ends it: the attributes set just before
    wait and show in that read (as a reader of the file will see them), and go with the
    end in one write."""
    path = tmp_path / "s.journal"
    worker, _ = _journals(path)
    study = optuna.load_study(study_name="s", storage=worker)
    trial = study.ask()
    sizes = _counting_writes(worker)
    with worker.one_transaction():
        trial.set_user_attr("sweepspec.metrics", {"loss": 0.5})
        trial.set_user_attr("sweepspec.times", (1, 2))
        assert worker.get_trial(trial._trial_id).user_attrs == {
            "sweepspec.metrics": {"loss": 0.5},
            "sweepspec.times": [1, 2],
        }
        study.tell(trial, 0.5)
    assert sizes == [3]
    (seen,) = _plain(path).get_all_trials(0)
    assert (seen.state, seen.values, seen.user_attrs) == (
        TrialState.COMPLETE,
        [0.5],
        {"sweepspec.metrics": {"loss": 0.5}, "sweepspec.times": [1, 2]},
    )
    (kept,) = worker.get_all_trials(0)
    assert trial_fields(kept) == trial_fields(seen)


def test_a_tell_of_a_trial_another_worker_failed_is_refused_at_its_attributes(
    tmp_path: Path,
) -> None:
    """The dead-worker rule through Optuna's tell: the read before the end finds the trial
    failed by another worker; the attributes that waited are refused (Optuna's error, as
    without the wait), and the trial stays as the other worker left it."""
    path = tmp_path / "s.journal"
    worker, _ = _journals(path)
    study = optuna.load_study(study_name="s", storage=worker)
    trial = study.ask()
    other = _plain(path)
    other.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        with worker.one_transaction():
            trial.set_user_attr("sweepspec.metrics", {"loss": 0.5})
            study.tell(trial, 0.5)
    assert [(t.state, t.user_attrs) for t in _plain(path).get_all_trials(0)] == [
        (TrialState.FAIL, {})
    ]
    assert [t.state for t in worker.get_all_trials(0)] == [TrialState.FAIL]
