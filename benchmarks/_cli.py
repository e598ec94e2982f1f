"""What the quickstart benchmarks share: running sweepspec's CLI on a copy of an example."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart"


def sweepspec(*args: str, cwd: Path) -> str:
    """Run the CLI with this interpreter; fail loudly with its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "sweepspec", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"sweepspec {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def copy_example(example: Path, folder: Path) -> Path:
    """A copy of the example folder without the state of earlier runs; its spec's path."""
    shutil.copytree(
        example,
        folder,
        ignore=shutil.ignore_patterns("__pycache__", ".sweepspec", "mlflow.db", "mlruns"),
    )
    return folder / "sweep.yaml"
