"""The MLflow layout, read back through MLflow's own API, on a real SQLite store and on a real
``mlflow server`` started here on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweepspec.main import main
from sweepspec.runners.optuna import load_study, open_storage
from sweepspec.runners.sweep import run_sweep
from sweepspec.spec import load
from sweepspec.trackers import Point, TrialRecord
from sweepspec.trackers.mlflow import Backlog, trial_metrics

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
        load(str(path)),
        str(path),
        engine="optuna",
        tracker="mlflow",
        stream=io.StringIO(),
        tty=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: Callable[[Path], str]
) -> Iterator[Logged]:
    """One SQLite store: the layout sweep, run then resumed; a seeded sweep next to it."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = mlflow_store(folder / "mlflow.db")
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
    assert artifacts == {"layout.yaml", "optuna.json", "best_params.json"}
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
    assert sorted((m.step, m.timestamp, m.value) for m in history)[-1][::2] == (3, 0.0)
    assert sorted((m.step, m.value) for m in history) == [
        (0, 1.0),
        (1, 0.5),
        (2, pytest.approx(1 / 3)),
        (3, 0.0),  # the final value, once, at a step of its own
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
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3]


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
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 2.0), (2, 10.0)]


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
        ("acc", 0.9, 101, 2),
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


class Server:
    """A real ``mlflow server`` on 127.0.0.1 over a SQLite file in ``folder``; it can be
    killed, stopped (SIGSTOP: it takes connections and never answers) and started again
    on the same port and store."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.folder / "server.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'server.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            start_new_session=True,
            # a tracking server only: MLflow's job runner (eight more processes, ~25 s of
            # CPU at each start) serves GenAI jobs, which no test uses
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        log.close()
        problem = _wait_healthy(self.url, self.proc, SERVER_START)
        if problem is not None:
            tail = (self.folder / "server.log").read_text(errors="replace")[-500:]
            pytest.fail(f"{problem}; its log ends: {tail}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signum)  # the server and its uvicorn workers

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
        self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a SIGKILL
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path, mlflow_store: Callable[[Path], str]) -> Iterator[Server]:
    served = tmp_path / "server"
    served.mkdir()
    mlflow_store(served / "server.db")
    running = Server(served)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def mlflow_server(server: Server) -> str:
    return server.url


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


# --------------------------------------------------------------------------- best, once


CURVE = """
def objective(trial):
    for step, loss in enumerate([3.0, 2.0, 1.0]):
        trial.report({"loss": loss + trial.params["x"]}, step)
    return {"loss": 0.5 + trial.params["x"]}
"""


def test_each_final_value_is_logged_once_and_the_parent_holds_the_best(
    write_spec: Callable[..., Path],
    sweep_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_store: Callable[[Path], str],
) -> None:
    """Issue 8 item 21: the final value was logged a second time at the last step, and the
    parent run had neither the best parameters nor the best value."""
    uri = mlflow_store(sweep_dir / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (sweep_dir / "curve_trial.py").write_text(CURVE)
    write_spec(
        """
        name: curve
        method: random
        metric: {name: loss, goal: minimize}
        function: curve_trial:objective
        run_cap: 4
        parameters:
          x: {min: 0.0, max: 1.0}
          opt: {values: [adam, sgd]}
        """
    )
    assert main(["run", "sweep.yaml"]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("curve").experiment_id
    runs = client.search_runs([experiment])
    trials = {r.data.tags["sweepspec.trial_number"]: r for r in runs if r.info.run_name != "curve"}
    assert len(trials) == 4
    for run in trials.values():
        x = float(run.data.params["x"])
        history = client.get_metric_history(run.info.run_id, "loss")
        points = sorted((m.step, m.value) for m in history)
        assert points == [(0, 3.0 + x), (1, 2.0 + x), (2, 1.0 + x), (3, 0.5 + x)]
        assert run.data.metrics["loss"] == 0.5 + x
    parent = [r for r in runs if r.info.run_name == "curve"][0]
    best = min(trials.values(), key=lambda r: r.data.metrics["loss"])
    assert parent.data.metrics["best_loss"] == best.data.metrics["loss"]
    assert parent.data.tags["sweepspec.best_trial"] == best.data.tags["sweepspec.trial_number"]
    assert parent.data.tags["sweepspec.best_run_id"] == best.info.run_id
    progress = client.get_metric_history(parent.info.run_id, "best_loss")
    values = [m.value for m in sorted(progress, key=lambda m: m.step)]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    saved = client.download_artifacts(parent.info.run_id, "best_params.json", str(sweep_dir))
    assert json.loads(Path(saved).read_text()) == {
        "x": float(best.data.params["x"]),
        "opt": best.data.params["opt"],
    }


# --------------------------------------------------------------------------- refused values


REFUSED = """
def objective(trial):
    trial.report({"../../x": 1.0, "a" * 100000: 2.0, "loss": 0.5, "nan": float("nan")}, 0)
    trial.report({"late": 1.0}, 10**300)
    return {"loss": 0.25}
