"""Why early termination works on the quickstart: its search space, and how early epochs predict.

Measured: the quickstart sweep (examples/quickstart) without its ``early_terminate``, run by
``sweepspec run`` with random search (seed pinned) for ``--trials`` configurations on
``--workers`` processes, every trial trained to the end and logged to MLflow (a SQLite store in
a temporary folder). Then, from ``sweepspec results --format json`` and the learning curves
read back with MLflow's own ``search_runs`` and ``get_metric_history``:

* for each hyperband rung of the spec (``min_iter * eta**k`` below the last epoch), the Spearman
  rank correlation between a trial's val_loss at that epoch and its final result (the lowest
  val_loss of its epochs, which is what train.py returns): near 1, stopping by rank at that
  rung keeps the configurations that end best;
* the final result by parameter: per value of a categorical parameter, per band of a
  log-uniform one (median and lowest val_loss), then over all configurations.

These are the figures behind the search-space table in examples/quickstart/README.md.

Run:  /work/venv/bin/python benchmarks/quickstart_landscape.py [--trials 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import yaml
from _cli import EXAMPLE, copy_example, sweepspec
from scipy.stats import spearmanr

from sweepspec.compiler.optuna import wandb_bands
from sweepspec.spec import load


def learning_curves(uri: str, experiment: str, metric: str) -> dict[int, dict[int, float]]:
    """Trial number -> {epoch: value}, as MLflow holds them (one nested run per trial)."""
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        output_format="list",
        filter_string="tags.`sweepspec.trial_number` != ''",
    )
    return {
        int(run.data.tags["sweepspec.trial_number"]): {
            m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)
        }
        for run in runs
    }


def bands(low: float, high: float, count: int) -> list[tuple[float, float]]:
    """``count`` bands of equal width on a log scale from ``low`` to ``high``."""
    a, b = math.log10(low), math.log10(high)
    return list(itertools.pairwise(10 ** (a + (b - a) * i / count) for i in range(count + 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300, help="configurations (default: 300)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=1, help="random sampler seed (default: 1)")
    parser.add_argument(
        "--bands", type=int, default=6, help="bands per log-uniform parameter (default: 6)"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sweepspec-landscape-"))
    try:
        folder = work / "quickstart"
        spec_path = copy_example(EXAMPLE, folder)
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        stop = load(str(spec_path)).early_terminate
        spec.pop("early_terminate")
        spec["method"] = "random"
        spec["optuna"] = {"sampler": {"name": "random", "options": {"seed": args.seed}}}

        uri = f"sqlite:///{folder / 'mlflow.db'}"
        spec["tracking"] = {"tracker": "mlflow", "uri": uri}
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

        started = time.perf_counter()
        sweepspec(
            "run",
            "sweep.yaml",
            "--trials",
            str(args.trials),
            "--workers",
            str(args.workers),
            cwd=folder,
        )
        seconds = time.perf_counter() - started
        rows = json.loads(sweepspec("results", "sweep.yaml", "--format", "json", cwd=folder))
        curves = learning_curves(uri, spec["name"], spec["metric"]["name"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    done = [r for r in rows if r["state"] == "COMPLETE"]
    final = [r["metrics"]["val_loss"] for r in done]
    epochs = int(done[0]["metrics"]["epochs"])
    print(
        f"quickstart: {EXAMPLE}; {len(done)} of {len(rows)} random configurations trained "
        f"to the end ({epochs} epochs) in {seconds:.0f} s on {args.workers} workers"
    )
    for rung in (band for band in wandb_bands(stop) if band < epochs):
        at_rung = [curves[r["number"]][rung] for r in done]
        rho = float(spearmanr(at_rung, final).statistic)
        print(f"rung at epoch {rung:>2}: Spearman(val_loss at the rung, final result) = {rho:.3f}")

    print(f"{'parameter':>15} {'value or band':>22} {'n':>4} {'median':>8} {'lowest':>8}")
    for name, cfg in spec["parameters"].items():
        seen = [r["params"][name] for r in done]
        if "values" in cfg:
            groups = [
                (f"{v}", [f for s, f in zip(seen, final, strict=True) if s == v])
                for v in cfg["values"]
            ]
        else:
            groups = [
                (
                    f"{a:.2g} to {b:.2g}",
                    [f for s, f in zip(seen, final, strict=True) if a <= s <= b],
                )
                for a, b in bands(cfg.get("min", min(seen)), cfg.get("max", max(seen)), args.bands)
            ]
        for label, values in groups:
            if values:
                print(
                    f"{name:>15} {label:>22} {len(values):>4} "
                    f"{statistics.median(values):>8.3f} {min(values):>8.4f}"
                )
    print(
        f"{'all':>15} {'':>22} {len(final):>4} {statistics.median(final):>8.3f} {min(final):>8.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
