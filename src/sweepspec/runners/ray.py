"""The Ray Tune engine (``--engine ray``): the sweep on a Ray cluster, or a local Ray.

Ray Tune's controller runs the trials, so this engine drives its own (:class:`~.base.Drives`):
``drive`` starts Tune's ``Tuner`` with the compiled search space, search algorithm and
scheduler (:func:`sweepspec.compiler.ray.compile_ray`), and each Tune trial runs the spec's
function or command exactly as the loop runs it (``loop.trial``: seeds, ``report`` /
``should_stop``, ``trial_timeout``, the trial's process group killed when it stops).

* Where: ``--ray-address`` (else ``RAY_ADDRESS``) names a running cluster; without one, a
  local Ray is started with this machine's CPUs and shut down at the end. A cluster address
  that does not answer is one line, at once.
* Resources: each trial reserves ``budget.cpus_per_trial`` CPUs (default 1) and
  ``budget.gpus_per_trial`` GPUs (default 0) (``tune.with_resources``).
* Early termination: the compiled scheduler decides on each reported value; its STOP is
  passed back to the trial, whose ``report`` then returns True (``should_stop()`` is true, a
  command is killed), so a stopped trial is recorded as PRUNED by the same code as on the
  other engines. The trial waits for the decision on each value before it goes on.
* State: Tune's own experiment under ``.sweepspec/<name>.ray-tune/`` (resumed with
  ``Tuner.restore`` after Ctrl-C: unfinished trials run again under their number), and
  sweepspec's record of every finished trial, ``.sweepspec/<name>.ray.jsonl``, which
  ``results``, ``report`` and ``decide`` read without Ray running.
* Budgets: ``run_cap`` / ``--trials`` is Tune's ``num_samples`` (trials started: a failed
  trial uses its place, unlike on the other engines); the wall clock, ``metric.target``, the
  cost cap and ``max_consecutive_failures`` stop the experiment (Tune's ``Stopper``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import pickle
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..compiler.ray import FINAL, compile_ray
from ..trackers import Point, TrialRecord
from .base import EngineError, EngineOptions, OwnTrials
from .budget import TrialSummary
from .contract import state_file, state_written
from .sweep import INTERRUPTED, interrupt_reason
from .trials import iso_ms

if TYPE_CHECKING:
    from ..spec import Spec
    from .base import Asked
    from .sweep import Loop, TrialRun

__all__ = ["RayEngine", "find_state", "open_engine"]

FORMAT = "sweepspec-ray-1"
DRIVES = True  # Tune's controller runs every trial (RayEngine is a base.Drives)
EXPERIMENT = "tune"  # the experiment's folder under the engine's Tune storage
CONNECT_TIMEOUT = 5.0  # seconds a cluster address gets to answer
DECISION_TIMEOUT = 600.0  # seconds a trial waits for the scheduler's word on a value


def open_engine(spec: Spec, path: str, options: EngineOptions) -> RayEngine:
    """The Ray Tune engine on the sweep of ``spec`` (read from ``path``); an ImportError when
    Ray is not installed. Ray is imported here and when the run starts, not with this module
    (``results`` asks every engine's :func:`find_state`, and importing Ray takes seconds)."""
    import ray  # noqa: F401

    return RayEngine(spec, path, options)


def default_state(spec: Spec, path: str) -> Path:
    """``.sweepspec/<name>.ray.jsonl``: the spec's ``name``, else the spec file's stem."""
    return state_file(spec.name or Path(path).stem, ".ray.jsonl")


def find_state(spec: Spec, path: str, storage: str | None) -> float | None:
    """When this engine's record of the sweep was last written, None when there is none."""
    where = Path(storage) if storage is not None else default_state(spec, path)
    return state_written(where, FORMAT)


# --------------------------------------------------------------------------- the engine


class RayEngine(OwnTrials):
    """One sweep on Ray Tune: Tune's experiment, and sweepspec's record of its trials."""

    name = "ray"
    artifact_name = "ray.json"
    grace_period: float | None = None  # Tune fails the trials of a lost node itself

    def __init__(self, spec: Spec, path: str, options: EngineOptions) -> None:
        self.spec, self.spec_path = spec, path
        self.plan = compile_ray(spec)
        self.sweep_name = spec.name or Path(path).stem
        self.path = Path(options.storage) if options.storage else default_state(spec, path)
        self.label = str(self.path)
        self.state_path = os.path.abspath(self.path)
        self.tune_dir = Path(str(self.path).removesuffix(".jsonl") + "-tune")
        self.address: str | None = options.extra.get("address") or os.environ.get("RAY_ADDRESS")
        self.prunes = self.plan.scheduler_spec is not None
        self.artifact: dict[str, Any] = self.plan.to_json()
        metric = self.plan.metric
        self.metrics = list(metric) if isinstance(metric, list) else [metric]
        self.space = _space_hash(spec)
        self.messages: list[str] = []
        self.fresh = False
        self.sweep_id = ""
        self.trials: dict[int, dict[str, Any]] = {}  # number -> its record (the last one)
        self.ids: dict[str, int] = {}  # Tune's trial id -> number
        self.decided: list[dict[str, Any]] = []
        self.running: set[int] = set()
        self._lock_fd: int | None = None
        self._open(options)

    # ---- the record file

    def _open(self, options: EngineOptions) -> None:
        found = self.path.exists() and self.path.stat().st_size > 0
        if not options.create and not found:
            raise EngineError(
                f"no sweep state at {self.path} (the sweep has not run from this folder); "
                "run 'sweepspec run' first, or pass --storage"
            )
        if found:
            self._read()
        if options.create:
            self._hold()
            if found and not options.fresh and self._header.get("space") != self.space:
                raise EngineError(
                    f"the search space differs from that of sweep {self.sweep_id} "
                    f"({self.path}); run again with --fresh to start a new sweep"
                )
            if not found or options.fresh:
                self.fresh = found
                self.sweep_id = uuid.uuid4().hex
                if not found:
                    self._create()

    def _hold(self) -> None:
        """One run drives the sweep at a time: its lock is held until :meth:`close`."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EngineError(f"cannot create {self.path}.lock: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EngineError(
                f"another run drives sweep {self.sweep_name!r} ({self.path}) on Ray; Tune's "
                "controller runs its trials: wait for it, or give it more of the cluster"
            ) from None
        self._lock_fd = fd

    def _read(self) -> None:
        self._header: dict[str, Any] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
            header = json.loads(lines[0])
            if header.get("format") != FORMAT:
                raise ValueError("no format line")
            self._header, self.sweep_id = header, str(header["sweep_id"])
            for line in lines[1:]:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "trial" in event:
                    row = event["trial"]
                    self.trials[int(row["number"])] = row
                    if row.get("trial_id"):
                        self.ids[str(row["trial_id"])] = int(row["number"])
                elif "decide" in event:
                    self.decided.append(event["decide"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise EngineError(f"{self.path}: not a sweepspec Ray sweep record ({exc})") from None

    def _create(self) -> None:
        self._header = {"format": FORMAT, "sweep_id": self.sweep_id, "space": self.space}
        self._write([self._header], mode="w")

    def _write(self, events: list[dict[str, Any]], mode: str = "a") -> None:
        try:
            with open(self.path, mode, encoding="utf-8") as fh:
                for event in events:
                    fh.write(json.dumps(event, sort_keys=True, default=_plain) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise EngineError(f"cannot write {self.path}: {exc.strerror}") from None

    # ---- the protocol

    def start(self) -> None:
        """``--fresh``, once the run is up: the old record and Tune's experiment go."""
        if not self.fresh:
            return
        count = len(self.trials)
        import shutil

        shutil.rmtree(self.tune_dir, ignore_errors=True)
        self.trials, self.ids, self.decided = {}, {}, []
        self._create()
        self.fresh = False
        self.messages.append(f"sweepspec: --fresh: deleted sweep {self.path} ({count} trials)")

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        self.keep(record, None)

    def keep(self, record: TrialRecord, trial_id: str | None) -> None:
        """Store a finished trial (durable when it returns)."""
        row = {
            "number": record.number,
            "trial_id": trial_id,
            "state": record.state,
            "params": record.params,
            "metrics": record.metrics,
            "values": record.values,
            "seeds": record.seeds,
            "error": record.error,
            "times": [record.start_ms, record.end_ms],
            "cost": record.cost,
            "curve": [[p.step, p.value] for p in record.history if p.key == self._curve_key],
        }
        self._write([{"trial": row}])
        self.trials[record.number] = row
        self.running.discard(record.number)
        if trial_id is not None:
            self.ids[trial_id] = record.number

    @property
    def _curve_key(self) -> str:
        metric = self.metrics[0]
        seeds = self.spec.seeds
        return f"seed_{seeds.values[0]}/{metric}" if seeds else metric

    def summaries(self) -> list[TrialSummary]:
        if self.fresh:
            return []
        out = [
            TrialSummary(
                n,
                t["state"],
                tuple(t["values"]) if t.get("values") is not None else None,
                float(t.get("cost") or 0.0),
            )
            for n, t in sorted(self.trials.items())
        ]
        out += [TrialSummary(n, "RUNNING") for n in sorted(self.running - set(self.trials))]
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        if self.fresh:
            return
        for number, t in sorted(self.trials.items()):
            row: dict[str, Any] = {
                "number": number,
                "state": t["state"],
                "params": dict(t["params"]),
                "metrics": dict(t["metrics"]),
                "values": t.get("values"),
            }
            if self.spec.seeds is not None:
                row["seeds"] = t.get("seeds") or []
            if t.get("error") is not None:
                row["error"] = t["error"]
            start, end = t.get("times") or (0, 0)
            if start:
                row["datetime_start"], row["datetime_complete"] = iso_ms(start), iso_ms(end)
            yield row

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        if self.fresh:
            return {}
        return {
            n: sorted((int(s), float(v)) for s, v in t.get("curve") or [])
            for n, t in sorted(self.trials.items())
        }

    def worker_settings(self) -> dict[str, Any]:
        return {"storage": os.path.abspath(self.path), "address": self.address}

    def decide(self, decision: dict[str, Any]) -> None:
        self._write([{"decide": decision}])
        self.decided.append(decision)

    def decisions(self) -> list[dict[str, Any]]:
        return [] if self.fresh else list(self.decided)

    # ---- the run

    def drive(self, loop: Loop) -> str:
        """Run the sweep on Tune until its budget, its search space or Ctrl-C stops it."""
        import ray

        started = _connect(self.address)
        try:
            loop.start()
            return self._tune(loop)
        finally:
            if started:
                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _tune(self, loop: Loop) -> str:
        from ray import tune

        relay = _part("_Relay").remote(dict(self.ids), _next_number(self.trials))  # type: ignore[attr-defined]
        waits = self.plan.scheduler_spec is not None and len(self.metrics) == 1
        trainable = tune.with_resources(
            _trainable(loop.trial, self.plan, relay, self.metrics, waits),
            _resources(self.spec),
        )
        driving = _Driving(self, loop, relay)
        _DRIVING[self.sweep_id] = driving
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables stay out of the output
        previous = signal.getsignal(signal.SIGINT)
        try:
            tuner = self._tuner(trainable, loop, driving)
            with _quiet():
                tuner.fit()
            return driving.conclude()
        except KeyboardInterrupt as exc:  # SIGTERM, SIGHUP (the loop's), a second Ctrl-C
            if not driving.interrupted:
                driving.abandon(interrupt_reason(exc))
            raise
        finally:
            _DRIVING.pop(self.sweep_id, None)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, previous)

    def _tuner(self, trainable: Any, loop: Loop, driving: _Driving) -> Any:
        from ray import tune

        experiment = self.tune_dir / EXPERIMENT
        if tune.Tuner.can_restore(str(experiment.resolve())):
            return tune.Tuner.restore(
                str(experiment.resolve()),
                trainable,
                resume_unfinished=True,
                resume_errored=False,
                restart_errored=False,
            )
        samples = self._samples(loop)
        scheduler = self.plan.scheduler()
        return tune.Tuner(
            trainable,
            param_space=self.plan.param_space(),
            tune_config=tune.TuneConfig(
                search_alg=self.plan.search_alg(),
                scheduler=_part("_Decisions")(scheduler, self.sweep_id),
                num_samples=samples,
                metric=cast(Any, self.plan.metric),  # a list with several metrics
                mode=cast(Any, self.plan.mode),
                max_concurrent_trials=loop.workers,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(self.tune_dir.resolve()),
                stop=_part("_Budget")(self.sweep_id),
                callbacks=[_part("_Records")(self.sweep_id)],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )

    def _samples(self, loop: Loop) -> int:
        """Tune's ``num_samples``: the trial budget left (the plan's on a grid: each point
        once; -1, unbounded, without a trial budget)."""
        trials = loop.budget.trials
        if self.spec.method == "grid" or trials is None:
            return self.plan.num_samples
        done = sum(1 for t in self.trials.values() if t["state"] in ("COMPLETE", "PRUNED"))
        return max(1, trials - done)


# --------------------------------------------------------------------------- Ray's side


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, else start a local Ray; True when this call started
    (or joined) Ray and must shut it down. A session already up in this process is used."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot join the Ray cluster at {address}: {exc}") from None
    else:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
    return True


