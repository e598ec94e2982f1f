"""The journal file under Optuna's ``JournalStorage``: set aside what a crash or a full disk
left torn, and never leave a torn record behind on a failed write.

Optuna's journal is one JSON record per line, appended under a lock. A write cut short (the
disk filled, the process was killed, a copy was cut) leaves a last line without its newline;
Optuna then appends the next record right after it, and from that line on every reader fails.
Garbage or a NUL fill in the middle fails every reader too.

:func:`repair` runs before the journal is opened: under Optuna's journal lock and sweepspec's
(``flock``) it moves every line that is not a whole record to a side file beside the journal
(never dropped), and keeps the whole records. The records after a bad line in the middle are
kept only when each of them still applies to a trial or study that exists: a lost line that
created a trial would shift every later trial's id, and Optuna would file their results under
the wrong trials. In that case the journal is cut at the bad line and the rest goes to the
side file too.

:class:`SafeFileBackend` appends as Optuna's backend does (one ``write`` per call), but under
an exclusive ``flock`` of the journal instead of Optuna's symlink lock (a file created and
removed beside the journal for every record), and a write that fails (``ENOSPC``) is undone
(the file is truncated to its size before the write) and raised as :class:`JournalWriteError`,
a one-line message. Every record is in the kernel's cache when the call returns: visible to
every process, kept when a process dies. The disk is forced (``fsync``) before the call
returns for every change to a study; for a trial's end (its state COMPLETE, PRUNED or FAIL,
written after its metrics and attributes, and with it everything written before) by a thread
of the process (:class:`_Syncer`) while the next trial starts: at once, or, within
:data:`SYNC_WINDOW` (0.1 s) of its last ``fsync``, with the other trial ends of that window at
its end (one ``fsync`` per window however short the trials; each cost about a millisecond of
the loop's time here). Optuna's backend forces every record, five or more per trial. A
machine that crashes can lose the trials each process ended in the last 0.1 s or so (their
``fsync`` not yet done) and records of trials still running; what it leaves torn,
:func:`repair` sets aside. Optuna reads the journal
before each answer; :meth:`SafeFileBackend.read_logs` answers "nothing new" from the file's
size.

:class:`WorkerJournal` is Optuna's ``JournalStorage`` with blocks, as a database's
(:meth:`WorkerJournal.one_transaction`): in a block, a trial's parameters and attributes wait
and go with the next record that cannot wait (a trial made, a trial's end) or the block's end,
in one ``write`` (so they are never torn apart), before anything is read (a read sees what
this process wrote); the journal is read once per block and again only after a write of its
own. A write that lands right where this process last read (no other process wrote since) is
applied as written, parsed from its own lines, and counted as read, as Optuna counts the lines
it reads; else it is read back with the others' records, in the file's order. A record Optuna
refuses (the trial was ended by another worker) raises Optuna's error at that write, after
every record written with it has been applied.
"""

from __future__ import annotations

import atexit
import copy
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Container, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from .base import EngineError

__all__ = [
    "JournalError",
    "JournalWriteError",
    "SafeFileBackend",
    "WorkerJournal",
    "listed",
    "repair",
]

# Optuna's JournalOperation codes (optuna/storages/journal/_storage.py)
_CREATE_STUDY, _CREATE_TRIAL, _LAST_OP = 0, 4, 10
_STUDY_OPS = (1, 2, 3)  # delete study, set study user/system attribute
_TRIAL_OPS = (5, 6, 7, 8, 9)  # set trial param, state, intermediate value, user/system attribute
_SET_TRIAL_STATE, _SET_TRIAL_USER_ATTR = 6, 8
SYNC_WINDOW = 0.1
"""Seconds: trial ends written within this time of the journal's last ``fsync`` are forced
to disk together, at its end (see :class:`_Syncer`)."""

_WAITING_OPS = (5, 7, 8, 9)  # what waits in a block: a parameter, a value, an attribute


class JournalError(EngineError):
    """A journal that cannot be used as it is: one line for the user."""


class JournalWriteError(JournalError):
    """A write to the journal failed (a full disk); nothing of it is left in the file."""


def _is_record(line: bytes) -> dict[str, Any] | None:
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return None
    return record if 0 <= record["op_code"] <= _LAST_OP else None


