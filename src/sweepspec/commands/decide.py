"""``sweepspec decide``: record which trial was chosen, and why (issue 11 item 6).

The decision goes first to the engine's storage (the sweep's record of truth: an Optuna
study user attribute ``sweepspec.decisions``, a ``decide`` event in the W&B engine's log),
then to the tracker: on MLflow, tags on the trial's run (``sweepspec.decision=chosen``,
``sweepspec.decision_why``, ``sweepspec.decision_time``; the run chosen before it becomes
``superseded``) and on the sweep's parent run (``sweepspec.decision_trial``,
``sweepspec.decision_run_id``); ``mlflow.search_runs`` shows them as ``tags.*`` columns. A W&B
run logged offline cannot be changed once it has finished: the line printed names the run and
how to tag it once it is uploaded. ``results`` shows the decision (``decision``,
``decision_why``) from every source.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from . import EXTRAS, load_spec, needs_extra

if TYPE_CHECKING:
    from ..runners.base import Engine
    from ..spec import Spec

MAX_WHY = 5000
"""The longest reason kept whole (an MLflow tag holds 8000 characters)."""


def decide(
    path: str,
    *,
    trial: int | None,
    why: str,
    config: str | None = None,
    storage: str | None = None,
    tracker: str | None = None,
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    why = why.strip()
    if not why:
        raise SweepspecError("--why: say why this trial is the one (it is what is recorded)")
    if len(why) > MAX_WHY:
        raise SweepspecError(f"--why: at most {MAX_WHY} characters, but got {len(why)}")
    if config is not None:
        if trial is not None:
            raise SweepspecError("give --trial N or --config NAME, not both")
        trial = _config_trial(spec, path, storage, config)
    if trial is None:
        raise SweepspecError("give the chosen trial: --trial N (or --config NAME of a comparison)")
    decision = {
        "trial": trial,
        "why": why,
        "config": config,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sweep_id, label = _record(spec, path, storage, decision)
    sys.stderr.write(f"sweepspec: trial {trial} is chosen; recorded in {label}\n")
    _tracker(
        spec,
        path,
        tracker or (spec.tracking.tracker if spec.tracking else "mlflow"),
        sweep_id,
        decision,
    )
    return 0


def _config_trial(spec: Spec, path: str, storage: str | None, config: str) -> int:
    """The sweep's trial that configuration ``config`` of the comparison ('sweepspec
    compare') is: ``trial-N`` is trial N; a named configuration (``--configs FILE``) is the
    finished trial with the same parameters, if the sweep has one."""
    from .compare import load_comparison

    comparison = load_comparison(path, spec)
    if comparison is None:
        raise SweepspecError(
            f"--config {config!r}: this sweep has no comparison here; run 'sweepspec compare "
            f"{path}' first, or choose a trial with --trial N"
        )
    found = next((c for c in comparison.configs if c.id == config), None)
    if found is None:
        names = ", ".join(c.id for c in comparison.configs)
        raise SweepspecError(f"--config {config!r}: the comparison's configurations are {names}")
    prefix, _, number = found.id.partition("-")
    if prefix == "trial" and number.isdigit():
        return int(number)
    engine = _open_state(spec, path, storage)
    try:
        same = [
            int(r["number"])
            for r in engine.records()
            if r["state"] == "COMPLETE" and r["params"] == found.params
        ]
    finally:
        engine.close()
    if not same:
        raise SweepspecError(
            f"--config {config!r}: no finished trial of the sweep has its parameters, and a "
            "decision is recorded on a trial; run it as a trial, or choose one with --trial N"
        )
    return same[-1]


def _open_state(spec: Spec, path: str, storage: str | None) -> Engine:
    """The sweep's state, as ``results`` finds it (whichever engine ran it)."""
    from ..analysis.table import MissingExtra, TableError, open_sweep_state

    try:
        return open_sweep_state(spec, path, storage)
    except MissingExtra as exc:
        raise SweepspecError(needs_extra(exc.module, "decide")) from None
    except TableError as exc:
        raise SweepspecError(str(exc)) from None


def _record(
    spec: Spec, path: str, storage: str | None, decision: dict[str, Any]
) -> tuple[str, str]:
    """Record ``decision`` in the engine's storage; the sweep's id and where it is."""
    from ..runners.base import EngineError

    engine = _open_state(spec, path, storage)
    try:
        rows = {int(r["number"]): r for r in engine.records()}
        number = int(decision["trial"])
        if number not in rows:
            have = f"trials 0 to {max(rows)}" if rows else "no trials"
            raise SweepspecError(
                f"--trial {number}: sweep {engine.sweep_name!r} in {engine.label} has {have}"
            )
        state = rows[number]["state"]
        if state != "COMPLETE":
            raise SweepspecError(
                f"--trial {number}: the trial is {state}; only a finished (COMPLETE) trial can "
                "be chosen"
            )
        engine.decide(decision)
        return engine.sweep_id, engine.label
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    finally:
        engine.close()


def _tracker(spec: Spec, path: str, name: str, sweep_id: str, decision: dict[str, Any]) -> None:
    """Mark the decision in the tracker too, where the tracker's module can
    (``record_decision``)."""
    from ..analysis.table import TableError
    from ..trackers import tracker_module

    module = tracker_module(name)
    record = getattr(module, "record_decision", None)
    if record is None:
        return
    label = getattr(module, "LABEL", name)
    try:
        record(spec, path, sweep_id, decision, lambda line: print(line, file=sys.stderr))
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        raise SweepspecError(
            f"the decision is recorded in the engine's storage, but not in {label}: "
            + needs_extra(top, "decide")
        ) from None
    except TableError as exc:
        raise SweepspecError(
            f"the decision is recorded in the engine's storage, but not in {label}: {exc} "
            "(or run decide with --tracker none)"
        ) from None
