"""``results --from wandb``: the sweep read back from W&B's offline run files (the W&B
tracker's runs) gives the same rows as ``results`` from the engine's storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sweepspec.main import main

from .test_mlflow import TRIAL, _out, _spec


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sweeps logged to W&B offline, on both engines and with seeds; the folder."""
    folder = tmp_path_factory.mktemp("from-wandb")
    (folder / "mlflow_trial.py").write_text(TRIAL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(folder))
        patch.setenv("WANDB_SILENT", "true")
        _spec(folder, "optuna", "unused")
        assert main(["run", "optuna.yaml", "--tracker", "wandb", "--trials", "4"]) == 0
        _spec(folder, "wandb", "unused")
        assert main(["run", "wandb.yaml", "--tracker", "wandb", "--engine", "wandb"]) == 0
        _spec(folder, "seeded", "unused", "seeds: [0, 7]\n")
        assert main(["run", "seeded.yaml", "--tracker", "wandb", "--trials", "3"]) == 0
        yield folder


@pytest.mark.parametrize("name", ["optuna", "wandb", "seeded"])
def test_the_same_rows_as_the_engine(
    offline: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(offline)
    monkeypatch.setenv("WANDB_DIR", str(offline))
    capsys.readouterr()
    for fmt in ("json", "csv"):
        engine = _out(capsys, f"{name}.yaml", "--format", fmt)
        tracker = _out(capsys, f"{name}.yaml", "--format", fmt, "--from", "wandb")
        assert engine[0] == 0
        assert engine == tracker
    assert all(s in engine[1] for s in ("COMPLETE", "FAIL"))


def test_no_runs_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    _spec(tmp_path, "none", "unused")
    assert _out(capsys, "none.yaml", "--from", "wandb") == (
        1,
        "",
        "Error: no W&B runs in wandb ($WANDB_DIR/wandb, else ./wandb): was the sweep run with "
        "the wandb tracker, from this folder?\n",
    )
