"""What ``--tracker wandb`` costs: per W&B run in its logger, and per trial of a sweep.

Measured, offline (``WANDB_MODE=offline``, ``WANDB_DIR`` and ``HOME`` in a temp folder, so
nothing leaves the machine):

* logger: the tracker's logger loop (``sweepspec.trackers.wandb.serve``) in this process, fed
  ``--trials`` finished trials of 10 reported values each: ``wandb.init``, ``log`` per step,
  ``summary``, ``finish`` per trial; the first trial (which starts W&B's service) is timed
  apart from the steady state;
* sweep: ``sweepspec run --trials N`` as a fresh process, ``--tracker wandb`` against
  ``--tracker none``, on a trivial trial (10 reported values) and on one that sleeps
  ``--sleep`` seconds, alternating for ``--rounds`` rounds; the median of each. The added
  time per trial is ``(wandb - none) / N``; with the sleeping trial the W&B work overlaps the
  trials, so what remains is W&B's start and the last trial's logging.

The last line: ``RESULT logger_ms_per_run=... added_ms_per_trial=... added_ms_per_slow_trial=...``.

Run:  .venv/bin/python benchmarks/wandb_tracker_overhead.py [--trials 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TRIAL = """\
import time


def objective(trial):
    for step in range(10):
        trial.report({"loss": trial.params["x"] / (step + 1)}, step=step)
    return trial.params["x"]


def slow(trial):
    time.sleep(SLEEP)
    return objective(trial)
"""

SPEC = """\
method: random
metric: {name: loss}
function: trial:FUNCTION
parameters:
  x: {min: 0.0, max: 1.0}
"""


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(folder), HOME=str(folder))
    return env


def logger_cost(trials: int) -> tuple[float, float]:
    """Seconds for the first trial (W&B's start included) and per trial after it."""
    from sweepspec.trackers import Point, TrialRecord
    from sweepspec.trackers.wandb import history_rows, serve, summary_of

    lines = []
    for number in range(trials + 1):
        history = [Point("loss", 1.0 / (s + 1), 1000 * s, s) for s in range(10)]
        record = TrialRecord(number, {"x": 0.5}, "COMPLETE", {"loss": 0.1}, history)
        trial = {
            "number": number,
            "params": record.params,
            "state": record.state,
            "rows": history_rows(record),
            "summary": summary_of(record, "bench"),
            "start": None,
        }
        lines.append(json.dumps(trial))
    marks: list[float] = []

    def fed() -> Iterator[str]:
        for line in lines:
            marks.append(time.perf_counter())
            yield line
        marks.append(time.perf_counter())

    settings = {"project": "bench", "entity": None, "group": "bench", "sweep_id": "bench"}
    start = time.perf_counter()
    serve({**settings, "paths": {}}, fed(), io.StringIO())
    return marks[1] - start, (marks[-1] - marks[1]) / trials


def sweep_time(folder: Path, function: str, tracker: str, trials: int) -> float:
    (folder / "sweep.yaml").write_text(SPEC.replace("FUNCTION", function))
    for stale in folder.glob(".sweepspec/*"):
        stale.unlink()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--trials", str(trials)]
        + ["--tracker", tracker],
        cwd=folder,
        env=_env(folder),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.update(_env(folder))
        first, per_run = logger_cost(args.trials)
        print(f"logger: first run {first:.2f} s (W&B starts), then {per_run * 1000:.0f} ms/run")
        (folder / "trial.py").write_text(TRIAL.replace("SLEEP", str(args.sleep)))
        added = {}
        for function in ("objective", "slow"):
            times: dict[str, list[float]] = {"none": [], "wandb": []}
            for _ in range(args.rounds):
                for tracker in times:
                    times[tracker].append(sweep_time(folder, function, tracker, args.trials))
            none, wandb = (statistics.median(times[t]) for t in ("none", "wandb"))
            added[function] = (wandb - none) / args.trials
            print(
                f"sweep of {args.trials} {function} trials: none {none:.2f} s, wandb "
                f"{wandb:.2f} s, +{added[function] * 1000:.0f} ms/trial"
            )
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(
        f"RESULT logger_ms_per_run={per_run * 1000:.0f} "
        f"added_ms_per_trial={added['objective'] * 1000:.0f} "
        f"added_ms_per_slow_trial={added['slow'] * 1000:.0f}"
    )


if __name__ == "__main__":
    main()
