"""What the local W&B engine costs per trial, against the loop people hand-write on ``sweeps``.

The issue's comparison (the default): a W&B-tracked trial on sweepspec's local W&B engine
against the hand-written loop of ``sweeps.next_run`` + ``wandb.init(mode="offline")`` doing
the same work, on a trivial trial (three parameters, 10 reported values of arithmetic):

* engine: what ``sweepspec run --engine wandb --tracker wandb`` does per trial, minus the
  trial's own process: the Engine protocol as the sweep loop drives it, on the default state
  file (``start()``; per trial, under ``ask_lock()``, ``summaries()`` for the budget,
  ``exhausted()`` and ``ask()``; ``summaries()`` again for the check that other workers did
  not fill the budget; ``report()`` per value, which asks ``sweeps.stop_runs`` over every run
  when the spec has hyperband; ``tell()``; ``summaries()`` for the progress line; ``close()``
  at the end), and the W&B tracker (``sweepspec.trackers.wandb.WandbTracker``: ``start``,
  ``log_trial`` per trial, ``close``, which waits until every run is written). Every event is
  written to the state file as it happens and each ``tell`` is forced to disk (``fsync``), as
  the engine promises.
* baseline: one loop in one process, nothing written but W&B's runs: per trial
  ``sweeps.next_run`` on the list of runs (seeded as the engine seeds it), ``wandb.init(mode=
  "offline")`` with the tracker's own arguments and settings (so W&B does the same work on
  both sides), per value ``run.log`` and, with hyperband, ``sweeps.stop_runs`` over all runs
  (the stopped runs marked killed), ``run.finish``; at the end ``wandb.teardown()`` (W&B's
  exit, which the tracker's ``close`` also waits for).

Both sides take the same decisions: the script checks that every trial got the same
parameters and ended in the same state (COMPLETE or PRUNED) on both, and stops if not.
The engine's W&B runs are written by the tracker's logger process while the next trial
runs; that overlap is how ``--tracker wandb`` works, and it is why the CPU time (this
process and its children: the logger, W&B's service) is printed beside the wall time.

``--no-wandb``: the engine's protocol alone against the in-memory loop alone (no W&B runs on
either side): what the engine's state file and its bookkeeping cost over bare ``sweeps``.

Each side runs as a fresh process (``--side``), W&B offline with its files in a temp folder
(nothing leaves the machine), at 40 and 200 trials, alternating (engine, baseline, ...) for
``--rounds`` rounds after one untimed warm-up of each (``--no-warmup`` skips it); the median
of each is taken. Imports (``sweeps`` loads scipy and scikit-learn at its first call) are made
before the clock starts on both sides; W&B's start (its service, the tracker's logger
process) is inside it. Printed per side, per trial:

* the time from the end of trial 40 to the end of trial 200 in the 200-trial run, / 160: the
  steady state, without the fixed costs whose swings on a shared machine (seconds) swamp
  the rest; the end of a trial is when its W&B run is written (for the engine: when the
  tracker's logger answers for it) - the headline ``ratio``;
* the wall and the CPU time of the 200-trial run minus that of the 40-trial run, / 160;
* for the engine, the time spent in ``fsync`` (timed around the real call).

The last line: ``RESULT ratio=<steady-state ratio> target<=1.0 wall_ratio=<200 runs - 40
runs, wall> cpu_ratio=<the same, CPU>``, each engine/baseline.

Run:  .venv/bin/python benchmarks/wandb_local_overhead.py [--rounds 5] [--no-hyperband]
      [--no-wandb]

Measured 2026-12-01 with the defaults (5 rounds), on 2 CPUs shared with other jobs (python
3.11.7, sweeps 0.3.0, numpy 1.26.4, wandb 0.31.0); per trial in ms, engine / baseline; the
1-minute load average at the start and at the end of each run:

    flags            steady state      wall slope        CPU slope         fsync load
    (default: W&B offline runs on both sides)
    --hyperband      32.27/40.36 0.80  32.24/40.23 0.80  26.32/21.74 1.21  3.45  5.5-7.2
    --no-hyperband   36.12/47.94 0.75  38.29/48.28 0.79  20.29/22.21 0.91  7.49  7.2-10.9
    --no-wandb (the engine alone against the bare loop)
    --hyperband      13.67/11.45 1.19  13.94/11.02 1.27   5.64/6.25  0.90  5.93  11.0-10.3
    --no-hyperband    6.80/2.73  2.49   6.61/2.54  2.61   2.82/1.89  1.49  3.02  10.3-7.4

With W&B runs (the issue's comparison) the engine side takes less time per trial: the
tracker's logger process writes each W&B run while the next trial runs. It does not do less
work: its CPU time is about the same (0.91 to 1.21; it runs one more process and writes its
state file). The engine alone costs more than the bare in-memory loop, which writes nothing:
most of the difference is the ``fsync`` of each finished run on a busy disk (3 to 6 ms), the
rest under 1 ms of the state file's lines and bookkeeping. The W&B start (the service, the
logger process) swings by seconds between runs here, so the wall slope across runs is the
noisier figure; the steady state is the headline. (Measured before the engine side got
the loop's ``start()``, ``close()`` and third ``summaries()`` per trial: microseconds.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

TARGET = 1.0
STEPS = 10

SPEC = """\
name: overhead
method: random
metric: {{name: loss, goal: minimize}}
{early_terminate}parameters:
  x: {{min: -5.0, max: 5.0}}
  n: {{min: 1, max: 10}}
  kind: {{values: [a, b, c]}}
