"""The MLflow layout, read back through MLflow's own API, on a real SQLite store and on a real
``mlflow server`` started here on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweepspec.main import main
from sweepspec.runners.optuna import load_study, open_storage, run_sweep
from sweepspec.spec import load
from sweepspec.trackers import Point, TrialRecord
from sweepspec.trackers.mlflow import trial_metrics

LAYOUT = """
name: layout
method: random
metric: {name: val_loss}
function: layout_trial:objective
run_cap: 3
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
tracking: {tracker: mlflow, uri: URI, experiment: layout-exp}
parameters:
  x: {min: 0.0, max: 1.0}
  optimizer:
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
      name: {value: adam}
"""

TRIAL = """
def objective(trial):
    if trial.number == 1:
        raise ValueError("bad trial")
    for step in range(3):
        trial.report({"val_loss": trial.number + 1.0 / (step + 1),
                      "lr_seen": trial.params["optimizer"]["lr"]}, step)
        if trial.should_stop():
            return {}
    return {"val_loss": trial.number * 0.1, "test_acc": 0.9}
"""

SEEDED = """
name: seeded
method: random
metric: {name: val_loss}
function: layout_trial:seeded
run_cap: 2
seeds: [0, 1]
tracking: {tracker: mlflow, uri: URI}
parameters:
  x: {min: 0.0, max: 1.0}
"""

SEEDED_TRIAL = """
def seeded(trial):
    for step in range(2):
        trial.report({"val_loss": trial.seed + step}, step)
    return {"val_loss": trial.seed * 10.0}
"""


@dataclass
class Logged:
    folder: Path
    uri: str
    client: MlflowClient
    study: optuna.Study
    spec_path: Path


def _run(folder: Path, text: str, **kwargs: object) -> None:
    path = folder / f"{text.split()[1]}.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    run_sweep(
        load(str(path)), str(path), tracker="mlflow", stream=io.StringIO(), tty=False, **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """One SQLite store: the layout sweep, run then resumed; a seeded sweep next to it."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    (folder / "layout_trial.py").write_text(TRIAL + SEEDED_TRIAL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        _run(folder, LAYOUT.replace("URI", uri))
        _run(folder, LAYOUT.replace("URI", uri), trials=5)
        _run(folder, SEEDED.replace("URI", uri))
        spec = load(str(folder / "layout.yaml"))
        storage, label = open_storage(None, spec, "layout", create=False)
        yield Logged(
            folder,
            uri,
            MlflowClient(uri),
            load_study(storage, "layout", label),
            folder / "layout.yaml",
        )


def _runs(logged: Logged, experiment: str = "layout-exp", **kwargs: object) -> list[Run]:
    with pytest.MonkeyPatch.context() as patch:  # the seed's code: MLFLOW_TRACKING_URI
        patch.setenv("MLFLOW_TRACKING_URI", logged.uri)
        return mlflow.search_runs(experiment_names=[experiment], output_format="list", **kwargs)  # type: ignore[call-overload, no-any-return]


def _trial_runs(logged: Logged, experiment: str = "layout-exp") -> dict[int, Run]:
    return {
        int(r.data.tags["sweepspec.trial_number"]): r
        for r in _runs(logged, experiment)
        if "sweepspec.trial_number" in r.data.tags
    }


def test_one_parent_run_per_sweep_with_spec_and_artifact(logged: Logged) -> None:
    parents = _runs(logged, filter_string="tags.`sweepspec.role` = 'sweep'")
    assert len(parents) == 1  # the resumed run reused it
    parent = parents[0]
    assert (parent.info.run_name, parent.info.status) == ("layout", "FINISHED")
    tags = parent.data.tags
    assert tags["sweepspec.engine"] == "optuna"
    assert tags["sweepspec.spec_hash"] == hashlib.sha256(logged.spec_path.read_bytes()).hexdigest()
    assert tags["sweepspec.sweep_id"] == logged.study.user_attrs["sweepspec.sweep_id"]
    artifacts = {a.path for a in logged.client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"layout.yaml", "optuna.json"}
    local = logged.client.download_artifacts(
        parent.info.run_id, "optuna.json", str(logged.folder / "downloaded")
    )
    artifact = json.loads(Path(local).read_text())
    assert artifact["pruner"]["name"] == "WandbHyperbandPruner"
    assert artifact["distributions"]["optimizer.lr"]["attributes"]["log"] is True


def test_one_nested_run_per_trial_with_state_and_real_params(logged: Logged) -> None:
    parent = _runs(logged, filter_string="tags.`sweepspec.role` = 'sweep'")[0]
    runs = _trial_runs(logged)
    trials = logged.study.get_trials()
    assert sorted(runs) == [t.number for t in trials]
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for trial in trials:
        run = runs[trial.number]
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweepspec.state"] == trial.state.name
        assert run.info.status == status[trial.state.name]
        real = trial.params  # native: Optuna holds the real values
        assert run.data.params == {
            "x": str(real["x"]),
            "optimizer.lr": str(real["optimizer.lr"]),
            "optimizer.name": "adam",
        }
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED", "FAIL"}
    assert runs[1].data.tags["sweepspec.error"] == "ValueError: bad trial"


