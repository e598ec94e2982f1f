"""One module per subcommand, each exposing one plain function."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec import Spec


def load_spec(path: str) -> Spec | None:
    """The valid spec at ``path``; else None, after printing its errors as ``validate`` does."""
    from ..spec import check

    checked = check(path)
    if checked.spec is None:
        for finding in checked.findings:
            if finding.level == "error":
                sys.stderr.write(finding.format() + "\n")
    return checked.spec
