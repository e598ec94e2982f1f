"""Trackers: where the runner logs a sweep's trials (MLflow, W&B, or nowhere).

A tracker gets one :class:`SweepInfo` when the sweep starts and one :class:`TrialRecord` per
finished trial, everything the trial reported included, so that it can log the trial in one
batch. The hooks are concrete no-ops; a tracker overrides what it needs. Trackers import no
engine, and ``none`` imports nothing at all.

:data:`TRACKERS` maps each tracker's name to its module in this package; the module exposes
``make(uri=, experiment=, echo=) -> Tracker`` and, where the tracker has them:
``LABEL`` (its name for people), ``record_decision(spec, path, sweep_id, decision, echo)``
(``sweepspec decide`` marks the chosen trial there), ``SYNC_NOTE`` (why ``sweepspec sync``
has nothing to do for it; without one, ``sync`` logs its backlog) and ``read_results(table,
spec, path, known)`` (``sweepspec results --from <tracker>`` reads the sweep back from it; the
``--from`` choices are the trackers that have one). A new tracker is one module and one line
here.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = [
    "TRACKERS",
    "Point",
    "SweepInfo",
    "Tracker",
    "TrackerUnavailable",
    "TrialRecord",
    "make_tracker",
    "tracker_module",
]

TRACKERS: dict[str, str] = {"mlflow": "mlflow", "none": "none", "wandb": "wandb"}
"""Every tracker sweepspec knows: name -> its module in ``sweepspec.trackers``."""


class TrackerUnavailable(Exception):
    """The tracker cannot be reached (or is behind): one line for the user, no traceback."""


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
        error: why a ``FAIL`` failed; ``traceback``: the trial's own, when it raised.
        cost: the sum over its runs (seeds) of ``budget.cost.metric``; 0 without one.
        gpus: the devices its process was given (``--gpus``, ``budget.gpus_per_trial``),
            comma-separated (``""``: none); None when sweepspec set none.
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
    traceback: str | None = None
    cost: float = 0.0
    gpus: str | None = None


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
    objective: str | None = None
    """The metric a best trial is chosen by (None: several objectives, no single best)."""
    direction: str = "minimize"
    state_path: str | None = None
    """The engine's state (a journal file), or a file name under the working directory for
    a database storage: a tracker keeps what it could not log yet beside it."""


Echo = Callable[[str], None]


class Tracker(abc.ABC):
    """Receives the sweep and its trials. ``close`` flushes; it must be called, also on
    Ctrl-C, with the sweep's final status (``FINISHED``, ``KILLED`` or ``FAILED``)."""

    name = "none"

    def __init__(
        self, uri: str | None = None, experiment: str = "sweepspec", echo: Echo | None = None
    ) -> None:
        """``uri`` and ``experiment`` say where to log (``tracking:``); ``echo`` prints a
        line for the user."""
        self.uri = uri
        self.experiment = experiment

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

    def sync(self, sweep: SweepInfo) -> int:
        """Log what earlier runs of ``sweep`` could not; return how many trials."""
        return 0


def tracker_module(name: str) -> ModuleType:
    """The module of the tracker called ``name`` (a key of :data:`TRACKERS`)."""
    if name not in TRACKERS:
        raise ValueError(f"'tracker in {tuple(TRACKERS)}' must hold, but got {name!r}")
    return importlib.import_module(f"{__name__}.{TRACKERS[name]}")


def make_tracker(
    name: str, *, uri: str | None = None, experiment: str = "sweepspec", echo: Echo | None = None
) -> Tracker:
    """The tracker called ``name`` (a key of :data:`TRACKERS`), from its module's ``make``."""
    tracker: Tracker = tracker_module(name).make(uri=uri, experiment=experiment, echo=echo)
    return tracker