def _check_reachable(address: str) -> None:
    """One line, within :data:`CONNECT_TIMEOUT`, when nothing answers at ``address``
    (Ray itself retries for minutes)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except ValueError:
        raise EngineError(
            f"--ray-address {address!r} is not host:port (the head node's GCS address, as "
            "'ray start --head' prints it), 'auto' or ray://host:port"
        ) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise EngineError(
            f"no Ray cluster answers at {address} ({why}); start one with 'ray start "
            "--head', or run without --ray-address (and RAY_ADDRESS) for a local Ray"
        ) from None


def _resources(spec: Spec) -> dict[str, float]:
    budget = spec.budget
    cpus = getattr(budget, "cpus_per_trial", None) if budget else None
    gpus = budget.gpus_per_trial if budget else None
    return {"cpu": float(cpus or 1), "gpu": float(gpus or 0)}


def _next_number(trials: dict[int, dict[str, Any]]) -> int:
    return max(trials, default=-1) + 1


def _trainable(
    run: TrialRun, plan: Any, relay: Any, metrics: list[str], waits: bool
) -> Callable[[dict[str, Any]], None]:
    """Tune's function trainable: one sweepspec trial, run as the loop runs it. Each value of
    the one objective goes to Tune (and, with a scheduler, its decision comes back); the
    trial's score (its objective values) is its final result, for the search algorithm."""

    def sweepspec_trial(config: dict[str, Any]) -> None:
        import ray
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        number = ray.get(relay.number.remote(trial_id))
        seq = [0]

        def report(value: float, step: int) -> bool:
            seq[0] += 1
            tune.report({metrics[0]: value, "step": step})
            if not waits:
                return False
            stop = relay.wait.remote(trial_id, seq[0])
            return bool(ray.get(stop, timeout=DECISION_TIMEOUT))

        single = len(metrics) == 1
        record = run(number, plan.decode(config), report if single else None)
        ray.get(relay.put.remote(trial_id, pickle.dumps(record)))
        if record.values and len(record.values) == len(metrics):
            final: dict[str, Any] = dict(zip(metrics, record.values, strict=True))
            tune.report(final | {"step": -1, FINAL: True})

    return sweepspec_trial