def test_metrics_per_step_then_final(logged: Logged) -> None:
    runs = _trial_runs(logged)
    complete = runs[0]
    assert complete.data.metrics == {
        "val_loss": 0.0,
        "test_acc": 0.9,
        "lr_seen": pytest.approx(float(complete.data.params["optimizer.lr"])),
    }
    history = logged.client.get_metric_history(complete.info.run_id, "val_loss")
    assert sorted((m.step, m.timestamp, m.value) for m in history)[-1][::2] == (2, 0.0)
    assert sorted((m.step, m.value) for m in history) == [
        (0, 1.0),
        (1, 0.5),
        (2, 0.0),
        (2, pytest.approx(1 / 3)),
    ]
    pruned = [t for t in logged.study.get_trials() if t.state.name == "PRUNED"][0]
    steps = logged.client.get_metric_history(runs[pruned.number].info.run_id, "val_loss")
    reported = pruned.user_attrs["sweepspec.metrics"]["val_loss"]
    assert [m.value for m in sorted(steps, key=lambda m: m.step)][-1] == reported


def test_the_seed_analysis_code_works(logged: Logged) -> None:
    ordered = _runs(
        logged,
        filter_string="tags.`sweepspec.state` = 'COMPLETE'",
        order_by=["metrics.val_loss ASC"],
    )
    values = [r.data.metrics["val_loss"] for r in ordered]
    expected = sorted(t.values[0] for t in logged.study.get_trials() if t.state.name == "COMPLETE")
    assert values == expected
    history = logged.client.get_metric_history(ordered[0].info.run_id, "val_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 2]


def test_search_runs_as_a_dataframe(logged: Logged) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", logged.uri)
        frame = mlflow.search_runs(
            experiment_names=["layout-exp"], order_by=["metrics.val_loss ASC"]
        )
    assert list(frame["metrics.val_loss"].dropna()) == sorted(frame["metrics.val_loss"].dropna())
    assert "params.optimizer.lr" in frame.columns and "metrics.val_loss" in frame.columns


def test_seeds_log_the_aggregate_and_each_seed(logged: Logged) -> None:
    runs = _trial_runs(logged, "seeded")
    assert len(runs) == 2
    metrics = runs[0].data.metrics
    assert metrics == {"val_loss": 5.0, "seed_0/val_loss": 0.0, "seed_1/val_loss": 10.0}
    history = logged.client.get_metric_history(runs[0].info.run_id, "seed_1/val_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 2.0), (1, 10.0)]


def test_final_values_are_logged_only_where_they_differ() -> None:
    record = TrialRecord(
        0,
        {},
        "COMPLETE",
        {"loss": 0.5, "acc": 0.9, "new": 1.0},
        [Point("loss", 1.0, 100, 0), Point("loss", 0.5, 100, 1), Point("acc", 0.8, 100, 1)],
        end_ms=100,
    )
    assert [(m.key, m.value, m.timestamp, m.step) for m in trial_metrics(record)] == [
        ("loss", 1.0, 100, 0),
        ("loss", 0.5, 100, 1),
        ("acc", 0.8, 100, 1),
        ("acc", 0.9, 101, 1),
        ("new", 1.0, 101, 1),
    ]


# --------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Under a loaded machine (the suite on two cores beside other work) the server has taken more
# than a minute to import MLflow and migrate its SQLite store: wait as long as the process is
# alive and starting, up to this bound.
SERVER_START = 300.0


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float) -> str | None:
    """None once the server answers /health, else why it did not: it exited, or it was still
    not answering after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"mlflow server exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
                if answer.status == 200:
                    return None
        except OSError:
            time.sleep(0.5)
    return f"mlflow server did not answer on {url}/health within {seconds:g} s"


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        problem = _wait_healthy(url, proc, SERVER_START)
        if problem is not None:
            tail = (tmp_path / "server.log").read_text(errors="replace")[-500:]
            pytest.fail(f"{problem}; its log ends: {tail}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_logging_to_a_real_mlflow_server(
    mlflow_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    (tmp_path / "layout_trial.py").write_text(TRIAL)
    spec = LAYOUT.replace("tracking: {tracker: mlflow, uri: URI, experiment: layout-exp}\n", "")
    (tmp_path / "served.yaml").write_text(textwrap.dedent(spec).lstrip())
    assert main(["run", "served.yaml", "--trials", "2"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        "sweepspec: sweep 'layout' on optuna (storage .sweepspec/layout.journal, tracker mlflow)"
    )
    client = MlflowClient(mlflow_server)
    runs = client.search_runs(
        [client.get_experiment_by_name("layout").experiment_id], order_by=["metrics.val_loss ASC"]
    )
    states = sorted(r.data.tags.get("sweepspec.state", "sweep") for r in runs)
    assert states[-1] == "sweep" and len(runs) >= 3
    first = [r for r in runs if r.data.tags.get("sweepspec.trial_number") == "0"][0]
    assert first.data.metrics["val_loss"] == 0.0
    assert len(client.get_metric_history(first.info.run_id, "val_loss")) == 4
    assert not os.path.exists(tmp_path / "mlflow.db")  # nothing went to the default store


def test_the_run_says_where_to_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without MLFLOW_TRACKING_URI, MLflow's own default store; the last lines say where."""
    (tmp_path / "where_trial.py").write_text(
        "def objective(trial):\n    return {'val_loss': trial.params['x']}\n"
    )
    spec = tmp_path / "where.yaml"
    spec.write_text(
        "name: where\nmethod: random\nmetric: {name: val_loss}\n"
        "function: where_trial:objective\nrun_cap: 1\n"
        "parameters: {x: {min: 0.0, max: 1.0}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["run", str(spec)]) == 0
    uri = mlflow.get_tracking_uri()
    assert (
        f"sweepspec: runs are in MLflow, experiment 'where' at {uri}; look with: mlflow ui "
        f"--backend-store-uri {uri}\n"
    ) in capsys.readouterr().err
    assert MlflowClient(uri).get_experiment_by_name("where") is not None
