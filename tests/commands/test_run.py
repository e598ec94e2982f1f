"""``sweepspec run`` (SPEC sections 3 and 6): the command line, Ctrl-C and resume in a real
process, and W&B's distributions sampled as W&B samples them, end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from scipy import stats

from sweepspec.main import main

TRIAL = """
import time

def objective(trial):
    for step in range(5):
        trial.report({"loss": trial.params["x"] + 1.0 / (step + 1)}, step)
        time.sleep(trial.params.get("pause", 0))
    return trial.params["x"]
"""

SPEC = """
method: random
metric: {name: loss}
function: run_trial:objective
run_cap: 4
parameters:
  x: {min: 0.0, max: 1.0}
"""


def _write(folder: Path, spec: str, trial: str = TRIAL, name: str = "sweep.yaml") -> Path:
    (folder / "run_trial.py").write_text(textwrap.dedent(trial).lstrip())
    path = folder / name
    path.write_text(textwrap.dedent(spec).lstrip())
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_wandb_engine_is_refused_for_now(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC)
    assert _run(capsys, "sweep.yaml", "--engine", "wandb") == (
        1,
        "",
        (
            "Error: running on W&B (--engine wandb) is not available yet; run on Optuna "
            "(--engine optuna), or compile the W&B sweep config with 'sweepspec compile --engine "
            "wandb' and run it with 'wandb sweep' / 'wandb agent'\n"
        ),
    )
    assert not (sweep_dir / ".sweepspec").exists()


def test_spec_errors_print_as_validate_prints_them(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC.replace("max: 1.0", "max: -1.0"))
    assert _run(capsys, "sweep.yaml") == (
        1,
        "",
        ("sweep.yaml:6:6: error: parameters.x: 'min < max' must hold, but got min=0.0, max=-1.0\n"),
    )


def test_an_unusable_trial_is_one_line(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(sweep_dir, SPEC.replace("run_trial:objective", "run_trial:nope"))
    code, out, err = _run(capsys, "sweep.yaml", "--tracker", "none")
    assert (code, out) == (1, "")
    assert err == "Error: function 'run_trial:nope': 'run_trial' has no attribute 'nope'\n"


def test_a_run_prints_progress_lines_and_a_summary(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir, SPEC + "early_terminate: {type: hyperband, min_iter: 1, eta: 3, strict: false}\n"
    )
    code, out, err = _run(capsys, "sweep.yaml", "--tracker", "none", "--trials", "2")
    lines = err.splitlines()
    assert code == 0
    assert lines[0] == (
        "sweep.yaml: warning: unsupported on optuna: early_terminate.strict: "
        "W&B's non-strict hyperband compares the best value so far; Optuna "
        "compares the value at the rung"
    )
    assert lines[1] == (
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none)"
    )
    assert lines[2].startswith("trial 0 COMPLETE loss=")
    assert lines[-2] == (
        "sweepspec: stopped: the trial budget is reached: 2 finished trials (--trials: 2)"
    )
    assert re.fullmatch(
        r"sweepspec: 2 finished \([01] stopped early\), 0 failed; best "
        r"loss=[0-9.e-]+ \(trial [01]\); see 'sweepspec results sweep.yaml'",
        lines[-1],
    )


def test_workers_from_the_command_line(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(sweep_dir, SPEC)
    code, _, err = _run(
        capsys, "sweep.yaml", "--tracker", "none", "--workers", "2", "--trials", "3"
    )
    assert code == 0
    assert err.splitlines()[0] == (
        "sweepspec: sweep 'sweep' on optuna (storage "
        ".sweepspec/sweep.journal, tracker none, 2 workers)"
    )
    study = optuna.load_study(
        study_name="sweep",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(".sweepspec/sweep.journal")
        ),
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


# --------------------------------------------------------------------------- Ctrl-C


def _start(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(proc: subprocess.Popen[str], text: str, seconds: float = 60) -> list[str]:
    """stderr lines up to the first that contains ``text``."""
    assert proc.stderr is not None
    lines, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"the run ended before {text!r}: {lines}"
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {seconds} s: {lines}")


def _journal_study(folder: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / ".sweepspec" / "sweep.journal"))
    )
    return optuna.load_study(study_name="sweep", storage=storage)


def test_ctrl_c_exits_130_loses_nothing_and_the_next_run_resumes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _write(
        tmp_path,
        SPEC.replace("run_cap: 4", "run_cap: 5")
        + (f"  pause: {{value: 0.1}}\ntracking: {{tracker: mlflow, uri: '{uri}'}}\n"),
    )
    proc = _start(tmp_path)
    _wait_for(proc, "trial 1 COMPLETE")
    time.sleep(0.2)  # inside trial 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    trials = _journal_study(tmp_path).trials
    states = [t.state.name for t in trials]
    assert err.splitlines()[-3:] == [
        f"sweepspec: interrupted; {states.count('COMPLETE')} finished trials are kept in "
        ".sweepspec/sweep.journal (a trial that was running is recorded as failed); run the same "
        "command again to resume",
        "",
        "Aborted.",
    ]
    assert "RUNNING" not in states and states[:2] == ["COMPLETE", "COMPLETE"]
    assert trials[-1].user_attrs["sweepspec.error"] == "interrupted (Ctrl-C)"
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    logged = {r.data.tags.get("sweepspec.trial_number"): r.info.status for r in runs}
    assert logged == {
        None: "KILLED",
        **{str(t.number): {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[t.state.name] for t in trials},
    }

    again = _start(tmp_path)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert (
        f"sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker "
        f"mlflow); resuming after {len(trials)} trials"
    ) in err.splitlines()
    states = [t.state.name for t in _journal_study(tmp_path).trials]
    assert states.count("COMPLETE") == 5 and "RUNNING" not in states
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert sum("sweepspec.role" in r.data.tags for r in runs) == 1


def test_ctrl_c_stops_a_running_command(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(
        textwrap.dedent("""
        import os, time
        open("pid", "w").write(str(os.getpid()))
        print("loss=1.0", flush=True)
        time.sleep(120)
    """)
    )
    (tmp_path / "sweep.yaml").write_text(
        "method: random\nmetric: {name: loss}\nprogram: slow.py\nrun_cap: 1\n"
        "tracking: {tracker: none}\nparameters:\n  x: {min: 0.0, max: 1.0}\n"
    )
    proc = _start(tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    trial = _journal_study(tmp_path).trials[0]
    assert (trial.state.name, trial.user_attrs["sweepspec.error"]) == (
        "FAIL",
        "interrupted (Ctrl-C)",
    )


# --------------------------------------------------------------------------- W&B distributions


def test_reparametrised_distributions_reach_the_trial_as_wandb_samples_them(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{sweep_dir / 'mlflow.db'}"
    _write(
        sweep_dir,
        f"""
        method: random
        metric: {{name: loss}}
        function: run_trial:objective
        run_cap: 100
        tracking: {{tracker: mlflow, uri: '{uri}'}}
        parameters:
          init: {{distribution: normal, mu: 5.0, sigma: 2.0}}
          nested:
            parameters:
              w: {{distribution: log_normal, mu: 0.0, sigma: 0.5}}
    """,
        trial="""
        def objective(trial):
            return {"loss": trial.params["init"] ** 2, "w_seen": trial.params["nested"]["w"]}
    """,
    )
    assert main(["run", "sweep.yaml"]) == 0
    capsys.readouterr()
    assert main(["results", "sweep.yaml", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    init = [r["params"]["init"] for r in rows]
    w = [r["params"]["nested.w"] for r in rows]
    assert len(rows) == 100
    assert stats.kstest(init, "norm", args=(5.0, 2.0)).pvalue > 1e-3
    assert stats.kstest(w, "lognorm", args=(0.5, 0, 1.0)).pvalue > 1e-3
    assert stats.kstest(init, "uniform").pvalue < 1e-20  # not quantiles
    assert all(r["metrics"]["w_seen"] == r["params"]["nested.w"] for r in rows)
    # Optuna holds the quantile; every tracker and table shows the real value
    study = _journal_study(sweep_dir)
    quantiles = [t.params["init"] for t in study.trials]
    assert init == pytest.approx(list(stats.norm.ppf(quantiles, 5.0, 2.0)))
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("sweep").experiment_id],
        filter_string="tags.`sweepspec.state` = 'COMPLETE'",
        max_results=1000,
    )
    logged = {int(r.data.tags["sweepspec.trial_number"]): r.data.params for r in runs}
    assert logged == {
        r["number"]: {"init": str(r["params"]["init"]), "nested.w": str(r["params"]["nested.w"])}
        for r in rows
    }
