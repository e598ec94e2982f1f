"""Trackers: where the runner logs a sweep's trials (MLflow, W&B, or nowhere).

A tracker gets one :class:`SweepInfo` when the sweep starts and one :class:`TrialRecord` per
finished trial, everything the trial reported included, so that it can log the trial in one
batch. The hooks are concrete no-ops; a tracker overrides what it needs. Trackers import no
engine, and ``none`` imports nothing at all.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TRACKERS", "Point", "SweepInfo", "Tracker", "TrialRecord", "make_tracker"]

TRACKERS = ("mlflow", "none", "wandb")
"""Every tracker sweepspec knows."""


@dataclass(frozen=True)
class Point:
    """One reported metric value."""

    key: str
    value: float
    timestamp_ms: int
    step: int


@dataclass
class TrialRecord:
    """A finished trial.

    Attributes:
        params: real values by flat (dotted) name.
        state: ``COMPLETE`` | ``PRUNED`` | ``FAIL``.
        metrics: final values (aggregated over seeds when ``seeds:`` is used).
        history: every reported value; with seeds, keys are ``seed_<s>/<metric>``.
        seeds: per-seed final metrics, ``[{"seed": 0, "metrics": {...}}, ...]``, or None.
        error: why a ``FAIL`` failed.
    """

    number: int
    params: dict[str, Any]
    state: str
    metrics: dict[str, float]
    history: list[Point] = field(default_factory=list)
    seeds: list[dict[str, Any]] | None = None
    values: list[float] | None = None
    error: str | None = None
    start_ms: int = 0
    end_ms: int = 0


@dataclass(frozen=True)
class SweepInfo:
    """What a tracker may record about the whole sweep."""

    name: str
    engine: str
    sweep_id: str
    spec_path: str
    spec_hash: str
    artifact: dict[str, Any]
    artifact_name: str = "optuna.json"


Echo = Callable[[str], None]


class Tracker(abc.ABC):
    """Receives the sweep and its trials. ``close`` flushes; it must be called, also on
    Ctrl-C, with the sweep's final status (``FINISHED``, ``KILLED`` or ``FAILED``)."""

    name = "none"

    def start(self, sweep: SweepInfo) -> None:
        """The sweep starts (or resumes)."""

    def attach(self, settings: dict[str, Any]) -> None:
        """A worker process joins a sweep started elsewhere (``settings`` from
        :meth:`worker_settings`)."""

    def worker_settings(self) -> dict[str, Any]:
        """What another worker process needs to log into the same sweep."""
        return {}

    @abc.abstractmethod
    def log_trial(self, record: TrialRecord) -> None:
        """One finished trial."""

    def close(self, status: str = "FINISHED") -> None:
        """Flush what is pending and end the sweep's record with ``status``."""

    def where(self) -> str | None:
        """One line telling the user where to look at the runs, or None."""
        return None


def make_tracker(
    name: str, *, uri: str | None = None, experiment: str = "sweepspec", echo: Echo | None = None
) -> Tracker:
    """The tracker called ``name`` (one of :data:`TRACKERS`)."""
    if name == "none":
        from .none import NoneTracker

        return NoneTracker()
    if name == "mlflow":
        from .mlflow import MlflowTracker

        return MlflowTracker(uri=uri, experiment=experiment, echo=echo)
    if name == "wandb":
        from .wandb import WandbTracker

        return WandbTracker(project=experiment, echo=echo)
    raise ValueError(f"'tracker in {TRACKERS}' must hold, but got {name!r}")
