"""W&B's bayes (a Gaussian process) against Optuna's TPE: one spec, both engines, measured.

Measured: for each smooth objective of examples/smooth/objectives.py (pure-Python trial
functions with known minima), one spec with ``method: bayes`` is run by ``sweepspec run``
with ``--engine wandb`` (W&B's own ``sweeps`` package locally: its Gaussian process) and
``--engine optuna`` (``bayes`` compiles to Optuna's ``TPESampler``), ``--tracker none``,
30 trials, once per seed 0..9, each sweep in a temporary folder of its own:

* bowl4: a shifted quadratic bowl in 4 parameters, each uniform on [-5, 5] (minimum 0);
* branin: Branin's function, 2 parameters (minimum 0.397887);
* camel: the six-hump camel, 2 parameters (minimum -1.031628);
* forrester: Forrester's function, 1 parameter (minimum -6.020740).

Seeds. The spec is the same file on both engines. It carries
``optuna: {sampler: {name: tpe, options: {seed: S}}}`` (the sampler ``bayes`` compiles to,
with nothing but the seed added), which the Optuna engine reads and the W&B engine ignores.
The W&B engine seeds each suggestion with its sweep id and the run's number
(``sweepspec.runners.wandb.ask_seed``); ``run`` draws a random id for a new sweep, so by
default each W&B sweep is created here, before ``run``, with the id ``bayes-vs-tpe-<S>``
(the engine's state file holding only its header line, as ``run`` writes it).
Both engines then give the same trials on every run of this benchmark. ``--random-ids``
lets ``run`` draw the ids, as a user's fresh sweeps get them (not reproducible).

Read with ``sweepspec results --format json``: the best value of ``loss`` among COMPLETE
trials after the 30 trials, and its regret (best minus the known minimum). Printed per
objective and engine: the mean and standard deviation over seeds of the best value and of the
regret, the median regret, in how many seeds W&B's regret is lower, the wall time of a sweep
(``sweepspec run``, process start included) and the time per trial inside the loop (first
trial's start to last trial's end, over the number of trials). The last line:
``RESULT <objective>_wandb=<mean regret> <objective>_optuna=<mean regret> ...
wandb_lower=<objectives where W&B's mean regret is lower>/<objectives>``.

Run:  .venv/bin/python benchmarks/bayes_vs_tpe.py [--seeds 10] [--trials 30] [--quick]
      [--objectives bowl4,branin,camel,forrester] [--random-ids] [--per-seed] [--keep]
(about 6 minutes on 2 cores with the defaults; ``--quick`` runs 3 seeds)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from _cli import ROOT, copy_example, sweepspec

from sweepspec.compiler.wandb import compile_wandb
from sweepspec.runners.wandb import FORMAT
from sweepspec.spec import load

EXAMPLE = ROOT / "examples" / "smooth"
ENGINES = ("wandb", "optuna")


@dataclass(frozen=True)
class Objective:
    function: str  # in examples/smooth/objectives.py
    parameters: dict[str, dict[str, float]]
    minimum: float


def _uniform(low: float, high: float) -> dict[str, float]:
    return {"min": low, "max": high}


OBJECTIVES = {
    "bowl4": Objective("bowl", {f"x{i}": _uniform(-5.0, 5.0) for i in range(4)}, 0.0),
    "branin": Objective(
        "branin", {"x1": _uniform(-5.0, 10.0), "x2": _uniform(0.0, 15.0)}, 0.397887357729738
    ),
    "camel": Objective(
        "camel", {"x1": _uniform(-3.0, 3.0), "x2": _uniform(-2.0, 2.0)}, -1.031628453489877
    ),
    "forrester": Objective("forrester", {"x": _uniform(0.0, 1.0)}, -6.020740055767085),
}


@dataclass
class Sweep:
    objective: str
    engine: str
    seed: int
    trials: list[dict[str, Any]]
    seconds: float

    @property
    def best(self) -> float:
        done = [t["metrics"]["loss"] for t in self.trials if t["state"] == "COMPLETE"]
        return min(done) if done else math.inf

    @property
    def regret(self) -> float:
        return self.best - OBJECTIVES[self.objective].minimum

    @property
    def per_trial(self) -> float:
        """Seconds per trial inside the loop: first start to last end, over the trials."""
        start = min(datetime.fromisoformat(t["datetime_start"]) for t in self.trials)
        end = max(datetime.fromisoformat(t["datetime_complete"]) for t in self.trials)
        return (end - start).total_seconds() / len(self.trials)


def write_spec(folder: Path, name: str, seed: int, trials: int) -> Path:
    objective = OBJECTIVES[name]
    spec = {
        "name": name,
        "method": "bayes",
        "metric": {"name": "loss", "goal": "minimize"},
        "function": f"objectives:{objective.function}",
        "run_cap": trials,
        "parameters": objective.parameters,
        "optuna": {"sampler": {"name": "tpe", "options": {"seed": seed}}},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def create_wandb_sweep(spec_path: Path, name: str, sweep_id: str) -> None:
    """The W&B engine's state as ``run`` creates it for a new sweep, with this sweep id."""
    header = {
        "format": FORMAT,
        "sweep_id": sweep_id,
        "spec": str(spec_path.resolve()),
        "created": time.time(),
        "config": compile_wandb(load(str(spec_path))).config,
    }
    state = spec_path.parent / ".sweepspec" / f"{name}.wandb.jsonl"
    state.parent.mkdir()
    state.write_text(json.dumps(header, separators=(",", ":")) + "\n", encoding="utf-8")


