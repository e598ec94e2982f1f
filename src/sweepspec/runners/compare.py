"""Re-running fixed configurations over seeds, on any engine, through the one loop.

``sweepspec compare`` runs each configuration once per seed (the same seeds for every
configuration: a paired design). It needs no engine of its own: the comparison is a second
sweep, named ``<sweep name>-compare`` (with ``optuna.study_name``: that name plus
``-compare``), whose search space is a grid over two categorical parameters, ``config`` (the
configurations' ids) and ``seed`` (the seeds). Every engine runs a grid, keeps it durable and
resumes it, so a second ``compare`` continues where the first stopped, and a different set of
configurations or seeds is a changed search space (refused unless ``--fresh``).

:class:`FixedConfigs` wraps the engine for the loop (:func:`.sweep.run_engine`): the trial gets
the configuration's real parameters (and the tracker logs them), and ``trial.seed`` is the grid
point's seed. No early termination, no trial budget, no metric target and no cost cap apply:
every pair of configuration and seed runs to its end, once. A grid point that fails stays
failed (as in ``run``); the comparison says which seeds are missing.

The configurations (id -> real parameter values) and the seeds are kept beside the engine's
default state, in ``.sweepspec/<comparison name>.configs.json`` under the working directory,
so that the comparison can be read back without running anything (:func:`read_runs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec import Spec
from .base import Asked, Engine, EngineError, EngineOptions, always_drives, drives, engine_names
from .contract import STATE_DIR
from .progress import Progress
from .sweep import (
    Finished,
    RunError,
    make_budget,
    make_executor,
    open_sweep,
    run_engine,
    stop_signals,
    sweep_name,
)
from .trials import TERM_GRACE, Monitor, Outcome

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ..trackers import TrialRecord
    from .budget import TrialSummary

__all__ = [
    "CONFIG",
    "SEED",
    "SUFFIX",
    "Candidate",
    "FixedConfigs",
    "check_engine",
    "comparison_name",
    "comparison_spec",
    "read_runs",
    "run_configs",
    "saved_configs",
]

CONFIG = "config"
SEED = "seed"
SUFFIX = "-compare"


@dataclass(frozen=True)
class Candidate:
    """A configuration to compare: its id and its real parameter values by dotted name."""

    id: str
    params: dict[str, Any]


# --------------------------------------------------------------------------- the second sweep


def comparison_name(spec: Spec, path: str) -> str:
    return sweep_name(spec, path) + SUFFIX


def comparison_spec(spec: Spec, path: str, ids: list[str], seeds: list[int]) -> Spec:
    """The comparison as a sweep: a grid over the configurations' ids and the seeds, on the
    spec's engine, tracking and objective; its state beside the sweep's (another name)."""
    data: dict[str, Any] = {
        "name": comparison_name(spec, path),
        "method": "grid",
        "parameters": {CONFIG: {"values": ids}, SEED: {"values": seeds}},
        "metric": spec.metric,
        "objective": spec.objective,
        "engine": spec.engine,
        "tracking": spec.tracking,
    }
    if spec.budget is not None and spec.budget.cost is not None:
        data["budget"] = {"cost": spec.budget.cost}
    if spec.optuna is not None:
        study = spec.optuna.study_name
        data["optuna"] = {
            "storage": spec.optuna.storage,
            "study_name": study + SUFFIX if study else None,
        }
    return Spec.model_validate(data)


def saved_configs(spec: Spec, path: str) -> Path:
    """Where the comparison's configurations and seeds are kept (under the working dir)."""
    return Path(STATE_DIR) / f"{comparison_name(spec, path)}.configs.json"


def _plain(candidates: list[Candidate], seeds: list[int]) -> dict[str, Any]:
    data = {"seeds": seeds, "configs": [{"id": c.id, "params": c.params} for c in candidates]}
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


