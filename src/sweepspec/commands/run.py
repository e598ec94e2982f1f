"""``sweepspec run``: run (or resume) a sweep until its budget is spent (SPEC sections 3, 6).

Spec errors print as ``validate`` prints them (exit 1); what the engine cannot express prints
one warning line each, as ``compile`` does. Expected failures are one line, exit 1; Ctrl-C
exits 130 with the running trial recorded as failed. Every engine (``--engine``, else the
spec's ``engine``, else optuna) runs through the engine-neutral loop
(:mod:`sweepspec.runners.sweep`); ``wandb: {mode: server}`` runs W&B's server and agent
instead.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

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
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    name = engine or spec.engine or "optuna"
    if name == "wandb" and spec.wandb and spec.wandb.mode == "server":
        if gpus is not None:
            raise SweepspecError(
                "--gpus shares devices among sweepspec's own workers; with wandb: {mode: "
                "server}, W&B's agent runs the trials: start one agent per device set, each "
                "with its CUDA_VISIBLE_DEVICES"
            )
        return _run_server(spec, path, trials, fresh)
    return _run_loop(
        name, spec, path, tracker or _spec_tracker(spec), trials, workers, storage, fresh, gpus
    )


def _run_server(spec: Spec, path: str, trials: int | None, fresh: bool) -> int:
    """W&B's own server and agent run the sweep (``wandb: {mode: server}``)."""
    import os

    try:
        from ..compiler.wandb import compile_wandb
        from ..runners.sweep import sweep_name
        from ..runners.trials import FunctionError, load_function
        from ..runners.wandb_server import ServerError, run_server
    except ImportError as exc:
        raise SweepspecError(
            f"the W&B engine needs {exc.name}: pip install 'sweepspec[wandb]'"
        ) from None
    folder = os.path.dirname(os.path.abspath(path))
    try:
        function = load_function(spec.function, folder) if spec.function else None
    except FunctionError as exc:
        raise SweepspecError(str(exc)) from None
    tracking = spec.tracking
    try:
        run_server(
            compile_wandb(spec).config,
            name=sweep_name(spec, path),
            folder=folder,
            function=function,
            metric=spec.metric.name if spec.metric else None,
            count=trials or spec.run_cap,
            project=spec.project or (tracking.project if tracking else None),
            entity=spec.entity or (tracking.entity if tracking else None),
            fresh=fresh,
            echo=lambda line: print(line, file=sys.stderr),
        )
    except ServerError as exc:
        raise SweepspecError(str(exc)) from None
    return 0


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
        )
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    _summary(finished.tally, finished.reason, path, [m.name for m in spec.objectives])
    return 0


def _summary(tally: Tally, reason: str, path: str, metric_names: list[str]) -> None:
    best = ""
    if tally.best is not None and tally.best.values is not None:
        name = metric_names[0] if metric_names else "value"
        best = f"; best {name}={tally.best.values[0]:.6g} (trial {tally.best.number})"
    sys.stderr.write(
        f"sweepspec: stopped: {reason}\n"
        f"sweepspec: {tally.finished} finished ({tally.pruned} stopped early), "
        f"{tally.failed} failed{best}; see 'sweepspec results {path}'\n"
    )
