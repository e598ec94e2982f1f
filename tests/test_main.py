"""The entry point's error policy."""

from __future__ import annotations

import re
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
