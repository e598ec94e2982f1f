"""Trials: the object a trial function gets, and the two ways a trial runs.

* A Python function (``function: module:callable``, imported once from the spec's folder) is
  called with a :class:`Trial`: ``.params`` (real values, nested W&B parameters as nested
  dicts), ``.seed``, ``.number``, ``.report(metrics, step)`` and ``.should_stop()``. It returns
  a dict of final metrics or a number (the objective). The calls run in the worker's trial
  process (:class:`_Server`), forked from the worker once (so nothing is imported again) and
  given one trial after another, as ``study.optimize`` calls a function: module globals stay,
  the working folder, ``sys.argv`` and the environment are put back after each trial. Its
  reports come back over a pipe and each answers whether to stop. An exception, ``sys.exit``,
  a crash (segfault, ``os._exit``) or running past ``budget.trial_timeout`` is a failed trial
  with its reason kept; it never ends the sweep (a trial process that died or was killed is
  replaced for the next trial).
* A command (``program`` / ``command``) gets its parameters exactly as W&B's agent passes them
  (:func:`command_line`), never through a shell. It reports metrics with
  :mod:`sweepspec.reporter` (JSON lines on a pipe named by ``SWEEPSPEC_REPORT``), or on stdout
  as JSON lines (``{"val_loss": 0.3, "_step": 2}``) or ``name=value`` lines (Katib's
  convention: ``val_loss=0.3 step=2``). Stopped early, it gets SIGTERM, then SIGKILL after a
  grace period; so does a command that runs past ``budget.trial_timeout``.

Trial processes die with the process that started them: each runs in a process group of its
own and, on Linux, asks the kernel for SIGKILL when its parent ends (``PR_SET_PDEATHSIG``), so
a worker killed outright leaves no trial process behind.

This module imports no engine: pruning decisions come in through the ``prune`` callback of
:class:`Monitor`.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import functools
import importlib
import importlib.util
import inspect
import json
import math
import os
import pickle
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any, Protocol

from ..locks import process_alive as process_alive  # with the process helpers here
from ..reporter import ENV_REPORT, ENV_SEED
from ..trackers import Point

# the trial contract shared with the generated script lives once, in .contract
from .contract import (
    DEFAULT_COMMAND,
    command_line,
    macro_values,
    parse_line,
)
from .contract import ENVVAR as ENVVAR
from .contract import STEP_KEYS as STEP_KEYS
from .contract import numeric_only as _numeric_only
from .contract import to_float as _float
from .wandb_program import Follower, WandbRun

__all__ = [
    "DEFAULT_COMMAND",
    "Command",
    "Monitor",
    "Outcome",
    "Trial",
    "best_value",
    "calls_bare",
    "command_line",
    "conclude",
    "die_with_parent",
    "load_function",
    "macro_values",
    "parse_line",
    "reap_trials",
    "run_command",
    "run_function",
]

TERM_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL for a command that must stop."""

SPIN = 0.001
"""Seconds a worker polls its trial process's pipe without sleeping, right after giving it a
trial, before it sleeps on the pipe (:func:`_spun`). A short trial's end then finds the
worker awake: on the 2-CPU virtual machine measured, a round trip over a pipe took 54 us to
60 us between processes awake and 143 us to 306 us after a 2 ms pause (the scale-out
benchmark prints both), more than a trivial trial itself (issue 10 item 4). A trial that
runs longer costs the worker at most this much CPU time."""

