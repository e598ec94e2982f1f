"""The W&B engine in local mode: W&B's own ``sweeps`` package decides, with no server.

Every decision is the one W&B's controller takes on the same runs: ``sweeps.next_runs`` gives
the next configuration (grid, random, bayes) from all the sweep's runs, and ``sweeps.stop_runs``
says which running runs hyperband stops (both forms, ``strict`` or not), recomputed on every
reported value over the live histories of every run. The config given to ``sweeps`` is the spec
compiled for W&B (:func:`sweepspec.compiler.wandb.compile_wandb`), checked once by W&B's own
validator; nested parameters are passed as W&B nests them (``SweepConfig`` would drop them),
and come back flattened to dotted names in :attr:`Asked.params`.

State. One JSON-lines log per sweep, beside the Optuna journal: ``.sweepspec/<name>.wandb.jsonl``
under the working directory (``<name>`` is the spec's ``name``, else the spec file's stem), or
the file given as ``--storage``. Its first line names the sweep (``sweep_id``, the compiled
config); each further line is one event: a run started (``ask``: number, name, W&B config,
worker ``host:pid``), a metric value (``report``), a stop decision (``stop``: the run and its
iteration), a run's end (``tell``: state, summary, objective values, error), a heartbeat of
a running run's worker (``beat``, every ``budget.heartbeat_interval``). Events are
appended, one ``write`` each, under an exclusive ``flock`` on ``<log>.lock``, so workers on one
machine share one sweep; every operation first reads what other workers appended. A second
``run`` reads the log and resumes (numbering and every run's state and history). A log that
cannot be read is an :class:`~sweepspec.runners.base.EngineError` naming the file and line;
it is never rewritten. Every event reaches the OS at once (a killed process loses nothing);
``tell`` also forces the log to disk (``fsync``, as Optuna's journal does on each write), so a
finished run survives a crash of the machine; a run that was only started may not.

Runs as W&B sees them: a running trial is ``running``; one hyperband stops is ``killed`` from
the decision on, as W&B's own in-memory optimizer records it
(``wandb/sdk/sweeps/scheduler/wandb.py``, ``prune_runs``), so bayes imputes it as W&B does
(``metric.impute``, by default the worst value); ``COMPLETE`` is ``finished``, ``PRUNED``
``killed``, ``FAIL`` ``failed``. A run's history holds ``{"_step": step, <metric>: value}``
per reported value; hyperband's iteration is the count of its finite values (W&B's rule).
Its summary is the trial's final metrics.

Seeds. ``sweeps`` samples with Python's ``random`` and bayes draws candidates with
``numpy.random``; each ``ask`` seeds both with :func:`ask_seed` of the sweep id and the run's
number (the first 4 bytes of ``sha256("<sweep_id>:<number>")``), and restores the generators'
previous states afterwards, so a sweep's suggestions depend only on its id and its runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compiler.wandb import compile_wandb
from ..spec.models import Budget
from ..spec.paths import nested_names
from .base import Asked, Engine, EngineError, EngineOptions
from .budget import TrialSummary
from .contract import STATE_DIR, state_file, state_written
from .heartbeat import Heartbeat
from .trials import iso_ms, worker_gone

with warnings.catch_warnings():  # sweeps' pydantic v1-style model config
    warnings.simplefilter("ignore")
    import sweeps

if TYPE_CHECKING:
    from ..spec import Spec
    from ..trackers import TrialRecord

__all__ = [
    "FORMAT",
    "STATE_DIR",
    "WandbLocalEngine",
    "ask_seed",
    "default_state",
    "find_state",
    "open_engine",
]

FORMAT = "sweepspec-wandb-local/1"
"""The first line's ``format``: what wrote the log, and the version of its layout."""

_W_STATE = {"COMPLETE": "finished", "PRUNED": "killed", "FAIL": "failed"}
_SEARCH_KEYS = ("method", "parameters")  # a change here makes the old runs meaningless


def open_engine(spec: Spec, path: str, options: EngineOptions) -> Engine:
    """The local W&B engine on the sweep of ``spec`` (read from ``path``); with ``wandb:
    {mode: server}``, W&B's server and agent (:mod:`.wandb_server`) for ``run``, which keep
    nothing here for a reader to open."""
    if spec.wandb is not None and spec.wandb.mode == "server" and options.create:
        from .wandb_server import open_server

        return open_server(spec, path, options)
    return WandbLocalEngine(spec, path, options)


