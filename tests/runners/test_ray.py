"""The Ray Tune engine (``runners/ray.py``) with a real local Ray: the ``ray_cluster``
fixture's (tests/conftest.py, ``ray.init(num_cpus=2)``, one for all the Ray tests of a
worker), which ``sweepspec run`` in this process uses, and which runs in other processes join
with ``--ray-address``."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from grid_sweep import write_grid, write_trial  # noqa: E402
from hyperband_curves import RunState, Wandb  # noqa: E402

from sweepspec.main import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _results(folder: Path, fmt: str = "json") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", fmt],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _states(folder: Path) -> dict[int, str]:
    return {row["number"]: row["state"] for row in json.loads(_results(folder))}


def test_the_quickstart_stops_some_trials_early(
    ray_cluster: str, sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart's spec and trial function, trained 20 epochs instead of 50 (the
    function's ``epochs`` parameter; a constant added to the spec): the rungs stay at epochs 6
    and 18, and a trial that is not stopped reports 20 values, each waiting for Tune's
    decision, not 50. Nine trials: a trial reaching a rung is stopped when it ranks in the
    worse part there, which in fewer trials may not happen once."""
    shutil.copy(ROOT / "examples" / "quickstart" / "train.py", sweep_dir / "train.py")
    spec = (ROOT / "examples" / "quickstart" / "sweep.yaml").read_text(encoding="utf-8")
    assert spec.endswith("    max: 1.0e-1\n"), "the spec's last key is no longer parameters"
    (sweep_dir / "sweep.yaml").write_text(spec + "  epochs: {value: 20}\n", encoding="utf-8")
    code = main(["run", "sweep.yaml", "--engine", "ray", "--tracker", "none", "--trials", "9"])
    err = capsys.readouterr().err
    assert code == 0, err
    states = _states(sweep_dir)
    assert sorted(states) == list(range(9))
    assert "PRUNED" in states.values() and "COMPLETE" in states.values(), states
    pruned = sum(s == "PRUNED" for s in states.values())
    assert f"9 finished ({pruned} stopped early), 0 failed" in err


def test_the_stops_are_w_and_bs_on_the_same_values(ray_cluster: str, sweep_dir: Path) -> None:
    """Trials one at a time: W&B's ``stop_runs``, asked after each value each trial reported
    (replayed in the order they ran), stops exactly the trials Ray stopped, at the same
    step."""
    (sweep_dir / "curve.py").write_text(
        textwrap.dedent(
            """
            import math

            def objective(trial):
                a = trial.params["a"]
                for step in range(9):
                    trial.report({"m": 1 / (1 + a * step) + a / 10}, step)
                    if trial.should_stop():
                        break
                return None
            """
        )
    )
    (sweep_dir / "sweep.yaml").write_text(
        "method: random\nmetric: {name: m, goal: minimize}\nfunction: curve:objective\n"
        "run_cap: 8\nearly_terminate: {type: hyperband, min_iter: 2, eta: 2}\n"
        "parameters:\n  a: {min: 0.0, max: 4.0}\n"
    )
    code = main(["run", "sweep.yaml", "--engine", "ray", "--tracker", "none"])
    assert code == 0
    rows = json.loads(_results(sweep_dir))
    from sweepspec import load
    from sweepspec.runners.base import EngineOptions, open_engine

    engine = open_engine("ray", load("sweep.yaml"), "sweep.yaml", EngineOptions(create=False))
    curves = engine.curves()
    engine.close()
    wandb = Wandb(
        {
            "method": "random",
            "metric": {"name": "m", "goal": "minimize"},
            "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
            "parameters": {"a": {"values": [0]}},
        }
    )
    stopped_by_wandb = {}
    for row in sorted(rows, key=lambda r: r["datetime_start"]):
        run = wandb.start()
        for step, value in curves[row["number"]]:
            wandb.log(run, value)
            if run in wandb.stop():
                stopped_by_wandb[row["number"]] = step
                break
        else:
            run.state = RunState.finished
    stopped_by_ray = {
        r["number"]: curves[r["number"]][-1][0] for r in rows if r["state"] == "PRUNED"
    }
    assert stopped_by_ray == stopped_by_wandb
    assert stopped_by_ray, "no trial was stopped: the test shows nothing"


HEADERS: dict[str, list[str]] = {}  # each engine's CSV header, as the tests below see it


@pytest.mark.parametrize("engine", ["optuna", "wandb", "ray"])
def test_results_have_the_same_columns_and_states_on_every_engine(
    ray_cluster: str, sweep_dir: Path, engine: str
) -> None:
    write_grid(sweep_dir)
    code = main(["run", "sweep.yaml", "--engine", engine, "--tracker", "none"])
    assert code == 0
    header = next(csv.reader(io.StringIO(_results(sweep_dir, "csv"))))
    assert header[:3] == ["number", "state", "params.x"]
    assert "metrics.loss" in header and "metrics.acc" in header
    assert _states(sweep_dir) == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE"}
    HEADERS[engine] = header
    assert all(other == header for other in HEADERS.values()), HEADERS


def test_a_run_stopped_with_ctrl_c_resumes_from_tunes_state(
    ray_cluster: str, sweep_dir: Path
) -> None:
    write_trial(sweep_dir)
    (sweep_dir / "sweep.yaml").write_text(
        "method: random\nmetric: {name: loss}\nfunction: sweep_trial:objective\nrun_cap: 4\n"
        "parameters:\n  x: {values: [1, 3, 4, 5]}\n  pause: {value: 1.5}\n"
    )
    argv = [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--engine", "ray"]
    argv += ["--tracker", "none", "--ray-address", ray_cluster]
    proc = subprocess.Popen(argv, cwd=sweep_dir, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "trial 0 COMPLETE" in line:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "run the same command again to resume" in rest
    first = _states(sweep_dir)  # a trial cut short, if one had started, is FAIL
    assert first[0] == "COMPLETE" and set(first.values()) <= {"COMPLETE", "FAIL"}, first
    again = subprocess.run(argv, cwd=sweep_dir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming after {len(first)} trials" in again.stderr
    assert _states(sweep_dir) == {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE", 3: "COMPLETE"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_bad_address_is_one_line_at_once(sweep_dir: Path) -> None:
    write_grid(sweep_dir)
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--engine", "ray"]
        + ["--tracker", "none", "--ray-address", address],
        cwd=sweep_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: no Ray cluster answers at {address} (Connection refused); start one with "
        "'ray start --head', or run without --ray-address (and RAY_ADDRESS) for a local Ray\n"
    )
    assert time.monotonic() - started < 60


def test_ray_not_installed_is_one_line(sweep_dir: Path) -> None:
    write_grid(sweep_dir)
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from sweepspec.main import main\n"
        "sys.exit(main(['run', 'sweep.yaml', '--engine', 'ray', '--tracker', 'none']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=sweep_dir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr == (
        "Error: the ray engine needs ray: pip install 'sweepspec[ray]', or run on another "
        "engine (--engine)\n"
    )


def test_the_ray_address_with_another_engine_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_grid(sweep_dir)
    assert main(["run", "sweep.yaml", "--ray-address", "127.0.0.1:6379"]) == 1
    assert capsys.readouterr().err == (
        "Error: --ray-address is an option of the ray engine; this sweep runs on optuna "
        "(--engine ray to run it there)\n"
    )
