"""The entry point's error policy."""

from __future__ import annotations

import pstats
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepspec.main import _internal_error


def test_the_crash_log_and_its_line_show_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 8 item 9: the internal-error line and its crash log hid no credential."""
    try:
        raise RuntimeError("cannot reach postgresql://bob:hunter2@db/x")
    except RuntimeError as exc:
        assert _internal_error(exc) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "sweepspec: internal error: RuntimeError: cannot reach postgresql://bob:***@db/x"
    )
    found = re.search(r"the details are in (\S+)", err)
    assert found is not None
    log = Path(found.group(1))
    text = log.read_text()
    log.unlink()
    assert "hunter2" not in text
    assert text.endswith("RuntimeError: cannot reach postgresql://bob:***@db/x\n")


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """A Python process run with ``args``; its exit code and output."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, timeout=60
    )


def _spec(tmp_path: Path, bounds: str) -> Path:
    """A spec with one parameter ``x: {bounds}``."""
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"method: random\nparameters:\n  x: {{{bounds}}}\n", encoding="utf-8")
    return spec


def _leaving(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """A Python process that ends with ``body`` (``leave`` imported, ``here`` the folder)."""
    script = tmp_path / "leaving.py"
    script.write_text(
        "import atexit, sys, threading, time\n"
        "from pathlib import Path\n"
        "from sweepspec.main import leave\n"
        f"here = Path({str(tmp_path)!r})\n" + textwrap.dedent(body),
        encoding="utf-8",
    )
    return _python(str(script))


def test_leaving_runs_the_atexit_functions_flushes_and_keeps_the_code(tmp_path: Path) -> None:
    """What the interpreter's exit does that a run relies on (the trackers' and the trial
    process's ``atexit`` functions, the streams' last buffered text) is done, and the exit
    code is the one given."""
    proc = _leaving(
        tmp_path,
        """
        atexit.register(lambda: (here / "first").write_text("ran"))
        atexit.register(lambda: print("last words", end=""))
        sys.stdout.write("buffered, no newline")
        sys.stderr.write("to stderr")
        leave(3)
        """,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        3,
        "buffered, no newlinelast words",
        "to stderr",
    )
    assert (tmp_path / "first").read_text() == "ran"


def test_leaving_waits_for_a_thread_that_is_not_a_daemon(tmp_path: Path) -> None:
    """A thread still working that is not a daemon is waited for, as the interpreter waits."""
    proc = _leaving(
        tmp_path,
        """
        def work():
            time.sleep(0.5)
            (here / "thread").write_text("done")

        threading.Thread(target=work).start()
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        leave(4)
        """,
    )
    assert (proc.returncode, proc.stderr) == (4, "")
    assert (tmp_path / "thread").read_text() == "done"


def test_leaving_with_stdout_closed_exits_as_the_interpreter_does(tmp_path: Path) -> None:
    """A standard stream that cannot be flushed gets the interpreter's own exit."""
    proc = _leaving(
        tmp_path,
        """
        atexit.register(lambda: (here / "atexit").write_text("ran"))
        sys.stdout.close()
        leave(5)
        """,
    )
    assert (proc.returncode, proc.stderr) == (5, "")
    assert (tmp_path / "atexit").read_text() == "ran"


def test_python_m_sweepspec_exits_with_mains_code(tmp_path: Path) -> None:
    """``python -m sweepspec`` (and the console script, the same :func:`entry`) exits with
    the code :func:`main` gives, its last line written."""
    spec = _spec(tmp_path, "min: 1, max: 0")
    proc = _python("-m", "sweepspec", "validate", str(spec))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"{spec}:3:6: error: parameters.x: 'min < max' must hold, but got min=1, max=0\n",
    )


def test_a_profiler_running_sweepspec_still_writes_its_output(tmp_path: Path) -> None:
    """``python -m cProfile -m sweepspec``: the profiler, which waits for sweepspec to
    return, writes its statistics (sweepspec does not leave the process under it)."""
    spec = _spec(tmp_path, "min: 0.0, max: 1.0")
    stats = tmp_path / "run.prof"
    proc = _python("-m", "cProfile", "-o", str(stats), "-m", "sweepspec", "validate", str(spec))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert pstats.Stats(str(stats)).total_calls > 0


def test_a_program_running_sweepspec_gets_its_exit_code_back(tmp_path: Path) -> None:
    """Code that runs sweepspec's module and goes on after it (runpy, as coverage and
    debuggers do) gets ``SystemExit`` with the exit code, and runs on."""
    spec = _spec(tmp_path, "min: 1, max: 0")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['sweepspec', 'validate', {str(spec)!r}]\n"
        "try:\n"
        "    runpy.run_module('sweepspec', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    print('went on after sweepspec, which exited with', exc.code)\n"
    )
    proc = _python("-c", code)
    assert (proc.returncode, proc.stdout) == (0, "went on after sweepspec, which exited with 1\n")
