"""GPUs per worker (``budget.gpus_per_trial``, ``run --gpus``): real sweeps whose trials write
down the devices they were given; no GPU is needed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import mlflow
import pytest

from sweepspec.main import main
from sweepspec.runners.gpus import VISIBLE

# A function trial and a command trial that write what they saw, with when and where they ran.
SEEN = """
import json, os, time

VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "SWEEPSPEC_GPUS")
ON_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")  # in the worker process, before any trial


def write(number):
    start = time.time()
    time.sleep(0.4)
    seen = {
        "number": number,
        "worker": os.getppid(),
        "on_import": ON_IMPORT,
        "env": {name: os.environ.get(name) for name in VARIABLES},
        "start": start,
        "end": time.time(),
    }
    with open(os.path.join(os.path.dirname(__file__), "seen.jsonl"), "a") as fh:
        fh.write(json.dumps(seen) + "\\n")


def objective(trial):
    write(trial.number)
    return trial.params["x"]


if __name__ == "__main__":
    write(int(os.environ["SWEEPSPEC_TRIAL"]))
    print(json.dumps({"loss": 0.5}))
"""

FUNCTION = """
method: random
metric: {name: loss}
function: seen:objective
run_cap: 6
parameters:
  x: {min: 0.0, max: 1.0}
"""

COMMAND = """
method: random
metric: {name: loss}
program: seen.py
command: ["${interpreter}", "${program}"]
run_cap: 6
parameters:
  x: {min: 0.0, max: 1.0}
"""


def _write(folder: Path, spec: str, budget: str = "") -> None:
    (folder / "seen.py").write_text(textwrap.dedent(SEEN).lstrip())
    text = textwrap.dedent(spec).lstrip() + (f"budget: {{{budget}}}\n" if budget else "")
    (folder / "sweep.yaml").write_text(text)


def _run(folder: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "none", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def _seen(folder: Path) -> list[dict[str, object]]:
    lines = (folder / "seen.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _devices(row: dict[str, object]) -> str:
    """The one value every variable held for this trial (they must agree)."""
    env = row["env"]
    assert isinstance(env, dict)
    values = set(env.values())
    assert len(values) == 1, env
    return str(values.pop())


def _assert_own_devices(rows: list[dict[str, object]], shares: set[str]) -> None:
    """Each worker's trials saw one device set of ``shares``, a different one per worker,
    and trials that ran at the same time never shared a device."""
    by_worker: dict[object, set[str]] = {}
    for row in rows:
        by_worker.setdefault(row["worker"], set()).add(_devices(row))
    assert sorted(by_worker.values(), key=sorted) == [{s} for s in sorted(shares)]
    overlapping = 0
    for a, b in combinations(rows, 2):
        if float(a["start"]) < float(b["end"]) and float(b["start"]) < float(a["end"]):  # type: ignore[arg-type]
            overlapping += 1
            assert not set(_devices(a).split(",")) & set(_devices(b).split(","))
    assert overlapping > 0  # the two workers did run trials side by side


@pytest.mark.parametrize("spec", [FUNCTION, COMMAND], ids=["function", "command"])
def test_two_workers_share_four_gpus_two_per_trial(tmp_path: Path, spec: str) -> None:
    _write(tmp_path, spec, "gpus_per_trial: 2")
    lines = _run(tmp_path, "--workers", "2", "--gpus", "0,1,2,3")
    assert lines[1] == ("sweepspec: GPUs (2 per trial, from --gpus): worker 0: 0,1; worker 1: 2,3")
    rows = _seen(tmp_path)
    assert sorted(int(str(r["number"])) for r in rows) == list(range(6))
    _assert_own_devices(rows, {"0,1", "2,3"})
    if spec is FUNCTION:  # a worker process itself sees its devices, from its start
        assert all(r["on_import"] == _devices(r) for r in rows)


def test_more_workers_than_device_sets_are_capped_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path, FUNCTION, "gpus_per_trial: 2")
    lines = _run(tmp_path, "--workers", "3", "--gpus", "0,1,2,3")
    assert lines[:3] == [
        "sweepspec: 3 workers asked, 2 started (4 GPUs in --gpus, 2 per trial)",
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none, "
        "2 workers)",
        "sweepspec: GPUs (2 per trial, from --gpus): worker 0: 0,1; worker 1: 2,3",
    ]
    _assert_own_devices(_seen(tmp_path), {"0,1", "2,3"})


def test_a_device_listed_twice_is_shared_by_two_workers(tmp_path: Path) -> None:
    """Without budget.gpus_per_trial, --gpus gives each trial one device."""
    _write(tmp_path, FUNCTION)
    lines = _run(tmp_path, "--workers", "4", "--gpus", "0,0,1,1", "--trials", "4")
    assert lines[1] == (
        "sweepspec: GPUs (1 per trial, from --gpus): worker 0: 0; worker 1: 0; worker 2: 1; "
        "worker 3: 1"
    )
    rows = _seen(tmp_path)
    workers: dict[str, set[object]] = {}
    for row in rows:
        workers.setdefault(_devices(row), set()).add(row["worker"])
    assert set(workers) <= {"0", "1"}
    assert all(len(pids) <= 2 for pids in workers.values())


def test_the_default_list_is_cuda_visible_devices(tmp_path: Path) -> None:
    _write(tmp_path, COMMAND.replace("run_cap: 6", "run_cap: 2"), "gpus_per_trial: 1")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "GPU-5d6e,3"}
    lines = _run(tmp_path, env=env)
    assert lines[1] == (
        "sweepspec: GPUs (1 per trial, from CUDA_VISIBLE_DEVICES): worker 0: GPU-5d6e"
    )
    assert [_devices(r) for r in _seen(tmp_path)] == ["GPU-5d6e", "GPU-5d6e"]


NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0c7a4d2e-1b4f-4a4c-9d55-2f3e6a1b7c10)"
echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9e2b1c3d-7a6f-4e2d-8c1b-5d4a3f2e1c0b)"
echo "  MIG 1g.5gb      Device  0: (UUID: MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d)"
echo "GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-4f3e2d1c-0b9a-4877-8665-544332211000)"
"""