class FixedConfigs:
    """The engine of the comparison, as the loop sees it: each trial the grid asks for runs
    its configuration's real parameters with its seed."""

    def __init__(
        self, inner: Engine, candidates: list[Candidate], seeds: list[int], side: Path
    ) -> None:
        self.inner = inner
        self.params = {c.id: dict(c.params) for c in candidates}
        self.saved = {"engine": inner.name, **_plain(candidates, seeds)}
        self.side = side
        self.seeds: dict[int, int] = {}
        self.name = inner.name
        self.label = inner.label
        self.sweep_id = inner.sweep_id
        self.sweep_name = inner.sweep_name
        self.artifact = inner.artifact
        self.artifact_name = inner.artifact_name
        self.messages = inner.messages
        self.prunes = False
        self.state_path = inner.state_path
        self.grace_period = inner.grace_period

    def check(self, fresh: bool) -> None:
        """Refuse to resume a comparison whose configurations were other values under the
        same ids (a configs file edited in place)."""
        if fresh or not self.side.exists() or not self.inner.summaries():
            return
        try:
            old = json.loads(self.side.read_text())
        except (OSError, ValueError):
            return
        if old.get("configs") != self.saved["configs"]:
            raise EngineError(
                f"the configurations differ from those of comparison {self.sweep_name!r} in "
                f"{self.label} (kept in {self.side}) under the same names; run again with "
                "--fresh to start the comparison over"
            )

    def start(self) -> None:
        self.inner.start()
        self.sweep_id = self.inner.sweep_id
        self.side.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.side.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.saved, indent=2) + "\n")
        os.replace(temporary, self.side)

    def close(self) -> None:
        self.inner.close()

    def ask(self) -> Asked | None:
        asked = self.inner.ask()
        if asked is None:
            return None
        config, seed = asked.params[CONFIG], asked.params[SEED]
        self.seeds[asked.number] = int(seed)
        return Asked(asked.number, dict(self.params[config]), asked)

    def seed_of(self, number: int) -> int:
        return self.seeds[number]

    def report(self, trial: Asked, value: float, step: int) -> bool:
        return self.inner.report(trial.handle, value, step)

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        self.inner.tell(trial.handle, record)

    def summaries(self) -> list[TrialSummary]:
        return self.inner.summaries()

    def exhausted(self) -> str | None:
        return self.inner.exhausted()

    def fail_stale(self) -> list[int]:
        return self.inner.fail_stale()

    def ask_lock(self) -> AbstractContextManager[None]:
        return self.inner.ask_lock()

    def records(self) -> Iterator[dict[str, Any]]:
        return self.inner.records()

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        return self.inner.curves()

    def decide(self, decision: dict[str, Any]) -> None:
        self.inner.decide(decision)

    def decisions(self) -> list[dict[str, Any]]:
        return self.inner.decisions()

    def worker_settings(self) -> dict[str, Any]:
        return self.inner.worker_settings()


# --------------------------------------------------------------------------- running, reading


def check_engine(name: str) -> None:
    """A :class:`RunError` when engine ``name`` drives its own trials (:func:`.base.drives`):
    the comparison's grid points run in this loop, and such an engine's loop asks nothing."""
    if always_drives(name):
        raise RunError(_drives_message(name))


def _drives_message(name: str) -> str:
    usable = []
    for other in engine_names():
        try:
            if other != name and not always_drives(other):
                usable.append(other)
        except ImportError:
            continue  # not installed: not one compare can use here
    return (
        f"compare cannot run on the {name} engine: it drives its own trials, and compare runs "
        "each configuration and seed in sweepspec's own loop; use an engine that does not: "
        f"--engine {' or '.join(usable)}"
    )


def run_configs(
    spec: Spec,
    path: str,
    candidates: list[Candidate],
    seeds: list[int],
    *,
    engine: str,
    tracker: str,
    fresh: bool = False,
    grace: float = TERM_GRACE,
) -> Finished:
    """Run (or resume) every configuration over every seed; :class:`RunError` for expected
    failures, KeyboardInterrupt after the running trial is recorded as failed."""
    derived = comparison_spec(spec, path, [c.id for c in candidates], seeds)
    loop_spec = spec.model_copy(update={"seeds": None, "early_terminate": None, "run_cap": None})
    objectives = [m.name for m in spec.objectives]
    budget = replace(
        make_budget(loop_spec, None),
        trials=None,
        deadline=None,
        wall_clock=None,
        targets=(),
        cost_max=None,
    )
    progress = Progress(derived.name or "", len(candidates) * len(seeds), objectives[0])
    execute = make_executor(spec, path, objectives, progress.echo, grace)
    try:
        with stop_signals():
            check_engine(engine)
            inner = open_sweep(engine, derived, path, EngineOptions(fresh=fresh))
            if drives(inner) is not None:  # one that drives only with some specs
                inner.close()
                raise RunError(_drives_message(engine))
            fixed = FixedConfigs(inner, candidates, seeds, saved_configs(spec, path))
            try:
                fixed.check(fresh)

                def run(
                    params: dict[str, Any], seed: int, number: int, monitor: Monitor
                ) -> Outcome:
                    return execute(params, fixed.seed_of(number), number, monitor)

                return run_engine(
                    fixed,
                    loop_spec,
                    path,
                    tracker=tracker,
                    budget=budget,
                    progress=progress,
                    execute=run,
                    grace=grace,
                )
            finally:
                fixed.close()
    except EngineError as exc:
        raise RunError(str(exc)) from None


def read_runs(
    spec: Spec, path: str
) -> tuple[list[Candidate], list[int], list[dict[str, Any]]] | None:
    """The comparison's configurations, seeds and runs (``results`` rows whose params are
    ``config`` and ``seed``), from the engine that ran it; None when there is none."""
    side = saved_configs(spec, path)
    try:
        saved = json.loads(side.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read the comparison's configurations in {side}: {exc}") from None
    candidates = [Candidate(c["id"], c["params"]) for c in saved["configs"]]
    seeds = [int(s) for s in saved["seeds"]]
    derived = comparison_spec(spec, path, [c.id for c in candidates], seeds)
    sweep = open_sweep(saved["engine"], derived, path, EngineOptions(create=False))
    try:
        return candidates, seeds, list(sweep.records())
    except EngineError as exc:
        raise RunError(str(exc)) from None
    finally:
        sweep.close()
