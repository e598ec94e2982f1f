"""The engine-neutral loop (``runners/sweep.py``) through ``sweepspec run``: the same spec on
both engines gives the same ``results``; the local W&B engine runs with several workers,
run_cap across them, resume after Ctrl-C and grid exhaustion; a missing engine is one line."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

TRIAL = """
import time

def objective(trial):
    if trial.params["x"] == 2:
        raise ValueError("x=2 is broken")
    loss = trial.params["x"] * trial.params["opt"]["lr"]
    for step in range(3):
        trial.report({"loss": loss + 1.0 / (step + 1)}, step)
        time.sleep(trial.params.get("pause", 0))
    return {"loss": loss, "acc": 0.5}
"""

GRID = """
method: grid
metric: {name: loss}
function: sweep_trial:objective
parameters:
  x: {values: [1, 2, 3]}
  opt:
    parameters:
      lr: {value: 0.5}
"""

PROGRAM = """
import sys

x = float(next(a for a in sys.argv if a.startswith("--x=")).split("=", 1)[1])
if x == 2:
    sys.exit("x=2 is broken")
for step in range(3):
    print(f"loss={x + 1.0 / (step + 1)} step={step}", flush=True)
print(f"loss={x} acc=0.5", flush=True)
"""

COMMAND = """
method: grid
metric: {name: loss}
program: sweep_program.py
parameters:
  x: {values: [1, 2, 3]}
"""

RANDOM = """
method: random
metric: {name: loss}
function: sweep_trial:objective
run_cap: 6
parameters:
  x: {values: [1, 3, 4]}
  opt:
    parameters:
      lr: {min: 0.1, max: 1.0}
"""


def _write(folder: Path, spec: str) -> None:
    (folder / "sweep_trial.py").write_text(textwrap.dedent(TRIAL).lstrip())
    (folder / "sweep_program.py").write_text(textwrap.dedent(PROGRAM).lstrip())
    (folder / "sweep.yaml").write_text(textwrap.dedent(spec).lstrip())


def _results(folder: Path, notes: bool = False) -> list[dict[str, object]]:
    """The sweep's rows; with ``notes``, lines on stderr are allowed (a sweep read while it
    runs: 'no trial of the sweep has finished (COMPLETE) yet')."""
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", "json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert notes or done.stderr == ""
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def _shown(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """What must agree between engines: keys, state, params, metrics, error."""
    return sorted(
        (
            tuple(sorted(r)),
            r["state"],
            json.dumps(r["params"], sort_keys=True),
            json.dumps(r["metrics"], sort_keys=True),
            r.get("error"),
        )
        for r in rows
    )


def _run(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("spec", [GRID, COMMAND], ids=["function", "command"])
def test_the_same_spec_on_both_engines_gives_the_same_results(tmp_path: Path, spec: str) -> None:
    shown = {}
    for engine in ("optuna", "wandb"):
        folder = tmp_path / engine
        folder.mkdir()
        _write(folder, spec)
        done = _run(folder, "--engine", engine, "--tracker", "none")
        assert done.returncode == 0, done.stderr
        assert "sweepspec: stopped: the grid is exhausted: every point has been run" in (
            done.stderr.splitlines()
        )
        shown[engine] = _shown(_results(folder))
    assert shown["wandb"] == shown["optuna"]
    assert sorted(row[1] for row in shown["wandb"]) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert shown["wandb"][-1][0] == (
        "datetime_complete",
        "datetime_start",
        "duration",
        "metrics",
        "number",
        "params",
        "state",
        "values",
    )


def test_the_wandb_engine_logs_to_mlflow_as_optuna_does(
    tmp_path: Path, mlflow_store: Callable[[Path], str]
) -> None:
    layout = {}
    for engine in ("optuna", "wandb"):
        folder = tmp_path / engine
        folder.mkdir()
        uri = mlflow_store(folder / "mlflow.db")
        _write(folder, GRID + f"tracking: {{tracker: mlflow, uri: '{uri}'}}\n")
        done = _run(folder, "--engine", engine)
        assert done.returncode == 0, done.stderr
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("sweep")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        trials = [r for r in runs if "sweepspec.trial_number" in r.data.tags]
        parent = [r for r in runs if "sweepspec.trial_number" not in r.data.tags]
        assert [r.data.tags["sweepspec.engine"] for r in parent] == [engine]
        layout[engine] = sorted(
            (r.data.params["x"], r.info.status, sorted(r.data.params), sorted(r.data.metrics))
            for r in trials
        )
    assert layout["wandb"] == layout["optuna"]
    assert [status for _, status, _, _ in layout["wandb"]] == ["FINISHED", "FAILED", "FINISHED"]


def test_wandb_engine_two_workers_share_run_cap(tmp_path: Path) -> None:
    # each trial takes 1.5 s: the first worker cannot run all six before the second starts
    _write(tmp_path, RANDOM + "  pause: {value: 0.5}\n")
    done = _run(tmp_path, "--engine", "wandb", "--tracker", "none", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert (
        "sweepspec: sweep 'sweep' on wandb (storage .sweepspec/sweep.wandb.jsonl, tracker "
        "none, 2 workers)"
    ) in done.stderr.splitlines()
    rows = _results(tmp_path)
    assert sorted(r["state"] for r in rows) == ["COMPLETE"] * 6  # type: ignore[type-var]
    assert sorted(r["number"] for r in rows) == list(range(6))  # type: ignore[type-var]
    log = (tmp_path / ".sweepspec" / "sweep.wandb.jsonl").read_text().splitlines()
    workers = {json.loads(line)["worker"] for line in log if '"ask"' in line}
    assert len(workers) == 2  # both workers ran trials of the one sweep


def _start(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], text: str, seconds: float = 120) -> list[str]:
    """stderr lines up to the first that contains ``text``."""
    assert proc.stderr is not None
    lines, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"the run ended before {text!r}: {lines}"
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {seconds} s: {lines}")


def test_wandb_engine_resumes_after_ctrl_c(tmp_path: Path) -> None:
    _write(tmp_path, RANDOM.replace("run_cap: 6", "run_cap: 5") + "  pause: {value: 0.2}\n")
    proc = _start(tmp_path, "--engine", "wandb", "--tracker", "none")
    _wait_for(proc, "trial 1 COMPLETE")
    time.sleep(0.2)  # inside trial 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = _results(tmp_path)
    states = [r["state"] for r in rows]
    assert err.splitlines()[-3:] == [
        f"sweepspec: interrupted; {states.count('COMPLETE')} finished trials are kept in "
        ".sweepspec/sweep.wandb.jsonl (a trial that was running is recorded as failed); run "
        "the same command again to resume",
        "",
        "Aborted.",
    ]
    assert "RUNNING" not in states and states[:2] == ["COMPLETE", "COMPLETE"]
    assert rows[-1]["error"] == "interrupted (Ctrl-C)"

    again = _run(tmp_path, "--engine", "wandb", "--tracker", "none")
    assert again.returncode == 0, again.stderr
    assert (
        f"sweepspec: sweep 'sweep' on wandb (storage .sweepspec/sweep.wandb.jsonl, tracker "
        f"none); resuming after {len(rows)} trials"
    ) in again.stderr.splitlines()
    states = [r["state"] for r in _results(tmp_path)]
    assert states.count("COMPLETE") == 5 and "RUNNING" not in states


def test_a_missing_engine_package_is_one_line(tmp_path: Path) -> None:
    """``sys.modules["sweeps"] = None`` is Python's own way to make ``import sweeps`` fail as
    it does where the package is not installed."""
    _write(tmp_path, GRID)
    code = (
        "import sys; sys.modules['sweeps'] = None\n"
        "from sweepspec.main import main\n"
        "sys.exit(main(['run', 'sweep.yaml', '--engine', 'wandb', '--tracker', 'none']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: the wandb engine needs sweeps: pip install 'sweepspec[wandb]', or run on "
        "another engine (--engine)\n"
    )
    assert not (tmp_path / ".sweepspec" / "sweep.wandb.jsonl").exists()


SILENT_TRIAL = """
import os, time