def test_without_cuda_visible_devices_nvidia_smi_lists_them(tmp_path: Path) -> None:
    """An ``nvidia-smi`` on PATH that prints what the real one prints for ``-L``."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(stat.S_IRWXU)
    _write(tmp_path, FUNCTION.replace("run_cap: 6", "run_cap: 2"), "gpus_per_trial: 1")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{tools}{os.pathsep}{env['PATH']}"
    lines = _run(tmp_path, "--workers", "4", env=env)
    assert lines[:3] == [
        "sweepspec: 4 workers asked, 2 started (2 trials left in the budget)",
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none, "
        "2 workers)",
        "sweepspec: GPUs (1 per trial, from nvidia-smi -L): worker 0: 0; worker 1: 1",
    ]
    assert {_devices(r) for r in _seen(tmp_path)} <= {"0", "1"}


def test_gpus_per_trial_zero_hides_every_device(tmp_path: Path) -> None:
    _write(tmp_path, COMMAND.replace("run_cap: 6", "run_cap: 1"), "gpus_per_trial: 0")
    lines = _run(tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"})
    assert lines[1] == "sweepspec: GPUs: none (budget.gpus_per_trial: 0)"
    assert [_devices(r) for r in _seen(tmp_path)] == [""]


def test_one_worker_in_this_process_and_the_mlflow_tag(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], mlflow_store: Callable[[Path], str]
) -> None:
    """One worker runs in the ``run`` process: its trials get the devices, the process
    itself keeps its environment, and each trial's MLflow run holds them as a tag."""
    uri = mlflow_store(sweep_dir / "mlflow.db")
    _write(
        sweep_dir,
        FUNCTION.replace("run_cap: 6", "run_cap: 2")
        + f"tracking: {{tracker: mlflow, uri: '{uri}'}}\n",
        "gpus_per_trial: 2",
    )
    before = {name: os.environ.get(name) for name in VISIBLE}
    assert main(["run", "sweep.yaml", "--gpus", "2,3,4"]) == 0
    assert {name: os.environ.get(name) for name in VISIBLE} == before
    assert [_devices(r) for r in _seen(sweep_dir)] == ["2,3", "2,3"]
    ours = [x for x in capsys.readouterr().err.splitlines() if x.startswith("sweepspec:")]
    assert ours[1] == "sweepspec: GPUs (2 per trial, from --gpus): worker 0: 2,3"  # (and
    # not MLflow's own log lines, which it writes there too when its logging is set up)
    runs = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()],
        "tags.`sweepspec.trial_number` != ''",
    )
    assert sorted(r.data.tags["sweepspec.gpus"] for r in runs) == ["2,3", "2,3"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "budget, args, message",
    [
        (
            "",
            ["--gpus", "a,b"],
            "Error: --gpus 'a,b': 'a' is not a device; give indices as nvidia-smi -L numbers "
            "the GPUs (0,1,2,3) or their UUIDs (GPU-...), separated by commas",
        ),
        (
            "gpus_per_trial: 3",
            ["--gpus", "0,1"],
            "Error: budget.gpus_per_trial is 3, but --gpus lists 2 (0,1)",
        ),
        (
            "",
            ["--gpus", ""],
            "Error: --gpus lists no device; give ids like 0,1,2,3, or leave --gpus out",
        ),
        (
            "gpus_per_trial: 2",
            ["--gpus", "0,0,1,1"],
            "Error: --gpus 0,0,1,1 gives worker 0 device 0 twice (2 per trial); to share "
            "devices between workers, list each worker's devices in turn (0,1,0,1)",
        ),
    ],
    ids=["not-ids", "too-few", "empty", "one-device-twice"],
)
def test_bad_devices_are_one_line(
    sweep_dir: Path,
    capsys: pytest.CaptureFixture[str],
    budget: str,
    args: list[str],
    message: str,
) -> None:
    _write(sweep_dir, FUNCTION, budget)
    assert main(["run", "sweep.yaml", "--tracker", "none", *args]) == 1
    assert capsys.readouterr().err == message + "\n"
    assert not (sweep_dir / ".sweepspec").exists()  # refused before anything started


