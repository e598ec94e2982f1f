"""``tracking: {tracker: none}``: log nothing; the engine's storage still keeps every trial."""

from __future__ import annotations

from . import Echo, Tracker, TrialRecord

__all__ = ["LABEL", "SYNC_NOTE", "NoneTracker", "make"]

LABEL = "none"
SYNC_NOTE = ""
"""``sweepspec sync`` has nothing to do: nothing is logged, so nothing waits."""


class NoneTracker(Tracker):
    name = "none"

    def log_trial(self, record: TrialRecord) -> None:
        """Nothing to do: ``sweepspec results`` reads the trials from the engine's storage."""


def make(uri: str | None = None, experiment: str = "", echo: Echo | None = None) -> NoneTracker:
    """The ``none`` tracker (it needs none of what trackers are given)."""
    return NoneTracker()
