"""Per-trial overhead of ``sweepspec run --engine ray`` against a hand-written Tune script
doing the same work, side by side in one run.

One local Ray is started by this process (``ray.init(num_cpus=2)`` on 127.0.0.1, shut down
at the end: only the Ray this benchmark started) and both sides join it at its address, so
Ray's start-up is in neither. The work: a function trial that reports
``--steps`` values of a loss and sleeps ``--sleep`` seconds per step, on ``method: random``
over one parameter, one trial at a time.

* sweepspec: ``sweepspec run --engine ray --tracker none --trials N --ray-address ...``, a
  fresh process (each trial forked by the loop's trial code, its values relayed to Tune).
* Tune: a script that calls ``tune.Tuner(fn, param_space=..., TuneConfig(num_samples=N,
  max_concurrent_trials=1))`` with the same function (``tune.report`` at each step).

Each side runs at ``--small`` and ``--large`` trials; the per-trial cost is the slope
(wall(large) - wall(small)) / (large - small), minus the trial's own sleep. The ratio
sweepspec/Tune of the slopes is the overhead. The load average is printed (a loaded machine
slows both). The last line: ``RESULT sweepspec_per_trial=...s tune_per_trial=...s
ratio=...``.

Run:  .venv/bin/python benchmarks/ray_overhead.py [--small 4 --large 16 --steps 3 --sleep 0.05]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIAL = """
import time

def objective(trial):
    for step in range({steps}):
        time.sleep({sleep})
        trial.report({{"loss": trial.params["x"] / (step + 1)}}, step)
    return {{"loss": trial.params["x"] / {steps}}}
"""

SPEC = """
method: random
metric: {{name: loss}}
function: bench_trial:objective
run_cap: {trials}
parameters:
  x: {{min: 0.0, max: 1.0}}
"""

TUNE = """
import sys, time
import ray
from ray import tune

def objective(config):
    for step in range({steps}):
        time.sleep({sleep})
        tune.report({{"loss": config["x"] / (step + 1), "step": step}})

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
tuner = tune.Tuner(
    objective,
    param_space={{"x": tune.uniform(0.0, 1.0)}},
    tune_config=tune.TuneConfig(
        num_samples={trials}, max_concurrent_trials=1, metric="loss", mode="min"
    ),
    run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0),
)
tuner.fit()
"""


def _sweepspec(folder: Path, address: str, trials: int, steps: int, sleep: float) -> float:
    work = Path(tempfile.mkdtemp(dir=folder))
    (work / "bench_trial.py").write_text(TRIAL.format(steps=steps, sleep=sleep))
    (work / "sweep.yaml").write_text(SPEC.format(trials=trials))
    argv = [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--engine", "ray"]
    argv += ["--tracker", "none", "--ray-address", address]
    started = time.perf_counter()
    subprocess.run(argv, cwd=work, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def _tune(folder: Path, address: str, trials: int, steps: int, sleep: float) -> float:
    work = Path(tempfile.mkdtemp(dir=folder))
    script = work / "tune_script.py"
    script.write_text(TUNE.format(trials=trials, steps=steps, sleep=sleep))
    started = time.perf_counter()
    argv = [sys.executable, str(script), address, str(work / "tune")]
    subprocess.run(argv, cwd=work, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=4)
    parser.add_argument("--large", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.05)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only
    print(f"load average before: {os.getloadavg()}")
    folder = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    address = str(ray.get_runtime_context().gcs_address)
    try:
        walls: dict[str, dict[int, float]] = {"sweepspec": {}, "tune": {}}
        for trials in (args.small, args.large):  # alternating, so load hits both alike
            walls["tune"][trials] = _tune(folder, address, trials, args.steps, args.sleep)
            walls["sweepspec"][trials] = _sweepspec(folder, address, trials, args.steps, args.sleep)
            print(
                f"{trials:>4} trials: tune {walls['tune'][trials]:.2f}s, "
                f"sweepspec {walls['sweepspec'][trials]:.2f}s"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    own = args.steps * args.sleep
    span = args.large - args.small
    per = {k: (v[args.large] - v[args.small]) / span - own for k, v in walls.items()}
    print(f"load average after: {os.getloadavg()}")
    print(
        f"RESULT sweepspec_per_trial={per['sweepspec']:.3f}s tune_per_trial={per['tune']:.3f}s "
        f"ratio={per['sweepspec'] / per['tune']:.2f} (beyond the trial's own {own:.2f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
