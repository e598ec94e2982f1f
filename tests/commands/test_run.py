"""``sweepspec run`` (SPEC sections 3 and 6): the command line, Ctrl-C and resume in a real
process, and W&B's distributions sampled as W&B samples them, end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import pytest
from scipy import stats

from sweepspec.main import main
from sweepspec.runners.base import EngineOptions, open_engine
from sweepspec.runners.sweep import WORKERS_PER_CPU, bound_workers, make_budget
from sweepspec.spec import load

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
        sweep_dir,
        SPEC
        + "early_terminate: {type: hyperband, min_iter: 1, eta: 3, strict: false, brackets: 2}\n",
    )
    code, out, err = _run(capsys, "sweep.yaml", "--tracker", "none", "--trials", "2")
    lines = err.splitlines()
    assert code == 0
    assert lines[0] == (
        "sweep.yaml: warning: unsupported on optuna: early_terminate.strict: "
        "W&B's non-strict hyperband compares the best value so far; Optuna's "
        "HyperbandPruner compares the value at the rung"
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


def test_ctrl_c_exits_130_loses_nothing_and_the_next_run_resumes(
    tmp_path: Path, mlflow_store: Callable[[Path], str]
) -> None:
    uri = mlflow_store(tmp_path / "mlflow.db")
    _write(
        tmp_path,
        SPEC.replace("run_cap: 4", "run_cap: 5")
        + (f"  pause: {{value: 1.5}}\ntracking: {{tracker: mlflow, uri: '{uri}'}}\n"),
    )
    proc = _start(tmp_path)
    _wait_for(proc, "trial 1 COMPLETE")
    time.sleep(0.2)  # inside trial 2 (1.5 s long: on a loaded machine the line comes late)
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
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], mlflow_store: Callable[[Path], str]
) -> None:
    uri = mlflow_store(sweep_dir / "mlflow.db")
    _write(
        sweep_dir,
        f"""
        method: random
        metric: {{name: loss}}
        function: run_trial:objective
        run_cap: 100
        tracking: {{tracker: mlflow, uri: '{uri}'}}
        optuna: {{sampler: {{name: random, options: {{seed: 0}}}}}}  # the tests below: one draw
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


# ------------------------------------------------------------------- SIGTERM, SIGHUP, SIGKILL

# each trial process writes its pid to pid-<trial number>, then sleeps as the file 'pause' says
PID_TRIAL = """
import os, time

def objective(trial):
    with open(f"pid-{trial.number}", "w") as fh:
        fh.write(str(os.getpid()))
    for step in range(5):
        trial.report({"loss": trial.params["x"]}, step)
        time.sleep(float(open("pause").read()))
    return trial.params["x"]
"""

PID_PROGRAM = """
import os, time
with open(f"pid-{os.environ['SWEEPSPEC_TRIAL']}", "w") as fh:
    fh.write(str(os.getpid()))
for step in range(5):
    print(f"loss=0.5 step={step}", flush=True)
    time.sleep(float(open("pause").read()))
"""


def _pid_sweep(folder: Path, kind: str, pause: float, run_cap: int = 4) -> None:
    trial = "function: run_trial:objective\n" if kind == "function" else "program: prog.py\n"
    _write(
        folder,
        f"method: random\nmetric: {{name: loss}}\n{trial}run_cap: {run_cap}\n"
        "tracking: {tracker: none}\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
        trial=PID_TRIAL,
    )
    (folder / "prog.py").write_text(PID_PROGRAM)
    (folder / "pause").write_text(str(pause))


