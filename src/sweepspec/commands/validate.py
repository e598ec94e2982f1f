"""``sweepspec validate``: check spec files, one line per finding."""

from __future__ import annotations

import json
import os
import sys

# pydantic scans every installed package's entry points for plugins on first use (~30 ms);
# the validator needs none, and pre-commit runs it on every commit: set it before ..spec
# (the first import of pydantic) is loaded.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from ..spec import Checked, Finding, check
from . import emit


def _check_one(path: str) -> Checked:
    try:
        return check(path)
    except Exception as exc:  # a bug must not hide the other files' findings
        return Checked(
            path,
            None,
            [
                Finding(
                    path,
                    1,
                    1,
                    "error",
                    (),
                    f"internal error while checking: {type(exc).__name__}: {exc}",
                    "internal",
                )
            ],
        )


def validate(files: list[str], *, strict: bool = False, fmt: str = "text") -> int:
    results = [_check_one(f) for f in files]
    findings = [f for r in results for f in r.findings]
    failed = any(f.level == "error" or (strict and f.level == "warning") for f in findings)
    if fmt == "json":
        emit(json.dumps([f.to_json() for f in findings], indent=2) + "\n")
    else:
        for f in findings:
            sys.stderr.write(f.format() + "\n")
    return 1 if failed else 0