@dataclass
class _Replay:
    """Just enough of Optuna's replay to tell whether a record applies to what exists."""

    studies: int = 0
    names: set[str] = field(default_factory=set)
    trials: int = 0

    def applies(self, record: dict[str, Any]) -> bool:
        op = record["op_code"]
        if op == _CREATE_STUDY:
            name = record.get("study_name")
            if name not in self.names:
                self.names.add(str(name))
                self.studies += 1
            return True
        if op in _STUDY_OPS or op == _CREATE_TRIAL:
            ok = _index(record, "study_id", self.studies)
            if ok and op == _CREATE_TRIAL:
                self.trials += 1
            return ok
        if op in _TRIAL_OPS:
            return _index(record, "trial_id", self.trials)
        return True


def _index(record: dict[str, Any], key: str, count: int) -> bool:
    value = record.get(key)
    return isinstance(value, int) and 0 <= value < count


@dataclass
class _Scan:
    keep: list[bytes] = field(default_factory=list)
    aside: list[bytes] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trials: int = 0


def _scan(lines: list[bytes], records: list[dict[str, Any] | None], label: str) -> _Scan:
    scan, replay = _Scan(), _Replay()
    first_bad, kept_before = 0, 0
    for number, (line, record) in enumerate(zip(lines, records, strict=True), start=1):
        if record is None:
            if not first_bad:
                first_bad, kept_before = number, len(scan.keep)
            scan.aside.append(line)
            scan.notes.append(f"{label}: line {number} is {_what(line, number == len(lines))}")
        elif replay.applies(record) or not first_bad:
            scan.keep.append(line)
        else:
            scan.notes.append(
                f"{label}: line {number} refers to a trial or study that a bad line above "
                f"may have created, so the journal is cut at line {first_bad}"
            )
            scan.keep, scan.aside = scan.keep[:kept_before], lines[first_bad - 1 :]
            replay = _Replay()
            for whole in scan.keep:
                replay.applies(json.loads(whole))
            break
    scan.trials = replay.trials
    return scan


def _what(line: bytes, last: bool) -> str:
    size = f"{len(line)} bytes"
    if line.strip(b"\0\n") == b"":
        return f"a NUL fill ({size})"
    if last and not line.endswith(b"\n"):
        return f"torn: a record cut short ({size})"
    return f"not a journal record ({size})"


def repair(path: str, label: str) -> list[str]:
    """Set aside the lines of the journal at ``path`` that are not whole records; return one
    line per finding and one on what is kept (nothing when the journal is whole)."""
    if os.path.isdir(path):
        raise JournalError(f"{label} is a folder, not an Optuna journal file")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    lock = JournalFileSymlinkLock(path)  # Optuna's own writers
    lock.acquire()
    try:
        with open(path, "rb") as held:  # sweepspec's (SafeFileBackend)
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            return _repair_locked(path, label)
    finally:
        lock.release()


def _repair_locked(path: str, label: str) -> list[str]:
    with open(path, "rb") as fh:
        lines = fh.readlines()
    records = [_is_record(line) for line in lines]
    torn_first = len(lines) == 1 and lines[0].startswith(b'{"op_code":')
    if not any(records) and not torn_first:
        raise JournalError(_not_a_journal(lines[0], label))
    scan = _scan(lines, records, label)
    if not scan.aside:
        return []
    side = _side_file(path)
    _write(side, b"".join(scan.aside))
    kept = b"".join(scan.keep)
    if scan.aside == lines[len(scan.keep) :]:
        os.truncate(path, len(kept))  # a torn end: no copy, so it works on a full disk too
    else:
        _write(path + ".repair", kept)
        os.replace(path + ".repair", path)
    shown = os.path.join(os.path.dirname(label), os.path.basename(side))
    count = len(scan.aside)
    return scan.notes + [
        f"{label}: readable: {len(scan.keep)} whole records ({scan.trials} trials), and the "
        f"sweep goes on from them; the {count} bad line{'s' if count > 1 else ''} "
        f"{'are' if count > 1 else 'is'} kept in {shown}"
    ]


def _side_file(path: str) -> str:
    """``<journal>.bad-1``, or the next number free: an earlier repair's file stays."""
    number = 1
    while os.path.exists(f"{path}.bad-{number}"):
        number += 1
    return f"{path}.bad-{number}"


