"""Trials: the object a trial function gets, and the two ways a trial runs.

* A Python function (``function: module:callable``, imported from the spec's folder) is
  called with a :class:`Trial`: ``.params`` (real values, nested W&B parameters as nested
  dicts), ``.seed``, ``.number``, ``.report(metrics, step)`` and ``.should_stop()``. It returns
  a dict of final metrics or a number (the objective). An exception is a failed trial, its
  message kept; it never ends the sweep.
* A command (``program`` / ``command``) gets its parameters exactly as W&B's agent passes them
  (:func:`command_line`), never through a shell. It reports metrics with
  :mod:`sweepspec.reporter` (JSON lines on a pipe named by ``SWEEPSPEC_REPORT``), or on stdout
  as JSON lines (``{"val_loss": 0.3, "_step": 2}``) or ``name=value`` lines (Katib's
  convention: ``val_loss=0.3 step=2``). Stopped early, it gets SIGTERM, then SIGKILL after a
  grace period; so does a command that runs past ``budget.trial_timeout``.

This module imports no engine: pruning decisions come in through the ``prune`` callback of
:class:`Monitor`.
"""

from __future__ import annotations

import collections
import importlib
import json
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..reporter import ENV_REPORT, ENV_SEED
from ..trackers import Point

__all__ = [
    "DEFAULT_COMMAND",
    "Command",
    "Monitor",
    "Outcome",
    "Trial",
    "command_line",
    "conclude",
    "load_function",
    "macro_values",
    "parse_line",
    "run_command",
    "run_function",
]

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
"""W&B's default command (``wandb/sdk/launch/sweeps/utils.py``)."""
ENVVAR = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")
"""W&B's ``${envvar:NAME}`` macro, replaced inside any part of a command item."""
STEP_KEYS = ("_step", "step")
TERM_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL for a command that must stop."""

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


def _float(value: Any) -> float | None:
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numeric_only(data: dict[str, Any]) -> dict[str, float]:
    return {str(k): f for k, v in data.items() if (f := _float(v)) is not None}


class Monitor:
    """One run of one configuration (one seed): what it reported and whether it must stop.

    ``prune(value, step)`` is called with each finite value of the ``objective`` metric and
    returns True when the engine stops the trial early. ``prefix`` (``seed_0/``) is put in
    front of the history's keys. ``timeout`` seconds after the monitor is made (its
    ``deadline``, in ``time.monotonic()``), ``should_stop()`` is true and the trial is
    recorded as timed out.
    """

    def __init__(
        self,
        objective: str | None = None,
        prune: Prune | None = None,
        timeout: float | None = None,
        prefix: str = "",
    ) -> None:
        self.objective = objective
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

    def __init__(self, params: dict[str, Any], seed: int, number: int, monitor: Monitor) -> None:
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
        metrics, values = _objective(result, reported, objectives, what)
    except (TypeError, ValueError) as exc:
        return Outcome("FAIL", reported, error=str(exc), history=monitor.history)
    return Outcome("COMPLETE", metrics, values, history=monitor.history)


def _objective(
    result: Any, reported: dict[str, float], objectives: list[str], what: str
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
        raise ValueError(_missing_message(what, result, missing, objectives))
    values = [merged[n] for n in names]
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
    ``sys.path``; a module of that name imported from elsewhere is imported again."""
    module_name, _, attr = ref.partition(":")
    folder = os.path.abspath(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    _forget_foreign(module_name, folder)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
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
) -> Outcome:
    """Call ``function`` once; any exception (``sys.exit`` too, not Ctrl-C) is a ``FAIL``
    holding its message."""
    try:
        result = function(Trial(params, seed, number, monitor))
    except (Exception, SystemExit) as exc:
        return Outcome(
            "FAIL",
            dict(monitor.last),
            error=describe(exc),
            traceback=traceback.format_exc(),
            history=monitor.history,
        )
    return conclude(result, monitor, objectives)


# --------------------------------------------------------------------------- commands


