"""What early termination saves on the quickstart, and what it costs in quality.

Measured: the quickstart sweep (examples/quickstart: a small network on scikit-learn's digits,
val_loss minimised, hyperband early termination) is run by ``sweepspec run`` twice per
sampler seed, at the same trial budget (30 by default):

* pruned: the spec as it is (W&B hyperband, compiled to sweepspec's WandbHyperbandPruner);
* unpruned: the same spec with ``early_terminate`` removed (Optuna's NopPruner).

Each run gets a temporary copy of the example folder whose spec also pins the seed of the
sampler its method compiles to (``optuna: {sampler: {name: random, options: {seed: S}}}`` for
``method: random``, ``tpe`` for ``bayes``). With ``random`` both arms of one seed therefore try
the same configurations in the same order, and the comparison isolates what early termination
does; with ``bayes`` they start from the same random start-up trials and then follow what each
arm has seen. ``--method`` runs the other method instead of the spec's own. The figures come
from ``sweepspec results --format json``:

* epochs consumed: the sum over trials of the last reported step (``metrics.epoch``,
  reported by train.py at every epoch), i.e. the epochs actually trained;
* best val_loss: the lowest final ``val_loss`` among COMPLETE trials (a trial stopped early
  was not trained to the end, so it is not a candidate model).

Printed: per seed and in total, epochs each way and the share saved, best val_loss each way
and the relative difference (of the means over seeds, and per seed: the median, and the mean
with its standard error). Targets: >= 50 % fewer epochs, and the pruned sweep's best val_loss
within 1 % of the unpruned one's, both as the difference of the means over seeds and as the
per-seed median. The last line: ``RESULT ratio=<pruned/unpruned epochs> ... MET|NOT MET``.

One seed settles little: a sweep's best val_loss is a best-of-N over configurations whose
val_loss moves by a few per cent with small changes of the hyperparameters, so the default is
16 seeds (32 sweeps of 30 trials; about 3 minutes on 2 cores).

Run:  /work/venv/bin/python benchmarks/pruning_savings.py [--seeds 16] [--trials 30]
                                                          [--method random|bayes]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _cli import EXAMPLE, copy_example, sweepspec

from sweepspec.compiler.optuna import SAMPLERS, compile_optuna
from sweepspec.spec import load

EPOCHS_TARGET = 0.5  # pruned epochs / unpruned epochs must be <= this
QUALITY_TARGET = 0.01  # best val_loss may be at most 1 % worse with pruning


@dataclass
class Sweep:
    seed: int
    pruned: bool
    trials: list[dict[str, Any]]
    seconds: float
    metric: str = "val_loss"

    @property
    def epochs(self) -> int:
        return sum(int(t["metrics"]["epoch"]) for t in self.trials)

    @property
    def best(self) -> float:
        done = [t["metrics"][self.metric] for t in self.trials if t["state"] == "COMPLETE"]
        return min(done) if done else math.inf

    @property
    def n_complete(self) -> int:
        return sum(t["state"] == "COMPLETE" for t in self.trials)


def run_sweep(
    example: Path, seed: int, pruned: bool, trials: int, work: Path, method: str | None = None
) -> Sweep:
    folder = work / f"seed{seed}-{'pruned' if pruned else 'unpruned'}"
    spec_path = copy_example(example, folder)
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    if not pruned:
        spec.pop("early_terminate")
    elif "early_terminate" not in spec:
        raise SystemExit(f"{example / 'sweep.yaml'} has no early_terminate to compare against")
    if method is not None:
        spec["method"] = method
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    # the sampler the method compiles to, named as the spec's optuna section names it
    compiled = compile_optuna(load(str(spec_path))).sampler["name"]
    name = next(short for short, cls in SAMPLERS.items() if cls == compiled)
    spec.setdefault("optuna", {})["sampler"] = {"name": name, "options": {"seed": seed}}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    start = time.perf_counter()
    sweepspec("run", "sweep.yaml", "--trials", str(trials), "--tracker", "none", cwd=folder)
    seconds = time.perf_counter() - start
    results = json.loads(sweepspec("results", "sweep.yaml", "--format", "json", cwd=folder))
    missing = [t["number"] for t in results if "epoch" not in t.get("metrics", {})]
    if missing:
        raise SystemExit(f"trials {missing} reported no 'epoch' metric: cannot count epochs")
    return Sweep(seed, pruned, results, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=16, help="number of sampler seeds (default: 16)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the seeds are FIRST_SEED, FIRST_SEED+1, ... (default: 0)",
    )
    parser.add_argument("--trials", type=int, default=30, help="trial budget (default: 30)")
    parser.add_argument(
        "--example",
        type=Path,
        default=EXAMPLE,
        help="example folder holding sweep.yaml (default: the quickstart)",
    )
    parser.add_argument(
        "--method",
        choices=["bayes", "random"],
        default=None,
        help="search method instead of the spec's own (default: the spec's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary sweep folders")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sweepspec-pruning-"))
    spec = yaml.safe_load((args.example / "sweep.yaml").read_text(encoding="utf-8"))
    print(
        f"quickstart: {args.example}; method {args.method or spec.get('method')}; "
        f"{args.trials} trials per sweep; sampler seeds {seeds}"
    )
    print(
        f"{'seed':>4} {'arm':>8} {'complete':>8} {'epochs':>7} {'best val_loss':>13} {'seconds':>8}"
    )
    pairs: list[tuple[Sweep, Sweep]] = []
    try:
        for seed in seeds:
            arms = [
                run_sweep(args.example, seed, pruned, args.trials, work, args.method)
                for pruned in (False, True)
            ]
            for s in arms:
                print(
                    f"{seed:>4} {'pruned' if s.pruned else 'unpruned':>8} "
                    f"{s.n_complete:>8} {s.epochs:>7} {s.best:>13.5f} {s.seconds:>8.1f}"
                )
            pairs.append((arms[0], arms[1]))
    finally:
        if args.keep:
            print(f"sweep folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    epochs_u = sum(u.epochs for u, _ in pairs)
    epochs_p = sum(p.epochs for _, p in pairs)
    ratio = epochs_p / epochs_u
    best_u = statistics.fmean(u.best for u, _ in pairs)
    best_p = statistics.fmean(p.best for _, p in pairs)
    rel = best_p / best_u - 1
    paired = [p.best / u.best - 1 for u, p in pairs]
    se = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else math.nan
    wins = sum(p.best <= u.best for u, p in pairs)
    median = statistics.median(paired)

    print()
    print(
        f"epochs consumed: unpruned {epochs_u}, pruned {epochs_p} "
        f"(ratio {ratio:.3f}, {1 - ratio:.1%} saved; target >= {1 - EPOCHS_TARGET:.0%} saved)"
    )
    print(
        f"wall time: unpruned {sum(u.seconds for u, _ in pairs):.1f} s, "
        f"pruned {sum(p.seconds for _, p in pairs):.1f} s; "
        f"benchmark {time.perf_counter() - started:.0f} s"
    )
    print(
        f"best val_loss, mean over {len(pairs)} seeds: unpruned {best_u:.5f}, pruned "
        f"{best_p:.5f} (relative difference {rel:+.2%}; target <= +{QUALITY_TARGET:.0%})"
    )
    print(
        f"paired per-seed relative difference: median {median:+.2%} "
        f"(target <= +{QUALITY_TARGET:.0%}), mean {statistics.fmean(paired):+.2%} "
        f"+- {se:.2%} (s.e.); pruned as good or better in {wins}/{len(pairs)} seeds"
    )
    if len(pairs) < 2 or se > QUALITY_TARGET:
        told = (
            "one seed gives no standard error"
            if len(pairs) < 2
            else (f"the paired standard error ({se:.2%}) exceeds the {QUALITY_TARGET:.0%} target")
        )
        print(f"note: {told}, so these seeds cannot settle the quality target; use more --seeds")
    met = ratio <= EPOCHS_TARGET and rel <= QUALITY_TARGET and median <= QUALITY_TARGET
    print(
        f"RESULT ratio={ratio:.3f} target<={EPOCHS_TARGET} best_val_loss_diff={rel:+.4f} "
        f"median_diff={median:+.4f} target<=+{QUALITY_TARGET} seeds={len(pairs)} "
        f"{'MET' if met else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
