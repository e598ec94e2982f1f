"""``sweepspec.reporter``: JSON lines to the runner's pipe or file, else stdout; stdlib only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = """
from sweepspec import reporter
reporter.report({"loss": 0.5, "acc": 1}, step=3)
reporter.report({"loss": 0.25})
print("seed", reporter.seed())
"""


def _run(env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPSPEC_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        pass_fds=pass_fds,
        capture_output=True,
        text=True,
        check=True,
    )


def test_without_the_runner_it_prints_json_lines() -> None:
    assert _run({}).stdout == ('{"loss": 0.5, "acc": 1, "_step": 3}\n{"loss": 0.25}\nseed 0\n')


def test_it_writes_to_the_file_descriptor_the_runner_names() -> None:
    read_fd, write_fd = os.pipe()
    done = _run({"SWEEPSPEC_REPORT": str(write_fd), "SWEEPSPEC_SEED": "7"}, (write_fd,))
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        assert [json.loads(line) for line in pipe] == [
            {"loss": 0.5, "acc": 1, "_step": 3},
            {"loss": 0.25},
        ]
    assert done.stdout == "seed 7\n"


def test_it_appends_to_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"loss": 1.0}\n')
    _run({"SWEEPSPEC_REPORT": str(path)})
    assert path.read_text() == (
        '{"loss": 1.0}\n{"loss": 0.5, "acc": 1, "_step": 3}\n{"loss": 0.25}\n'
    )


def test_it_refuses_what_is_not_a_number() -> None:
    from sweepspec import reporter

    with pytest.raises(TypeError, match=r"^'metrics' must be a dict of numbers, but got list$"):
        reporter.report([1.0])  # type: ignore[arg-type]
    value = object()
    with pytest.raises(TypeError) as refused:
        reporter.report({"loss": value})
    assert str(refused.value) == f"a metric must be a number, but got object: {value!r}"


def test_it_imports_only_the_standard_library(imported_modules: Callable[..., set[str]]) -> None:
    imported = imported_modules("from sweepspec import reporter")
    assert "sweepspec" in imported
    assert imported <= {"sweepspec", *sys.stdlib_module_names}
