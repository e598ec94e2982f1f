from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a (dedented) file into the test's folder, ``sweep.yaml`` unless named; return
    its path."""

    def write(text: str, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def sweep_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (engine state goes to ./.sweepspec there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Runs the code (argv[1]) and prints, as the last line of stdout, the top-level names of the
# modules it imported: those in sys.modules afterwards that were not there before it ran.
_LIST_IMPORTS = """
import json, sys
before = set(sys.modules)
exec(compile(sys.argv[1], "<code>", "exec"), {"__name__": "__main__"})
print()
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - before})))
"""


@pytest.fixture
def imported_modules() -> Callable[..., set[str]]:
    """``imported_modules(code, cwd=None)``: run ``code`` in a fresh interpreter (in ``cwd``)
    and return the top-level names of the modules it imported. The code may assert; if it
    fails, so does the test, with its stderr."""

    def run(code: str, cwd: Path | None = None) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", _LIST_IMPORTS, code], cwd=cwd, capture_output=True, text=True
        )
        assert done.returncode == 0, f"the code failed:\n{done.stderr}"
        return set(json.loads(done.stdout.splitlines()[-1]))

    return run
