"""The tiny reporter for programs run as trials (``program`` / ``command`` in a spec).

Standard library only, so a training script can use it wherever sweepspec is importable::

    from sweepspec import reporter

    for epoch in range(epochs):
        ...
        reporter.report({"val_loss": val_loss, "acc": acc}, step=epoch)

Each call writes one JSON line, ``{"val_loss": 0.31, "acc": 0.9, "_step": 3}``. Under
``sweepspec run`` the line goes to the file descriptor (or file path) that the runner names in
the environment variable ``SWEEPSPEC_REPORT``; elsewhere it is printed on stdout, which the
runner reads too. The runner stops a pruned command with SIGTERM (then SIGKILL after a grace
period): handle SIGTERM to clean up. ``seed()`` gives the seed of this run (``SWEEPSPEC_SEED``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

__all__ = ["ENV_REPORT", "ENV_SEED", "report", "seed"]

ENV_REPORT = "SWEEPSPEC_REPORT"
"""Where :func:`report` writes: a file descriptor number, or a file path (appended to)."""
ENV_SEED = "SWEEPSPEC_SEED"
"""The seed of this run (``seeds:`` in the spec; 0 without it)."""

_stream: IO[str] | None = None


def report(metrics: dict[str, Any], step: int | None = None) -> None:
    """Report ``metrics`` (name -> number) at ``step``; without ``step``, the runner counts
    the reports (0, 1, 2, ...), as ``wandb.log`` counts ``_step``."""
    if not isinstance(metrics, dict):
        raise TypeError(f"'metrics' must be a dict of numbers, but got {type(metrics).__name__}")
    record = dict(metrics)
    if step is not None:
        record["_step"] = int(step)
    stream = _output()
    stream.write(json.dumps(record, default=_number) + "\n")
    stream.flush()


def seed(default: int = 0) -> int:
    """The seed the runner gives this run, or ``default`` outside a sweep."""
    value = os.environ.get(ENV_SEED)
    return int(value) if value else default


def _number(value: Any) -> Any:
    """numpy scalars and 0-d tensors: their float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"a metric must be a number, but got {type(value).__name__}: {value!r}"
        ) from None


def _output() -> IO[str]:
    global _stream
    if _stream is None:
        target = os.environ.get(ENV_REPORT, "")
        if target.isdigit():
            _stream = os.fdopen(int(target), "w", encoding="utf-8", closefd=False)
        elif target:
            _stream = open(target, "a", encoding="utf-8")
        else:
            return sys.stdout
    return _stream
