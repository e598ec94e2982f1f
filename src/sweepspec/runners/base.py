"""The engine interface: what a search engine does for the engine-neutral sweep loop.

An engine decides *which* configuration runs next and *whether* a running trial stops early;
it keeps the sweep's state durable so that a second ``run`` resumes. Everything else (the
worker loop, budgets across workers, seeds, executing trials, progress, trackers, Ctrl-C and
resume policy) is the engine-neutral loop's, and is the same for every engine.

A new engine is one module under ``sweepspec/runners/`` with a function ``open_engine`` that
returns an :class:`Engine`, plus one line in :data:`ENGINES` (and one in
:data:`ENGINE_OPTIONS` when it takes options of its own on ``run``). The CLI's choices, its
engine options and the schema's engine names come from these registries.

An engine whose own controller runs the trials (W&B's server and agent, a cluster's
scheduler) implements :class:`Drives`: the loop then hands it the run (:meth:`Drives.drive`)
with what it needs to run each trial exactly as the loop would. An engine module whose engine
always drives, whatever the spec, says so with ``DRIVES = True`` (:func:`always_drives`), so
that a command which needs the loop's own trials (``compare``) refuses it before opening it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ..spec import Spec
    from ..trackers import TrialRecord
    from .budget import TrialSummary
    from .sweep import Loop

__all__ = [
    "ENGINES",
    "ENGINE_OPTIONS",
    "Asked",
    "Drives",
    "Engine",
    "EngineError",
    "EngineOption",
    "EngineOptions",
    "OwnTrials",
    "always_drives",
    "drives",
    "engine_names",
    "find_state",
    "open_engine",
]

ENGINES: dict[str, str] = {
    "optuna": "sweepspec.runners.optuna",
    "wandb": "sweepspec.runners.wandb",
    "ray": "sweepspec.runners.ray",
}
"""Engine name -> the module whose ``open_engine(spec, path, options)`` opens it."""


@dataclass(frozen=True)
class EngineOption:
    """An option of one engine on ``run`` (``--ray-address``): ``cli.py`` adds it to ``run``
    from :data:`ENGINE_OPTIONS` (no engine is imported for that), and its value reaches the
    engine as ``EngineOptions.extra[key]`` (and a worker process through
    ``worker_settings()``). Given with another engine, it is refused in one line."""

    flag: str  # "--ray-address"
    key: str  # its key in EngineOptions.extra: "address"
    help: str
    metavar: str = "VALUE"


ENGINE_OPTIONS: dict[str, tuple[EngineOption, ...]] = {
    "ray": (
        EngineOption(
            "--ray-address",
            "address",
            "The Ray cluster to run on: its head node's host:port, 'auto' or ray://host:port "
            "(default: RAY_ADDRESS, else a local Ray on this machine's CPUs).",
            metavar="ADDRESS",
        ),
    ),
}
"""Engine name -> its options on ``run``, declared here so that the CLI can offer them
without importing the engine (``validate`` and ``--help`` import no engine package)."""


def engine_names() -> tuple[str, ...]:
    """Every engine sweepspec knows, for the CLI's choices and messages."""
    return tuple(ENGINES)


class EngineError(Exception):
    """An expected failure of an engine (unreadable state, a changed search space, the
    engine's own algorithm refusing the sweep): one line for the user, no traceback."""


@dataclass
class Asked:
    """A trial the engine has just started.

    Attributes:
        number: the trial's number in the sweep (0-based, unique across workers).
        params: the real parameter values by flat (dotted) name.
        handle: the engine's own object for the trial (an ``optuna.Trial``, a W&B run).
    """

    number: int
    params: dict[str, Any]
    handle: Any = None