def run_sweep(
    name: str, engine: str, seed: int, trials: int, work: Path, random_ids: bool
) -> Sweep:
    folder = work / name / f"{engine}-seed{seed}"
    copy_example(EXAMPLE, folder)
    spec_path = write_spec(folder, name, seed, trials)
    if engine == "wandb" and not random_ids:
        create_wandb_sweep(spec_path, name, f"bayes-vs-tpe-{seed}")
    start = time.perf_counter()
    sweepspec("run", "sweep.yaml", "--engine", engine, "--tracker", "none", cwd=folder)
    seconds = time.perf_counter() - start
    results = json.loads(sweepspec("results", "sweep.yaml", "--format", "json", cwd=folder))
    if len(results) != trials:
        raise SystemExit(f"{folder}: {len(results)} trials, expected {trials}")
    return Sweep(name, engine, seed, results, seconds)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def summarise(name: str, sweeps: dict[str, list[Sweep]], per_seed: bool) -> dict[str, float]:
    """Print one line per engine (and its regret per seed); the mean regret of each."""
    wandb_lower = sum(
        w.regret < o.regret for w, o in zip(sweeps["wandb"], sweeps["optuna"], strict=True)
    )
    means = {}
    for engine in ENGINES:
        runs = sweeps[engine]
        best, best_sd = _mean_sd([s.best for s in runs])
        regret, regret_sd = _mean_sd([s.regret for s in runs])
        median = statistics.median(s.regret for s in runs)
        seconds = statistics.fmean(s.seconds for s in runs)
        per_trial = statistics.fmean(s.per_trial for s in runs) * 1000
        lower = f"{wandb_lower}/{len(runs)}" if engine == "wandb" else ""
        print(
            f"{name:<10} {engine:<7} {best:>10.4f} {best_sd:>8.4f} {regret:>10.4f} "
            f"{regret_sd:>8.4f} {median:>10.4f} {lower:>8} {seconds:>7.2f} {per_trial:>8.1f}"
        )
        if per_seed:
            print(
                f"{'':<10} {engine:<7} regret per seed: {' '.join(f'{s.regret:.4f}' for s in runs)}"
            )
        means[engine] = regret
    return means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default: 10)")
    parser.add_argument("--quick", action="store_true", help="3 seeds instead of --seeds")
    parser.add_argument("--trials", type=int, default=30, help="trials per sweep (default: 30)")
    parser.add_argument(
        "--objectives",
        default=",".join(OBJECTIVES),
        help=f"comma-separated, from {', '.join(OBJECTIVES)} (default: all)",
    )
    parser.add_argument(
        "--random-ids",
        action="store_true",
        help="let 'run' draw the W&B sweep ids (not reproducible)",
    )
    parser.add_argument("--per-seed", action="store_true", help="print each seed's regret")
    parser.add_argument("--keep", action="store_true", help="keep the temporary sweep folders")
    args = parser.parse_args(argv)
    names = args.objectives.split(",")
    unknown = sorted(set(names) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objectives {unknown}; choose from {sorted(OBJECTIVES)}")
    seeds = list(range(3 if args.quick else args.seeds))

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sweepspec-bayes-vs-tpe-"))
    ids = "drawn by run" if args.random_ids else "bayes-vs-tpe-<seed>"
    print(
        f"method bayes: W&B engine (sweeps' Gaussian process) against Optuna engine (TPE); "
        f"{args.trials} trials per sweep; seeds {seeds}; W&B sweep ids {ids}"
    )
    print(
        f"{'objective':<10} {'engine':<7} {'best mean':>10} {'best sd':>8} {'regret':>10} "
        f"{'reg. sd':>8} {'reg. med':>10} {'W&B <':>8} {'s/sweep':>7} {'ms/trial':>8}"
    )
    means: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            sweeps = {
                engine: [
                    run_sweep(name, engine, seed, args.trials, work, args.random_ids)
                    for seed in seeds
                ]
                for engine in ENGINES
            }
            means[name] = summarise(name, sweeps, args.per_seed)
    finally:
        if args.keep:
            print(f"sweep folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        "regret: best loss after the trials minus the objective's minimum; 'W&B <': seeds "
        "where W&B's regret is lower"
    )
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    lower = sum(m["wandb"] < m["optuna"] for m in means.values())
    figures = " ".join(
        f"{name}_{engine}={m[engine]:.4f}" for name, m in means.items() for engine in ENGINES
    )
    print(
        f"RESULT {figures} wandb_lower={lower}/{len(means)} seeds={len(seeds)} trials={args.trials}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
