"""How a string from the user is written where it lands, so that it stays one value there.

* :func:`visible` for one line of text a person reads (a YAML comment, a terminal table):
  every character that is not printable (newlines, YAML's other line breaks ``\\x85``,
  ``\\u2028``, ``\\u2029``, terminal escapes such as ESC) is written as its Python escape
  (``\\n``, ``\\x1b``), so the text cannot start a new line or move the cursor.
* :func:`csv_cell` for a spreadsheet cell: OWASP's rule against formula injection.
* :func:`strict_json` for JSON: no bare ``NaN``/``Infinity`` tokens (strict parsers refuse
  them); a non-finite number is written as ``null``.

A leaf module: imports nothing of sweepspec's.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["FORMULA_STARTS", "csv_cell", "finite", "strict_json", "visible"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def visible(text: str) -> str:
    """``text`` on one line, every non-printable character escaped (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def csv_cell(value: Any) -> str:
    """A CSV cell: empty for None; a text cell that a spreadsheet would run as a formula gets
    a leading ``'``. Numbers stay numbers (``-0.5`` is a value, not a formula)."""
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return text
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Infinity) replaced by None, recursively
    through dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def strict_json(data: Any, indent: int | None = 2) -> str:
    """``data`` as strict JSON (RFC 8259): non-finite numbers become ``null``."""
    return json.dumps(finite(data), indent=indent, allow_nan=False)