def default_state(spec: Spec, path: str) -> Path:
    """``.sweepspec/<name>.wandb.jsonl``: the spec's ``name``, else the spec file's stem."""
    return state_file(spec.name or Path(path).stem, ".wandb.jsonl")


def find_state(spec: Spec, path: str, storage: str | None) -> float | None:
    """When this engine's state of the sweep was last written (``st_mtime``), or None when
    there is none: ``storage`` (a file), else :func:`default_state`. For ``results``, which
    reads whichever engine ran the sweep."""
    where = Path(storage) if storage is not None else default_state(spec, path)
    return state_written(where, FORMAT)


def ask_seed(sweep_id: str, number: int) -> int:
    """The seed of ``random`` and ``numpy.random`` when run ``number`` is asked."""
    digest = hashlib.sha256(f"{sweep_id}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed ``random`` and ``numpy.random`` for the block; restore their states after it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


# --------------------------------------------------------------------------- runs


@dataclass
class _Run:
    """One run of the sweep: sweepspec's view, and the ``sweeps.SweepRun`` W&B decides on."""

    number: int
    run: Any  # sweeps.SweepRun, kept in step with the log
    worker: str
    start: float
    state: str = "RUNNING"  # COMPLETE | PRUNED | FAIL | RUNNING
    stopped_at: int | None = None  # hyperband's iteration when it decided to stop the run
    values: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seeds: list[dict[str, Any]] | None = None
    error: str | None = None
    cost: float = 0.0
    end: float | None = None
    times: list[int] | None = None  # the trial's own start and end (ms), as trackers log them
    beat: float | None = None  # its worker's last heartbeat (time.time() there)
    summary: TrialSummary = field(init=False)

    def __post_init__(self) -> None:
        self.summarise()

    def summarise(self) -> None:
        """The run as the budget counts it (kept, not rebuilt at every count)."""
        values = tuple(self.values) if self.state == "COMPLETE" and self.values else None
        self.summary = TrialSummary(self.number, self.state, values, self.cost)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars (``sweeps`` samples some values as ``numpy.int64``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODER = json.JSONEncoder(default=_plain, separators=(",", ":"))
"""One encoder for every event (``json.dumps`` with options builds one per call)."""


def _dumps(event: dict[str, Any]) -> str:
    return _ENCODER.encode(event)


def flatten(config: dict[str, Any], nested: set[str]) -> dict[str, Any]:
    """A W&B run config (``{"opt": {"value": {"lr": 0.1}}}``) as real values by dotted name;
    only the spec's nested parameters (``nested``: their dotted paths) are opened."""
    out: dict[str, Any] = {}

    def walk(value: Any, name: str) -> None:
        if name in nested and isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}.{key}")
        else:
            out[name] = value

    for name, item in config.items():
        walk(item.get("value") if isinstance(item, dict) else item, name)
    return out


# --------------------------------------------------------------------------- the engine


class WandbLocalEngine:
    """One sweep's state on the local W&B engine, shared by every worker that opens it."""

    name = "wandb"

    def __init__(self, spec: Spec, path: str, options: EngineOptions) -> None:
        plan = compile_wandb(spec)
        self.spec = spec
        self.config: dict[str, Any] = json.loads(json.dumps(plan.config))
        self.unsupported = plan.unsupported
        self.messages: list[str] = []  # for the loop to show once (what --fresh deleted)
        self.sweep_name = spec.name or Path(path).stem
        self.artifact = self.config
        self.artifact_name = "wandb.json"
        _check_config(self.config)
        self.metric: str | None = (self.config.get("metric") or {}).get("name")
        self.hyperband = (self.config.get("early_terminate") or {}).get("type") == "hyperband"
        self.nested = nested_names(spec.parameters)
        self.path = _state_path(spec, path, options)
        self.label = str(self.path)
        self.state_path = os.path.abspath(self.path)
        self.prunes = self.hyperband
        self.fresh = False  # --fresh: the old state is replaced at start()
        self._spec_path = path
        self._lock_path = Path(f"{self.path}.lock")
        self.runs: list[_Run] = []
        self.decided: list[dict[str, Any]] = []
        self.sweep_id = ""
        self._header: dict[str, Any] = {}
        self._offset = 0
        self._lines_read = 0
        self._identity: tuple[int, int] | None = None
        self._suggested: tuple[tuple[Any, ...], Any] | None = None  # see _suggest
        self._lock_fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        budget = spec.budget or Budget()
        self.heartbeat_interval = budget.heartbeat_interval
        self.grace_period: float | None = budget.grace
        self.beating: Heartbeat | None = None
        self._open(path, options)

    # ---- opening

    def _open(self, path: str, options: EngineOptions) -> None:
        if not options.create and not self.path.exists():
            raise EngineError(
                f"no sweep state at {self.path} (the sweep has not run from this folder); "
                "run 'sweepspec run' first, or pass --storage"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        with self._locked():
            found = self.path.exists() and self.path.stat().st_size > 0
            if found and not options.fresh:
                self._refresh()
                self._check_same()
                self._dry_run()
                return
            self.sweep_id = uuid.uuid4().hex
            self._dry_run()  # before anything is deleted or created
            if found:
                self.fresh = True  # deleted at start(), once the run is up
                return
            self._create(path)
            self._refresh()

    def start(self) -> None:
        """``--fresh``, once the run is up: the old state is deleted, the new one made."""
        if not self.fresh:
            return
        sweep_id = self.sweep_id  # the one the tracker was started with
        with self._locked():
            self._delete()
            self.sweep_id = sweep_id
            self._create(self._spec_path)
            self._refresh()
        self.fresh = False

    def close(self) -> None:
        """Nothing is held between calls (each takes the log's lock for itself) but the
        heartbeat of a run still running."""
        self._stop_beating()

    def _delete(self) -> None:
        count = "unreadable"
        with contextlib.suppress(EngineError):
            self._refresh()
            count = f"{len(self.runs)} runs"
        self.path.unlink()
        self.runs, self._offset, self._identity, self._lines_read = [], 0, None, 0
        self._suggested = None
        self.decided = []
        self.messages.append(f"sweepspec: --fresh: deleted sweep {self.path} ({count})")

    def _create(self, path: str) -> None:
        header = {
            "format": FORMAT,
            "sweep_id": self.sweep_id,
            "spec": os.path.abspath(path),
            "created": time.time(),
            "config": self.config,
        }
        self._append(_dumps(header).encode() + b"\n", sync=True)

    def _check_same(self) -> None:
        old = self._header
        for key in (*_SEARCH_KEYS, "metric"):
            before, now = old["config"].get(key), self.config.get(key)
            if key == "metric":
                before, now = _goal(before), _goal(now)
            if before != now:
                what = "search space" if key == "parameters" else key
                raise EngineError(
                    f"the {what} differs from that of the sweep in {self.path} (created from "
                    f"{old.get('spec')}), which has {len(self.runs)} runs; to start a fresh "
                    "sweep, run again with --fresh (deletes that state), or give the new one "
                    "another name"
                )

    # ---- the protocol

    def ask(self) -> Asked | None:
        """The next run ``sweeps.next_runs`` suggests from every run; None when the grid is
        exhausted."""
        with self._locked():
            self._refresh()
            number = len(self.runs)
            suggestion = self._suggest(number)
            if suggestion is None:
                return None
            config = json.loads(_dumps(suggestion.config))
            name = f"{self.sweep_id[:8]}-{number}"
            event = {"ask": number, "name": name, "config": config, "worker": self.worker}
            event["time"] = time.time()
            self._write(event)
        self._stop_beating()
        beat = functools.partial(self._beat, number)
        self.beating = Heartbeat(beat, self.heartbeat_interval).start()
        return Asked(number, flatten(config, self.nested), name)

    def _beat(self, number: int) -> None:
        """A ``beat`` event: run ``number``'s worker is alive (the ``ask`` is the first)."""
        with self._locked():
            self._refresh()
            if self.runs[number].state == "RUNNING":
                self._write({"beat": number, "time": time.time()})

    def _stop_beating(self) -> None:
        if self.beating is not None:
            self.beating.stop()
            self.beating = None

    def report(self, trial: Asked, value: float, step: int) -> bool:
        """Add ``value`` to the run's history; True when hyperband stops the run (now, or at
        an earlier call made by any worker)."""
        with self._locked():
            self._refresh()
            if self._failed_elsewhere(trial.number):
                return True  # another worker failed it (no heartbeat): stop it
            run = self._running(trial.number)
            event = {"report": trial.number, "step": step, "value": value}
            self._write(event)
            if self.hyperband:
                self._stop_runs()
            return run.stopped_at is not None

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        """The run's end: ``finished`` (COMPLETE), ``killed`` (PRUNED) or ``failed`` (FAIL),
        its summary the trial's final metrics."""
        self._stop_beating()
        with self._locked():
            self._refresh()
            if self._failed_elsewhere(trial.number):
                sys.stderr.write(
                    f"sweepspec: warning: run {trial.number} was marked failed by another "
                    f"worker (no heartbeat from this one for {self.grace_period:g}s, "
                    "budget.grace_period); its result is logged but not counted\n"
                )
                return
            self._running(trial.number)
            event = {
                "tell": trial.number,
                "state": record.state,
                "summary": record.metrics,
                "values": record.values if record.state == "COMPLETE" else None,
                "seeds": record.seeds,
                "error": record.error,
                "cost": record.cost,
                "times": [record.start_ms, record.end_ms] if record.start_ms else None,
                "time": time.time(),
            }
            self._write(event, sync=True)

    def summaries(self) -> list[TrialSummary]:
        if self.fresh:
            return []
        with self._locked():
            self._refresh()
            return [r.summary for r in self.runs]

    def exhausted(self) -> str | None:
        """For grid: a reason once ``sweeps.next_runs`` has no point left."""
        if self.config.get("method") != "grid":
            return None
        with self._locked():
            self._refresh()
            if self._suggest(len(self.runs)) is None:
                return "the grid is exhausted: every point has been run"
        return None

    def fail_stale(self) -> list[int]:
        """Mark failed the runs left running by a worker that is gone: its process on this
        host has ended, or it wrote no ``beat`` for the grace period (any host)."""
        failed = list[int]()
        if self.fresh:
            return failed
        with self._locked():
            self._refresh()
            for run in self.runs:
                why = self._gone(run) if run.state == "RUNNING" else None
                if why is None:
                    continue
                event = {
                    "tell": run.number,
                    "state": "FAIL",
                    "summary": dict(run.run.summary_metrics or {}),
                    "error": why,
                    "time": time.time(),
                }
                self._write(event, sync=True)
                failed.append(run.number)
        return failed

    def _gone(self, run: _Run) -> str | None:
        gone = worker_gone(run.worker)
        if gone is not None:
            return gone
        last = run.beat if run.beat is not None else run.start
        if self.grace_period is not None and time.time() - last > self.grace_period:
            return (
                f"its worker ({run.worker}) sent no heartbeat for {self.grace_period:g}s "
                "(budget.grace_period): it was killed or lost its machine"
            )
        return None

    def _failed_elsewhere(self, number: int) -> bool:
        run = self.runs[number] if 0 <= number < len(self.runs) else None
        return run is not None and run.state == "FAIL" and run.worker == self.worker

    def ask_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._locked()

    def records(self) -> Iterator[dict[str, Any]]:
        if self.fresh:
            return
        with self._locked():
            self._refresh()
            runs = list(self.runs)
        for r in runs:
            row: dict[str, Any] = {
                "number": r.number,
                "state": r.state,
                "params": flatten(r.run.config, self.nested),
                "metrics": dict(r.metrics),
                "values": r.values,
            }
            if self.spec.seeds is not None:
                row["seeds"] = r.seeds or []
            if r.error is not None:
                row["error"] = r.error
            if r.times:
                row["datetime_start"], row["datetime_complete"] = map(iso_ms, r.times)
            else:
                row["datetime_start"] = _iso(r.start)
                row["datetime_complete"] = _iso(r.end)
            yield row

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        """Each run's reported objective values by step (its history's ``_step``)."""
        if self.fresh:
            return {}
        with self._locked():
            self._refresh()
            runs = list(self.runs)
        key = self._metric_key
        return {
            r.number: [(int(h["_step"]), float(h[key])) for h in r.run.history if key in h]
            for r in runs
        }

    def worker_settings(self) -> dict[str, Any]:
        return {"storage": os.path.abspath(self.path)}

    def decide(self, decision: dict[str, Any]) -> None:
        with self._locked():
            self._refresh()
            event: dict[str, Any] = {"decide": int(decision["trial"])}
            event.update({k: decision.get(k) for k in ("why", "config", "time")})
            self._write(event, sync=True)

    def decisions(self) -> list[dict[str, Any]]:
        if self.fresh:
            return []
        with self._locked():
            self._refresh()
            return [dict(d) for d in self.decided]

    # ---- W&B's decisions

    def _dry_run(self) -> None:
        """Ask W&B's code once before any trial runs, so that a sweep it cannot decide on is
        refused at the start rather than after the first trial."""
        self._suggest(len(self.runs))
        if self.hyperband:
            self._stop_runs(check=True)

    def _suggest(self, number: int) -> Any:
        # The same log read to the same point gives the same answer (the seed is the sweep
        # id's and the number's): the grid check of exhausted() and the ask() after it under
        # one lock, or the check at opening and the first ask, call next_runs once.
        key = (self.sweep_id, self._identity, self._offset, number)
        if self._suggested is not None and self._suggested[0] == key:
            return self._suggested[1]
        try:
            with seeded(ask_seed(self.sweep_id, number)), warnings.catch_warnings():
                # scikit-learn's GP fit warns on kernel bounds; W&B's bayes ignores it too
                warnings.filterwarnings("ignore", module="sklearn")
                suggestion = sweeps.next_runs(self.config, [r.run for r in self.runs], n=1)[0]
        except Exception as exc:  # W&B's code on the user's config and runs
            raise EngineError(
                f"W&B's sweeps.next_runs failed on run {number} of {self.path}: {_describe(exc)}"
            ) from None
        self._suggested = (key, suggestion)
        return suggestion

    def _stop_runs(self, check: bool = False) -> None:
        """Record the decision for every run ``stop_runs`` stops, as W&B's controller does
        (with ``check``, only see that it runs)."""
        try:
            stop = sweeps.stop_runs(self.config, [] if check else [r.run for r in self.runs])
        except Exception as exc:
            raise EngineError(
                f"W&B's sweeps.stop_runs failed on {self.path}: {_describe(exc)}"
            ) from None
        if not stop:  # the usual answer: nothing to look up
            return
        names = {s.name for s in stop}
        for run in self.runs:
            if run.run.name in names and run.state == "RUNNING" and run.stopped_at is None:
                at = len(run.run.metric_history(self.metric, filter_invalid=True))
                event = {"stop": run.number, "iteration": at}
                self._write(event)

    def _running(self, number: int) -> _Run:
        if not 0 <= number < len(self.runs):
            raise ValueError(f"run {number} is not in {self.path}")
        run = self.runs[number]
        if run.state != "RUNNING":
            raise ValueError(f"run {number} in {self.path} has ended ({run.state})")
        return run

    # ---- the log

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The exclusive lock on ``<log>.lock``; re-entrant within this process."""
        with self._thread_lock:
            if self._depth == 0:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fd, self._lock_fd = self._lock_fd, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def _write(self, event: dict[str, Any], sync: bool = False) -> None:
        """Append ``event`` and apply it here; the caller holds the lock and has just read the
        log, so the log ends where this process has read it."""
        line = _dumps(event).encode() + b"\n"
        self._append(line, sync)
        self._apply(event)
        self._offset += len(line)
        self._lines_read += 1

    def _append(self, line: bytes, sync: bool = False) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _refresh(self) -> None:
        """Read what was appended since the last read (all of it if the file was replaced)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise EngineError(f"the sweep state {self.path} was removed while running") from None
        identity = (info.st_dev, info.st_ino)
        if identity != self._identity or info.st_size < self._offset:
            self.runs, self._offset, self._identity, self._lines_read = [], 0, identity, 0
            self._suggested = None
            self.decided = []
        if info.st_size == self._offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(info.st_size - self._offset)
        line_no = self._lines_read
        for raw in data.splitlines(keepends=True):
            line_no += 1
            self._read_line(raw, line_no)
            self._offset += len(raw)
            self._lines_read = line_no

    def _read_line(self, raw: bytes, line_no: int) -> None:
        where = f"{self.path}:{line_no}"
        if not raw.endswith(b"\n"):
            raise EngineError(_corrupt(where, "the line is cut short"))
        try:
            event = json.loads(raw[:-1])
        except ValueError as exc:
            raise EngineError(_corrupt(where, f"not JSON ({exc})")) from None
        if not isinstance(event, dict):
            raise EngineError(_corrupt(where, "not a JSON object"))
        if line_no == 1:
            self._read_header(event, where)
            return
        try:
            self._apply(event)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineError(_corrupt(where, f"not an event of this sweep ({exc})")) from None

    def _read_header(self, event: dict[str, Any], where: str) -> None:
        if event.get("format") != FORMAT or not isinstance(event.get("config"), dict):
            raise EngineError(
                f"{where}: error: not a sweep state of sweepspec's W&B engine "
                f"(no {FORMAT!r} header); it is left untouched"
            )
        self._header, self.sweep_id = event, str(event["sweep_id"])
        self._lines_read = 1

    def _apply(self, event: dict[str, Any]) -> None:
        if "ask" in event:
            number = int(event["ask"])
            if number != len(self.runs):
                raise ValueError(f"run {number} follows run {len(self.runs) - 1}")
            sweep_run = sweeps.SweepRun(
                name=str(event["name"]), config=dict(event["config"]), state="running"
            )
            self.runs.append(_Run(number, sweep_run, str(event["worker"]), event["time"]))
        elif "report" in event:
            run = self.runs[int(event["report"])]
            value = event["value"]
            run.run.history.append({"_step": event["step"], self._metric_key: value})
            run.run.summary_metrics = {self._metric_key: value}
        elif "stop" in event:
            run = self.runs[int(event["stop"])]
            run.stopped_at = int(event["iteration"])
            run.run.state = "killed"
        elif "tell" in event:
            self._apply_tell(self.runs[int(event["tell"])], event)
        elif "decide" in event:
            number = int(event["decide"])
            if not 0 <= number < len(self.runs):
                raise ValueError(f"a decision on run {number}, which is not in the sweep")
            rest = {k: v for k, v in event.items() if k != "decide"}
            self.decided.append({"trial": number, **rest})
        elif "beat" in event:
            self.runs[int(event["beat"])].beat = float(event["time"])
        else:
            raise ValueError(f"unknown event {sorted(event)}")

    def _apply_tell(self, run: _Run, event: dict[str, Any]) -> None:
        state = str(event["state"])
        run.state = state
        run.run.state = _W_STATE[state]
        run.metrics = dict(event.get("summary") or {})
        run.run.summary_metrics = dict(run.metrics)
        values = event.get("values")
        run.values = [float(v) for v in values] if values is not None else None
        run.seeds = event.get("seeds")
        run.error = event.get("error")
        run.cost = float(event.get("cost") or 0.0)
        run.end = event.get("time")
        run.times = event.get("times")
        run.summarise()

    @property
    def _metric_key(self) -> str:
        return self.metric or "objective"


# --------------------------------------------------------------------------- helpers


def _state_path(spec: Spec, path: str, options: EngineOptions) -> Path:
    if options.storage is None:
        return default_state(spec, path)
    if "://" in options.storage:
        shown = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", options.storage)
        raise EngineError(
            f"the W&B engine keeps its state in a file; --storage must be a file path, "
            f"not the URL {shown}"
        )
    return Path(options.storage)


def _check_config(config: dict[str, Any]) -> None:
    """W&B's own validator, once; and what its search cannot run locally."""
    if config.get("method") not in ("grid", "random", "bayes"):
        raise EngineError(
            f"the W&B engine runs method grid, random or bayes; 'method: "
            f"{config.get('method')}' needs a custom scheduler (use --engine optuna)"
        )
    violations = sweeps.schema_violations_from_proposed_config(config)
    if violations:
        raise EngineError(
            f"W&B's validator refuses the compiled sweep config: {'; '.join(violations)}"
        )


def _goal(metric: Any) -> tuple[Any, Any] | None:
    if not isinstance(metric, dict):
        return None
    return metric.get("name"), metric.get("goal", "minimize")


def _corrupt(where: str, why: str) -> str:
    return (
        f"{where}: error: the W&B engine's sweep state is unreadable: {why}; it is left "
        "untouched (restore it, or move it away to start a new sweep)"
    )


def _describe(exc: Exception) -> str:
    """``Type: message`` on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    from datetime import datetime

    return datetime.fromtimestamp(moment).isoformat()