def _not_a_journal(first: bytes, label: str) -> str:
    if first.startswith(b"SQLite format 3\0"):
        return (
            f"{label} is an SQLite database, not an Optuna journal: give it as a URL, "
            f"sqlite:///{label}"
        )
    return f"{label} is not an Optuna journal (its first line is not a journal record)"


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SafeFileBackend(JournalFileBackend):
    """Optuna's file backend, with a failed append undone instead of left torn, a trial's
    end forced to disk by a thread of its own (:class:`_Syncer`), and a read that finds
    nothing new answered from the file's size alone."""

    def __init__(self, file_path: str, label: str) -> None:
        self.path, self.label = file_path, label
        self.lock = JournalFileSymlinkLock(file_path)
        super().__init__(file_path, self.lock)
        self.syncer = _Syncer(file_path, label, SYNC_WINDOW)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's read, skipped when the file ends where the last read did: Optuna's
        storage reads the journal before each answer, tens of times per trial, and most of
        those reads find nothing new (one ``stat`` instead of opening the file)."""
        offset = self._log_number_offset.get(log_number_from)
        if offset is not None and os.stat(self.path).st_size == offset:
            return
        yield from super().read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` in one write under an exclusive ``flock`` of the journal (one
        system call; Optuna's symlink lock creates and removes a file beside the journal
        for every record, several per trial)."""
        self.append(logs)

    def append(self, logs: list[dict[str, Any]]) -> tuple[int, list[bytes]]:
        """:meth:`append_logs`; where the write began in the file, and its lines."""
        lines = [(json.dumps(log, separators=(",", ":")) + "\n").encode() for log in logs]
        data = b"".join(lines)
        durable = [_durable(log) for log in logs]
        self.syncer.check()
        fd = self._locked()
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                if "now" in durable:
                    os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, size)
                raise JournalWriteError(_write_failed(self.label, exc)) from None
        finally:
            _unlock(fd)
        if "soon" in durable:
            self.syncer.request()
        return size, lines

    def follows_read(self, log_number: int, start: int, lines: list[bytes]) -> bool:
        """Whether ``lines``, written at byte ``start``, come right after the first
        ``log_number`` records that were read (no other process wrote between): then they
        count as read, as Optuna's :meth:`read_logs` counts the lines it reads."""
        offsets = self._log_number_offset
        if offsets.get(log_number) != start:
            return False
        for line in lines:
            offsets[log_number + 1] = offsets[log_number] + len(line)
            log_number += 1
        return True

    def _locked(self) -> int:
        """The journal opened for appending, under an exclusive ``flock`` (let go when the
        descriptor closes); if :func:`repair` replaced the file meanwhile, the new one."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            except BaseException:
                _unlock(fd)
                raise
            _unlock(fd)

    def flush(self) -> None:
        """Wait until everything written is on disk (a run's end)."""
        self.syncer.flush()


@dataclass
class _Block:
    """This thread's :meth:`WorkerJournal.one_transaction`."""

    waiting: list[dict[str, Any]] = field(default_factory=list)  # records not yet written
    read: bool = False  # the journal was read in it, and nothing was written since
    wrote: bool = False  # the last call put a record in ``waiting``


class WorkerJournal(JournalStorage):
    """Optuna's ``JournalStorage`` on a :class:`SafeFileBackend`, with blocks of reads and
    writes (see the module's docstring)."""

    def __init__(self, backend: SafeFileBackend) -> None:
        self._local = threading.local()
        self.file = backend
        self._listed = _Listed()
        super().__init__(backend)

    def flush(self) -> None:
        """Wait until everything written is on disk (a run's end)."""
        self.file.flush()

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """Optuna's, with a study's list of trials brought up to date once per change of
        the journal read (a worker lists them several times per trial, most often with
        nothing new), its unfinished and new trials only (:class:`_Listed`). The WAITING
        trials alone (Optuna's ask looks for them first, at every trial) are found among the
        unfinished ones, as on a database (:meth:`.rdb.WorkerStorage.get_all_trials`)."""
        with self._thread_lock:
            self._sync_with_backend()
            trials = self._listed.of(self._replay_result, study_id)
            if states == (TrialState.WAITING,):
                return listed(self._listed.unfinished(), states, deepcopy)
            return listed(trials, states, deepcopy)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """Optuna's; in a block where only user attributes of this running trial wait (a
        tell: its metrics, then its end), the trial with them, and they keep waiting, to go
        with its end in one write."""
        block = self._block()
        if block is None or not _only_user_attrs_of(block.waiting, trial_id):
            return super().get_trial(trial_id)
        with self._thread_lock:
            if not block.read:  # what others wrote, as a read in a block sees it
                block.read = True
                self._read_back()
            trial = self._replay_result.get_trial(trial_id)
        if trial.state.is_finished():  # another worker ended it: Optuna's refusal
            return super().get_trial(trial_id)
        attrs = dict(trial.user_attrs)
        for log in block.waiting:  # as a reader of the file will see them
            attrs.update(json.loads(json.dumps(log["user_attr"])))
        waited = copy.copy(trial)
        waited.user_attrs = attrs
        return waited

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        del state["_local"]
        state["_listed"] = _Listed()
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._local = threading.local()

    @contextmanager
    def one_transaction(self) -> Iterator[None]:
        """This thread's reads and writes as one block; what waits is written at its end
        (also when it fails: the records are Optuna's own, each whole)."""
        if self._block() is not None:  # within another: part of it
            yield
            return
        block = self._local.block = _Block()
        try:
            yield
        finally:
            self._local.block = None
            if block.waiting:
                with self._thread_lock:
                    self._append(block.waiting)
                    self._read_back()

    def _block(self) -> _Block | None:
        return getattr(self._local, "block", None)

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        log = {"op_code": op_code, "worker_id": self._replay_result.worker_id, **extra_fields}
        block = self._block()
        if block is None:
            self._append([log])
            return
        block.waiting.append(log)
        if op_code in _WAITING_OPS:
            block.wrote = True  # Optuna's read after it is skipped
            return
        logs, block.waiting = block.waiting, []
        block.read = False  # the next read reads, also after a refusal raised here
        self._append(logs)

    def _append(self, logs: list[dict[str, Any]]) -> None:
        """Write ``logs``; when no other process wrote since this one last read, they are
        applied as written (parsed from the very lines in the file), not read back."""
        start, lines = self.file.append(logs)
        if self.file.follows_read(self._replay_result.log_number_read, start, lines):
            self._apply([json.loads(line) for line in lines])

    def _sync_with_backend(self) -> None:
        block = self._block()
        if block is not None:
            if block.wrote:  # the record waits: nothing to read back yet
                block.wrote = False
                return
            if block.waiting:  # a read sees what this process wrote
                logs, block.waiting = block.waiting, []
                block.read = False
                self._append(logs)
            if block.read:
                return
            block.read = True
        self._read_back()

    def _read_back(self) -> None:
        """Optuna's read of the journal's new records; a record of this process's that
        Optuna refuses does not stop the records after it from being read, and its error is
        raised once they are."""
        self._apply(self._backend.read_logs(self._replay_result.log_number_read))

    def _apply(self, logs: Iterable[dict[str, Any]]) -> None:
        refused: Exception | None = None
        for log in logs:
            try:
                self._replay_result.apply_logs((log,))
            except (UpdateFinishedTrialError, KeyError) as exc:
                refused = refused or exc
        if refused is not None:
            raise refused


class _Listed:
    """A study's trials by number, as the journal's replay holds them, kept from one read
    to the next: a finished trial never changes (Optuna refuses every write to it), so a
    change of the read looks up the unfinished trials again and adds the new ones; the cost
    of a read no longer grows with the study."""

    def __init__(self) -> None:
        self.key: tuple[Any, int, int] | None = None  # (replay, study, its read's records)
        self.trials: list[FrozenTrial] = []
        self.open: list[int] = []  # the unfinished trials' numbers

    def of(self, replay: Any, study_id: int) -> list[FrozenTrial]:
        """The study's trials after ``replay``'s read (Optuna's ``KeyError`` for a study
        not in it)."""
        key = (replay, study_id, replay.log_number_read)
        if self.key == key:
            return self.trials
        if self.key is None or self.key[:2] != key[:2] or study_id not in replay._studies:
            self.trials, self.open = replay.get_all_trials(study_id, None), []
            numbers: Iterable[int] = range(len(self.trials))
        else:
            trial_ids, found = replay._study_id_to_trial_ids[study_id], replay._trials
            old = len(self.trials)
            for number in self.open:
                self.trials[number] = found[trial_ids[number]]
            self.trials.extend(found[t] for t in trial_ids[old:])
            numbers = [*self.open, *range(old, len(self.trials))]
        self.open = [n for n in numbers if not self.trials[n].state.is_finished()]
        self.key = key
        return self.trials

    def unfinished(self) -> list[FrozenTrial]:
        """The unfinished trials of the study listed last, by number."""
        return [self.trials[n] for n in self.open]


def listed(
    trials: list[FrozenTrial], states: Container[TrialState] | None, deepcopy: bool
) -> list[FrozenTrial]:
    """``trials`` (a storage's own list) in ``states``, as Optuna's ``get_all_trials``
    answers: a new list, the trials copied with ``deepcopy``."""
    chosen = trials if states is None else [t for t in trials if t.state in states]
    return copy.deepcopy(chosen) if deepcopy else list(chosen)


def _only_user_attrs_of(waiting: list[dict[str, Any]], trial_id: int) -> bool:
    return bool(waiting) and all(
        log["op_code"] == _SET_TRIAL_USER_ATTR and log["trial_id"] == trial_id for log in waiting
    )


def _unlock(fd: int) -> None:
    """Let go of the lock, then close: a process forked while this one held it (a trial
    process) has a copy of the descriptor, and closing ours alone would leave it locked."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _Syncer:
    """Forces the journal to disk (``fsync``) in a thread, after a trial's end is written:
    the write itself is in the kernel's cache at once (visible to every process, kept when a
    process is killed), and the loop goes on while the disk catches up. A trial's end is
    forced at once when the thread is idle; one written within :data:`SYNC_WINDOW` seconds
    of the last ``fsync`` goes with the next, at the window's end (a group commit: at most
    one ``fsync`` per window, however short the trials). Waiting for the disk
    (:meth:`settle`, :meth:`flush`) cuts the window short. A failed ``fsync`` is raised at
    the next write or at :meth:`flush` as :class:`JournalWriteError`."""

    def __init__(self, path: str, label: str, window: float) -> None:
        self.path, self.label = path, label
        self.window = window
        self.cond = threading.Condition()
        self.asked = 0
        self.done = 0
        self.waiting = 0  # callers of settle(): the window is cut short for them
        self.idle = False  # the thread waits for a request (not out its window)
        self.error: OSError | None = None
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def settle(self) -> None:
        """Wait until every trial end asked so far is on disk."""
        with self.cond:
            self.waiting += 1
            self.cond.notify_all()
            try:
                self._wait_done(self.asked)
            finally:
                self.waiting -= 1

    def request(self) -> None:
        with self.cond:
            self.asked += 1
            if self.thread is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(
                    target=self._run, name="sweepspec-journal-fsync", daemon=True
                )
                self.thread.start()
                atexit.register(self.flush)
            elif self.idle:  # not woken within its window: its end wakes it
                self.cond.notify_all()

    def flush(self) -> None:
        self.settle()
        self.check()

    def check(self) -> None:
        error, self.error = self.error, None
        if error is not None:
            raise JournalWriteError(_write_failed(self.label, error))

    def _wait_done(self, count: int) -> None:
        while self.done < count and self.thread is not None and self.thread.is_alive():
            self.cond.wait(1.0)

    def _run(self) -> None:
        fd = -1
        try:
            fd = os.open(self.path, os.O_RDONLY)
            while True:
                with self.cond:
                    self.idle = True
                    while self.done >= self.asked:
                        self.cond.wait()
                    self.idle = False
                    target = self.asked
                try:
                    os.fsync(fd)
                except OSError as exc:
                    self.error = exc
                with self.cond:
                    self.done = target
                    self.cond.notify_all()
                    ends = time.monotonic() + self.window
                    while not self.waiting and (left := ends - time.monotonic()) > 0:
                        self.cond.wait(left)
        except OSError as exc:  # the journal cannot be opened: said at the next write
            with self.cond:
                self.error, self.done = exc, self.asked
                self.cond.notify_all()
        finally:
            if fd >= 0:
                os.close(fd)


def _durable(log: dict[str, Any]) -> str | None:
    """When ``log`` must be on disk: ``"now"`` (before the write returns) for a study's
    creation, deletion or attribute; ``"soon"`` (by the thread of :class:`_Syncer`) for a
    trial's end, and with it every record written before; else with the next of those."""
    op = log["op_code"]
    if op == _CREATE_STUDY or op in _STUDY_OPS:
        return "now"
    if op == _SET_TRIAL_STATE and TrialState(log["state"]).is_finished():
        return "soon"
    return None


def _write_failed(label: str, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"cannot write to {label}: the disk is full ({exc.strerror}); every finished trial "
            "is kept there: make room, then run the same command again to resume"
        )
    return (
        f"cannot write to {label}: {exc.strerror}; run the same command again to resume once "
        "it can be written"
    )
