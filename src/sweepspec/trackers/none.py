"""``tracking: {tracker: none}``: log nothing; the engine's storage still keeps every trial."""

from __future__ import annotations

from . import Tracker, TrialRecord

__all__ = ["NoneTracker"]


class NoneTracker(Tracker):
    name = "none"

    def log_trial(self, record: TrialRecord) -> None:
        """Nothing to do: ``sweepspec results`` reads the trials from the engine's storage."""
