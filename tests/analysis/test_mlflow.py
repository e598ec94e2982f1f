"""``results --from mlflow``: the sweep read back through MLflow's search API, on a real
SQLite store, gives the same rows as ``results`` from the engine's storage (issue 11 item 1)."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sweepspec.main import main

TRIAL = """
def objective(trial):
    if trial.number == 2:
        raise ValueError("trial 2 is broken")
    for step in range(4):
        trial.report({"val_loss": trial.params["opt"]["lr"] * (4 - step) + trial.seed,
                      "tokens": 512 * (step + 1)}, step)
        if trial.should_stop():
            return {"stopped_at": step}
    return {"val_loss": trial.params["opt"]["lr"] + trial.seed, "cost_usd": 0.25,
            "peak": float("inf")}
"""

SPEC = """
name: NAME
method: random
metric: {name: val_loss}
function: mlflow_trial:objective
run_cap: 6
budget: {cost: {metric: cost_usd, max: 100}}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
tracking: {tracker: mlflow, uri: URI, experiment: EXPERIMENT}
parameters:
  layers: {values: [1, 2, 3]}
  act: {values: [relu, gelu]}
  flag: {values: [true, false]}
  opt:
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0}
      name: {value: adam}
"""


def _spec(folder: Path, name: str, uri: str, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    text = SPEC.replace("NAME", name).replace("URI", uri).replace("EXPERIMENT", f"exp-{name}")
    path.write_text(textwrap.dedent(text).lstrip() + extra)
    return path


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: Callable[[Path], str]
) -> Iterator[Path]:
    """One SQLite MLflow store with four sweeps: Optuna, the W&B engine, seeds, and one
    resumed; the folder they ran from."""
    folder = tmp_path_factory.mktemp("from-mlflow")
    uri = mlflow_store(folder / "mlflow.db")
    (folder / "mlflow_trial.py").write_text(TRIAL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        _spec(folder, "optuna", uri)
        assert main(["run", "optuna.yaml", "--trials", "4"]) == 0
        assert main(["run", "optuna.yaml"]) == 0  # resumed: the same parent run
        _spec(folder, "wandb", uri)
        assert main(["run", "wandb.yaml", "--engine", "wandb"]) == 0
        _spec(folder, "seeded", uri, "seeds: [0, 7]\n")
        assert main(["run", "seeded.yaml"]) == 0
        _spec(folder, "partial", uri)
        assert main(["run", "partial.yaml", "--trials", "1"]) == 0
        assert main(["run", "partial.yaml", "--trials", "2", "--tracker", "none"]) == 0
        yield folder


def _out(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["results", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["optuna", "wandb", "seeded"])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_same_rows_as_the_engine(
    store: Path,
    name: str,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(store)
    capsys.readouterr()
    engine = _out(capsys, f"{name}.yaml", "--format", fmt)
    tracker = _out(capsys, f"{name}.yaml", "--format", fmt, "--from", "mlflow")
    assert engine[0] == tracker[0] == 0
    assert engine == tracker
    assert all(s in engine[1] for s in ("COMPLETE", "FAIL"))


def test_the_sweep_is_found_without_the_engine_state(
    store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sweep run elsewhere: only the spec and the MLflow store are here."""
    monkeypatch.chdir(store)
    capsys.readouterr()
    engine = _out(capsys, "optuna.yaml", "--format", "csv")
    (tmp_path / "optuna.yaml").write_text((store / "optuna.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert _out(capsys, "optuna.yaml", "--format", "csv", "--from", "mlflow") == engine


def test_trials_mlflow_does_not_hold_are_named(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 7: a partial result says what is missing (here: a trial run with --tracker none)."""
    monkeypatch.chdir(store)
    capsys.readouterr()
    code, out, err = _out(capsys, "partial.yaml", "--from", "mlflow", "--format", "csv")
    assert (code, [line.split(",")[0] for line in out.splitlines()]) == (0, ["number", "0"])
    assert err == (
        "sweepspec: MLflow holds 1 of the 2 trials in the engine's storage; not there: 1 "
        "(running, or not logged yet: the engine's storage has them, 'sweepspec results' "
        "without --from shows them)\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_or_missing_store_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    port = _free_port()
    _spec(tmp_path, "down", f"http://127.0.0.1:{port}")
    assert _out(capsys, "down.yaml", "--from", "mlflow") == (
        1,
        "",
        f"Error: MLflow at http://127.0.0.1:{port} does not answer (Connection refused); "
        "start it, or correct tracking.uri or MLFLOW_TRACKING_URI\n",
    )
    _spec(tmp_path, "nostore", "sqlite:///nothing.db")
    assert _out(capsys, "nostore.yaml", "--from", "mlflow") == (
        1,
        "",
        f"Error: no MLflow store at {tmp_path / 'nothing.db'} (tracking.uri, "
        "MLFLOW_TRACKING_URI or MLflow's default): was the sweep run with the mlflow tracker, "
        "from this folder?\n",
    )
    assert not (tmp_path / "nothing.db").exists()