"""


def test_values_mlflow_refuses_are_left_out_and_the_run_ends(
    write_spec: Callable[..., Path],
    sweep_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mlflow_store: Callable[[Path], str],
) -> None:
    """Issue 8 item 7: a metric named ``../../x`` or 100k characters long, or a step of
    1e300, left the trial's run RUNNING with nothing in it."""
    uri = mlflow_store(sweep_dir / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (sweep_dir / "refused_trial.py").write_text(REFUSED)
    write_spec(
        """
        name: refused
        method: random
        metric: {name: loss}
        function: refused_trial:objective
        run_cap: 1
        parameters:
          x: {min: 0.0, max: 1.0}
        """
    )
    assert main(["run", "sweep.yaml"]) == 0
    refused = (
        "metric '../../x': Names may be treated as files in certain cases, and must not "
        "resolve to other names when treated as such; metric "
        "'aaaaaaaaaaaaaaaaaaaa...(100000 characters)': 'Metric name' exceeds the maximum "
        "length of 250 characters; metric 'late': step 1e+300 is beyond a 64-bit integer"
    )
    assert (
        "sweepspec: warning: MLflow refused 3 of trial 0's values, which were left out (the "
        f"rest is logged): {refused}"
    ) in capsys.readouterr().err.splitlines()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("refused").experiment_id
    run = client.search_runs([experiment], "tags.`sweepspec.trial_number` = '0'")[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweepspec.refused"] == refused
    metrics = run.data.metrics
    assert sorted(metrics) == ["loss", "nan"] and math.isnan(metrics["nan"])
    assert metrics["loss"] == 0.25
    assert "x" in run.data.params


# --------------------------------------------------------------------------- credentials


SECRET_TRIAL = """
def objective(trial):
    return {"loss": trial.params["x"]}
"""

SECRET_PROGRAM = """
import json, os, sys
args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
print("connecting with", os.environ["WANDB_API_KEY"], args["db"])
print(json.dumps({"loss": float(args["x"])}))
"""


def test_credentials_are_redacted_wherever_they_land(
    server: Server,
    write_spec: Callable[..., Path],
    sweep_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Issue 8 item 9: a tracking URI with a password was printed and uploaded verbatim."""
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    secret_uri = server.url.replace("http://", "http://alice:s3cr3t-pw@")
    (sweep_dir / "secret_program.py").write_text(SECRET_PROGRAM)
    write_spec(
        f"""
        name: secret
        method: random
        metric: {{name: loss}}
        program: secret_program.py
        run_cap: 1
        tracking: {{tracker: mlflow, uri: "{secret_uri}"}}
        parameters:
          x: {{min: 0.0, max: 1.0}}
          db: {{value: "postgresql://bob:hunter2@db.example/x"}}
        """
    )
    assert main(["run", "sweep.yaml"]) == 0
    out, err = capfd.readouterr()
    shown = out + err
    for secret in ("s3cr3t-pw", "hunter2", "0123456789abcdef0123456789abcdef01234567"):
        assert secret not in shown
    assert "connecting with *** postgresql://bob:***@db.example/x" in out.splitlines()
    redacted_uri = server.url.replace("http://", "http://alice:***@")
    assert (
        f"sweepspec: runs are in MLflow, experiment 'secret' at {redacted_uri}; look with: "
        f"mlflow ui --backend-store-uri {redacted_uri}"
    ) in err.splitlines()
    client = MlflowClient(server.url)
    runs = client.search_runs([client.get_experiment_by_name("secret").experiment_id])
    parent = [r for r in runs if r.info.run_name == "secret"][0]
    trial = [r for r in runs if r.info.run_name == "trial-0"][0]
    assert trial.data.params["db"] == "postgresql://bob:***@db.example/x"
    spec = client.download_artifacts(parent.info.run_id, "sweep.yaml", str(sweep_dir / "dl"))
    uploaded = Path(spec).read_text()
    assert f'uri: "{redacted_uri}"' in uploaded and "s3cr3t" not in uploaded
    best = client.download_artifacts(parent.info.run_id, "best_params.json", str(sweep_dir))
    assert "hunter2" not in Path(best).read_text()


def test_a_wrong_password_in_a_storage_url_is_not_shown(
    write_spec: Callable[..., Path], sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 item 9: error messages show no password."""
    (sweep_dir / "secret_trial.py").write_text(SECRET_TRIAL)
    write_spec(
        """
        method: random
        metric: {name: loss}
        function: secret_trial:objective
        tracking: {tracker: none}
        parameters:
          x: {min: 0.0, max: 1.0}
        """
    )
    port = _free_port()
    url = f"postgresql+psycopg://bob:hunter2@127.0.0.1:{port}/x"
    assert main(["run", "sweep.yaml", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert f"cannot connect to the storage postgresql+psycopg://bob:***@127.0.0.1:{port}/x" in err


# --------------------------------------------------------------------------- MLflow goes away


OUTAGE = """
import os, signal, time

def objective(trial):
    if trial.number == int(os.environ["SWEEP_SIGNAL_AT"]):
        time.sleep(1.0)  # the earlier trials reach MLflow first
        os.killpg(int(os.environ["SWEEP_SERVER"]), int(os.environ["SWEEP_SIGNAL"]))
    for step in range(3):
        trial.report({"loss": trial.number + 1.0 / (step + 1)}, step)
    return {"loss": trial.number * 0.1}
"""

OUTAGE_SPEC = """
name: outage
method: random
metric: {name: loss}
function: outage_trial:objective
run_cap: RUN_CAP
parameters:
  x: {min: 0.0, max: 1.0}
"""


def _outage(folder: Path, server: Server, signum: int, at: int, trials: int) -> dict[str, str]:
    (folder / "outage_trial.py").write_text(OUTAGE)
    (folder / "sweep.yaml").write_text(OUTAGE_SPEC.replace("RUN_CAP", str(trials)).lstrip())
    assert server.proc is not None
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.url,
        "SWEEP_SERVER": str(server.proc.pid),
        "SWEEP_SIGNAL": str(int(signum)),
        "SWEEP_SIGNAL_AT": str(at),
    }


def _sweepspec(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _logged_once(server: Server, folder: Path, trials: int, journal: Path | None = None) -> None:
    """Every trial of the journal has exactly one run in MLflow, ended, each point once, all
    under the sweep's one parent run."""
    spec = load(str(folder / "sweep.yaml"))
    journal = journal or folder / ".sweepspec/outage.journal"
    storage, label = open_storage(str(journal), spec, "outage")
    study = load_study(storage, "outage", label)
    assert len(study.trials) == trials
    client = MlflowClient(server.url)
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    parents = [r.info.run_id for r in runs if r.data.tags.get("sweepspec.role") == "sweep"]
    assert len(parents) == 1, parents
    assert {r.data.tags["mlflow.parentRunId"] for r in runs if r.info.run_id not in parents} == set(
        parents
    )
    numbers = sorted(
        int(r.data.tags["sweepspec.trial_number"]) for r in runs if r.info.run_name != "outage"
    )
    assert numbers == list(range(trials))
    for run in runs:
        assert run.info.status == "FINISHED"
        if run.info.run_name == "outage":
            continue
        n = int(run.data.tags["sweepspec.trial_number"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [
            (0, n + 1.0),
            (1, n + 0.5),
            (2, pytest.approx(n + 1 / 3)),
            (3, n * 0.1),
        ]


def test_a_server_that_dies_mid_sweep_gets_everything_later_once(
    server: Server, tmp_path: Path
) -> None:
    """Issue 8 item 3: the server killed mid-sweep made the run hang for minutes; trials
    never reached MLflow, others stayed RUNNING there, and a second run re-sent nothing."""
    folder = tmp_path / "work"
    folder.mkdir()
    env = _outage(folder, server, signal.SIGKILL, at=2, trials=6)
    started = time.monotonic()
    first = _sweepspec(folder, env, "run", "sweep.yaml")
    _, err = first.communicate(timeout=240)
    took = time.monotonic() - started
    assert first.returncode == 0, err
    assert took < 90  # MLflow's own retries: ~4 min per trial
    backlog = folder / ".sweepspec/outage.journal.mlflow-pending.jsonl"
    sweep_id = json.loads(backlog.read_text().splitlines()[0])["sweep"]
    waiting, status = Backlog(str(backlog), sweep_id).read()
    assert status == "FINISHED" and len(waiting) >= 4  # trials 2 to 5 at least
    lines = err.splitlines()
    assert any(
        line.startswith(f"sweepspec: warning: MLflow at {server.url} could not log trial ")
        and line.endswith(
            f"; the sweep goes on, and what MLflow misses is queued in {backlog} for when it "
            "is back"
        )
        for line in lines
    ), err
    assert (
        f"sweepspec: warning: MLflow at {server.url} is behind: {len(waiting)} trials are "
        f"queued in {backlog}; the next 'sweepspec run' of this spec, or 'sweepspec sync', "
        "logs them"
    ) in lines

    server.start()
    # an earlier attempt that made the run and one point, then lost the server (the last
    # trial: the run that logged it left MLflow alone for 30 s after a failure)
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name("outage").experiment_id
    parent = client.search_runs([experiment], "tags.`sweepspec.role` = 'sweep'")[0]
    early = waiting[-1]
    cut = client.create_run(
        experiment,
        start_time=early.start_ms,
        run_name=f"trial-{early.number}",
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "sweepspec.sweep_id": sweep_id,
            "sweepspec.trial_number": str(early.number),
            "sweepspec.state": "COMPLETE",
        },
    )
    point = early.history[0]
    client.log_metric(cut.info.run_id, point.key, point.value, point.timestamp_ms, point.step)

    sync = _sweepspec(folder, env, "sync", "sweep.yaml")
    _, err = sync.communicate(timeout=120)
    assert sync.returncode == 0, err
    assert err.splitlines()[-1] == (
        f"sweepspec: mlflow: logged {len(waiting)} trials that were waiting"
    )
    assert not backlog.exists()
    _logged_once(server, folder, 6)

    again = _sweepspec(folder, env, "run", "sweep.yaml")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "could not log" not in err
    _logged_once(server, folder, 6)  # nothing twice


def test_ctrl_c_works_while_mlflow_hangs_and_the_next_run_catches_up(
    server: Server, tmp_path: Path
) -> None:
    """Issue 8 item 3: with the server hung, Ctrl-C was ignored twice; the next run must
    log what was missed."""
    folder = tmp_path / "work"
    folder.mkdir()
    env = _outage(folder, server, signal.SIGSTOP, at=1, trials=4)
    first = _sweepspec(folder, env, "run", "sweep.yaml")
    assert first.stderr is not None
    seen = []
    for line in first.stderr:
        seen.append(line)
        if line.startswith("trial 3 COMPLETE"):
            break
    time.sleep(0.5)  # in close(), waiting for MLflow
    interrupted = time.monotonic()
    first.send_signal(signal.SIGINT)
    _, rest = first.communicate(timeout=60)
    assert first.returncode == 130, "".join(seen) + rest
    assert time.monotonic() - interrupted < 5
    backlog = folder / ".sweepspec/outage.journal.mlflow-pending.jsonl"
    assert backlog.exists()
    assert rest.splitlines()[-1] == "Aborted."
    assert any(
        line.startswith(f"sweepspec: warning: MLflow at {server.url} is behind: ")
        and line.endswith(
            f"trials are queued in {backlog}; the next 'sweepspec run' of this spec, or "
            "'sweepspec sync', logs them"
        )
        for line in rest.splitlines()
    ), rest

    server.signal(signal.SIGCONT)
    again = _sweepspec(folder, env, "run", "sweep.yaml")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert any(
        line.startswith("sweepspec: MLflow: logging ")
        and line.endswith(f"trials that an earlier run could not log (queued in {backlog})")
        for line in err.splitlines()
    ), err
    assert not backlog.exists()
    _logged_once(server, folder, 4)


def test_an_unreachable_tracking_uri_is_one_line_within_seconds(
    write_spec: Callable[..., Path], sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 item 3: 4 min 10 s of silence, then a traceback-like message."""
    (sweep_dir / "secret_trial.py").write_text(SECRET_TRIAL)
    port = _free_port()
    write_spec(
        f"""
        method: random
        metric: {{name: loss}}
        function: secret_trial:objective
        tracking: {{tracker: mlflow, uri: "http://127.0.0.1:{port}"}}
        parameters:
          x: {{min: 0.0, max: 1.0}}
        """
    )
    import optuna  # noqa: F401  (imported before the clock starts: the time is MLflow's)

    started = time.monotonic()
    assert main(["run", "sweep.yaml"]) == 1
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [
        f"Error: MLflow at http://127.0.0.1:{port} does not answer (Connection refused); "
        "start it, correct tracking.uri or MLFLOW_TRACKING_URI, or run with --tracker none"
    ]


OUTAGE_WORKERS = """
import json, os, signal, socket, time
from pathlib import Path
from urllib.parse import urlsplit

AT = int(os.environ["SWEEP_SIGNAL_AT"])
BARRIER = Path(os.environ["SWEEP_BARRIER"])


def _until(condition, what):
    deadline = time.monotonic() + 240
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited 240 s for {what}")
        time.sleep(0.05)


def _logged(numbers):
    # the tracker marks a trial done in its backlog once MLflow holds it
    done = set()
    with open(os.environ["SWEEP_BACKLOG"], encoding="utf-8") as fh:
        for line in fh:
            try:
                done.add(json.loads(line).get("done"))
            except ValueError:  # a line being written
                pass
    return set(numbers) <= done


def _gone():
    url = urlsplit(os.environ["MLFLOW_TRACKING_URI"])
    try:
        socket.create_connection((url.hostname, url.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        pass
    return False


def objective(trial):
    if trial.number >= AT:
        # each of the four workers is in one of the first four trials from AT on (a worker
        # runs one trial at a time, and none of these ends before four are in), so each has
        # a trial to log once the server is gone
        inside = BARRIER / "outage"
        inside.mkdir(exist_ok=True)
        (inside / str(os.getppid())).touch()
        _until(lambda: len(list(inside.iterdir())) >= 4, "four workers in a trial")
        if trial.number == AT:
            _until(lambda: _logged(range(AT)), f"trials 0 to {AT - 1} in MLflow")
            os.killpg(int(os.environ["SWEEP_SERVER"]), int(os.environ["SWEEP_SIGNAL"]))
            _until(_gone, "the server to refuse connections")
            (BARRIER / "down").touch()
        _until((BARRIER / "down").exists, "the server to go")
    for step in range(3):
        trial.report({"loss": trial.number + 1.0 / (step + 1)}, step)
    return {"loss": trial.number * 0.1}
"""


def test_four_workers_and_an_outage_log_every_trial_once_under_one_parent(
    server: Server, tmp_path: Path
) -> None:
    """Issue 10 item 3: `--workers 4` on one `mlflow server`, which is killed mid-sweep and
    started again later on the same port and store: the next run logs what the four workers
    left waiting, each trial once, under the sweep's one parent run. The trials make it so
    (no timing): trials 0 to 2 are in MLflow before the kill, and the four workers are each
    in a trial from 3 on when it happens, so each leaves trials in the backlog."""
    folder = tmp_path / "work"
    folder.mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    backlog = folder / ".sweepspec/outage.journal.mlflow-pending.jsonl"
    env = {
        **_outage(folder, server, signal.SIGKILL, at=3, trials=12),
        "SWEEP_BARRIER": str(barrier),
        "SWEEP_BACKLOG": str(backlog),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",  # a loaded machine: four workers and the server
    }
    (folder / "outage_trial.py").write_text(OUTAGE_WORKERS)
    first = _sweepspec(folder, env, "run", "sweep.yaml", "--workers", "4")
    _, err = first.communicate(timeout=400)
    assert first.returncode == 0, err
    sweep_id = json.loads(backlog.read_text().splitlines()[0])["sweep"]
    waiting, status = Backlog(str(backlog), sweep_id).read()
    assert status == "FINISHED"
    assert [r.number for r in waiting] == list(range(3, 12)), err
    workers = {json.loads(line).get("by") for line in backlog.read_text().splitlines()}
    inside = {f"{socket.gethostname()}:{p.name}" for p in (barrier / "outage").iterdir()}
    assert len(inside) == 4 and workers - {None} == inside, (workers, inside)  # all four

    server.start()
    again = _sweepspec(folder, env, "run", "sweep.yaml", "--workers", "4")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert (
        f"sweepspec: MLflow: logging {len(waiting)} trials that an earlier run could not log "
        f"(queued in {backlog})"
    ) in err.splitlines()
    assert not backlog.exists()
    _logged_once(server, folder, 12)


MACHINE = """
import os, signal, time
from pathlib import Path

def objective(trial):
    # every run has its tracker up (it runs a trial) before the server goes away
    barrier = Path(os.environ["SWEEP_BARRIER"])
    (barrier / f"worker-{os.getppid()}").touch()
    deadline = time.monotonic() + 240
    while len(list(barrier.glob("worker-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    if trial.number == int(os.environ["SWEEP_SIGNAL_AT"]):
        time.sleep(1.0)  # the earlier trials reach MLflow first
        os.killpg(int(os.environ["SWEEP_SERVER"]), int(os.environ["SWEEP_SIGNAL"]))
    for step in range(3):
        trial.report({"loss": trial.number + 1.0 / (step + 1)}, step)
    return {"loss": trial.number * 0.1}
"""


def test_four_machines_on_one_server_share_one_parent_and_catch_up_once(
    server: Server, tmp_path: Path
) -> None:
    """Issue 10 item 3: four `sweepspec run` processes started together from four folders
    (as on four machines) on one journal (a shared disk) and one `mlflow server`, which is
    killed mid-sweep and started again: one parent run, though each run looked for it at
    the same moment; two `sweepspec sync` at once (two machines catching up) log each
    waiting trial once (the backlog beside the journal is shared: each claims its own)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    journal = shared / "outage.journal"
    machines = [tmp_path / f"machine-{i}" for i in range(4)]
    for machine in machines:
        machine.mkdir()
        env = _outage(machine, server, signal.SIGKILL, at=6, trials=12)
        (machine / "outage_trial.py").write_text(MACHINE)
    # a loaded machine: four runs and the server on two cores
    env = {**env, "SWEEP_BARRIER": str(shared), "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
    args = ["run", "sweep.yaml", "--storage", str(journal)]
    runs = [_sweepspec(machine, env, *args) for machine in machines]
    for proc in runs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
    backlog = Path(f"{journal}.mlflow-pending.jsonl")
    sweep_id = json.loads(backlog.read_text().splitlines()[0])["sweep"]
    waiting, _ = Backlog(str(backlog), sweep_id).read()
    assert waiting

    server.start()
    syncs = [
        _sweepspec(machine, env, "sync", "sweep.yaml", "--storage", str(journal))
        for machine in machines[:2]
    ]
    logged = 0
    for proc in syncs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        logged += int(err.splitlines()[-1].split()[3])  # "...: logged N trials that were..."
    assert logged == len(waiting)
    assert not backlog.exists()
    _logged_once(server, machines[0], 12, journal)
