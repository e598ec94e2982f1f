"""A W&B sweep program, unmodified, gets its parameters as from W&B's agent, and what it logs
is read back while it runs (a real program, the real wandb SDK, offline)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sweepspec.runners.wandb_program import WandbRun, config_text

PROGRAM = textwrap.dedent(
    """
    import time
    import wandb

    run = wandb.init(config={"lr": 0.5, "epochs": 4})
    config = wandb.config
    for epoch in range(config.epochs):
        wandb.log({"val_loss": config.lr / (epoch + 1), "epoch": epoch, "tag": "x"})
        time.sleep(1.0)
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
    assert seen_while_running >= 1  # early stopping can act before the program ends
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


def test_a_parameter_file_written_again_holds_the_new_parameters_only(tmp_path: Path) -> None:
    """A worker writes its file again for each trial (over the last one's, cut to its
    length): W&B reads the new trial's parameters, nothing of a longer file before."""
    from wandb.sdk.lib import config_util

    path = tmp_path / "config.yaml"
    long = {"lr": 0.123456789, "name": "a rather long value", "layers": 12}
    for params in (long, {"lr": 0.5}, {"lr": 0.25, "layers": 3}):
        env = WandbRun(str(tmp_path), "abc", params, param_path=path).env()
        assert env["WANDB_SWEEP_PARAM_PATH"] == str(path)
        assert config_util.dict_from_config_file(str(path)) == params
        assert path.read_text() == config_text(params)


def test_the_parameter_file_is_written_as_yaml_dump_writes_it(tmp_path: Path) -> None:
    """The file's text is ``yaml.dump``'s (what sweepspec wrote before, and W&B's agent
    writes), value by value, name by name, whatever the type; W&B reads it back as given."""
    import numpy as np
    import yaml
    from wandb.sdk.lib import config_util

    floats = [0.1, 1e-07, 1e17, 1e16, 5e-324, -0.0, 0.0, -2.5e-300, 1.7976931348623157e308]
    floats += [float("inf"), float("-inf"), 123456789.123, 2.0**60, 1 / 3]
    values: list[Any] = [*floats, 0, -7, 10**30, True, False, None, "a", "", "yes", "null"]
    values += ["1.5", "a: b", "# not a comment", "two\nlines", "ünïcode", [1, "b", 0.5]]
    values += [{"m": 0.9}, np.float64(1e-07), (1, 2)]
    names = ["x", "on", "1", "model.lr", "a b", "é", "n" * 200, "null", "-"]
    for name in names:
        for value in values:
            params = {name: value, "after": 1e-07}
            if isinstance(value, np.floating):  # PyYAML's safe dumper refuses it, as before
                with pytest.raises(yaml.representer.RepresenterError):
                    config_text(params)
                continue
            config = {k: {"value": v} for k, v in params.items()}
            dumped = yaml.dump(config, Dumper=yaml.CSafeDumper, sort_keys=False)
            expected = "wandb_version: 1\n\n" + dumped
            for _ in range(2):  # (kept per name and value: the same text the second time)
                assert config_text(params) == expected, (name, value)
    path = tmp_path / "config.yaml"
    nan = {"x": float("nan"), "y": 1e17, "z": "yes"}
    path.write_text(config_text(nan), encoding="utf-8")
    read = config_util.dict_from_config_file(str(path))
    assert config_text(nan).splitlines()[2:4] == ["x:", "  value: .nan"]
    assert math.isnan(read.pop("x")) and read == {"y": 1e17, "z": "yes"}


# --------------------------------------------------------------------------- through `run`

SWEEP = """
name: wandb-program
method: random
metric: {name: val_loss, goal: minimize}
parameters:
  lr: {distribution: log_uniform_values, min: 0.001, max: 1.0}
  optimizer:
    parameters:
      momentum: {values: [0.5, 0.9]}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
run_cap: 6
optuna: {sampler: {name: random, options: {seed: 1}}}  # configurations that W&B's rule stops
"""

# An ordinary W&B sweep program: knows nothing of sweepspec.
W_AND_B_PROGRAM = """
import json, sys, time
import wandb

run = wandb.init()
config = wandb.config
with open("seen.jsonl", "a") as fh:
    fh.write(json.dumps({"lr": config.lr, "momentum": config.optimizer["momentum"]}) + "\\n")
for epoch in range(8):
    wandb.log({"val_loss": config.lr * 10 / (epoch + 1), "epoch": epoch})
    time.sleep(0.25)
run.finish()
"""

W_AND_B_FUNCTION = """
import json, time
import wandb


def train():
    run = wandb.init()
    config = wandb.config
    with open("seen.jsonl", "a") as fh:
        fh.write(json.dumps({"lr": config.lr, "momentum": config.optimizer["momentum"]}) + "\\n")
    for epoch in range(8):
        wandb.log({"val_loss": config.lr * 10 / (epoch + 1), "epoch": epoch})
        time.sleep(0.25)
    run.finish()
"""


# The same program on the W&B engine, whose random search is seeded by its sweep id: a grid
# in this order makes every later run worse, so W&B's hyperband has runs to stop.
WANDB_GRID = SWEEP.replace("method: random", "method: grid").replace(
    "{distribution: log_uniform_values, min: 0.001, max: 1.0}",
    "{values: [0.001, 0.01, 0.1, 0.2, 0.5, 1.0]}",
)


def _sweep(folder: Path, kind: str, engine: str = "optuna") -> subprocess.CompletedProcess[str]:
    spec = SWEEP if engine == "optuna" else WANDB_GRID
    if kind == "program":
        (folder / "train.py").write_text(W_AND_B_PROGRAM)
        (folder / "sweep.yaml").write_text(spec + "program: train.py\n")
    else:
        (folder / "train.py").write_text(W_AND_B_FUNCTION)
        (folder / "sweep.yaml").write_text(spec + "function: train:train\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_DIR"] = str(folder)
    return subprocess.run(
        [
            *(sys.executable, "-m", "sweepspec", "run", "sweep.yaml"),
            *("--tracker", "none", "--engine", engine),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _results(folder: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", "json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


@pytest.mark.parametrize("engine", ["optuna", "wandb"])
@pytest.mark.parametrize("kind", ["program", "function"])
def test_an_unmodified_wandb_program_runs_on_each_engine_with_hyperband(
    tmp_path: Path, kind: str, engine: str
):
    proc = _sweep(tmp_path, kind, engine)
    assert proc.returncode == 0, proc.stderr
    rows = _results(tmp_path)
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert [
        {"lr": r["params"]["lr"], "momentum": r["params"]["optimizer.momentum"]} for r in rows
    ] == seen
    states = [r["state"] for r in rows]
    assert states.count("PRUNED") >= 1, states  # W&B's hyperband stopped runs while they ran
    assert set(states) <= {"COMPLETE", "PRUNED"}
    for row in rows:
        if row["state"] == "COMPLETE":  # the objective is what the program logged
            assert row["metrics"]["val_loss"] == pytest.approx(row["params"]["lr"] * 10 / 8)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == len(rows)  # one offline run per trial, for `wandb sync`