def objective(trial):
    mark = f"running-{trial.number}"
    with open(mark, "w") as fh:
        fh.write(str(os.getppid()))  # the worker: a trial runs in a fork of it
    time.sleep(1.5)
    os.unlink(mark)
    return {"loss": trial.params["x"]}
"""


def _marks(folder: Path) -> list[tuple[int, int]]:
    """(trial number, worker pid) of the running trials' marks. A mark is made, then the pid
    written into it, and removed when its trial ends: only whole ones count."""
    found = []
    for mark in folder.glob("running-*"):
        try:
            pid = mark.read_text().strip()
        except FileNotFoundError:
            continue
        if pid:
            found.append((int(mark.name.split("-")[1]), int(pid)))
    return found


SILENT = """
method: random
metric: {name: loss}
function: silent_trial:objective
run_cap: 6
budget: {heartbeat_interval: 1, grace_period: 2}
parameters:
  x: {min: 0.0, max: 1.0}
"""


@pytest.mark.parametrize("engine", ["optuna", "wandb"])
def test_a_silent_worker_loses_its_trial_and_the_others_run_its_place(
    tmp_path: Path, engine: str
) -> None:
    """Three `sweepspec run` processes on one local sweep (a journal, the W&B engine's log);
    one stops mid-trial (SIGSTOP: its process is there, so only the heartbeat can tell, as
    for a machine lost from a shared disk), then is killed. The two others fail its trial
    after the grace period and run its place: 6 finished trials, none RUNNING."""
    (tmp_path / "silent_trial.py").write_text(textwrap.dedent(SILENT_TRIAL).lstrip())
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SILENT).lstrip())
    args = ["run", "sweep.yaml", "--engine", engine, "--tracker", "none"]
    runs = {
        proc.pid: proc
        for proc in (
            subprocess.Popen(
                [sys.executable, "-m", "sweepspec", *args],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for _ in range(3)
        )
    }
    deadline = time.monotonic() + 180
    while not (marks := _marks(tmp_path)):
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.01)
    number, pid = marks[0]
    victim = runs[pid]
    os.killpg(victim.pid, signal.SIGSTOP)
    stopped = datetime.datetime.now()
    while (row := _row(tmp_path, number))["state"] == "RUNNING":
        assert datetime.datetime.now() - stopped < datetime.timedelta(seconds=60), "RUNNING"
        time.sleep(0.1)
    failed = datetime.datetime.fromisoformat(str(row["datetime_complete"]))
    failed_after = (failed.replace(tzinfo=None) - stopped).total_seconds()
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    for proc in runs.values():
        if proc is not victim:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    assert row["state"] == "FAIL"
    assert row["error"] == (
        f"its worker ({socket.gethostname()}:{victim.pid}) sent no heartbeat for 2s "
        "(budget.grace_period): it was killed or lost its machine"
    )
    assert 1.0 <= failed_after <= 8.0, failed_after
    print(f"\n{engine}: trial {number} failed {failed_after:.2f}s after its worker stopped")
    rows = _results(tmp_path)
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states
    assert sorted(r["number"] for r in rows) == list(range(len(rows)))  # type: ignore[type-var]


def _row(folder: Path, number: int) -> dict[str, object]:
    return next(r for r in _results(folder, notes=True) if r["number"] == number)