"""
HYPERBAND = "early_terminate: {type: hyperband, min_iter: 1, eta: 3}\n"


def trial_values(params: dict[str, Any]) -> list[float]:
    """The trivial trial: 10 values of arithmetic."""
    x, n, kind = params["x"], params["n"], params["kind"]
    extra = 0.5 if kind == "b" else 0.0
    return [(x - 2.0) ** 2 + n / step + extra for step in range(1, STEPS + 1)]


def _cpu() -> float:
    """CPU seconds of this process and of its children that ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _import_sweeps() -> Any:
    """``sweeps`` and the modules it imports at its first call (scipy, scikit-learn): a
    fixed cost of a few seconds outside the timed part on both sides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
        import sweeps.bayes_search
        import sweeps.grid_search
        import sweeps.hyperband_stopping
        import sweeps.random_search  # noqa: F401

    return sweeps


class _Stamped(list[str]):
    """A list that notes the time of each append (the W&B tracker's folders of the runs its
    logger process has written, appended as each one is answered)."""

    def __init__(self, stamps: list[float]) -> None:
        super().__init__()
        self.stamps = stamps

    def append(self, item: str) -> None:
        self.stamps.append(time.perf_counter())
        super().append(item)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else repr(value)


# --------------------------------------------------------------------------- the two sides


def side_engine(folder: Path, trials: int, use_wandb: bool) -> dict[str, Any]:
    """The engine (and with ``use_wandb`` the W&B tracker) as ``sweepspec run`` drives them."""
    import sweepspec.runners.wandb  # noqa: F401  (imports, as the baseline's, untimed)
    from sweepspec.runners.base import EngineOptions, open_engine
    from sweepspec.spec import load
    from sweepspec.trackers import Point, SweepInfo, TrialRecord

    _import_sweeps()
    spec_path = folder / "sweep.yaml"
    spec = load(str(spec_path))
    synced = [0.0]  # seconds spent in fsync: still done, only timed
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        began = time.perf_counter()
        real_fsync(fd)
        synced[0] += time.perf_counter() - began

    os.fsync = fsync
    done: list[float] = []  # when each trial was done: told, and its W&B run written
    start, cpu = time.perf_counter(), _cpu()
    engine = open_engine("wandb", spec, str(spec_path), EngineOptions())
    tracker = None
    if use_wandb:
        from sweepspec.trackers.wandb import WandbTracker

        tracker = WandbTracker(echo=lambda line: print(line, file=sys.stderr))
        tracker.dirs = _Stamped(done)  # the logger's answers, one per run written, in order
        tracker.start(
            SweepInfo(
                name=engine.sweep_name,
                engine=engine.name,
                sweep_id=engine.sweep_id,
                spec_path=str(spec_path),
                spec_hash="",
                artifact=engine.artifact,
                artifact_name=engine.artifact_name,
                objective="loss",
                state_path=os.path.abspath(engine.label),
            )
        )
    engine.start()  # as the loop does once the tracker is up
    while True:
        with engine.ask_lock():
            if len(engine.summaries()) >= trials or engine.exhausted():
                break
            asked = engine.ask()
        assert asked is not None
        engine.summaries()  # the loop's check that no other worker filled the budget
        started = time.time()
        history: list[Point] = []
        state, value = "COMPLETE", 0.0
        for step, value in enumerate(trial_values(asked.params), start=1):
            history.append(Point("loss", value, int(time.time() * 1000), step))
            if engine.report(asked, value, step):
                state = "PRUNED"
                break
        values = [value] if state == "COMPLETE" else None
        record = TrialRecord(
            asked.number,
            asked.params,
            state,
            {"loss": value},
            history,
            values=values,
            start_ms=int(started * 1000),
            end_ms=int(time.time() * 1000),
        )
        engine.tell(asked, record)
        if tracker is not None:
            tracker.log_trial(record)
        else:
            done.append(time.perf_counter())
        engine.summaries()  # the progress line's tally
    engine.close()
    if tracker is not None:
        tracker.close()
        assert tracker.logged == trials, f"the tracker logged {tracker.logged} of {trials}"
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    decisions = [[row["params"], row["state"]] for row in engine.records()]
    return {
        "seconds": seconds,
        "cpu": cpu,
        "fsync": synced[0],
        "done": [moment - start for moment in done],
        "sweep_id": engine.sweep_id,
        "decisions": decisions,
    }


def side_baseline(folder: Path, trials: int, use_wandb: bool, sweep_id: str) -> dict[str, Any]:
    """The hand-written loop on bare ``sweeps`` (and with ``use_wandb`` ``wandb.init``)."""
    from sweepspec.compiler.wandb import compile_wandb
    from sweepspec.runners.wandb import ask_seed, seeded
    from sweepspec.spec import load

    sweeps = _import_sweeps()
    config = compile_wandb(load(str(folder / "sweep.yaml"))).config
    hyperband = "early_terminate" in config
    decisions: list[list[Any]] = []
    done: list[float] = []
    start, cpu = time.perf_counter(), _cpu()
    if use_wandb:
        import wandb

        settings = wandb.Settings(  # the tracker's own: W&B does the same work on both sides
            console="off",
            silent=True,
            save_code=False,
            disable_git=True,
            x_disable_stats=True,
            x_disable_meta=True,
            x_save_requirements=False,
        )
    runs: list[Any] = []
    for number in range(trials):
        with seeded(ask_seed(sweep_id, number)):
            suggestion = sweeps.next_run(config, runs)
        suggestion.name, suggestion.state = f"run-{number}", sweeps.RunState.running
        runs.append(suggestion)
        params = {k: v["value"] for k, v in suggestion.config.items()}
        run = None
        if use_wandb:
            run = wandb.init(
                project="overhead",
                group="overhead",
                name=f"overhead-{number}",
                config=params,
                mode="offline",
                reinit="create_new",
                settings=settings,
            )
        stopped = False
        for step, value in enumerate(trial_values(params), start=1):
            if run is not None:
                run.log({"loss": value}, step=step)
            suggestion.history.append({"_step": step, "loss": value})
            suggestion.summary_metrics = {"loss": value}
            if hyperband:
                stop = sweeps.stop_runs(config, runs)
                for other in stop:
                    other.state = sweeps.RunState.killed
                if any(other is suggestion for other in stop):
                    stopped = True
                    break
        if not stopped:
            suggestion.state = sweeps.RunState.finished
        if run is not None:
            run.finish(exit_code=0)
        done.append(time.perf_counter())
        decisions.append([params, "PRUNED" if stopped else "COMPLETE"])
    if use_wandb:
        wandb.teardown()
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    done = [moment - start for moment in done]
    return {"seconds": seconds, "cpu": cpu, "done": done, "decisions": decisions}


# --------------------------------------------------------------------------- the parent


def _env(folder: Path) -> dict[str, str]:
    """W&B offline, its files in the measurement's temp folder; nothing leaves the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(folder), WANDB_SILENT="true")
    env.update(WANDB_CONFIG_DIR=str(folder / ".config"), WANDB_CACHE_DIR=str(folder / ".cache"))
    return env


