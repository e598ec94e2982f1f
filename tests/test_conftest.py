"""The suite's own harness (tests/conftest.py), run as pytest runs it: in another pytest
process, with ``-p conftest`` and a test file of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

TESTS = Path(__file__).parent

# A test that needs Ctrl-C as a terminal gives it: Python's handler here, and in a Python
# process it starts (the Ctrl-C tests send SIGINT to `sweepspec run` processes)
CTRL_C_REACHES_A_CHILD = """
import signal, subprocess, sys

def test_ctrl_c_is_pythons_here_and_in_a_child():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.stdout == "True\\n"
"""


def _outside_pytest(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what this pytest (and its xdist worker) set for itself."""
    return {k: v for k, v in environ.items() if not k.startswith("PYTEST_")}


def _pytest(folder: Path, test: str, *args: str, sigint: signal.Handlers) -> list[str]:
    """Run ``test`` (a test file's text) under tests/conftest.py in a pytest process started
    with SIGINT's disposition ``sigint``; its output's lines."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_it.py").write_text(textwrap.dedent(test))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q"]
        + ["-c", str(folder / "pytest.ini"), *args, str(folder / "test_it.py")],
        cwd=folder,
        env={**_outside_pytest(os.environ), "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )
    return done.stdout.splitlines()


def test_a_run_started_with_sigint_ignored_gives_its_tests_pythons_handler(
    tmp_path: Path,
) -> None:
    """A shell without job control starts a background job (``pytest -n 2 ... &`` in a
    script, or in a tool's shell) with SIGINT ignored; Python then keeps it ignored instead
    of installing its own handler, and xdist's workers inherit it: the first test of each
    worker found it so (the clean-clone runs warned before the two workers' first tests)."""
    out = _pytest(tmp_path, CTRL_C_REACHES_A_CHILD, "-n", "1", sigint=signal.SIG_IGN)
    assert re.fullmatch(r"1 passed in [\d.]+s", out[-1]), "\n".join(out)


def test_a_test_that_changes_sigint_fails_loudly_and_the_next_one_finds_it_put_back(
    tmp_path: Path,
) -> None:
    test = (
        "import signal\n\n"
        "def test_ignores_ctrl_c():\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n" + CTRL_C_REACHES_A_CHILD
    )
    out = _pytest(tmp_path, test, sigint=signal.SIG_DFL)
    error = next(i for i, line in enumerate(out) if " ERROR at teardown of " in line)
    assert out[error].strip("_ ") == "ERROR at teardown of test_ignores_ctrl_c"
    assert out[error + 1] == (
        "SIGINT's handler was <Handlers.SIG_IGN: 1> after test_it.py::test_ignores_ctrl_c "
        "(put back: the processes that the tests after it start would inherit it)"
    )
    assert re.fullmatch(r"2 passed, 1 error in [\d.]+s", out[-1]), "\n".join(out)


def test_the_package_is_compiled_before_the_tests_start_processes() -> None:
    """Each module of the package has its bytecode, current, by the time a test runs (the
    suite's `sweepspec` processes do not compile it again each)."""
    import importlib.util

    import sweepspec

    package = Path(sweepspec.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 50
    stale = [
        str(source.relative_to(package))
        for source in sources
        if not (cached := Path(importlib.util.cache_from_source(str(source)))).exists()
        or cached.stat().st_mtime < source.stat().st_mtime
    ]
    assert stale == []