def _pids(folder: Path, count: int, proc: subprocess.Popen[str]) -> list[int]:
    """The pids of the first ``count`` trial processes, once each has written its own."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        files = sorted(folder.glob("pid-*"))
        if len(files) >= count and all(f.read_text() for f in files):
            return [int(f.read_text()) for f in files]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} trial processes started")


def _gone(pid: int, seconds: float = 20) -> bool:
    """The process ended (a zombie waiting for init counts as ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _spawn(folder: Path, *args: str) -> subprocess.Popen[str]:
    """``sweepspec run`` as a terminal or a scheduler starts it: a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    "kind, sig, code, workers",
    [
        ("function", signal.SIGTERM, 143, "1"),
        ("command", signal.SIGHUP, 129, "1"),
        ("command", signal.SIGTERM, 143, "2"),
        ("function", signal.SIGHUP, 129, "2"),
    ],
)
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(
    tmp_path: Path, kind: str, sig: signal.Signals, code: int, workers: str
) -> None:
    _pid_sweep(tmp_path, kind, pause=30)
    proc = _spawn(tmp_path, "--workers", workers)
    pids = _pids(tmp_path, int(workers), proc)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err
    assert all(_gone(pid) for pid in pids)
    trials = _journal_study(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL"] * int(workers)
    assert {t.user_attrs["sweepspec.error"] for t in trials} == {f"interrupted ({sig.name})"}
    assert (
        f"sweepspec: interrupted by {sig.name}; 0 finished trials are kept in "
        ".sweepspec/sweep.journal (a trial that was running is recorded as failed); run the "
        "same command again to resume"
    ) in err.splitlines()


def test_a_run_under_nohup_ignores_sighup(tmp_path: Path) -> None:
    _pid_sweep(tmp_path, "function", pause=0.2, run_cap=2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    _pids(tmp_path, 1, proc)
    os.killpg(proc.pid, signal.SIGHUP)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert [t.state.name for t in _journal_study(tmp_path).trials] == ["COMPLETE"] * 2


@pytest.mark.parametrize("kind, workers", [("function", "1"), ("command", "1"), ("command", "2")])
def test_sigkill_leaves_no_trial_process_and_the_next_run_fails_its_trials(
    tmp_path: Path, kind: str, workers: str
) -> None:
    _pid_sweep(tmp_path, kind, pause=30, run_cap=2)
    proc = _spawn(tmp_path, "--workers", workers)
    pids = _pids(tmp_path, int(workers), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert all(_gone(pid) for pid in pids)
    if workers == "2":  # the workers outlive the supervisor only to record their trials
        deadline = time.monotonic() + 60
        while any(t.state.name == "RUNNING" for t in _journal_study(tmp_path).trials):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for pid_file in tmp_path.glob("pid-*"):
        pid_file.unlink()
    _pid_sweep(tmp_path, kind, pause=0, run_cap=2)
    again = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    trials = _journal_study(tmp_path).trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.state.name for t in trials].count("COMPLETE") == 2
    assert len(failed) == int(workers)
    if workers == "1":
        assert (
            "sweepspec: trial 0 was left RUNNING by a worker that is gone; marked FAIL"
            in again.stderr.splitlines()
        )
        assert failed[0].user_attrs["sweepspec.error"] == (
            f"its worker (pid {proc.pid} on {socket.gethostname()}) ended while the trial ran: "
            "it was killed, or stopped by an error (a full disk)"
        )
    else:
        assert {t.user_attrs["sweepspec.error"] for t in failed} == {"interrupted (SIGTERM)"}


# --------------------------------------------------------------------------- function trials


def _run_none(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code, out, err = _run(capsys, "sweep.yaml", "--tracker", "none", *args)
    return code, err.splitlines()


def test_a_crashing_function_fails_its_trial_and_the_sweep_goes_on(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir,
        SPEC,
        trial="""
        import ctypes, faulthandler, os

        def objective(trial):
            trial.report({"loss": 1.0}, 0)
            if trial.number == 0:
                faulthandler.disable()  # pytest's: no traceback on stderr
                ctypes.string_at(0)
            if trial.number == 1:
                os._exit(0)
            return trial.params["x"]
        """,
    )
    code, lines = _run_none(capsys)
    assert code == 0
    assert lines[1] == (
        "trial 0 FAIL: the trial's process was killed by SIGSEGV before the function "
        "returned | 0/4 finished, 0 stopped early, 1 failed"
    )
    assert lines[2] == (
        "trial 1 FAIL: the trial's process exited with code 0 before the function returned"
        " | 0/4 finished, 0 stopped early, 2 failed"
    )
    states = [t.state.name for t in _journal_study(sweep_dir).trials]
    assert states == ["FAIL", "FAIL"] + ["COMPLETE"] * 4


def test_trial_timeout_is_enforced_for_functions(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir,
        SPEC.replace("run_cap: 4", "run_cap: 2") + "budget: {trial_timeout: 1}\n",
        trial="""
        import time

        def objective(trial):
            if trial.number == 0:
                time.sleep(600)  # never asks should_stop()
            return trial.params["x"]
        """,
    )
    started = time.monotonic()
    code, lines = run = _run_none(capsys)
    assert code == 0, run
    assert time.monotonic() - started < 60
    assert lines[1] == (
        "trial 0 FAIL: the trial ran past budget.trial_timeout (1s) and was stopped | 0/2 "
        "finished, 0 stopped early, 1 failed"
    )
    assert [t.state.name for t in _journal_study(sweep_dir).trials] == [
        "FAIL",
        "COMPLETE",
        "COMPLETE",
    ]


def test_base_exceptions_and_sys_exit_fail_the_trial_not_the_sweep(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir,
        SPEC.replace("run_cap: 4", "run_cap: 1"),
        trial="""
        import sys

        class Halt(BaseException):
            pass

        def objective(trial):
            if trial.number == 0:
                raise Halt("stop here")
            if trial.number == 1:
                raise GeneratorExit
            if trial.number == 2:
                sys.exit(0)
            return trial.params["x"]
        """,
    )
    code, lines = _run_none(capsys)
    assert code == 0
    assert [line.split(" | ")[0] for line in lines[1:4]] == [
        "trial 0 FAIL: Halt: stop here",
        "trial 1 FAIL: GeneratorExit",
        "trial 2 FAIL: the trial function called sys.exit(0) instead of returning its metrics",
    ]
    assert lines[4].startswith("trial 3 COMPLETE loss=")


def test_a_function_that_always_exits_0_ends_the_run_with_an_error(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC, trial="import sys\n\ndef objective(trial):\n    sys.exit(0)\n")
    code, lines = _run_none(capsys)
    assert code == 1
    assert lines[-1] == (
        "Error: 5 trials failed in a row (budget.max_consecutive_failures: 5); the last one, "
        "trial 4, failed with: the trial function called sys.exit(0) instead of returning its "
        "metrics"
    )


def test_argparse_at_import_reads_a_clean_argv_and_sys_exit_at_import_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = """
        import argparse, sys
        ARGS = argparse.ArgumentParser().parse_args()
        ARGV = sys.argv

        def objective(trial):
            return {"loss": trial.params["x"], "argv": len(ARGV) + len(sys.argv)}
        """
    _write(sweep_dir, SPEC.replace("run_cap: 4", "run_cap: 1"), trial=trial)
    code, lines = _run_none(capsys)
    assert code == 0, lines
    assert _journal_study(sweep_dir).trials[0].user_attrs["sweepspec.metrics"]["argv"] == 2
    _write(sweep_dir, SPEC.replace("run_trial:", "exits_at_import:"))
    (sweep_dir / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    code, lines = _run_none(capsys)
    assert (code, lines) == (
        1,
        [
            "Error: function 'exits_at_import:objective': importing 'exits_at_import' called "
            "sys.exit(0), "
            "so there is no function to run; put the module's own run under "
            "'if __name__ == \"__main__\":'"
        ],
    )


def test_a_function_that_takes_neither_the_trial_nor_nothing_is_refused_before_any_trial(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC, trial="def objective(a, b):\n    pass\n")
    code, lines = _run_none(capsys)
    assert (code, lines) == (
        1,
        [
            "Error: function 'run_trial:objective' cannot be called with the trial nor with "
            "no argument (its signature is objective(a, b)): write 'def objective(trial):' "
            "and read the parameters from trial.params, or 'def objective():' reading "
            "wandb.config as for wandb.agent"
        ],
    )
    assert not (sweep_dir / ".sweepspec").exists()


# --------------------------------------------------------------------------- what the trial reports


def test_a_metric_never_reported_stops_after_the_first_trial(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir,
        SPEC.replace("name: loss", "name: val_los"),
        trial="def objective(trial):\n    trial.report({'val_loss': 0.3, 'acc': 0.9}, 0)\n",
    )
    code, lines = _run_none(capsys)
    assert code == 1
    assert lines[-1] == (
        "Error: trial 0 never reported 'val_los', the spec's metric; it reported 'acc', "
        "'val_loss'; did you mean 'val_loss'? Stopped after this trial: fix metric.name in "
        "the spec, or what the trial reports"
    )
    assert len(_journal_study(sweep_dir).trials) == 1


def test_early_termination_on_a_metric_reported_once_warns_once(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        sweep_dir,
        SPEC + "early_terminate: {type: hyperband, min_iter: 1, eta: 3}\n",
        trial="def objective(trial):\n    return {'loss': trial.params['x']}\n",
    )
    code, lines = _run_none(capsys)
    assert code == 0
    warning = (
        "sweepspec: warning: early_terminate is set, but trial 0 reported 'loss' only at the "
        "end, so stopping early had nothing to act on; report it at each step "
        "(trial.report({'loss': ...}, step), or a metric line per step from a command)"
    )
    assert [line for line in lines if "warning" in line] == [warning]


# --------------------------------------------------------------------------- --workers


def test_workers_are_bounded_by_the_trials_left_and_the_machine(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC)
    code, lines = _run_none(capsys, "--workers", "16", "--trials", "2")
    assert code == 0
    assert lines[:2] == [
        "sweepspec: 16 workers asked, 2 started (2 trials left in the budget)",
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none, "
        "2 workers)",
    ]


def test_workers_100000_through_the_cli_start_at_most_4_per_cpu(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.10: `--workers 100000` started processes until the machine stalled. Each
    trial records its worker (the process it was forked from): no more than 4 per CPU ran."""
    cpus = os.cpu_count() or 1
    trials = cpus * WORKERS_PER_CPU + 4  # more than the machine's cap: the cap is what binds
    _write(
        sweep_dir,
        SPEC,
        trial="""
        import os, time

        def objective(trial):
            time.sleep(0.2)
            return {"loss": trial.params["x"], "worker": os.getppid()}
        """,
    )
    code, lines = _run_none(capsys, "--workers", "100000", "--trials", str(trials))
    assert code == 0, lines
    assert lines[:2] == [
        f"sweepspec: 100000 workers asked, {cpus * 4} started (at most 4 per CPU, {cpus} CPUs)",
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none, "
        f"{cpus * 4} workers)",
    ]
    done = _journal_study(sweep_dir).trials
    assert [t.state.name for t in done] == ["COMPLETE"] * trials
    workers = {t.user_attrs["sweepspec.metrics"]["worker"] for t in done}
    assert 1 < len(workers) <= cpus * WORKERS_PER_CPU


def test_workers_are_capped_by_the_machine(sweep_dir: Path) -> None:
    _write(sweep_dir, SPEC)
    spec = load(str(sweep_dir / "sweep.yaml"))
    engine = open_engine("optuna", spec, "sweep.yaml", EngineOptions())
    budget = make_budget(spec, 100000)
    lines: list[str] = []
    cpus = os.cpu_count() or 1
    assert bound_workers(100000, engine, budget, lines.append) == cpus * WORKERS_PER_CPU
    assert WORKERS_PER_CPU == 4
    assert bound_workers(cpus, engine, budget, lines.append) == cpus
    engine.close()
    assert lines == [
        f"sweepspec: 100000 workers asked, {cpus * 4} started (at most 4 per CPU, {cpus} CPUs)"
    ]


def test_workers_are_capped_by_the_cpus_each_trial_needs(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpus = os.cpu_count() or 1
    _write(sweep_dir, SPEC + f"budget: {{cpus_per_trial: {cpus / 2}}}\n")
    code, lines = _run_none(capsys, "--workers", "3", "--trials", "3")
    assert code == 0
    assert lines[:2] == [
        f"sweepspec: 3 workers asked, 2 started (budget.cpus_per_trial: {cpus / 2:g} of {cpus} "
        "CPUs each)",
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker none, "
        "2 workers)",
    ]


# --------------------------------------------------------------------------- storage, start-up


def _results(folder: Path, *args: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", "json", *args],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_fresh_deletes_nothing_when_the_tracker_cannot_start(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(sweep_dir, SPEC)
    assert _run(capsys, "sweep.yaml", "--tracker", "none")[0] == 0
    uri = f"http://127.0.0.1:{_closed_port()}"
    _write(sweep_dir, SPEC + f"tracking: {{tracker: mlflow, uri: '{uri}'}}\n")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    code, out, err = _run(capsys, "sweep.yaml", "--fresh")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == (
        "sweepspec: sweep 'sweep' on optuna (storage .sweepspec/sweep.journal, tracker mlflow)"
    )
    assert err.splitlines()[-1].startswith("Error: MLflow at http://127.0.0.1:")
    assert "--fresh: deleted" not in err
    assert [r["state"] for r in _results(sweep_dir)] == ["COMPLETE"] * 4


LINGERING_TRIAL = """
import os, time


def objective(trial):
    if os.fork() == 0:  # a process the trial leaves behind (a data loader's worker)
        time.sleep(30)
        os._exit(0)
    return {"loss": trial.params["x"]}
"""


def test_a_run_returns_with_no_trial_process_left_holding_the_sweep(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forked trial's processes hold copies of the run's lock on the sweep: the run kills
    what its trials left before it returns, so --fresh right after it is not refused."""
    _write(sweep_dir, SPEC.replace("run_cap: 4", "run_cap: 1"), LINGERING_TRIAL)
    assert _run(capsys, "sweep.yaml", "--tracker", "none")[0] == 0
    code, out, err = _run(capsys, "sweep.yaml", "--tracker", "none", "--fresh")
    assert (code, out) == (0, ""), err
    assert "sweepspec: --fresh: deleted study 'sweep' (1 trials) from " in err


def test_fresh_while_another_run_holds_the_sweep_is_refused(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, SPEC.replace("run_cap: 4", "run_cap: 6") + "  pause: {value: 0.2}\n")
    other = _start(sweep_dir, "--tracker", "none")
    _wait_for(other, "trial 0 COMPLETE")
    code, out, err = _run(capsys, "sweep.yaml", "--fresh", "--tracker", "none")
    assert (code, out, err) == (
        1,
        "",
        "Error: another 'sweepspec run' is running sweep 'sweep' on .sweepspec/sweep.journal (it "
        "holds the sweep), so --fresh deletes nothing; wait for it to end, or stop it, then run "
        "--fresh again\n",
    )
    _, rest = other.communicate(timeout=120)
    assert other.returncode == 0, rest
    rows = _results(sweep_dir)  # a trial may fail under a loaded machine; none is lost
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states, rows
    # once it has ended, --fresh goes ahead
    code, _, err = _run(capsys, "sweep.yaml", "--fresh", "--tracker", "none", "--trials", "1")
    assert code == 0, err
    assert (
        f"sweepspec: --fresh: deleted study 'sweep' ({len(rows)} trials) from "
        ".sweepspec/sweep.journal" in err.splitlines()
    )


MOVING_TRIAL = """
import os

def objective(trial):
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")  # as Hydra-style code does
    trial.report({"loss": trial.params["x"]}, 0)
    return trial.params["x"]
"""


@pytest.mark.parametrize("storage", [None, "sqlite:///optuna.db", "state/sweep.journal"])
def test_a_trial_that_changes_directory_moves_nothing(tmp_path: Path, storage: str | None) -> None:
    """Journal, locks, the SQLite storage and MLflow's store (relative in
    MLFLOW_TRACKING_URI) stay where they were when the run started."""
    _write(tmp_path, SPEC.replace("run_cap: 4", "run_cap: 3"), MOVING_TRIAL)
    flags = ["--storage", storage] if storage else []
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [r["state"] for r in _results(tmp_path, *flags)] == ["COMPLETE"] * 3
    state = {".sweepspec", "state", "optuna.db", "mlflow.db", "mlruns"}
    assert not [p for p in (tmp_path / "elsewhere").rglob("*") if p.name in state]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert sorted(r.data.metrics["loss"] for r in runs if "loss" in r.data.metrics) == sorted(
        r["metrics"]["loss"] for r in _results(tmp_path, *flags)
    )


def test_four_runs_starting_together_on_one_new_sqlite_file(tmp_path: Path) -> None:
    """Optuna's tables and MLflow's are created by whichever run comes first; the others
    wait and retry instead of failing on the schema race."""
    _write(tmp_path, SPEC.replace("run_cap: 4", "run_cap: 8"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--storage", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    states = [r["state"] for r in _results(tmp_path, "--storage", url)]
    assert states.count("COMPLETE") == 8 and "RUNNING" not in states


def test_a_sampler_whose_dependency_is_missing_is_refused_before_any_trial(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert importlib.util.find_spec("torch") is None  # this environment keeps torch out
    _write(sweep_dir, SPEC + "optuna: {sampler: gp}\n")
    assert _run(capsys, "sweep.yaml", "--tracker", "none") == (
        1,
        "",
        "Error: the sampler GPSampler needs torch, which is not installed: pip install torch "
        "(or choose another optuna.sampler)\n",
    )
    assert not (sweep_dir / ".sweepspec").exists()


def test_a_storage_that_is_not_a_journal_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (sweep_dir / "state").mkdir()
    optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'existing.db'}")
    cases = {
        "state": "Error: state is a folder, not an Optuna journal file\n",
        "run_trial.py": (
            "Error: run_trial.py is not an Optuna journal (its first line is not a journal "
            "record)\n"
        ),
        "existing.db": (
            "Error: existing.db is an SQLite database, not an Optuna journal: give it as a URL, "
            "sqlite:///existing.db\n"
        ),
        "new.sqlite": (
            "Error: the storage 'new.sqlite' is taken as an Optuna journal file, but its name "
            "says SQLite: for an SQLite database write sqlite:///new.sqlite\n"
        ),
    }
    trial = textwrap.dedent(TRIAL).lstrip()
    for storage, message in cases.items():
        _write(sweep_dir, SPEC + f"optuna: {{storage: {storage}}}\n")
        assert _run(capsys, "sweep.yaml", "--tracker", "none") == (1, "", message), storage
    assert (sweep_dir / "run_trial.py").read_text() == trial  # nothing of it was moved
    assert sorted(p.name for p in sweep_dir.iterdir()) == [
        "existing.db",
        "run_trial.py",
        "state",
        "sweep.yaml",
    ]
