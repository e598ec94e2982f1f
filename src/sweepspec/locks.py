"""File locks and SQLite paths shared by engines and trackers (standard library, SQLAlchemy
only where a URL is parsed).

* :func:`file_lock`: an exclusive ``flock`` on a file, for processes on one machine.
* :func:`sqlite_setup_lock`: processes that start together on one new SQLite file race in
  its schema set-up (Optuna's tables, MLflow's migrations); all but one fail. Under this lock
  one makes the tables and the others find them.
* :func:`raced`: the errors such a race leaves (on SQLite and on PostgreSQL), worth one more
  try after a pause (:data:`OPEN_ATTEMPTS` in all).
* :func:`absolute_sqlite`: ``sqlite:///relative.db`` with its path made absolute, so that a
  trial that changes the working directory does not move the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator

__all__ = [
    "OPEN_ATTEMPTS",
    "absolute_sqlite",
    "beside",
    "file_lock",
    "open_lock",
    "process_alive",
    "raced",
    "sqlite_setup_lock",
]

OPEN_ATTEMPTS = 8
"""How many times a store is opened when the attempts before lost a set-up race."""

_RACE_SIGNS = ("already exists", "duplicate key", "UNIQUE constraint failed", "database is locked")


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user counts): whether
    the holder of a claim or a trial on this host is still there."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_lock(path: str) -> int:
    """A lock file opened for flock (read-only: another user's file on this host will do)."""
    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)


@contextlib.contextmanager
def file_lock(path: str | None) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX ``flock``); no lock at all for None."""
    if path is None:
        yield
        return
    import fcntl

    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def beside(database: str, kind: str) -> str:
    """A lock for an SQLite file, in the temporary folder (not beside the user's file, so
    no stray file appears in their project): one per file, whoever opens it on this host."""
    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"sweepspec-{kind}-{digest}.lock")


@contextlib.contextmanager
def sqlite_setup_lock(url: str | None) -> Iterator[None]:
    """For an SQLite file, a lock while its tables are made or checked (see the module)."""
    database = None
    if url is not None and url.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    folder = os.path.dirname(database)
    if folder and not os.path.isdir(folder):
        yield  # the store's own error says what is wrong with it
        return
    with file_lock(beside(database, "setup")):
        yield


def raced(exc: BaseException) -> bool:
    """Processes started together on an empty database all create its tables; all but one
    hit "duplicate key", "already exists" (PostgreSQL) or "UNIQUE constraint failed",
    "database is locked" (SQLite), and find the tables there on a second try."""
    text = str(exc)
    return type(exc).__name__ in ("IntegrityError", "ProgrammingError", "OperationalError") and (
        any(sign in text for sign in _RACE_SIGNS)
    )


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative.db`` with its path made absolute; any other URL as it is. A URL
    SQLAlchemy cannot parse raises ValueError."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not database.startswith("file:") and not os.path.isabs(database):
            return parsed.set(database=os.path.abspath(database)).render_as_string(False)
    return url
