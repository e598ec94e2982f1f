"""``sweepspec sync``: log what a tracker missed while it was down (the tracker's backlog).

The sweep is found as ``results`` finds it; the tracker is the spec's (``tracking.tracker``,
else mlflow). Each trial is logged once: its run is looked up by its tags first.
"""

from __future__ import annotations

import sys

from ..cli import SweepspecError
from ..trackers import tracker_module
from . import load_spec


def sync(path: str, *, storage: str | None = None) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    tracker = spec.tracking.tracker if spec.tracking else "mlflow"
    note = getattr(tracker_module(tracker), "SYNC_NOTE", None)
    if note is not None:  # the tracker keeps no backlog (none logs nothing; W&B keeps its own)
        hint = f": {note}" if note else ""
        sys.stderr.write(f"sweepspec: nothing to sync for the {tracker} tracker{hint}\n")
        return 0
    from ..analysis.table import which_engine
    from ..runners.sweep import RunError, sync_sweep

    try:
        engine = which_engine(spec, path, storage) or spec.engine or "optuna"
        count = sync_sweep(spec, path, engine=engine, tracker=tracker, storage=storage)
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    sys.stderr.write(f"sweepspec: {tracker}: logged {count} trials that were waiting\n")
    return 0
