"""The W&B engine in server mode: the real ``wandb.sweep`` and ``wandb.agent``.

The compiled W&B config (``sweepspec compile --engine wandb``) becomes the sweep on the W&B
server the SDK is configured for (``WANDB_BASE_URL``, default W&B's cloud); W&B's own agent
runs the trials, and W&B's server decides which configurations run and which runs stop.
sweepspec only starts the agent:

* a ``function`` trial is run by ``wandb.agent(function=...)``: a W&B-style function (no
  argument, ``wandb.init()`` inside) as it is; a sweepspec trial function (one argument)
  through :class:`ServerTrial`, whose ``report`` is ``wandb.log`` at the trial's step;
* a ``program``/``command`` trial is run by W&B's agent as ``wandb agent`` runs it.

The sweep's id is kept in ``.sweepspec/<study name>.wandb-server.json`` under the working
directory, so a second ``run`` of the same spec joins the same sweep (another agent), and a
changed config starts a new sweep only when asked (``--fresh``).

:class:`ServerEngine` is the W&B engine (``--engine wandb``) on a spec with ``wandb: {mode:
server}``: an engine that drives its own trials (:class:`~.base.Drives`), so the loop hands
it the run; W&B keeps the runs, no sweepspec tracker logs them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import netrc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .base import Asked, EngineError, EngineOptions, OwnTrials

if TYPE_CHECKING:
    from ..spec import Spec
    from ..trackers import TrialRecord
    from .budget import TrialSummary
    from .sweep import Loop

__all__ = ["ServerEngine", "ServerError", "ServerTrial", "logged_in", "open_server", "run_server"]

DEFAULT_BASE_URL = "https://api.wandb.ai"


class ServerError(Exception):
    """An expected failure of server mode: one line for the user."""


def logged_in(environ: dict[str, str] | None = None) -> bool:
    """Whether W&B's SDK has credentials: ``WANDB_API_KEY``, or a netrc entry for the host
    of ``WANDB_BASE_URL`` (what ``wandb login`` writes)."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or ""
    path = env.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class ServerTrial:
    """The trial object of SPEC section 6, for a function run by W&B's agent: ``report``
    logs to the W&B run at the trial's step; W&B's server stops runs through its agent."""

    def __init__(self, params: dict[str, Any], seed: int, number: int, run: Any) -> None:
        self.params = params
        self.seed = seed
        self.number = number
        self._run = run
        self._step = -1

    def report(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._step = self._step + 1 if step is None else int(step)
        self._run.log(dict(metrics), step=self._step)

    def should_stop(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"ServerTrial(number={self.number}, seed={self.seed}, params={self.params!r})"


def _takes_trial(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True
    required = [
        p
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return bool(required) or any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values())


def adapt(function: Callable[..., Any], metric: str | None) -> Callable[[], None]:
    """What ``wandb.agent(function=...)`` calls: the function itself when it takes no
    argument (W&B's style), else a wrapper that gives it a :class:`ServerTrial`."""
    if not _takes_trial(function):
        return function
    count = [0]

    def trial_run() -> None:
        import wandb

        run = wandb.init()
        number, count[0] = count[0], count[0] + 1
        result = function(ServerTrial(dict(run.config), 0, number, run))
        if isinstance(result, dict):
            run.summary.update(result)
        elif result is not None and metric is not None:
            run.summary[metric] = result
        run.finish()

    return trial_run


def run_server(
    config: dict[str, Any],
    *,
    name: str,
    folder: str,
    function: Callable[..., Any] | None,
    metric: str | None,
    count: int | None,
    project: str | None,
    entity: str | None,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
) -> str:
    """Create (or join) the sweep on the W&B server and run an agent until ``count`` runs
    (or the sweep) are done; return the sweep id."""
    if not logged_in():
        raise ServerError(
            "W&B server mode needs a W&B login: run 'wandb login' (or set WANDB_API_KEY), "
            "or run locally with 'wandb: {mode: local}'"
        )
    import wandb

    state = Path(".sweepspec") / f"{name}.wandb-server.json"
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    sweep_id = _known_sweep(state, digest, fresh)
    try:
        if sweep_id is None:
            sweep_id = wandb.sweep(config, project=project, entity=entity)
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"sweep_id": sweep_id, "config_sha256": digest}))
        echo(f"sweepspec: W&B sweep {sweep_id} on {_base_url()} (agent here)")
        call = adapt(function, metric) if function is not None else None
        previous = os.getcwd()
        os.chdir(folder)  # W&B's agent runs the program from the working directory
        try:
            wandb.agent(sweep_id, function=call, count=count, project=project, entity=entity)
        finally:
            os.chdir(previous)
    except wandb.errors.CommError as exc:
        raise ServerError(f"the W&B server at {_base_url()} refused: {exc}") from None
    return str(sweep_id)