class _Driving:
    """The driver's side while Tune runs (found by sweep id: Tune pickles its callbacks,
    stopper and scheduler into its experiment and brings its own copies back on restore)."""

    def __init__(self, engine: RayEngine, loop: Loop, relay: Any) -> None:
        self.engine, self.loop, self.relay = engine, loop, relay
        self.stopping: str | None = None
        self.kept: set[int] = set()  # the trials finished in this run
        self.params: dict[int, dict[str, Any]] = {}
        self.trial_ids: dict[int, str] = {}
        self.interrupted = self.catching = False

    def record_of(self, trial: Any) -> TrialRecord:
        """The record the trial sent, else (Tune lost it) a failed one."""
        import ray

        sent = ray.get(self.relay.take.remote(trial.trial_id))
        if sent is not None:
            record: TrialRecord = pickle.loads(sent)
            return record
        number = self.relay_number(trial)
        error = f"stopped: {self.stopping}" if self.stopping else _trial_error(trial)
        now = int(time.time() * 1000)
        return TrialRecord(
            number,
            self.engine.plan.decode(trial.config),
            "FAIL",
            {},
            [],
            None,
            None,
            error,
            now,
            now,
        )

    def finished(self, trial: Any) -> None:
        record = self.record_of(trial)
        if self.stopping is not None and record.state == "FAIL" and record.error is None:
            record.error = f"stopped: {self.stopping}"
        self.engine.keep(record, trial.trial_id)
        self.kept.add(record.number)
        if self.stopping is not None:  # cut short by the limit: no failure in a row
            if self.loop.sink is not None:
                self.loop.sink.log_trial(record)
            return
        if not self.loop.finished(record) and self.stopping is None:
            self.stopping = self.loop.failure
        if self.stopping is None:
            self.stopping = self.limit()

    def limit(self) -> str | None:
        """A budget limit reached by the finished trials (those running do not count: they
        run on), or the engine exhausted."""
        tally = dataclasses.replace(self.loop.tally(), running=0)
        return self.loop.budget.stop_reason(tally) or self.engine.exhausted()

    def started(self, trial: Any) -> None:
        number = self.relay_number(trial)
        self.engine.running.add(number)
        self.trial_ids[number] = trial.trial_id
        with contextlib.suppress(Exception):
            self.params[number] = self.engine.plan.decode(trial.config)

    def conclude(self) -> str:
        """Why the experiment ended; Ctrl-C (Tune stopped early) goes on up as
        KeyboardInterrupt once the trials it cut short are recorded as failed."""
        if self.interrupted and self.stopping is None:
            self.abandon(INTERRUPTED)
            raise KeyboardInterrupt
        self.abandon(f"stopped: {self.stopping}" if self.stopping else INTERRUPTED)
        if self.stopping is not None:
            return self.stopping
        return self.limit() or "Ray Tune ran every trial of its search"

    def abandon(self, why: str) -> None:
        """Record as failed the trials that started in this run and did not finish."""
        for number in sorted(self.engine.running - self.kept):
            params = self.params.get(number, {})
            record = self.loop.trial.abandon(number, params, why)
            self.engine.keep(record, self.trial_ids.get(number))
            self.kept.add(number)
            if self.loop.sink is not None:
                self.loop.sink.log_trial(record)

    def catch_ctrl_c(self) -> None:
        """Tune takes Ctrl-C itself (it stops and saves its experiment, and ``fit``
        returns): note it too, so that the run ends as interrupted."""
        if self.catching or threading.current_thread() is not threading.main_thread():
            return
        self.catching = True
        tunes = signal.getsignal(signal.SIGINT)

        def caught(signum: int, frame: Any) -> None:
            self.interrupted = True
            if callable(tunes):
                tunes(signum, frame)

        signal.signal(signal.SIGINT, caught)

    def relay_number(self, trial: Any) -> int:
        import ray

        return int(ray.get(self.relay.number.remote(trial.trial_id)))


