"""The W&B run-file reader, on a file written by the real wandb SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweepspec.wandb_log import RunLog, RunLogError, find_run_file

PROGRAM = """
import wandb
run = wandb.init(config={"lr": 0.1, "layers": [1, 2]})
for step in range(400):
    wandb.log({"loss": 1.0 / (step + 1), "text": "x" * 300}, step=step)
run.summary["best"] = 0.5
run.finish(exit_code=0)
"""


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wandb-run")
    (folder / "prog.py").write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline", WANDB_DIR=str(folder), WANDB_RUN_ID="abc123", WANDB_SILENT="true"
    )
    subprocess.run([sys.executable, "prog.py"], cwd=folder, env=env, check=True, timeout=300)
    path = find_run_file(folder, "abc123")
    assert path is not None
    return path


def test_reads_config_history_summary_and_exit(run_file: Path):
    log = RunLog(run_file)
    log.read()
    state = log.state
    assert state.run_id == "abc123"
    assert state.config == {"lr": 0.1, "layers": [1, 2]}
    assert [row["_step"] for row in state.history] == list(range(400))
    assert [row["loss"] for row in state.history] == [1.0 / (s + 1) for s in range(400)]
    assert state.summary["best"] == 0.5
    assert state.summary["loss"] == 1.0 / 400
    assert state.exit_code == 0
    assert run_file.stat().st_size > 64 * 1024  # records span several 32 KiB blocks


def test_reading_a_growing_file_piece_by_piece_gives_the_same_records(
    run_file: Path, tmp_path: Path
):
    data = run_file.read_bytes()
    whole = RunLog(run_file)
    expected = [r.SerializeToString() for r in whole.read()]
    growing = tmp_path / "run-abc123.wandb"
    growing.write_bytes(b"")
    log = RunLog(growing)
    got = []
    for end in list(range(0, len(data), 997)) + [len(data)]:
        growing.write_bytes(data[:end])  # a writer that has flushed this much
        got += [r.SerializeToString() for r in log.read()]
    assert got == expected
    assert log.state == whole.state


def test_a_damaged_chunk_or_header_is_one_clear_error(run_file: Path, tmp_path: Path):
    data = bytearray(run_file.read_bytes())
    data[40] ^= 0xFF
    damaged = tmp_path / "damaged.wandb"
    damaged.write_bytes(bytes(data))
    with pytest.raises(RunLogError, match=r"^.*damaged\.wandb: damaged chunk at byte 7$"):
        RunLog(damaged).read()
    other = tmp_path / "other.wandb"
    other.write_bytes(b"not a wandb file at all")
    with pytest.raises(RunLogError) as info:
        RunLog(other).read()
    assert str(info.value) == f"{other}: not a W&B run file (bad header)"
