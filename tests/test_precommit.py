"""The real pre-commit, with this repository as a hook repository (as README.md shows), on a
user's fresh git repository.

`pre-commit try-repo` was used before, but it builds the hook's environment (a venv and a pip
install, most of this test's time) in a new temporary store on every call; `pre-commit run`
with a config naming this repository at one commit builds it once in PRE_COMMIT_HOME and
reuses it, as it does for users."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRE_COMMIT = shutil.which("pre-commit", path=os.path.dirname(sys.executable)) or shutil.which(
    "pre-commit"
)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This working tree (uncommitted changes included) as one commit of a new repository."""
    repo = tmp_path_factory.mktemp("hook")
    for name in _git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "hook")
    return repo


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pre-commit's store (the hook repository's clone and its venv)."""
    return tmp_path_factory.mktemp("pre-commit-home")


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


@pytest.fixture
def pre_commit_run(
    user_repo: Path, hook_repo: Path, pre_commit_home: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``pre_commit_run(*files)``: ``pre-commit run sweepspec-validate --files FILES`` in the
    user's repository, with a config that names the hook repository at its commit."""
    config = user_repo / ".pre-commit-config.yaml"
    rev = _git(hook_repo, "rev-parse", "HEAD").strip()
    config.write_text(
        f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n"
        "      - id: sweepspec-validate\n"
    )

    def run(*files: str) -> subprocess.CompletedProcess[str]:
        assert PRE_COMMIT, "pre-commit is installed with the test extra"
        env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home)}
        return subprocess.run(
            [PRE_COMMIT, "run", "sweepspec-validate", "--config", str(config), "--files", *files],
            cwd=user_repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


def test_good_spec_passes_and_broken_spec_fails_with_the_line(
    pre_commit_run: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """One test, so that both runs share the hook's environment (under xdist, two tests could
    land on two workers and build it twice)."""
    good = pre_commit_run("sweep.yaml", "other.yaml")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "sweepspec validate" in good.stdout
    assert "Passed" in good.stdout
    broken = pre_commit_run("sweep.yaml", "bad.sweep.yaml")
    assert broken.returncode == 1
    assert "Failed" in broken.stdout
    assert (
        "bad.sweep.yaml:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', "
        "but got 'minimise'; did you mean 'minimize'?"
    ) in broken.stdout
    assert "[INFO] Installing environment" in good.stdout + good.stderr
    assert "[INFO] Installing environment" not in broken.stdout + broken.stderr