Prune = Callable[[float, int], bool]
Echo = Callable[[str, str], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- metrics


def numbers(metrics: Any) -> dict[str, float]:
    """``metrics`` as ``{name: float}``; a ``TypeError`` naming what is not a number."""
    if not isinstance(metrics, dict):
        raise TypeError(
            f"'metrics' must be a dict of numbers, but got {type(metrics).__name__}: {metrics!r}"
        )
    out: dict[str, float] = {}
    for name, value in metrics.items():
        number = _float(value)
        if number is None:
            raise TypeError(
                f"'metrics[{name!r}]' must be a number, but got {type(value).__name__}: {value!r}"
            )
        out[str(name)] = number
    return out


class Monitor:
    """One run of one configuration (one seed): what it reported and whether it must stop.

    ``prune(value, step)`` is called with each finite value of the ``objective`` metric and
    returns True when the engine stops the trial early. ``prefix`` (``seed_0/``) is put in
    front of the history's keys. ``timeout`` seconds after the monitor is made (its
    ``deadline``, in ``time.monotonic()``), ``should_stop()`` is true and the trial is
    recorded as timed out. ``best`` (``"minimize"`` or ``"maximize"``, spec ``objective:
    best``): the run is scored by the best value of ``objective`` it reported or returned
    (:func:`best_value`), else by its final value.
    """

    def __init__(
        self,
        objective: str | None = None,
        prune: Prune | None = None,
        timeout: float | None = None,
        prefix: str = "",
        best: str | None = None,
    ) -> None:
        self.objective = objective
        self.best = best
        self._prune = prune
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout if timeout else None
        self.prefix = prefix
        self.last: dict[str, float] = {}
        self._steps: dict[str, int] = {}
        self.history: list[Point] = []
        self.next_step = 0
        self.pruned = False
        self.timed_out = False

    def report(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = numbers(metrics)
        step = self.next_step if step is None else _check_step(step)
        self.next_step = step + 1
        now = _now_ms()
        self.history += [Point(self.prefix + k, v, now, step) for k, v in values.items()]
        for key, number in values.items():  # the value at the highest step is the last
            if step >= self._steps.get(key, -1):
                self.last[key], self._steps[key] = number, step
        value = values.get(self.objective or "")
        if (
            self._prune is not None
            and not self.pruned
            and value is not None
            and math.isfinite(value)
        ):
            self.pruned = self._prune(value, step)

    def should_stop(self) -> bool:
        if self.pruned:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
        return self.timed_out

    @property
    def prunable(self) -> bool:
        """Whether a report can stop the trial early (the engine has a pruner)."""
        return self._prune is not None


class Reports(Protocol):
    """What a :class:`Trial` reports to: a :class:`Monitor`, or its end of a pipe."""

    def report(self, metrics: dict[str, Any], step: int | None = None) -> None: ...

    def should_stop(self) -> bool: ...


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            whole = int(step)
        except (TypeError, ValueError):
            whole = None
        if whole is None or whole != step:
            raise TypeError(f"'step' must be an integer, but got {type(step).__name__}: {step!r}")
        step = whole
    if step < 0:
        raise ValueError(f"'step >= 0' must hold, but got step={step}")
    return int(step)


class Trial:
    """What a trial function is called with (SPEC section 6).

    Attributes:
        params: real values; nested W&B parameters are nested dicts.
        seed: this run's seed (``seeds:``; 0 without it).
        number: the trial's number in the sweep.
    """

    def __init__(self, params: dict[str, Any], seed: int, number: int, monitor: Reports) -> None:
        self.params = params
        self.seed = seed
        self.number = number
        self._monitor = monitor

    def report(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record intermediate ``metrics`` (name -> number) at ``step`` (default: the
        previous step + 1, from 0). The engine may then decide to stop the trial early."""
        self._monitor.report(metrics, step)

    def should_stop(self) -> bool:
        """True once the engine stopped the trial early (or it ran past
        ``budget.trial_timeout``): return now, with what you have."""
        return self._monitor.should_stop()

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, seed={self.seed}, params={self.params!r})"


# --------------------------------------------------------------------------- outcome


@dataclass
class Outcome:
    """How one run ended: ``COMPLETE`` (with ``values``), ``PRUNED`` or ``FAIL``."""

    state: str
    metrics: dict[str, float]
    values: list[float] | None = None
    error: str | None = None
    traceback: str | None = None
    history: list[Point] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """The objective metrics it neither reported nor returned (a ``FAIL``)."""


def conclude(
    result: Any, monitor: Monitor, objectives: list[str], what: str = "the trial"
) -> Outcome:
    """The outcome of a run that returned ``result`` (None for a command)."""
    reported = dict(monitor.last)
    if monitor.pruned:
        merged = {**reported, **(_numeric_only(result) if isinstance(result, dict) else {})}
        return Outcome("PRUNED", merged, history=monitor.history)
    if monitor.timed_out:
        return Outcome(
            "FAIL",
            reported,
            error=f"{what} ran past budget.trial_timeout ({monitor.timeout:g}s) and was stopped",
            history=monitor.history,
        )
    try:
        metrics, values = _objective(result, reported, objectives, what, _scorer(monitor))
    except MissingMetricError as exc:
        return Outcome(
            "FAIL", exc.given, error=str(exc), history=monitor.history, missing=exc.missing
        )
    except (TypeError, ValueError) as exc:
        return Outcome("FAIL", reported, error=str(exc), history=monitor.history)
    return Outcome("COMPLETE", metrics, values, history=monitor.history)


class MissingMetricError(ValueError):
    """The trial neither reported nor returned an objective metric; ``given`` is what it
    did report or return."""

    def __init__(self, message: str, missing: list[str], given: dict[str, float]) -> None:
        super().__init__(message)
        self.missing = missing
        self.given = given


def _scorer(monitor: Monitor) -> Callable[[list[float]], list[float]] | None:
    """W&B's score for a run of one objective, when the monitor asks for the best value."""
    name, goal = monitor.objective, monitor.best
    if name is None or goal is None:
        return None
    key = monitor.prefix + name
    reported = [p.value for p in monitor.history if p.key == key]
    return lambda final: [best_value(reported + final, goal)] if len(final) == 1 else final


def best_value(values: list[float], goal: str) -> float:
    """What W&B's controller scores a run by (``SweepRun.metric_extremum``): the lowest finite
    value when ``goal`` is ``"minimize"``, else the highest, over the run's history and its
    final value; NaN when none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return min(finite) if goal == "minimize" else max(finite)


def _objective(
    result: Any,
    reported: dict[str, float],
    objectives: list[str],
    what: str,
    score: Callable[[list[float]], list[float]] | None = None,
) -> tuple[dict[str, float], list[float]]:
    if isinstance(result, dict):
        merged = {**reported, **numbers(result)}
    elif result is None:
        merged = dict(reported)
    else:
        number = _float(result)
        if number is None:
            raise TypeError(
                f"{what} must return a dict of metrics or a number, but returned "
                f"{type(result).__name__}: {result!r}"
            )
        if len(objectives) > 1:
            raise TypeError(
                f"{what} returned one number, but the spec has "
                f"{len(objectives)} metrics ({', '.join(objectives)}); return a "
                "dict holding each"
            )
        merged = {**reported, (objectives or ["objective"])[0]: number}
    names = objectives or ["objective"]
    missing = [n for n in names if n not in merged]
    if missing:
        raise MissingMetricError(
            _missing_message(what, result, missing, objectives), missing, merged
        )
    values = [merged[n] for n in names]
    if score is not None:
        values = score(values)
    bad = [f"{n}={v}" for n, v in zip(names, values, strict=False) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"the objective must be a finite number, but {what} gave {', '.join(bad)}")
    return merged, values


def _missing_message(what: str, result: Any, missing: list[str], objectives: list[str]) -> str:
    if not objectives:
        return (
            f"the spec has no 'metric', so {what} must return a number (the objective "
            f"to minimise), but it returned {type(result).__name__}"
        )
    names = ", ".join(repr(n) for n in missing)
    if what == "the command":
        return (
            f'the command reported no {names}: print a JSON line {{"{missing[0]}": '
            f"...}} or a line {missing[0]}=..., or use sweepspec.reporter"
        )
    got = f"a dict without {names}" if isinstance(result, dict) else repr(result)
    return (
        f"{what} returned {got} and reported no {names}; return "
        f'{{"{missing[0]}": ...}} or a number, or call trial.report'
    )


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- functions


class FunctionError(Exception):
    """``function: module:callable`` cannot be imported from the spec's folder."""


def load_function(ref: str, folder: str) -> Callable[[Trial], Any]:
    """Import ``module:callable`` (``callable`` may be dotted) with ``folder`` first on
    ``sys.path``; a module of that name imported from elsewhere is imported again.

    The module is imported with a clean ``sys.argv`` (``[its file]``), so code that parses
    arguments at import reads none of sweepspec's. Whatever the import raises, ``sys.exit``
    included (not Ctrl-C), is a :class:`FunctionError`.
    """
    module_name, _, attr = ref.partition(":")
    folder = os.path.abspath(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    _forget_foreign(module_name, folder)
    try:
        with clean_argv(module_file(module_name)):
            target: Any = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        raise FunctionError(
            f"function {ref!r}: importing {module_name!r} called sys.exit({exc.code!r}), so "
            "there is no function to run; put the module's own run under "
            "'if __name__ == \"__main__\":'"
        ) from None
    except BaseException as exc:
        raise FunctionError(
            f"function {ref!r}: cannot import {module_name!r} from {folder}: {describe(exc)}"
        ) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise FunctionError(f"function {ref!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise FunctionError(f"function {ref!r} must be callable, but got {type(target).__name__}")
    return target  # type: ignore[no-any-return]


def module_file(module_name: str) -> str:
    """The file ``module_name`` is imported from (its name when that cannot be told)."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    origin = found.origin if found is not None else None
    return origin if origin and origin not in ("built-in", "frozen") else module_name


@contextlib.contextmanager
def clean_argv(argv0: str) -> Iterator[None]:
    """``sys.argv`` is ``[argv0]`` inside the block, as for ``python argv0``."""
    saved = sys.argv
    sys.argv = [argv0]
    try:
        yield
    finally:
        sys.argv = saved


def calls_bare(ref: str, target: Callable[..., Any]) -> bool:
    """How sweepspec calls the trial function ``target``: with the trial (SPEC section 6;
    False), or with no argument (True), as W&B's agent calls a ``wandb.agent(function=...)``
    function, which reads ``wandb.config`` and calls ``wandb.log``. Neither: a
    :class:`FunctionError` saying so."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or extension callable: it will tell
        return False
    for args, bare in (((None,), False), ((), True)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return bare
    name = getattr(target, "__name__", "objective")
    raise FunctionError(
        f"function {ref!r} cannot be called with the trial nor with no argument (its "
        f"signature is {name}{signature}): write 'def {name}(trial):' and read the "
        "parameters from trial.params, or 'def "
        f"{name}():' reading wandb.config as for wandb.agent"
    )


def _forget_foreign(module_name: str, folder: str) -> None:
    """Drop a cached module of the same top-level name that the spec's folder shadows."""
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    local = Path(folder, top)
    if cached is None or not (local.with_suffix(".py").exists() or local.is_dir()):
        return
    origin = getattr(cached, "__file__", None) or ""
    if origin and Path(origin).resolve().is_relative_to(Path(folder).resolve()):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def run_function(
    function: Callable[[Trial], Any],
    params: dict[str, Any],
    seed: int,
    number: int,
    monitor: Monitor,
    objectives: list[str],
    *,
    grace: float = TERM_GRACE,
    argv0: str | None = None,
    folder: str | None = None,
    sweep: str = "sweepspec",
    bare: bool = False,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Call ``function`` once, in a child process forked from this one (where the function
    is already imported), with ``sys.argv`` ``[argv0]`` there and ``env`` added to its
    environment (the GPUs it may see: :mod:`.gpus`).

    With ``folder`` (the spec's), the child also gets what W&B's agent gives a run (see
    :mod:`.wandb_program`), and what it logs with ``wandb.log`` is reported as it runs; a
    ``bare`` function (W&B's style: no argument, ``wandb.init()`` inside) is called with no
    argument, reports only through W&B, and is stopped by killing it.

    The child's reports reach ``monitor`` over a pipe; when the engine can stop the trial
    early, each report waits for the answer, so ``should_stop()`` right after ``report()``
    tells. Any exception in the function (``sys.exit`` too) is a ``FAIL`` holding its
    message; so is a child that dies (a segfault, ``os._exit``), and one still running
    ``grace`` seconds after ``budget.trial_timeout`` (killed). A ``KeyboardInterrupt`` in the
    child, or Ctrl-C here, stops the child and goes on up.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: in this process
        return _call_here(function, params, seed, number, monitor, objectives)
    forked = _Forked(monitor, grace)
    forked.env = dict(env or {})
    if folder is None:
        return forked.run(function, params, seed, number, objectives, argv0)
    forked.wandb = WandbRun(folder, sweep, params, param_path=_param_file())
    forked.bare = bare
    return forked.run(function, params, seed, number, objectives, argv0)


@functools.cache
def _param_file() -> Path:
    """The worker's W&B parameter file, written again for each of its trials (they run one
    at a time; with a file made and removed per trial, ``WandbRun``'s set-up and write took
    0.16 ms of a trivial trial besides the removal, 0.10 ms written again: issue 10 item
    4), in a folder of its own, removed when the worker ends."""
    folder = tempfile.mkdtemp(prefix="sweepspec-trials-")
    atexit.register(_remove_param_dir, folder, os.getpid())
    return Path(folder) / "config.yaml"


def _remove_param_dir(folder: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


def _call_here(
    function: Callable[[Trial], Any],
    params: dict[str, Any],
    seed: int,
    number: int,
    monitor: Monitor,
    objectives: list[str],
) -> Outcome:  # pragma: no cover - where there is no fork
    try:
        result = function(Trial(params, seed, number, monitor))
    except (Exception, SystemExit, GeneratorExit) as exc:
        return _failed(monitor, _exception_message(exc), traceback.format_exc())
    return conclude(result, monitor, objectives)


def _exception_message(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the trial function called sys.exit({exc.code!r}) instead of returning its metrics"
    return describe(exc)


def _failed(monitor: Monitor, error: str, trace: str | None = None) -> Outcome:
    return Outcome(
        "FAIL", dict(monitor.last), error=error, traceback=trace, history=monitor.history
    )


class _Remote:
    """The child's side of a :class:`Monitor`: reports go to the parent over ``conn``; while
    the trial can still be stopped early, each waits for the parent's answer."""

    def __init__(self, conn: Connection, deadline: float | None, prunable: bool) -> None:
        self.conn = conn
        self.deadline = deadline
        self.prunable = prunable
        self.pruned = False
        self.timed_out = False

    def report(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = numbers(metrics)
        whole = None if step is None else _check_step(step)
        self.conn.send(("report", values, whole))
        if self.prunable and not self.pruned:
            self.pruned = bool(self.conn.recv())

    def should_stop(self) -> bool:
        if self.pruned:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
        return self.timed_out


class _Server:
    """A worker's trial process: forked once from the worker (where the function is already
    imported), it runs the worker's function trials one after another, each sent over a
    pipe, as Optuna's ``study.optimize`` and W&B's agent run a function in one process. What
    a trial leaves in its module's globals stays for the next; its working folder,
    ``sys.argv`` and environment are put back after each. A trial that kills it (a segfault,
    ``os._exit``), runs past its timeout or is stopped by Ctrl-C ends it: the next trial gets
    a new one. So does a trial that must see other devices (``env``)."""

    def __init__(
        self,
        function: Callable[..., Any],
        argv0: str | None,
        env: dict[str, str],
        bare: bool,
    ) -> None:
        self.function = function
        self.argv0 = argv0
        self.env = env
        self.bare = bare
        self.pid = 0
        self.conn: Connection | None = None
        self.status: int | None = None
        # what the child was forked with: a worker that changed them (a program calling
        # sweepspec.run twice) gets a new child
        self.raw_environ = _raw_environ()
        self.cwd = os.getcwd()

    def fits(
        self, function: Callable[..., Any], argv0: str | None, env: dict[str, str], bare: bool
    ) -> bool:
        same = (self.function, self.argv0, self.env, self.bare) == (function, argv0, env, bare)
        if not same or self.conn is None or self.reaped():
            return False
        return _environ_is(self.raw_environ) and self.cwd == os.getcwd()

    def start(self) -> None:
        here, there = Pipe()
        parent = os.getpid()
        _prctl()  # loaded here: the child only calls it
        for stream in (sys.stdout, sys.stderr):  # or the child prints what is buffered again
            stream.flush()
        # Ctrl-C, SIGTERM and SIGHUP are held over the fork: one that arrives while the
        # interpreter runs its after-fork hooks (logging's) would be ignored there, and the
        # sweep would go on; held, it arrives in the worker once the child is known.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_OVER_FORK)
        try:
            self.pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if self.pid == 0:  # pragma: no cover - the child (coverage cannot follow it)
            here.close()
            _serve(there, parent, self.function, self.argv0, self.env, self.bare)
        there.close()
        self.conn = here
        with contextlib.suppress(OSError):  # also in the child: no race
            os.setpgid(self.pid, self.pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what was held is raised here

    def send(self, message: tuple[Any, ...]) -> bool:
        """Give the child a trial; False when it is gone (a new one is needed)."""
        assert self.conn is not None
        try:
            self.conn.send(message)
        except OSError:
            return False
        return True

    def reaped(self) -> bool:
        if self.status is None and self.pid:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is not None

    def wait_exit(self, seconds: float) -> None:
        ends, pause = time.monotonic() + seconds, 0.0005
        while time.monotonic() < ends and not self.reaped():
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def kill(self) -> None:
        """End the child, and whatever it started in its process group."""
        if self.pid and not self.reaped():
            _killpg(self.pid, signal.SIGKILL)
            _, self.status = os.waitpid(self.pid, 0)
        if self.pid:
            _killpg(self.pid, signal.SIGKILL)
        self.close()

    def stop(self, grace: float = 2.0) -> None:
        """The worker is done: the child leaves when its pipe closes (at most ``grace``
        seconds), then whatever is left in its group is killed."""
        self.close()
        self.wait_exit(grace)
        self.kill()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _raw_environ() -> dict[Any, Any]:
    """The environment as the process holds it (``os.environ``'s encoded copy, compared in
    one step; a comparison of ``os.environ`` itself decodes every name and value)."""
    raw = getattr(os.environ, "_data", None)
    return dict(raw) if isinstance(raw, dict) else dict(os.environ)


def _environ_is(raw: dict[Any, Any]) -> bool:
    held = getattr(os.environ, "_data", None)
    return raw == (held if isinstance(held, dict) else os.environ)


def worker_gone(worker: str) -> str | None:
    """Why a trial's worker (``host:pid``, as the trial records it) no longer runs it: its
    process on this host has ended (killed, or stopped by an error it could not write, such
    as a full disk). None when it runs, or runs elsewhere."""
    host = socket.gethostname()
    owner, _, pid = worker.rpartition(":")
    if owner == host and pid.isdigit() and not process_alive(int(pid)):
        return (
            f"its worker (pid {pid} on {host}) ended while the trial ran: it was killed, or "
            "stopped by an error (a full disk)"
        )
    return None


_SERVER: list[_Server] = []
"""The worker's trial process, when it has one (see :class:`_Server`)."""


def _server_for(
    function: Callable[..., Any], argv0: str | None, env: dict[str, str], bare: bool
) -> _Server:
    """The worker's trial process for ``function``, started (again) when there is none that
    fits."""
    if _SERVER and _SERVER[0].fits(function, argv0, env, bare):
        return _SERVER[0]
    reap_trials()
    server = _Server(function, argv0, env, bare)
    server.start()
    _SERVER.append(server)
    return server


def reap_trials() -> None:
    """End the worker's trial process: a run leaves none behind when it returns, not even
    one holding a copy of its locks."""
    while _SERVER:
        _SERVER.pop().stop()


atexit.register(reap_trials)


class _Forked:
    """The worker's side of one function trial, run in its trial process."""

    def __init__(self, monitor: Monitor, grace: float) -> None:
        self.monitor = monitor
        self.grace = grace
        self.server: _Server | None = None
        self.ending = "kill"
        self.wandb: WandbRun | None = None
        self.follow_wandb: Follower | None = None
        self.bare = False
        self.env: dict[str, str] = {}  # the worker's devices, in its trial process

    def run(
        self,
        function: Callable[[Trial], Any],
        params: dict[str, Any],
        seed: int,
        number: int,
        objectives: list[str],
        argv0: str | None,
    ) -> Outcome:
        extra: dict[str, str] = {}
        if self.wandb is not None:
            extra = self.wandb.env()
            self.follow_wandb = _follower(self.wandb, self.monitor)
        message = (
            "trial",
            params,
            seed,
            number,
            self.monitor.deadline,
            self.monitor.prunable,
            extra,
        )
        self.ending = "interrupt"  # until _follow says how it ended
        try:
            for _ in range(2):  # a child that died between trials is replaced once
                self.server = _server_for(function, argv0, self.env, self.bare)
                if self.server.send(message) and self.server.conn is not None:
                    return self._follow(self.server.conn, objectives)
                self.server.kill()
            self.ending = "kill"
            return _failed(self.monitor, "the trial's process could not be started")
        finally:
            self._end()

    def _follow(self, conn: Connection, objectives: list[str]) -> Outcome:
        spin = SPIN
        while True:
            if self.follow_wandb is not None:
                self.follow_wandb()
                if self.bare and self.monitor.pruned:  # W&B's style: stopped by killing it
                    self.ending = "kill"
                    return conclude(None, self.monitor, objectives)
            came = spin > 0 and _spun(conn, spin)
            spin = 0.0  # (only before the first sleep)
            if came or conn.poll(self._wait()):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return self._died()
                if message[0] == "report":
                    failure = self._report(conn, message[1], message[2])
                    if failure is not None:
                        self.ending = "kill"
                        return failure
                    continue
                self.ending = "keep"
                if self.follow_wandb is not None:
                    self.follow_wandb(force=True)  # what the run wrote as it finished
                return self._done(message, objectives)
            if self._overdue():
                self.ending = "kill"
                self.monitor.timed_out = True
                return conclude(None, self.monitor, objectives)
            assert self.server is not None
            if self.server.reaped():
                return self._died()

    def _wait(self) -> float:
        longest = 1.0 if self.follow_wandb is None else self.follow_wandb.interval
        if self.monitor.deadline is None:
            return longest
        return min(longest, max(0.0, self.monitor.deadline + self.grace - time.monotonic()))

    def _overdue(self) -> bool:
        deadline = self.monitor.deadline
        return deadline is not None and time.monotonic() >= deadline + self.grace

    def _report(
        self, conn: Connection, values: dict[str, float], step: int | None
    ) -> Outcome | None:
        before = self.monitor.pruned
        try:
            self.monitor.report(values, step)
        except Exception as exc:  # the engine's pruner failed
            return _failed(self.monitor, f"stopping early failed: {describe(exc)}")
        if self.monitor.prunable and not before:
            conn.send(self.monitor.pruned)
        return None

    def _done(self, message: tuple[Any, ...], objectives: list[str]) -> Outcome:
        _, kind, payload, timed_out = message
        # returned after budget.trial_timeout, asked or not: it ran past it
        self.monitor.timed_out = self.monitor.should_stop() and not self.monitor.pruned
        self.monitor.timed_out |= timed_out
        if kind == "interrupted":
            self.ending = "kill"
            raise KeyboardInterrupt
        if kind == "error":
            error, trace = payload
            return _failed(self.monitor, error, trace)
        return conclude(payload, self.monitor, objectives)

    def _died(self) -> Outcome:
        self.ending = "kill"
        server = self.server
        assert server is not None
        if server.status is None:
            _, server.status = os.waitpid(server.pid, 0)
        code = os.waitstatus_to_exitcode(server.status)
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        return _failed(self.monitor, f"the trial's process {how} before the function returned")

    def _end(self) -> None:
        """A trial that returned leaves its process for the next one. One still running is
        given ``grace`` seconds after SIGINT (Ctrl-C here), none after a timeout; then its
        process is killed, with anything it started in its process group."""
        server = self.server
        if server is None or self.ending == "keep":
            return
        if _SERVER and _SERVER[0] is server:
            _SERVER.pop()
        if not server.reaped() and self.ending == "interrupt":
            _killpg(server.pid, signal.SIGINT)
            server.wait_exit(self.grace)
        server.kill()


def _spun(conn: Connection, seconds: float) -> bool:
    """Whether ``conn`` has something to read within ``seconds``, polled without sleeping
    (one ``poll`` system call each time; :data:`SPIN`)."""
    waiting = select.poll()
    waiting.register(conn.fileno(), select.POLLIN)
    ends = time.perf_counter() + seconds
    while not waiting.poll(0):
        if time.perf_counter() >= ends:
            return False
    return True


HELD_OVER_FORK = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals held while a trial process is forked (see :meth:`_Server.start`)."""


def _serve(
    conn: Connection,
    parent: int,
    function: Callable[..., Any],
    argv0: str | None,
    env: dict[str, str],
    bare: bool,
) -> None:  # pragma: no cover - runs in the forked child
    """The trial process: run each trial sent, until the pipe closes; never return into
    the worker's stack."""
    code = 0
    try:
        os.setpgid(0, 0)  # the terminal's Ctrl-C reaches the worker, which stops us
        die_with_parent(signal.SIGKILL, parent)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_OVER_FORK)  # held over the fork
        os.environ.update(env)
        folder, environ, raw = os.getcwd(), dict(os.environ), _raw_environ()
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            _, params, seed, number, deadline, prunable, extra = message
            os.environ.update(extra)
            given = _raw_environ() if extra else raw
            if argv0 is not None:
                sys.argv = [argv0]
            remote = _Remote(conn, deadline, prunable)
            _one_trial(conn, function, Trial(params, seed, number, remote), bare)
            _tidy(folder, extra, environ, raw, given)
    except BaseException:
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _one_trial(
    conn: Connection, function: Callable[..., Any], trial: Trial, bare: bool
) -> None:  # pragma: no cover - runs in the forked child
    remote = trial._monitor
    assert isinstance(remote, _Remote)
    try:
        result = function() if bare else function(trial)
        message: tuple[Any, ...] = ("done", "result", result, False)
    except KeyboardInterrupt:
        message = ("done", "interrupted", None, False)
    except BaseException as exc:
        message = ("done", "error", (_exception_message(exc), traceback.format_exc()), False)
    message = (*message[:3], remote.timed_out)
    with contextlib.suppress(BaseException):  # what it printed comes before its end
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        conn.send(message)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        result = message[2]
        conn.send(
            (
                "done",
                "error",
                (
                    f"the trial returned {type(result).__name__}, which cannot be sent "
                    f"back from its process: {describe(exc)}",
                    None,
                ),
                remote.timed_out,
            )
        )


def _tidy(
    folder: str,
    extra: dict[str, str],
    environ: dict[str, str],
    raw: dict[Any, Any],
    given: dict[Any, Any],
) -> None:  # pragma: no cover - in the child
    """After a trial, in the trial process: the working folder and environment it started
    with (``extra``, the trial's own variables, removed; all of it set again only if the
    trial changed it), and no W&B run left open (W&B's agent tears W&B down after each
    function run). ``environ``: the environment the process started with; ``raw`` and
    ``given``: as the process held it then, and when the trial was given
    (:func:`_raw_environ`, compared at a fraction of the cost of ``os.environ``'s
    comparison, which decodes every name and value)."""
    os.chdir(folder)
    now = _raw_environ()
    if extra and now == given:
        for name in extra:
            if name in environ:
                os.environ[name] = environ[name]
            else:
                del os.environ[name]
    elif now != raw:
        os.environ.clear()
        os.environ.update(environ)
    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        with contextlib.suppress(Exception):
            wandb.teardown()


# --------------------------------------------------------------------------- processes

PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl`` on Linux, else None; loaded before any fork (the child only calls)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int, parent: int) -> None:
    """In a child process: the kernel sends ``sig`` when ``parent`` (the thread that started
    it) ends (Linux); if ``parent`` is already gone, exit at once."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def iso_ms(ms: int) -> str:
    """A time in milliseconds since the epoch as ``results`` shows it (local ISO 8601)."""
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).isoformat()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- commands


@dataclass
class Command:
    """How to run a command trial: the spec's ``command`` (or W&B's default) and
    ``program``, run in ``folder`` (the spec's folder)."""

    template: list[Any] | None
    program: str | None
    folder: str
    grace: float = TERM_GRACE
    echo: Echo | None = None
    sweep: str = "sweepspec"  # the sweep's name: W&B programs see it as WANDB_SWEEP_ID
    env: dict[str, str] = field(default_factory=dict)  # added to the command's environment


def run_command(
    command: Command,
    params: dict[str, Any],
    seed: int,
    number: int,
    monitor: Monitor,
    objectives: list[str],
) -> Outcome:
    """Run the command once for ``params`` (nested as the trial sees them)."""
    with tempfile.TemporaryDirectory(prefix="sweepspec-trial-") as workdir:
        argv = command_line(
            command.template, command.program, params, os.path.join(workdir, "config.json")
        )
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(params))
        watch = _Watch(command, monitor)
        param_path = Path(workdir) / "config.yaml"
        watch.wandb = WandbRun(command.folder, command.sweep, params, param_path=param_path)
        try:
            code = watch.run(argv, seed, number)
        except OSError as exc:
            return Outcome(
                "FAIL",
                {},
                error=f"cannot start the command {argv[0]!r}: {exc.strerror or exc}",
                history=monitor.history,
            )
    return _command_outcome(code, watch, monitor, objectives)


def _command_outcome(code: int, watch: _Watch, monitor: Monitor, objectives: list[str]) -> Outcome:
    if monitor.pruned or monitor.timed_out or code == 0:
        return conclude(None, monitor, objectives, "the command")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        error = f"the command was killed by {name}"
    else:
        error = f"the command exited with code {code}"
    tail = watch.last_error_line()
    return Outcome(
        "FAIL",
        dict(monitor.last),
        error=f"{error}: {tail}" if tail else error,
        history=monitor.history,
    )


class _Watch:
    """Runs one command: reads its stdout, stderr and report pipe, stops it when told."""

    def __init__(self, command: Command, monitor: Monitor) -> None:
        self.command = command
        self.monitor = monitor
        self.echo = command.echo or _echo
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.proc: subprocess.Popen[bytes] | None = None
        self.term_at: float | None = None
        self.buffers: dict[int, bytes] = {}
        self.wandb: WandbRun | None = None  # what W&B's agent gives a program, read back
        self.follow_wandb: Follower | None = None

    def run(self, argv: list[str], seed: int, number: int) -> int:
        read_fd, write_fd = os.pipe()
        # PYTHONUNBUFFERED: a Python program's printed metrics arrive as they are printed
        env = {
            **os.environ,
            **self.command.env,
            ENV_REPORT: str(write_fd),
            ENV_SEED: str(seed),
            "SWEEPSPEC_TRIAL": str(number),
            "PYTHONUNBUFFERED": "1",
        }
        if self.wandb is not None:
            env.update(self.wandb.env())
            self.follow_wandb = _follower(self.wandb, self.monitor)
        _prctl()  # loaded here: the child only calls it
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.command.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, signal.SIGKILL, os.getpid()),
            )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            return self._follow(read_fd)
        finally:
            self._kill()
            os.close(read_fd)

    def _follow(self, report_fd: int) -> int:
        assert self.proc is not None and self.proc.stdout and self.proc.stderr
        kinds = {
            self.proc.stdout.fileno(): "out",
            self.proc.stderr.fileno(): "err",
            report_fd: "report",
        }
        with selectors.DefaultSelector() as selector:
            for fd, kind in kinds.items():
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, kind)
            exited_at: float | None = None
            while selector.get_map():
                for key, _ in selector.select(0.1):
                    self._read(selector, key.fd, key.data)
                if self.follow_wandb is not None:
                    self.follow_wandb()
                self._police()
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = time.monotonic()
                if exited_at is not None and time.monotonic() - exited_at > 1.0:
                    break  # a grandchild keeps the pipes open: the trial is over
        if self.follow_wandb is not None and not self.monitor.pruned:
            self.follow_wandb(force=True)  # what the run wrote as it finished
        return self._wait()

    def _read(self, selector: selectors.BaseSelector, fd: int, kind: str) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            selector.unregister(fd)
            rest = self.buffers.pop(fd, b"")
            if rest:
                self._line(kind, rest)
            return
        *lines, self.buffers[fd] = (self.buffers.get(fd, b"") + data).split(b"\n")
        for line in lines:
            self._line(kind, line)

    def _line(self, kind: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if kind == "err":
            self.echo(line, "err")
            if line.strip():
                self.stderr_tail.append(line.strip())
            return
        parsed = parse_line(line)
        if kind == "out":
            self.echo(line, "out")
        if parsed is not None and not self.monitor.pruned:
            self.monitor.report(*parsed)

    def _police(self) -> None:
        """SIGTERM once the trial must stop, SIGKILL after the grace period."""
        now = time.monotonic()
        if self.term_at is None:
            if self.monitor.should_stop():
                self._signal(signal.SIGTERM)
                self.term_at = now
        elif now - self.term_at >= self.command.grace:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                self._police()

    def _kill(self) -> None:
        """Leave nothing behind (also on Ctrl-C): SIGTERM, grace, SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.command.grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def last_error_line(self) -> str | None:
        return self.stderr_tail[-1] if self.stderr_tail else None


def _follower(run: WandbRun, monitor: Monitor) -> Follower:
    return Follower(run, monitor.report, lambda: len(monitor.history))


def _echo(line: str, stream: str) -> None:
    target = sys.stdout if stream == "out" else sys.stderr
    target.write(line + "\n")
    target.flush()
