"""``sweepspec decide`` (issue 11 item 6): the choice and its reason in the engine's storage
and as tags on the trial's MLflow run, read back with ``mlflow.search_runs``; ``results``
shows it from every source."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import mlflow
import pytest

from sweepspec.main import main

SPEC = """
name: choose
method: grid
metric: {name: loss}
function: decide_trial:objective
tracking: {tracker: mlflow, uri: URI, experiment: choose-exp}
parameters:
  x: {values: [1, 2, 3]}
"""

TRIAL = """
def objective(trial):
    if trial.params["x"] == 3:
        raise ValueError("x=3 is broken")
    return {"loss": float(trial.params["x"])}
"""


def _run(tmp_path: Path, engine: str) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "decide_trial.py").write_text(textwrap.dedent(TRIAL))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).lstrip().replace("URI", uri))
    assert main(["run", "sweep.yaml", "--engine", engine]) == 0
    return uri


def _number(capsys: pytest.CaptureFixture[str], x: int, state: str = "COMPLETE") -> int:
    main(["results", "sweep.yaml", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    return next(r["number"] for r in rows if r["params"]["x"] == x and r["state"] == state)


@pytest.mark.parametrize("engine", ["optuna", "wandb"])
def test_the_decision_is_a_tag_column_in_search_runs(
    engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = _run(tmp_path, engine)
    capsys.readouterr()
    first, second = _number(capsys, 2), _number(capsys, 1)
    assert main(["decide", "sweep.yaml", "--trial", str(first), "--why", "cheaper"]) == 0
    assert main(["decide", "sweep.yaml", "--trial", str(second), "--why", "lowest loss"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[2].startswith(f"sweepspec: trial {second} is chosen; recorded in ")
    assert err[3].endswith(
        "is tagged sweepspec.decision=chosen (mlflow.search_runs shows tags.sweepspec.decision)"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    frame = mlflow.search_runs(experiment_names=["choose-exp"])
    trials = frame[frame["tags.sweepspec.trial_number"].notna()]
    tagged = {
        int(n): (d, w)
        for n, d, w in zip(
            trials["tags.sweepspec.trial_number"],
            trials["tags.sweepspec.decision"],
            trials["tags.sweepspec.decision_why"],
            strict=True,
        )
        if isinstance(d, str)
    }
    assert tagged == {first: ("superseded", "cheaper"), second: ("chosen", "lowest loss")}
    parent = frame[frame["tags.sweepspec.role"] == "sweep"]
    assert list(parent["tags.sweepspec.decision_trial"]) == [str(second)]
    columns = "number,decision,decision_why"
    shown = []
    for source in ("engine", "mlflow"):
        main(["results", "sweep.yaml", "--from", source, "--format", "csv", "--columns", columns])
        shown.append(capsys.readouterr().out.splitlines())
    assert shown[0] == shown[1]
    assert f"{first},superseded,cheaper" in shown[0]
    assert f"{second},chosen,lowest loss" in shown[0]
    if engine == "optuna":  # and the report's Decision section
        report = tmp_path / "report.html"
        args = ["report", "sweep.yaml", "-o", str(report), "--importance", "mdi"]
        assert main(args) == 0
        assert f"<p>Chosen: trial {second}. Why: lowest loss</p>" in report.read_text()


def test_what_cannot_be_chosen_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "optuna")
    capsys.readouterr()
    failed = _number(capsys, 3, "FAIL")

    def decide(*args: str) -> tuple[int, str]:
        code = main(["decide", "sweep.yaml", *args])
        return code, capsys.readouterr().err

    assert decide("--trial", str(failed), "--why", "x") == (
        1,
        f"Error: --trial {failed}: the trial is FAIL; only a finished (COMPLETE) trial can be "
        "chosen\n",
    )
    assert decide("--trial", "9", "--why", "x") == (
        1,
        "Error: --trial 9: sweep 'choose' in .sweepspec/choose.journal has trials 0 to 2\n",
    )
    assert decide("--trial", "0", "--why", "  ") == (
        1,
        "Error: --why: say why this trial is the one (it is what is recorded)\n",
    )
    assert decide("--config", "lora_r16", "--why", "x") == (
        1,
        "Error: --config 'lora_r16': this sweep has no comparison here; run 'sweepspec compare "
        "sweep.yaml' first, or choose a trial with --trial N\n",
    )
    assert decide("--config", "trial-0", "--trial", "0", "--why", "x") == (
        1,
        "Error: give --trial N or --config NAME, not both\n",
    )


def test_an_unreachable_mlflow_keeps_the_decision_in_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 7: MLflow down: one line that says what was recorded and what was not."""
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "optuna")
    (tmp_path / "mlflow.db").rename(tmp_path / "moved.db")
    capsys.readouterr()
    number = _number(capsys, 1)
    code = main(["decide", "sweep.yaml", "--trial", str(number), "--why", "best"])
    err = capsys.readouterr().err.splitlines()
    assert (code, err[1]) == (
        1,
        "Error: the decision is recorded in the engine's storage, but not in MLflow: no MLflow "
        f"store at {tmp_path / 'mlflow.db'} (tracking.uri, MLFLOW_TRACKING_URI or MLflow's "
        "default): was the sweep run with the mlflow tracker, from this folder? (or run decide "
        "with --tracker none)",
    )
    main(["results", "sweep.yaml", "--format", "json", "--state", "COMPLETE"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r.get("decision"), r.get("decision_why")) for r in rows] == [
        (number, "chosen", "best") if r["number"] == number else (r["number"], None, None)
        for r in rows
    ]


def test_with_the_wandb_tracker_and_no_run_here_the_decision_stays_in_the_engine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "optuna")  # logged to MLflow: no W&B run of it exists here
    number = _number(capsys, 1)
    capsys.readouterr()
    args = ["decide", "sweep.yaml", "--trial", str(number), "--why", "w", "--tracker", "wandb"]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [
        f"sweepspec: W&B: no run of trial {number} under the W&B folder here; the decision "
        "is in the engine's storage ('sweepspec results' shows it)"
    ]
    main(["results", "sweep.yaml", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["decision"]) for r in rows if r.get("decision")] == [(number, "chosen")]


def test_a_configuration_of_the_comparison_is_chosen_as_its_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``decide --config NAME`` after ``compare``: ``trial-N`` and a named configuration with
    a finished trial's parameters are that trial; others are one line each."""
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "optuna")
    (tmp_path / "configs.yaml").write_text("two: {x: 2}\nfive: {x: 5}\n")
    assert main(["compare", "sweep.yaml", "--configs", "configs.yaml", "--seeds", "2"]) == 0
    capsys.readouterr()
    two = _number(capsys, 2)

    def decide(*args: str) -> tuple[int, str]:
        code = main(["decide", "sweep.yaml", "--tracker", "none", *args])
        return code, capsys.readouterr().err

    assert decide("--config", "two", "--why", "same as trial") == (
        0,
        f"sweepspec: trial {two} is chosen; recorded in .sweepspec/choose.journal\n",
    )
    assert decide("--config", "five", "--why", "x") == (
        1,
        "Error: --config 'five': no finished trial of the sweep has its parameters, and a "
        "decision is recorded on a trial; run it as a trial, or choose one with --trial N\n",
    )
    assert decide("--config", "six", "--why", "x") == (
        1,
        "Error: --config 'six': the comparison's configurations are two, five\n",
    )
    main(["results", "sweep.yaml", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["decision"]) for r in rows if r.get("decision")] == [(two, "chosen")]