_DRIVING: dict[str, _Driving] = {}


def _trial_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path:
        with contextlib.suppress(OSError):
            lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
            if lines:
                return f"Ray Tune: {lines[-1]}"
    return "Ray Tune: the trial's worker failed"


_PARTS: dict[str, Any] = {}
_PART_NAMES = ("_Relay", "_Records", "_Budget", "_Decisions")


def _part(name: str) -> Any:
    """One of the classes that subclass Ray's (made on first use, so that importing this
    module imports no Ray); module attributes too, for Tune's pickles of its experiment."""
    if not _PARTS:
        _PARTS.update(_make_parts())
    return _PARTS[name]


def __getattr__(name: str) -> Any:
    if name in _PART_NAMES:
        return _part(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_parts() -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class _Relay:
        """Between the driver and the trials: each trial's number, the scheduler's decision on
        each value a trial reports, and each finished trial's record."""

        def __init__(self, ids: dict[str, int], first: int) -> None:
            import asyncio

            self.ids, self.next = ids, first
            self.decided: dict[tuple[str, int], bool] = {}
            self.changed = asyncio.Condition()
            self.records: dict[str, bytes] = {}

        async def number(self, trial_id: str) -> int:
            if trial_id not in self.ids:
                self.ids[trial_id], self.next = self.next, self.next + 1
            return self.ids[trial_id]

        async def decide(self, trial_id: str, seq: int, stop: bool) -> None:
            async with self.changed:
                self.decided[(trial_id, seq)] = stop
                self.changed.notify_all()

        async def wait(self, trial_id: str, seq: int) -> bool:
            async with self.changed:
                await self.changed.wait_for(lambda: (trial_id, seq) in self.decided)
                return self.decided.pop((trial_id, seq))

        async def put(self, trial_id: str, record: bytes) -> None:
            self.records[trial_id] = record

        async def take(self, trial_id: str) -> bytes | None:
            return self.records.pop(trial_id, None)

    class _Records(tune.Callback):
        """Each trial that ends is recorded, logged to the tracker and shown, in the driver."""

        def __init__(self, sweep_id: str) -> None:
            self.sweep_id = sweep_id

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            driving = _DRIVING.get(self.sweep_id)
            if driving is not None:
                driving.catch_ctrl_c()

        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            driving = _DRIVING.get(self.sweep_id)
            if driving is not None:
                driving.started(trial)

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            driving = _DRIVING.get(self.sweep_id)
            if driving is not None:
                driving.finished(trial)

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            driving = _DRIVING.get(self.sweep_id)
            if driving is not None:
                driving.finished(trial)

    class _Budget(tune.Stopper):
        """Stops the experiment at a budget limit (wall clock, target, cost, trials on a grid)
        or a failure streak."""

        def __init__(self, sweep_id: str) -> None:
            self.sweep_id = sweep_id

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            driving = _DRIVING.get(self.sweep_id)
            if driving is None:
                return False
            deadline = driving.loop.budget.deadline
            if driving.stopping is None and deadline is not None and time.time() >= deadline:
                driving.stopping = driving.limit()
            return driving.stopping is not None

    class _Decisions(TrialScheduler):
        """The compiled scheduler, whose STOP goes to the trial (it stops itself and is
        recorded as stopped early by the loop's own code) instead of Tune killing it."""

        def __init__(self, inner: TrialScheduler | None, sweep_id: str) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.inner = inner or FIFOScheduler()  # type: ignore[no-untyped-call]
            self.sweep_id = sweep_id

        def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
            self._metric, self._mode = metric, mode
            return bool(self.inner.set_search_properties(metric, mode, **spec))

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            self.inner.on_trial_add(tune_controller, trial)

        def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
            self.inner.on_trial_error(tune_controller, trial)

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            if result.get(FINAL):
                return TrialScheduler.CONTINUE
            decision = self.inner.on_trial_result(tune_controller, trial, result)
            driving = _DRIVING.get(self.sweep_id)
            if driving is not None:
                seq = int(result.get("training_iteration", 0))
                stop = decision == TrialScheduler.STOP
                ray.get(driving.relay.decide.remote(trial.trial_id, seq, stop))
            return TrialScheduler.CONTINUE

        def on_trial_complete(
            self, tune_controller: Any, trial: Any, result: dict[str, Any]
        ) -> None:
            self.inner.on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
            self.inner.on_trial_remove(tune_controller, trial)

        def choose_trial_to_run(self, tune_controller: Any) -> Any:
            return self.inner.choose_trial_to_run(tune_controller)

        def debug_string(self) -> str:
            return self.inner.debug_string()

    parts: dict[str, Any] = {
        "_Relay": ray.remote(num_cpus=0)(_Relay),
        "_Records": _Records,
        "_Budget": _Budget,
        "_Decisions": _Decisions,
    }
    for name, cls in (("_Records", _Records), ("_Budget", _Budget), ("_Decisions", _Decisions)):
        cls.__qualname__, cls.__module__ = name, __name__
    return parts


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Tune's own progress tables and warnings stay out of sweepspec's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(n) for n in ("ray", "ray.tune", "ray.train")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _space_hash(spec: Spec) -> str:
    """What Tune's experiment depends on: a resumed one must have been made from the same."""
    import hashlib

    keys = {"method", "parameters", "metric", "early_terminate"}
    space = json.dumps(spec.model_dump(mode="json", include=keys), sort_keys=True)
    return hashlib.sha256(space.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Point):
        return [value.key, value.value, value.timestamp_ms, value.step]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
