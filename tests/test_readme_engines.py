"""README.md, "One spec, both engines": the same spec on both engines gives the same results
columns and states, with the same meaning, and the same MLflow layout (issue 9 item 7).

The README's own commands run as written (``sweepspec`` through ``sweepspec.main.main``), in a
copy of the example folder, with ``--trials 3`` added to ``run``; MLflow logs to a SQLite
store in the test's folder.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from sweepspec.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADING = "## One spec, both engines\n"


def _section() -> str:
    section = README[README.index(HEADING) :]
    following = section.find("\n## ", len(HEADING))
    return section if following == -1 else section[: following + 1]


def _commands() -> list[list[str]]:
    block = re.search(r"```sh\n(.*?)```", _section(), re.S)
    assert block is not None
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert all(line.startswith("sweepspec ") for line in lines if line)
    return [shlex.split(line)[1:] for line in lines if line]


def _csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


Names = tuple[str, ...]


def _layout(client: MlflowClient, run_id: str) -> tuple[Names, Names, Names]:
    """The names of a run's tags, params and metrics."""
    data = client.get_run(run_id).data
    return tuple(sorted(data.tags)), tuple(sorted(data.params)), tuple(sorted(data.metrics))


def test_the_readme_shows_the_example_spec() -> None:
    block = re.search(r"```yaml\n(.*?)```", _section(), re.S)
    assert block is not None
    example = (ROOT / "examples" / "smooth" / "sweep.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(block.group(1)) == yaml.safe_load(example)


def test_the_readme_spec_gives_the_same_results_and_mlflow_layout_on_both_engines(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mlflow_store: Callable[[Path], str],
) -> None:
    shutil.copytree(
        ROOT / "examples" / "smooth",
        tmp_path / "examples" / "smooth",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.chdir(tmp_path)
    uri = mlflow_store(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    tables: dict[str, tuple[list[str], list[dict[str, str]]]] = {}
    engine = None
    for args in _commands():
        if args[0] == "run":
            engine = args[args.index("--engine") + 1]
            args = [*args, "--trials", "3"]
        capsys.readouterr()
        assert main(args) == 0, capsys.readouterr().err
        if args[0] == "results":
            assert engine is not None and "--format" in args and "csv" in args
            tables[engine] = _csv(capsys.readouterr().out)

    assert sorted(tables) == ["optuna", "wandb"]
    (o_header, o_rows), (w_header, w_rows) = tables["optuna"], tables["wandb"]
    assert (
        o_header
        == w_header
        == [
            "number",
            "state",
            "params.x1",
            "params.x2",
            "metrics.loss",
            "duration",
        ]
    )
    assert [r["state"] for r in o_rows] == [r["state"] for r in w_rows] == ["COMPLETE"] * 3

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("smooth-branin")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.data.tags["sweepspec.engine"]: r for r in runs if "sweepspec.role" in r.data.tags}
    assert sorted(parents) == ["optuna", "wandb"]
    layouts = {}
    for name, parent in parents.items():
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert artifacts == {"best_params.json", "sweep.yaml", f"{name}.json"}
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 3
        child_layouts = {_layout(client, r.info.run_id) for r in children}
        assert len(child_layouts) == 1
        layouts[name] = (_layout(client, parent.info.run_id), child_layouts.pop())
    assert layouts["optuna"] == layouts["wandb"]
    (_, _, parent_metrics), (_, child_params, child_metrics) = layouts["wandb"]
    assert (parent_metrics, child_params, child_metrics) == (
        ("best_loss",),
        ("x1", "x2"),
        ("loss",),
    )


CURVE = """
def objective(trial):
    x = trial.params["x"]
    for step in range(1, 10):
        loss = x + 1 / step
        trial.report({"loss": loss}, step=step)
        if trial.should_stop():
            break
    return {"loss": loss}
"""


def test_stopped_trials_are_pruned_with_the_same_meaning_on_both_engines(
    write_spec: Callable[..., Path], sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hyperband on a grid: W&B's engine tries x = 0, 1, ... in order, Optuna's (seeded) in a
    shuffled order; a trial stopped early is PRUNED on both, its metrics the last values it
    reported."""
    write_spec(CURVE, "curve.py")
    write_spec(
        """
        name: curve
        method: grid
        metric: {name: loss, goal: minimize}
        function: curve:objective
        parameters:
          x: {values: [0, 1, 2, 3, 4, 5]}
        early_terminate: {type: hyperband, min_iter: 1, eta: 3}
        optuna: {sampler: {name: grid, options: {seed: 0}}}
        """
    )
    tables = {}
    for engine in ("optuna", "wandb"):
        assert main(["run", "sweep.yaml", "--engine", engine, "--tracker", "none"]) == 0
        capsys.readouterr()
        assert main(["results", "sweep.yaml", "--format", "csv"]) == 0
        tables[engine] = _csv(capsys.readouterr().out)

    (o_header, o_rows), (w_header, w_rows) = tables["optuna"], tables["wandb"]
    assert (
        o_header
        == w_header
        == [
            "number",
            "state",
            "params.x",
            "metrics.loss",
            "duration",
        ]
    )
    assert {r["state"] for r in o_rows} == {r["state"] for r in w_rows} == {"COMPLETE", "PRUNED"}
    assert [r["params.x"] for r in w_rows] == ["0", "1", "2", "3", "4", "5"]
    assert sorted(r["params.x"] for r in o_rows) == ["0", "1", "2", "3", "4", "5"]
    # a trial stopped at its k-th report has x + 1/k as its loss, on either engine
    for row in o_rows + w_rows:
        x, loss = int(row["params.x"]), float(row["metrics.loss"])
        steps = round(1 / (loss - x))
        assert loss == x + 1 / steps
        assert (steps == 9) == (row["state"] == "COMPLETE")