def macro_values(params: dict[str, Any]) -> dict[str, list[str]]:
    """W&B's argument macros for top-level ``params`` (``create_sweep_command_args``): a
    nested parameter's value is printed with ``str()``, as W&B prints it."""
    out: dict[str, list[str]] = {
        "args": [],
        "args_no_equals": [],
        "args_no_hyphens": [],
        "args_no_boolean_flags": [],
        "args_append_hydra": [],
        "args_override_hydra": [],
    }
    for name, value in params.items():
        flag = f"{name}={value}"
        out["args"].append("--" + flag)
        out["args_no_hyphens"].append(flag)
        out["args_no_equals"] += [f"--{name}", str(value)]
        out["args_append_hydra"].append("+" + flag)
        out["args_override_hydra"].append("++" + flag)
        if not isinstance(value, bool):
            out["args_no_boolean_flags"].append("--" + flag)
        elif value:
            out["args_no_boolean_flags"].append("--" + name)
    out["args_json"] = [json.dumps(params)]
    return out


def command_line(
    template: list[Any] | None,
    program: str | None,
    params: dict[str, Any],
    json_file: str,
    interpreter: str = sys.executable,
) -> list[str]:
    """The argument vector W&B's agent builds (``wandb_agent.py``), for ``params`` nested as
    the trial sees them. ``${interpreter}`` is the Python running sweepspec, not whatever
    ``python`` is first on PATH. Unknown macros expand to nothing, as in W&B."""
    macros = macro_values(params)
    macros.update(
        env=[] if os.name == "nt" else ["/usr/bin/env"],
        interpreter=[interpreter],
        program=[program] if program is not None else [],
        args_json_file=[json_file],
    )
    argv: list[str] = []
    for item in template or DEFAULT_COMMAND:
        item = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(item))
        if item.startswith("${") and item.endswith("}"):
            argv += macros.get(item[2:-1]) or []
        else:
            argv.append(item)
    return argv


def parse_line(line: str) -> tuple[dict[str, float], int | None] | None:
    """Metrics in one stdout line, with the step if the line gives one, or None.

    Either a JSON object (``{"val_loss": 0.3, "_step": 2}``: its numbers are metrics) or a
    line made only of ``name=value`` pairs (``val_loss=0.3 acc=0.9 step=2``). ``_step`` or
    ``step`` is the step, not a metric.
    """
    text = line.strip()
    if text.startswith("{"):
        pairs = _json_pairs(text)
    else:
        pairs = _katib_pairs(text)
    if not pairs:
        return None
    step = next((pairs.pop(k) for k in STEP_KEYS if k in pairs), None)
    if not pairs:
        return None
    whole = int(step) if step is not None and float(step).is_integer() and step >= 0 else None
    return pairs, whole


def _json_pairs(text: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return _numeric_only(data) if isinstance(data, dict) else {}


_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_./-]*)=(\S+)$")


def _katib_pairs(text: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for token in re.split(r"[\s,]+", text):
        match = _PAIR.match(token)
        value = _float_text(match.group(2)) if match else None
        if match is None or value is None:
            return {}
        pairs[match.group(1)] = value
    return pairs


def _float_text(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class Command:
    """How to run a command trial: the spec's ``command`` (or W&B's default) and
    ``program``, run in ``folder`` (the spec's folder)."""

    template: list[Any] | None
    program: str | None
    folder: str
    grace: float = TERM_GRACE
    echo: Echo | None = None


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

    def run(self, argv: list[str], seed: int, number: int) -> int:
        read_fd, write_fd = os.pipe()
        # PYTHONUNBUFFERED: a Python program's printed metrics arrive as they are printed
        env = dict(
            os.environ,
            **{
                ENV_REPORT: str(write_fd),
                ENV_SEED: str(seed),
                "SWEEPSPEC_TRIAL": str(number),
                "PYTHONUNBUFFERED": "1",
            },
        )
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
                self._police()
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = time.monotonic()
                if exited_at is not None and time.monotonic() - exited_at > 1.0:
                    break  # a grandchild keeps the pipes open: the trial is over
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


def _echo(line: str, stream: str) -> None:
    target = sys.stdout if stream == "out" else sys.stderr
    target.write(line + "\n")
    target.flush()