def _known_sweep(state: Path, digest: str, fresh: bool) -> str | None:
    if fresh or not state.exists():
        return None
    try:
        known = json.loads(state.read_text())
        sweep_id, old = str(known["sweep_id"]), known["config_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ServerError(f"{state}: not a sweepspec W&B server state file") from None
    if old != digest:
        raise ServerError(
            f"the compiled W&B config differs from that of sweep {sweep_id} ({state}); "
            "run again with --fresh to create a new sweep"
        )
    return sweep_id


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


GPUS_REFUSED = (
    "--gpus shares devices among sweepspec's own workers; with wandb: {mode: server}, W&B's "
    "agent runs the trials: start one agent per device set, each with its CUDA_VISIBLE_DEVICES"
)


def open_server(spec: Spec, path: str, options: EngineOptions) -> ServerEngine:
    """The W&B engine in server mode on the sweep of ``spec`` (read from ``path``); an
    ImportError when W&B's SDK is not installed."""
    import wandb  # noqa: F401  (missing: one line from the loop, before anything starts)

    return ServerEngine(spec, path, options)


class ServerEngine(OwnTrials):
    """W&B's server decides and W&B's agent runs the trials (:meth:`drive`); this process
    keeps no trial, so the members the loop asks trial by trial have nothing to give."""

    name = "wandb"
    artifact_name = "wandb.json"
    prunes = False
    grace_period: float | None = None

    def __init__(self, spec: Spec, path: str, options: EngineOptions) -> None:
        from ..compiler.wandb import compile_wandb
        from .sweep import sweep_name

        self.spec, self.path, self.fresh = spec, path, options.fresh
        self.sweep_name = sweep_name(spec, path)
        self.artifact: dict[str, Any] = compile_wandb(spec).config
        self.state_path = str(Path(".sweepspec") / f"{self.sweep_name}.wandb-server.json")
        self.label = f"the W&B server at {_base_url()}"
        self.sweep_id = ""
        self.messages: list[str] = []

    def drive(self, loop: Loop) -> str:
        """Create (or join) the sweep on the W&B server and run W&B's agent here until the
        trial budget (``--trials``, else ``run_cap``, else ``budget.trials``) is spent."""
        from .trials import FunctionError, load_function

        if loop.gpus is not None:
            raise EngineError(GPUS_REFUSED)
        spec = self.spec
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            function = load_function(spec.function, folder) if spec.function else None
        except FunctionError as exc:
            raise EngineError(str(exc)) from None
        tracking = spec.tracking
        try:
            self.sweep_id = run_server(
                self.artifact,
                name=self.sweep_name,
                folder=folder,
                function=function,
                metric=spec.metric.name if spec.metric else None,
                count=loop.budget.trials,
                project=spec.project or (tracking.project if tracking else None),
                entity=spec.entity or (tracking.entity if tracking else None),
                fresh=self.fresh,
                echo=loop.progress.write,
            )
        except ServerError as exc:
            raise EngineError(str(exc)) from None
        return f"W&B's agent for sweep {self.sweep_id} is done"

    def start(self) -> None:
        """Nothing to replace here: ``--fresh`` makes a new sweep on the server."""

    def close(self) -> None:
        """Nothing taken at opening."""

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        """W&B's agent records its runs on the server."""

    def summaries(self) -> list[TrialSummary]:
        return []

    def records(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        return {}

    def worker_settings(self) -> dict[str, Any]:
        return {}

    def decide(self, decision: dict[str, Any]) -> None:
        raise EngineError("W&B server mode keeps its runs on the W&B server: tag the run there")

    def decisions(self) -> list[dict[str, Any]]:
        return []
