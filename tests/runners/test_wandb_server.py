"""W&B server mode up to the network boundary: the real ``wandb.sweep`` and ``wandb.agent``
against a W&B server stand-in on 127.0.0.1 (tests/runners/wandb_server_fake.py). What is not
exercised: W&B's real server (its search, its stop decisions, authentication)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sweepspec import load
from sweepspec.compiler.wandb import compile_wandb

from .wandb_server_fake import FakeWandbServer, serve

FAKE_KEY = "fa1ce" * 8  # 40 characters, as W&B requires

SPEC = """
name: server-sweep
method: random
metric: {name: val_loss, goal: minimize}
parameters:
  lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
  layers: {values: [1, 2, 3]}
run_cap: 2
project: proj
entity: team
wandb: {mode: server}
"""

TRAIN = """
import json, os


def objective(trial):
    with open("seen.jsonl", "a") as fh:
        fh.write(json.dumps(trial.params) + "\\n")
    for step in range(3):
        trial.report({"val_loss": trial.params["lr"] * (3 - step)}, step=step)
    return trial.params["lr"]


def wandb_style():
    import wandb
    run = wandb.init()
    with open("seen.jsonl", "a") as fh:
        fh.write(json.dumps(dict(wandb.config)) + "\\n")
    wandb.log({"val_loss": wandb.config.lr})
    run.finish()
"""

RUNS = [{"args": {"lr": 0.01, "layers": 2}}, {"args": {"lr": 0.002, "layers": 3}}]


@pytest.fixture
def server() -> Iterator[FakeWandbServer]:
    yield from serve(FakeWandbServer(runs=list(RUNS)))


def _run(folder: Path, server: FakeWandbServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_BASE_URL=server.url,
        WANDB_API_KEY=FAKE_KEY,
        WANDB_DIR=str(folder),
        WANDB_SILENT="true",
        HOME=str(folder),
    )
    # W&B's agent runs `python` from PATH (its ${interpreter}): this environment's, as when
    # the user has activated it
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--engine", "wandb", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _write(folder: Path, function: str) -> None:
    (folder / "sweep.yaml").write_text(SPEC + f"function: train:{function}\n")
    (folder / "train.py").write_text(textwrap.dedent(TRAIN))


@pytest.mark.parametrize("function", ["objective", "wandb_style"])
def test_the_sweep_is_the_compiled_config_and_the_agent_runs_the_function(
    tmp_path: Path, server: FakeWandbServer, function: str
):
    _write(tmp_path, function)
    proc = _run(tmp_path, server)
    assert proc.returncode == 0, proc.stderr
    expected = compile_wandb(load(str(tmp_path / "sweep.yaml"))).config
    assert server.config_sent() == expected
    assert server.variables("UpsertSweep")[0]["projectName"] == "proj"
    assert server.variables("UpsertSweep")[0]["entityName"] == "team"
    assert server.operations().count("CreateAgent") == 1
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert seen == [r["args"] for r in RUNS]
    logged = {
        run: [row["val_loss"] for row in rows if "val_loss" in row]
        for run, rows in server.history.items()
    }
    if function == "objective":
        assert logged == {"run1": [0.03, 0.02, 0.01], "run2": [0.006, 0.004, 0.002]}
    else:
        assert logged == {"run1": [0.01], "run2": [0.002]}
    state = json.loads((tmp_path / ".sweepspec" / "server-sweep.wandb-server.json").read_text())
    assert state["sweep_id"] == "sw1"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in proc.stdout + proc.stderr


def test_without_a_login_it_is_one_line(tmp_path: Path):
    _write(tmp_path, "objective")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_BASE_URL="http://127.0.0.1:9")
    proc = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--engine", "wandb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: W&B server mode needs a W&B login: run 'wandb login' (or set "
        "WANDB_API_KEY), or run locally with 'wandb: {mode: local}'\n"
    )


def test_a_changed_config_is_refused_unless_fresh(tmp_path: Path, server: FakeWandbServer):
    _write(tmp_path, "objective")
    state = tmp_path / ".sweepspec" / "server-sweep.wandb-server.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"sweep_id": "old1", "config_sha256": "0" * 64}))
    proc = _run(tmp_path, server)
    assert proc.returncode == 1
    where = Path(".sweepspec") / state.name
    assert proc.stderr.endswith(
        f"the compiled W&B config differs from that of sweep old1 ({where}); "
        "run again with --fresh to create a new sweep\n"
    )
    assert server.operations() == []
    assert yaml.safe_load(state.read_text())["sweep_id"] == "old1"


PROGRAM = """
import json
import wandb

run = wandb.init()
with open("seen.jsonl", "a") as fh:
    fh.write(json.dumps(dict(wandb.config)) + "\\n")
for epoch in range(2):
    wandb.log({"val_loss": wandb.config.lr / (epoch + 1)})
run.finish()
"""


def test_wandbs_agent_runs_an_unmodified_program(tmp_path: Path):
    (tmp_path / "sweep.yaml").write_text(SPEC + "program: train.py\n")
    (tmp_path / "train.py").write_text(PROGRAM)
    for server in serve(FakeWandbServer(runs=list(RUNS), program="train.py")):
        proc = _run(tmp_path, server)
        assert proc.returncode == 0, proc.stderr
        seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
        assert seen == [r["args"] for r in RUNS]
        logged = {
            run: [row["val_loss"] for row in rows if "val_loss" in row]
            for run, rows in server.history.items()
        }
        assert logged == {"run1": [0.01, 0.005], "run2": [0.002, 0.001]}
        assert server.config_sent()["program"] == "train.py"
