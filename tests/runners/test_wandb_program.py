"""A W&B sweep program, unmodified, gets its parameters as from W&B's agent, and what it logs
is read back while it runs (a real program, the real wandb SDK, offline)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sweepspec.runners.wandb_program import WandbRun

PROGRAM = textwrap.dedent(
    """
    import time
    import wandb

    run = wandb.init(config={"lr": 0.5, "epochs": 4})
    config = wandb.config
    for epoch in range(config.epochs):
        wandb.log({"val_loss": config.lr / (epoch + 1), "epoch": epoch, "tag": "x"})
        time.sleep(0.5)
    print("NESTED", config.optimizer["momentum"])
    run.finish()
    """
)


def _start(tmp_path: Path, params: dict[str, object]) -> tuple[WandbRun, subprocess.Popen[str]]:
    (tmp_path / "train.py").write_text(PROGRAM)
    run = WandbRun(str(tmp_path), "sweep1", params)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(run.env())
    proc = subprocess.Popen(
        [sys.executable, "train.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    return run, proc


def test_the_program_sees_the_parameters_and_its_logs_arrive_while_it_runs(tmp_path: Path):
    run, proc = _start(tmp_path, {"lr": 0.01, "epochs": 4, "optimizer": {"momentum": 0.9}})
    rows: list[tuple[dict[str, float], int]] = []
    seen_while_running = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        new = run.poll()
        if new:
            seen_while_running += len(new)
            rows += new
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=60)
    rows += run.poll()
    assert proc.returncode == 0
    assert "NESTED 0.9" in out
    assert seen_while_running >= 2  # early stopping can act before the program ends
    assert rows == [
        ({"val_loss": 0.01, "epoch": 0.0}, 0),
        ({"val_loss": 0.005, "epoch": 1.0}, 1),
        ({"val_loss": 0.01 / 3, "epoch": 2.0}, 2),
        ({"val_loss": 0.0025, "epoch": 3.0}, 3),
    ]
    assert run.summary() == {"val_loss": 0.0025, "epoch": 3.0}
    assert run.log is not None
    assert run.log.state.config == {"lr": 0.01, "epochs": 4, "optimizer": {"momentum": 0.9}}
    assert run.log.state.exit_code == 0


def test_the_parameter_file_is_the_one_wandbs_agent_writes(tmp_path: Path):
    run = WandbRun(str(tmp_path), "abc", {"lr": 0.1, "opt": {"m": 0.9}}, run_id="r1")
    env = run.env()
    path = tmp_path / "wandb" / "sweep-abc" / "config-r1.yaml"
    assert env["WANDB_SWEEP_PARAM_PATH"] == str(path)
    assert env["WANDB_RUN_ID"] == "r1"
    assert env["WANDB_SWEEP_ID"] == "abc"
    assert env["WANDB_MODE"] == "offline"
    from wandb.sdk.lib import config_util

    assert config_util.dict_from_config_file(str(path)) == {"lr": 0.1, "opt": {"m": 0.9}}