def test_no_gpu_found_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(sweep_dir))  # no nvidia-smi there
    _write(sweep_dir, FUNCTION, "gpus_per_trial: 1")
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 1
    assert capsys.readouterr().err == (
        "Error: budget.gpus_per_trial is 1, but no GPU was found (CUDA_VISIBLE_DEVICES is "
        "not set and nvidia-smi is not on PATH); give the devices with --gpus 0,1,...\n"
    )


def test_a_failing_nvidia_smi_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``nvidia-smi`` prints when the driver is not loaded, and its exit code."""
    (sweep_dir / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn'\\''t communicate with the "
        "NVIDIA driver.'\nexit 9\n"
    )
    (sweep_dir / "nvidia-smi").chmod(stat.S_IRWXU)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", f"{sweep_dir}{os.pathsep}{os.environ['PATH']}")
    _write(sweep_dir, FUNCTION, "gpus_per_trial: 1")
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 1
    assert capsys.readouterr().err == (
        "Error: nvidia-smi -L exited with code 9: NVIDIA-SMI has failed because it couldn't "
        "communicate with the NVIDIA driver.; give the devices with --gpus\n"
    )


def test_a_bad_cuda_visible_devices_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,gpu1")
    _write(sweep_dir, FUNCTION, "gpus_per_trial: 1")
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 1
    assert capsys.readouterr().err == (
        "Error: CUDA_VISIBLE_DEVICES '0,gpu1': 'gpu1' is not a device; give indices as "
        "nvidia-smi -L numbers the GPUs (0,1,2,3) or their UUIDs (GPU-...), separated by "
        "commas\n"
    )


def test_a_negative_gpus_per_trial_points_at_its_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, FUNCTION, "gpus_per_trial: -1")
    assert main(["validate", "sweep.yaml"]) == 1
    assert capsys.readouterr().err == (
        "sweep.yaml:7:26: error: budget.gpus_per_trial: 'gpus_per_trial >= 0' must hold, "
        "but got -1\n"
    )


def test_gpus_with_wandb_server_mode_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, FUNCTION + "wandb: {mode: server}\n")
    assert main(["run", "sweep.yaml", "--engine", "wandb", "--gpus", "0,1"]) == 1
    assert capsys.readouterr().err == (
        "Error: --gpus shares devices among sweepspec's own workers; with wandb: {mode: "
        "server}, W&B's agent runs the trials: start one agent per device set, each with its "
        "CUDA_VISIBLE_DEVICES\n"
    )