def _side(folder: Path, side: str, trials: int, use_wandb: bool, sweep_id: str = "") -> Any:
    folder.mkdir()
    (folder / "sweep.yaml").write_text((folder.parent / "sweep.yaml").read_text())
    out = folder / "result.json"
    argv = [sys.executable, __file__, "--side", side, "--trials", str(trials), "--out", str(out)]
    argv += ["--sweep-id", sweep_id] if sweep_id else []
    argv += [] if use_wandb else ["--no-wandb"]
    proc = subprocess.run(argv, cwd=folder, env=_env(folder), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {side} side failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(out.read_text())


def measure(trials: int, hyperband: bool, use_wandb: bool) -> tuple[dict[str, Any], ...]:
    """One engine run and one baseline run at ``trials``, each a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sweep.yaml").write_text(
            SPEC.format(early_terminate=HYPERBAND if hyperband else "")
        )
        engine = _side(folder / "engine", "engine", trials, use_wandb)
        baseline = _side(folder / "baseline", "baseline", trials, use_wandb, engine["sweep_id"])
    if engine["decisions"] != baseline["decisions"]:
        raise SystemExit("the engine and the baseline took different decisions")
    return engine, baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--hyperband", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--wandb",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="W&B offline runs on both sides (--no-wandb: the engine alone, the loop alone)",
    )
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--side", choices=("engine", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:
        folder = Path.cwd()
        if args.side == "engine":
            result = side_engine(folder, args.trials, args.wandb)
        else:
            result = side_baseline(folder, args.trials, args.wandb, args.sweep_id)
        Path(args.out).write_text(json.dumps(result, default=_plain))
        return 0

    print(f"load average {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    if args.warmup:
        measure(args.small, args.hyperband, args.wandb)
    small, large, span = args.small, args.large, args.large - args.small
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for n in (small, large):
            engine, baseline = measure(n, args.hyperband, args.wandb)
            pruned = sum(state == "PRUNED" for _, state in engine["decisions"])
            line = f"  {n} trials ({pruned} stopped early):"
            for who, result in (("engine", engine), ("baseline", baseline)):
                for kind in ("seconds", "cpu", "fsync"):
                    times.setdefault((who, kind, n), []).append(result.get(kind, 0.0))
                line += f" {who} {result['seconds']:.3f}s (cpu {result['cpu']:.3f}s"
                if n == large:  # the trials from the small count's to the large one's
                    done = result["done"]
                    times.setdefault((who, "within", n), []).append(done[-1] - done[small - 1])
                    line += f", trials {small + 1}-{large} {times[(who, 'within', n)][-1]:.3f}s"
                line += ")"
            print(line, flush=True)
    med = {key: statistics.median(values) for key, values in times.items()}
    slope = {
        (who, kind): (med[(who, kind, large)] - med[(who, kind, small)]) / span
        for who in ("engine", "baseline")
        for kind in ("seconds", "cpu", "fsync")
    }
    for who in ("engine", "baseline"):
        slope[(who, "within")] = med[(who, "within", large)] / span
    print(
        f"python {platform.python_version()}, sweeps {version('sweeps')}, "
        f"numpy {version('numpy')}, {os.cpu_count()} CPUs; method random, {STEPS} values per "
        f"trial, hyperband {'min_iter 1 eta 3' if args.hyperband else 'off'}, "
        + (f"wandb {version('wandb')} offline runs" if args.wandb else "no W&B runs")
        + f"; {args.rounds} rounds; load average {os.getloadavg()[0]:.2f} (1 min) at the end"
    )
    for who in ("baseline", "engine"):
        fsync = slope[(who, "fsync")] * 1000
        print(
            f"{who:8}  {small} trials {med[(who, 'seconds', small)]:.3f}s  "
            f"{large} trials {med[(who, 'seconds', large)]:.3f}s  per trial: "
            f"{slope[(who, 'within')] * 1000:.2f} ms (trials {small + 1}-{large} of the "
            f"{large}), {slope[(who, 'seconds')] * 1000:.2f} ms wall and "
            f"{slope[(who, 'cpu')] * 1000:.2f} ms CPU ({large} runs - {small} runs)"
            + (f"; {fsync:.2f} ms in fsync" if who == "engine" else "")
        )
    ratio = {
        kind: slope[("engine", kind)] / slope[("baseline", kind)]
        for kind in ("within", "seconds", "cpu")
    }
    print(
        f"RESULT ratio={ratio['within']:.2f} target<={TARGET} "
        f"wall_ratio={ratio['seconds']:.2f} cpu_ratio={ratio['cpu']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
