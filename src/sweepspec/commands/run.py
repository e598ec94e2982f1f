"""``sweepspec run``: run (or resume) a sweep until its budget is spent (SPEC sections 3, 6).

Spec errors print as ``validate`` prints them (exit 1); what the engine cannot express prints
one warning line each, as ``compile`` does. Expected failures are one line, exit 1; Ctrl-C
exits 130 with the running trial recorded as failed. Every engine (``--engine``, else the
spec's ``engine``, else optuna) runs through the engine-neutral loop
(:mod:`sweepspec.runners.sweep`), which hands the run to an engine that drives its own
trials (W&B's server mode: W&B's agent). ``extra`` holds the engine options given on the
command line (:data:`sweepspec.runners.base.ENGINE_OPTIONS`), by flag.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from ..spec import Spec
from . import EXTRAS, load_spec, needs_extra

if TYPE_CHECKING:
    from ..runners.budget import Tally


LOOP_RUNS = ("function",)
"""What a compiled artifact may say its engine's own agent cannot run, but the engine-neutral
loop runs itself: not warned about on ``run``."""


def run(
    path: str,
    *,
    engine: str | None = None,
    tracker: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
    storage: str | None = None,
    fresh: bool = False,
    gpus: str | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    name = engine or spec.engine or "optuna"
    options = _engine_options(name, extra or {})
    return _run_loop(
        name,
        spec,
        path,
        tracker or _spec_tracker(spec),
        trials,
        workers,
        storage,
        fresh,
        gpus,
        options,
    )


def _engine_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The engine options given (by flag, None when not given) as ``EngineOptions.extra``
    keys of engine ``name``; an option of another engine is refused in one line."""
    from ..runners.base import ENGINE_OPTIONS

    out: dict[str, Any] = {}
    for owner, options in ENGINE_OPTIONS.items():
        for option in options:
            value = given.get(option.flag)
            if value is None:
                continue
            if owner != name:
                raise SweepspecError(
                    f"{option.flag} is an option of the {owner} engine; this sweep runs on "
                    f"{name} (--engine {owner} to run it there)"
                )
            out[option.key] = value
    return out


def _spec_tracker(spec: Spec) -> str:
    return spec.tracking.tracker if spec.tracking else "mlflow"


def _run_loop(
    name: str,
    spec: Spec,
    path: str,
    tracker: str,
    trials: int | None,
    workers: int | None,
    storage: str | None,
    fresh: bool,
    gpus: str | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """The sweep on engine ``name`` (a key of :data:`~sweepspec.runners.base.ENGINES`),
    driven by the engine-neutral loop."""
    from .. import compiler

    try:
        from ..runners.sweep import RunError, run_sweep

        compiled = compiler.compile_for(name, spec)  # the engine's own compiler
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in EXTRAS:
            raise SweepspecError(needs_extra(top, "run")) from None
        raise SweepspecError(
            f"the {name} engine needs {exc.name}: pip install 'sweepspec[{name}]'"
        ) from None
    except compiler.CompileError as exc:
        sys.stderr.write(f"{path}: error: {exc}\n")
        return 1
    for item in compiled.unsupported:
        if item.feature in LOOP_RUNS:
            continue  # said of the engine's own agent; this loop runs it
        sys.stderr.write(f"{path}: warning: {item.format(name)}\n")
    count = workers or (spec.budget.workers if spec.budget else 1)
    try:
        finished = run_sweep(
            spec,
            path,
            engine=name,
            tracker=tracker,
            storage=storage,
            trials=trials,
            workers=count,
            fresh=fresh,
            gpus=gpus,
            extra=extra,
        )
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    _summary(finished.tally, finished.reason, path, [m.name for m in spec.objectives])
    return 0


def _summary(tally: Tally | None, reason: str, path: str, metric_names: list[str]) -> None:
    if tally is None:  # the engine keeps no trials here (W&B's server mode)
        sys.stderr.write(f"sweepspec: stopped: {reason}\n")
        return
    best = ""
    if tally.best is not None and tally.best.values is not None:
        name = metric_names[0] if metric_names else "value"
        best = f"; best {name}={tally.best.values[0]:.6g} (trial {tally.best.number})"
    sys.stderr.write(
        f"sweepspec: stopped: {reason}\n"
        f"sweepspec: {tally.finished} finished ({tally.pruned} stopped early), "
        f"{tally.failed} failed{best}; see 'sweepspec results {path}'\n"
    )
