"""What ``sweepspec run`` costs per trial and per process, against the loop people hand-write.

Measured, each as a fresh Python process (its wall time from start to exit, imports included):

* sweepspec: ``sweepspec run sweep.yaml --trials N --tracker mlflow`` on a spec whose
  ``function`` is a trivial trial (three parameters, 10 reported steps of arithmetic, no
  early termination), with MLflow on a SQLite store in the run's own temp dir
  (``MLFLOW_TRACKING_URI=sqlite:///.../mlflow.db``) and Optuna on sweepspec's default
  storage (a journal file under the working directory);
* baseline: the hand-written loop sweepspec replaces, doing the same work: an in-memory
  ``optuna.create_study`` with the same sampler, a parent ``mlflow.start_run``, and for each
  trial ``mlflow.start_run(nested=True)``, ``mlflow.log_params``, and per step
  ``trial.report`` + one ``mlflow.log_metric``; same store kind (SQLite) in its own temp dir.

Both run at 40 and 200 trials, alternating (baseline, sweepspec, baseline, ...) for
``--rounds`` rounds, after one untimed warm-up run of each (OS file cache, bytecode); the
median of each is taken. Printed:

* per-trial slope = (t200 - t40) / 160 for each, and sweepspec/baseline (target <= 0.5);
* whole-process time at 200 trials for each, and sweepspec/baseline (target <= 0.7);
* Python, optuna, mlflow versions and the CPU count.

The last line: ``RESULT ratio=<slope ratio> target<=0.5 process_ratio=... target<=0.7``.

Run:  /work/venv/bin/python benchmarks/runner_overhead.py [--rounds 5] [--small 40 --large 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

SLOPE_TARGET = 0.5
PROCESS_TARGET = 0.7

TRIAL = '''\
"""A trivial trial: 10 reported steps of arithmetic."""


def objective(trial):
    x, n, kind = trial.params["x"], trial.params["n"], trial.params["kind"]
    loss = 0.0
    for step in range(1, 11):
        loss = (x - 2.0) ** 2 + n / step + (0.5 if kind == "b" else 0.0)
        trial.report({"loss": loss}, step=step)
        if trial.should_stop():
            break
    return {"loss": loss}
'''

SPEC = """\
name: overhead
method: {method}
metric: {{name: loss, goal: minimize}}
function: trivial:objective
parameters:
  x: {{min: -5.0, max: 5.0}}
  n: {{min: 1, max: 10}}
  kind: {{values: [a, b, c]}}
"""

BASELINE = '''\
"""The hand-written loop: in-memory Optuna study, MLflow parent run, nested run per trial."""
import sys

import mlflow
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_TRIALS = int(sys.argv[1])
SAMPLER = {sampler}


def objective(trial):
    params = {{"x": trial.suggest_float("x", -5.0, 5.0), "n": trial.suggest_int("n", 1, 10),
              "kind": trial.suggest_categorical("kind", ["a", "b", "c"])}}
    with mlflow.start_run(run_name=f"trial-{{trial.number}}", nested=True):
        mlflow.log_params(params)
        loss = 0.0
        for step in range(1, 11):
            loss = ((params["x"] - 2.0) ** 2 + params["n"] / step
                    + (0.5 if params["kind"] == "b" else 0.0))
            trial.report(loss, step)
            mlflow.log_metric("loss", loss, step=step)
    return loss


mlflow.set_experiment("overhead")
with mlflow.start_run(run_name="sweep"):
    study = optuna.create_study(direction="minimize", sampler=SAMPLER,
                                pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=N_TRIALS)
'''

SAMPLERS = {"random": "optuna.samplers.RandomSampler()", "bayes": "optuna.samplers.TPESampler()"}


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall time of one fresh process; MLflow's store is a SQLite file in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def fresh_dir(work: Path, name: str, method: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    (folder / "trivial.py").write_text(TRIAL, encoding="utf-8")
    (folder / "sweep.yaml").write_text(SPEC.format(method=method), encoding="utf-8")
    (folder / "baseline.py").write_text(BASELINE.format(sampler=SAMPLERS[method]), encoding="utf-8")
    return folder


def run_once(kind: str, n: int, work: Path, method: str) -> float:
    folder = fresh_dir(work, f"{kind}-{n}", method)
    try:
        if kind == "baseline":
            return timed([sys.executable, "baseline.py", str(n)], folder)
        return timed(
            [
                sys.executable,
                "-m",
                "sweepspec",
                "run",
                "sweep.yaml",
                "--trials",
                str(n),
                "--tracker",
                "mlflow",
            ],
            folder,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, medians taken (5)")
    parser.add_argument("--small", type=int, default=40, help="small trial count (40)")
    parser.add_argument("--large", type=int, default=200, help="large trial count (200)")
    parser.add_argument(
        "--method",
        choices=sorted(SAMPLERS),
        default="random",
        help="W&B method of the spec; the baseline uses the same Optuna sampler "
        "(random: RandomSampler, bayes: TPESampler). Default: random",
    )
    args = parser.parse_args(argv)

    print(
        f"Python {platform.python_version()}, optuna {version('optuna')}, "
        f"mlflow {version('mlflow')}, sweepspec {version('sweepspec')}; "
        f"CPUs: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"
    )
    print(
        f"trivial trial, 10 steps; method {args.method}; {args.rounds} rounds of "
        f"{args.small} and {args.large} trials; MLflow on SQLite; each a fresh process"
    )

    work = Path(tempfile.mkdtemp(prefix="sweepspec-overhead-"))
    times: dict[tuple[str, int], list[float]] = {}
    try:
        for kind in ("baseline", "sweepspec"):  # not timed: fills the OS and bytecode caches
            run_once(kind, args.small, work, args.method)
        for r in range(args.rounds):
            for n in (args.small, args.large):
                for kind in ("baseline", "sweepspec") if r % 2 == 0 else ("sweepspec", "baseline"):
                    t = run_once(kind, n, work, args.method)
                    times.setdefault((kind, n), []).append(t)
                    print(f"round {r + 1}: {kind:>9} {n:>4} trials {t:7.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {key: statistics.median(v) for key, v in times.items()}
    span = args.large - args.small
    slope = {
        k: (med[(k, args.large)] - med[(k, args.small)]) / span for k in ("baseline", "sweepspec")
    }
    print()
    for k in ("baseline", "sweepspec"):
        print(
            f"{k:>9}: median {med[(k, args.small)]:.2f} s at {args.small}, "
            f"{med[(k, args.large)]:.2f} s at {args.large}; "
            f"per trial {slope[k] * 1000:.1f} ms"
        )
    slope_ratio = slope["sweepspec"] / slope["baseline"]
    process_ratio = med[("sweepspec", args.large)] / med[("baseline", args.large)]
    print(f"per-trial slope ratio sweepspec/baseline: {slope_ratio:.3f} (target <= {SLOPE_TARGET})")
    print(
        f"whole process at {args.large} trials sweepspec/baseline: {process_ratio:.3f} "
        f"(target <= {PROCESS_TARGET})"
    )
    met = slope_ratio <= SLOPE_TARGET and process_ratio <= PROCESS_TARGET
    print(
        f"RESULT ratio={slope_ratio:.3f} target<={SLOPE_TARGET} "
        f"process_ratio={process_ratio:.3f} target<={PROCESS_TARGET} "
        f"{'MET' if met else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
