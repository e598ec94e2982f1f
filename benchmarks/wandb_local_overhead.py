"""What the local W&B engine costs per trial, against the loop people hand-write on ``sweeps``.

Measured in one process, side by side, on a trivial trial (three parameters, 10 reported
values of arithmetic):

* engine: the Engine protocol as the sweep loop drives it, on the default state file in a
  temp folder: per trial, under ``ask_lock()``, ``summaries()`` (the trials the budget
  counts; the loop's own tally of them is not the engine's cost and is left out) and
  ``ask()``; ``report()`` per value (which asks ``sweeps.stop_runs`` when the spec has
  hyperband); ``tell()``. Everything is written to the state file as it happens, and each
  ``tell`` is forced to disk (``fsync``).
* baseline: the in-memory loop of MAPPING.md section 4 doing the same work: per trial
  ``sweeps.next_run`` on the list of runs (seeded as the engine seeds it, so both take the
  same decisions), per value a history row and ``sweeps.stop_runs`` over all runs, the
  stopped runs marked killed, the rest finished. Nothing is written anywhere.

With ``--offline``, both also do what a W&B tracker does per trial: ``wandb.init(mode=
"offline")``, ``wandb.log`` per value, ``finish``: the issue's full comparison (the engine
plus that work against ``sweeps.next_run`` + ``wandb.init(mode="offline")``).

Both run at 40 and 200 trials, alternating (engine, baseline, ...) for ``--rounds`` rounds
after one untimed warm-up of each (``--no-warmup`` skips it); the median of each is taken.
Printed: the per-trial slope ``(t200 - t40) / 160`` for each, and engine/baseline; the
per-trial time at 200.
The last line: ``RESULT ratio=<slope ratio> target<=1.0``.

Run:  .venv/bin/python benchmarks/wandb_local_overhead.py [--rounds 5] [--hyperband|--no-hyperband]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sweepspec.runners.base import EngineOptions, open_engine
from sweepspec.runners.wandb import ask_seed, seeded
from sweepspec.spec import load
from sweepspec.trackers import TrialRecord

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sweeps

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


class Offline:
    """One offline W&B run per trial, as a W&B tracker makes it (``--offline``)."""

    def __init__(self, folder: Path) -> None:
        import wandb

        self.wandb = wandb
        self.folder = folder

    def start(self, params: dict[str, Any]) -> Any:
        return self.wandb.init(
            mode="offline", dir=str(self.folder), config=params, project="overhead", reinit=True
        )

    @staticmethod
    def log(run: Any, value: float, step: int) -> None:
        run.log({"loss": value}, step=step)


def run_engine(folder: Path, trials: int, offline: bool) -> tuple[float, str]:
    """The engine through its protocol; (seconds, its sweep id)."""
    os.chdir(folder)
    spec_path = folder / "sweep.yaml"
    start = time.perf_counter()
    engine = open_engine("wandb", load(str(spec_path)), str(spec_path), EngineOptions())
    tracker = Offline(folder) if offline else None
    while True:
        with engine.ask_lock():
            if len(engine.summaries()) >= trials:
                break
            asked = engine.ask()
        assert asked is not None
        run = tracker.start(asked.params) if tracker else None
        state, value = "COMPLETE", 0.0
        for step, value in enumerate(trial_values(asked.params), start=1):
            if run is not None:
                Offline.log(run, value, step)
            if engine.report(asked, value, step):
                state = "PRUNED"
                break
        if run is not None:
            run.finish()
        metrics = {"loss": value}
        values = [value] if state == "COMPLETE" else None
        engine.tell(asked, TrialRecord(asked.number, asked.params, state, metrics, values=values))
    return time.perf_counter() - start, engine.sweep_id


def run_baseline(
    folder: Path, trials: int, offline: bool, sweep_id: str, config: dict[str, Any]
) -> float:
    """The hand-written in-memory loop on bare sweeps, the same decisions."""
    start = time.perf_counter()
    hyperband = "early_terminate" in config
    tracker = Offline(folder) if offline else None
    runs: list[Any] = []
    for number in range(trials):
        with seeded(ask_seed(sweep_id, number)):
            suggestion = sweeps.next_run(config, runs)
        suggestion.name, suggestion.state = f"run-{number}", sweeps.RunState.running
        runs.append(suggestion)
        params = {k: v["value"] for k, v in suggestion.config.items()}
        run = tracker.start(params) if tracker else None
        stopped = False
        for step, value in enumerate(trial_values(params), start=1):
            if run is not None:
                Offline.log(run, value, step)
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
            run.finish()
    return time.perf_counter() - start


def measure(trials: int, hyperband: bool, offline: bool) -> tuple[float, float]:
    """One engine run and one baseline run at ``trials``; (engine s, baseline s)."""
    from sweepspec.compiler.wandb import compile_wandb

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sweep.yaml").write_text(
            SPEC.format(early_terminate=HYPERBAND if hyperband else "")
        )
        config = compile_wandb(load(str(folder / "sweep.yaml"))).config
        base_dir = folder / "baseline"
        base_dir.mkdir()
        engine_dir = folder / "engine"
        engine_dir.mkdir()
        (engine_dir / "sweep.yaml").write_text((folder / "sweep.yaml").read_text())
        cwd = os.getcwd()
        try:
            engine_s, sweep_id = run_engine(engine_dir, trials, offline)
        finally:
            os.chdir(cwd)
        baseline_s = run_baseline(base_dir, trials, offline, sweep_id, config)
    return engine_s, baseline_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--hyperband", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--offline", action="store_true", help="add wandb.init offline runs")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.offline:
        os.environ.setdefault("WANDB_SILENT", "true")
    if args.warmup:
        measure(args.small, args.hyperband, args.offline)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for n in (args.small, args.large):
            engine_s, baseline_s = measure(n, args.hyperband, args.offline)
            print(f"  {n} trials: engine {engine_s:.3f}s, baseline {baseline_s:.3f}s", flush=True)
            times.setdefault(("engine", n), []).append(engine_s)
            times.setdefault(("baseline", n), []).append(baseline_s)
    med = {key: statistics.median(values) for key, values in times.items()}
    span = args.large - args.small
    slope = {
        who: (med[(who, args.large)] - med[(who, args.small)]) / span
        for who in ("engine", "baseline")
    }
    ratio = slope["engine"] / slope["baseline"]
    print(
        f"python {platform.python_version()}, sweeps {version('sweeps')}, "
        f"numpy {version('numpy')}, {os.cpu_count()} CPUs; method random, {STEPS} values per "
        f"trial, hyperband {'min_iter 1 eta 3' if args.hyperband else 'off'}"
        + (f", wandb {version('wandb')} offline runs" if args.offline else "")
    )
    for who in ("baseline", "engine"):
        print(
            f"{who:8}  {args.small} trials {med[(who, args.small)]:.3f}s  "
            f"{args.large} trials {med[(who, args.large)]:.3f}s  "
            f"per trial {slope[who] * 1000:.2f} ms (slope), "
            f"{med[(who, args.large)] / args.large * 1000:.2f} ms (at {args.large})"
        )
    print(f"RESULT ratio={ratio:.2f} target<={TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