@dataclass(frozen=True)
class EngineOptions:
    """What ``run`` passes to an engine when it opens the sweep's state."""

    storage: str | None = None  # where the state lives (``--storage``); None: the default
    fresh: bool = False  # start over (delete the old state only once everything is up)
    create: bool = True  # False for readers (``results``): missing state is an error
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """One sweep's search state on one engine, shared by every worker that opens it."""

    name: str  # the registry name: "optuna", "wandb", ...
    label: str  # where the state lives, for messages (credentials hidden)
    sweep_id: str  # stable across resumes; trackers group trials by it
    sweep_name: str  # the sweep's name, for messages and progress
    artifact: dict[str, Any]  # the compiled sweep, logged by trackers beside the spec
    artifact_name: str  # its file name there ("optuna.json", "wandb.json")
    messages: list[str]  # lines the loop shows (and clears) after opening and after start()
    prunes: bool  # whether report() can ever stop a trial (the spec's early termination)
    state_path: str  # a file path for the sweep's state: trackers keep side files beside it
    # seconds after which fail_stale() fails a trial whose worker stopped sending heartbeats
    # (killed, or its machine lost); None when the engine cannot tell a dead worker elsewhere
    grace_period: float | None

    def start(self) -> None:
        """The run is up (tracker started): with ``--fresh``, replace the old state now."""

    def close(self) -> None:
        """Let go of what opening took (locks); called once, whatever happened."""

    def ask(self) -> Asked | None:
        """Start the next trial; None when the engine has nothing left (grid exhausted)."""

    def report(self, trial: Asked, value: float, step: int) -> bool:
        """Record the objective's value at ``step``; True when the trial should stop now."""

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        """Store the finished trial (state COMPLETE, PRUNED or FAIL, metrics, objective)."""

    def summaries(self) -> list[TrialSummary]:
        """Every trial of the sweep, as the budget counts them (all workers)."""

    def exhausted(self) -> str | None:
        """Why the engine will give no more trials (grid done), or None."""

    def fail_stale(self) -> list[int]:
        """Mark failed the trials left RUNNING by a worker that is gone (its process on this
        host ended, or no heartbeat for :attr:`grace_period`); their numbers."""

    def ask_lock(self) -> AbstractContextManager[None]:
        """Held while a worker counts the budget and asks, so workers never overshoot it."""

    def records(self) -> Iterator[dict[str, Any]]:
        """The trials for ``results``: number, state, params (real values), metrics."""

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        """Each trial's reported objective values, ``(step, value)`` in step order, by trial
        number: the learning curves ``report`` draws."""

    def worker_settings(self) -> dict[str, Any]:
        """What a worker process needs to open the same state (JSON-serialisable)."""

    def decide(self, decision: dict[str, Any]) -> None:
        """Record a decision (``sweepspec decide``): ``{"trial", "why", "config", "time"}``;
        durable when it returns. The trial was checked to be a finished one of the sweep."""

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision recorded, oldest first (the last one's trial is the chosen one)."""


@runtime_checkable
class Drives(Protocol):
    """An engine whose own controller runs the trials (W&B's agent on W&B's server, Ray
    Tune's on a cluster): the loop hands it the run instead of asking it trial by trial.

    ``drive`` runs the sweep until the budget, the engine or the user stops it, and returns
    why (the line ``run`` prints). ``loop`` (:class:`sweepspec.runners.sweep.Loop`) gives
    what the loop would use: the spec, the budget and its stop reason, the tracker started on
    the sweep (``loop.start()``, which also calls :meth:`Engine.start`), a picklable
    :class:`~sweepspec.runners.sweep.TrialRun` that runs one trial exactly as the loop does
    (function or command, seeds, ``report``/``should_stop``, timeout) and returns its
    :class:`~sweepspec.trackers.TrialRecord`, and ``loop.finished(record)`` for each trial
    that ends (tracker, progress, failure streak). An engine that does not call
    ``loop.start()`` logs nothing to a tracker (W&B's agent logs to W&B itself). Ctrl-C goes
    on up as KeyboardInterrupt once the engine has recorded what ran."""

    def drive(self, loop: Loop) -> str: ...


class OwnTrials:
    """A base for engines that drive their own trials (:class:`Drives`): the members only the
    loop's own ask/report/tell cycle calls, which such an engine never sees, answered once
    here (no trial to give, no stop, nothing exhausted or stale, no lock to take)."""

    def ask(self) -> Asked | None:
        return None  # the engine's own controller asks; the loop hands the run over (drive)

    def report(self, trial: Asked, value: float, step: int) -> bool:
        return False

    def exhausted(self) -> str | None:
        return None

    def fail_stale(self) -> list[int]:
        return []

    def ask_lock(self) -> AbstractContextManager[None]:
        return nullcontext()


def drives(engine: Engine) -> Drives | None:
    """``engine`` when it runs its own trials (:class:`Drives`), else None."""
    return engine if isinstance(engine, Drives) else None


def always_drives(name: str) -> bool:
    """Whether engine ``name`` runs its own trials whatever the spec (its module's ``DRIVES``,
    default False); ImportError when the engine is not installed. Imports the engine's module
    only (Ray's imports Ray when it opens)."""
    module = importlib.import_module(ENGINES[name])
    return bool(getattr(module, "DRIVES", False))


def open_engine(name: str, spec: Spec, path: str, options: EngineOptions) -> Engine:
    """The engine ``name`` on the sweep of ``spec`` (read from ``path``). A spec the engine's
    compiler refuses is an :class:`EngineError`; a missing package an ImportError."""
    from ..compiler.base import CompileError

    module = importlib.import_module(ENGINES[name])
    try:
        engine: Engine = module.open_engine(spec, path, options)
    except CompileError as exc:
        raise EngineError(str(exc)) from None
    return engine


def find_state(name: str, spec: Spec, path: str, storage: str | None) -> float | None:
    """When engine ``name``'s state of the sweep was last written (``st_mtime``), None when
    there is none; ImportError when the engine is not installed."""
    module = importlib.import_module(ENGINES[name])
    when: float | None = module.find_state(spec, path, storage)
    return when
