"""The real `pre-commit try-repo` against this repository, in a fresh git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRE_COMMIT = shutil.which("pre-commit", path=os.path.dirname(sys.executable)) or shutil.which(
    "pre-commit"
)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("user")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "sweep.yaml").write_text(
        "method: bayes\nmetric: {name: val_loss}\n"
        "parameters:\n  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}\n"
    )
    (repo / "bad.sweep.yaml").write_text(
        "method: bayes\nmetric: {name: val_loss, goal: minimise}\n"
        "parameters:\n  lr: {distribution: log_uniform_value, min: 1.0e-5, max: 1.0e-2}\n"
    )
    (repo / "other.yaml").write_text("not: [a, sweep\n")  # not matched by the hook's pattern
    _git(repo, "add", ".")
    return repo


def _try_repo(repo: Path, tmp_path: Path, *files: str) -> subprocess.CompletedProcess[str]:
    assert PRE_COMMIT, "pre-commit is installed with the test extra"
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [PRE_COMMIT, "try-repo", str(ROOT), "sweepspec-validate", "--files", *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_good_spec_passes(user_repo: Path, tmp_path: Path) -> None:
    result = _try_repo(user_repo, tmp_path, "sweep.yaml", "other.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sweepspec validate" in result.stdout
    assert "Passed" in result.stdout


def test_broken_spec_fails_with_the_line(user_repo: Path, tmp_path: Path) -> None:
    result = _try_repo(user_repo, tmp_path, "sweep.yaml", "bad.sweep.yaml")
    assert result.returncode == 1
    assert "Failed" in result.stdout
    assert (
        "bad.sweep.yaml:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', "
        "but got 'minimise'; did you mean 'minimize'?"
    ) in result.stdout
