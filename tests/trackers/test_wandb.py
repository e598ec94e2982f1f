"""``--tracker wandb``: one offline W&B run per trial, read back from its ``.wandb`` file.

Every test runs W&B with its files in the test's folder (``WANDB_DIR``, and W&B's config,
cache and data folders) and ``HOME`` there too, so no credentials of the machine are seen and
nothing goes on the network: without credentials the tracker logs offline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sweepspec.runners.trials import iso_ms
from sweepspec.trackers import Point, TrialRecord
from sweepspec.trackers.wandb import history_rows, summary_of
from sweepspec.wandb_log import RunLog, RunState

FAKE_KEY = "sweepspecfakekey_" + "0123456789" * 4
"""A W&B API key in the right format; it must not be written anywhere."""

TRIAL = """
    def objective(trial):
        lr = trial.params["opt"]["lr"]
        if lr == 9.0:
            trial.report({"acc": 0.125}, step=0)
            raise RuntimeError("diverged at lr=9.0")
        for step in range(3):
            trial.report({"loss": lr * (step + 1), "acc": step / 4}, step=step)
            if trial.should_stop():
                return {"loss": lr * (step + 1)}
        return {"loss": lr * 3, "acc": 0.875}
"""

SPEC = """
    name: wbtest
    method: grid
    metric: {name: loss}
    function: wb_trial:objective
    early_terminate: {type: threshold, upper: 5.0}
    parameters:
      opt:
        parameters:
          lr: {values: [0.5, 2.0, 9.0]}
      trainer.epochs: {value: 3}
"""


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(folder / "home"),
        TMPDIR=str(folder / "tmp"),
        WANDB_DIR=str(folder / "wandb_dir"),
        WANDB_CONFIG_DIR=str(folder / "wandb_config"),
        WANDB_CACHE_DIR=str(folder / "wandb_cache"),
        WANDB_DATA_DIR=str(folder / "wandb_data"),
    )
    env.pop("NETRC", None)
    env.update(extra)
    for name in ("home", "tmp"):
        (folder / name).mkdir(exist_ok=True)
    return env


def _write(folder: Path, spec: str = SPEC, trial: str = TRIAL) -> None:
    (folder / "wb_trial.py").write_text(textwrap.dedent(trial).lstrip())
    (folder / "sweep.yaml").write_text(textwrap.dedent(spec).lstrip())


def _sweepspec(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweepspec", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _runs(folder: Path) -> dict[str, RunState]:
    """The offline runs under ``$WANDB_DIR/wandb``, by name."""
    runs = {}
    for path in sorted((folder / "wandb_dir" / "wandb").glob("offline-run-*/run-*.wandb")):
        log = RunLog(path)
        log.read()
        assert log.state.name is not None
        runs[log.state.name] = log.state
    return runs


def _summary(run: RunState) -> dict[str, object]:
    """The run's summary without W&B's own keys (``_step``, ``_runtime``, ...)."""
    return {k: v for k, v in run.summary.items() if not k.startswith("_")}


def _sweep_id(folder: Path) -> str:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(
        JournalFileBackend(str(folder / ".sweepspec" / "wbtest.journal"))
    )
    study = optuna.load_study(study_name="wbtest", storage=storage)
    return str(study.user_attrs["sweepspec.sweep_id"])


def test_one_offline_run_per_trial_with_config_history_summary_and_state(tmp_path: Path) -> None:
    _write(tmp_path)
    env = _env(tmp_path, WANDB_MODE="offline", WANDB_API_KEY=FAKE_KEY)
    done = _sweepspec(tmp_path, env, "run", "sweep.yaml", "--tracker", "wandb")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "wandb_dir" / "wandb"
    assert (
        f"sweepspec: W&B runs are saved offline in {folder} (group 'wbtest'); list them with "
        "'wandb sync --dry-run', upload them with 'wandb sync' after 'wandb login'\n"
    ) in done.stderr

    results = _sweepspec(tmp_path, env, "results", "sweep.yaml", "--format", "json")
    trials = {t["params"]["opt.lr"]: t for t in json.loads(results.stdout)}
    assert {lr: t["state"] for lr, t in trials.items()} == {
        0.5: "COMPLETE",
        2.0: "PRUNED",
        9.0: "FAIL",
    }
    runs = _runs(tmp_path)
    assert sorted(runs) == sorted(f"wbtest-{t['number']}" for t in trials.values())
    sweep_id = _sweep_id(tmp_path)

    def run_of(lr: float) -> RunState:
        return runs[f"wbtest-{trials[lr]['number']}"]

    for lr, trial in trials.items():
        run = run_of(lr)
        assert (run.project, run.group, run.entity) == ("wbtest", "wbtest", "")
        assert run.config == {"opt": {"lr": lr}, "trainer.epochs": 3}
        state = {
            "sweepspec_state": trial["state"],
            "sweepspec_trial": trial["number"],
            "sweepspec_sweep_id": sweep_id,
        }
        error = {"sweepspec_error": trial["error"]} if "error" in trial else {}
        values = {"sweepspec_values": trial["values"]} if trial["state"] == "COMPLETE" else {}
        summary = _summary(run)
        times = summary.pop("sweepspec_times")  # the trial's own, as results shows them
        assert [iso_ms(t) for t in times] == [trial["datetime_start"], trial["datetime_complete"]]
        assert summary == {**trial["metrics"], **state, **values, **error}

    complete, pruned, failed = run_of(0.5), run_of(2.0), run_of(9.0)
    assert complete.summary["loss"] == 1.5 and complete.summary["acc"] == 0.875
    assert _curve(complete) == [(0, 0.5, 0.0), (1, 1.0, 0.25), (2, 1.5, 0.5)]
    assert (complete.exit_code, complete.tags) == (0, [])
    assert _curve(pruned) == [(0, 2.0, 0.0), (1, 4.0, 0.25), (2, 6.0, 0.5)]
    assert (pruned.exit_code, pruned.tags) == (0, ["early-stopped"])
    assert [(row["_step"], row["acc"]) for row in failed.history] == [(0, 0.125)]
    assert failed.summary["sweepspec_error"] == "RuntimeError: diverged at lr=9.0"
    assert (failed.exit_code, failed.tags) == (1, [])

    synced = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    listed = synced.stdout + synced.stderr
    assert synced.returncode == 0, listed
    assert "wandb: Would sync 3 run(s):\n" in listed
    for run in runs.values():
        assert f"run-{run.run_id}.wandb" in listed

    _assert_nowhere(FAKE_KEY, tmp_path, [done.stdout, done.stderr, results.stdout, listed])


def _curve(run: RunState) -> list[tuple[int, float, float]]:
    return [(row["_step"], row["loss"], row["acc"]) for row in run.history]


def _assert_nowhere(secret: str, folder: Path, outputs: list[str]) -> None:
    for text in outputs:
        assert secret not in text
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".wandb" for p in files)
    assert any(p.name == "debug-internal.log" for p in files)  # W&B's logs were searched
    leaks = [p for p in files if secret.encode() in p.read_bytes()]
    assert leaks == []


def test_without_credentials_or_wandb_mode_workers_log_offline(tmp_path: Path) -> None:
    _write(tmp_path, SPEC.replace("[0.5, 2.0, 9.0]", "[0.5, 1.0, 1.5, 2.0]"))
    env = _env(tmp_path)
    done = _sweepspec(tmp_path, env, "run", "sweep.yaml", "--tracker", "wandb", "--workers", "2")
    assert done.returncode == 0, done.stderr
    results = _sweepspec(tmp_path, env, "results", "sweep.yaml", "--format", "json")
    trials = json.loads(results.stdout)
    assert len(trials) >= 4  # Optuna's grid may give a point to two workers at once
    runs = _runs(tmp_path)
    assert {
        name: (run.config["opt"]["lr"], run.summary["sweepspec_state"])
        for name, run in runs.items()
    } == {f"wbtest-{t['number']}": (t["params"]["opt.lr"], t["state"]) for t in trials}
    assert {run.group for run in runs.values()} == {"wbtest"}
    folder = tmp_path / "wandb_dir" / "wandb"
    assert f"sweepspec: W&B runs are saved offline in {folder} (group 'wbtest')" in done.stderr
    assert dict(map(_lr_state, runs.values())) == {
        0.5: "COMPLETE",
        1.0: "COMPLETE",
        1.5: "COMPLETE",
        2.0: "PRUNED",
    }


def test_ctrl_c_on_the_terminal_loses_no_trial_of_w_and_b(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group; the finished trials and the one
    interrupted are still logged (the logger runs in a session of its own and drains)."""
    slow = TRIAL.replace(
        "for step in range(3):", "for step in range(3):\n            time.sleep(0.3)"
    )
    _write(
        tmp_path,
        SPEC.replace("[0.5, 2.0, 9.0]", "[0.5, 1.0, 1.5, 2.0, 2.5]"),
        "import time\n" + textwrap.dedent(slow),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "wandb"],
        cwd=tmp_path,
        env=_env(tmp_path, WANDB_MODE="offline"),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while " COMPLETE " not in (line := proc.stderr.readline()):
        assert line and time.monotonic() < deadline, "no trial finished"
    time.sleep(0.4)  # inside the next trial
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    done = _sweepspec(tmp_path, _env(tmp_path), "results", "sweep.yaml", "--format", "json")
    trials = json.loads(done.stdout)
    assert [t["state"] for t in trials][0] == "COMPLETE" and trials[-1]["state"] == "FAIL"
    assert trials[-1]["error"] == "interrupted (Ctrl-C)"
    runs = _runs(tmp_path)
    assert {
        name: (run.summary["sweepspec_state"], run.exit_code) for name, run in runs.items()
    } == {f"wbtest-{t['number']}": (t["state"], 1 if t["state"] == "FAIL" else 0) for t in trials}


def _lr_state(run: RunState) -> tuple[float, str]:
    return run.config["opt"]["lr"], run.summary["sweepspec_state"]


def test_wandb_mode_online_without_credentials_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path)
    done = _sweepspec(
        tmp_path, _env(tmp_path, WANDB_MODE="online"), "run", "sweep.yaml", "--tracker", "wandb"
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[-1] == (
        "Error: cannot start the wandb tracker: WandbSetupError: WANDB_MODE=online but W&B has "
        "no credentials: run 'wandb login' (or set WANDB_API_KEY), or unset WANDB_MODE to log "
        "offline"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "wandb_dir").exists()


def test_without_wandb_installed_is_one_line(tmp_path: Path) -> None:
    """Run with a ``sys.path`` that holds every installed package but wandb."""
    import click

    site = Path(click.__file__).parent.parent
    hidden = tmp_path / "site"
    hidden.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("wandb", "_distutils_hack", "distutils-precedence")):
            (hidden / entry.name).symlink_to(entry)
    src = Path(__file__).resolve().parents[2] / "src"
    _write(tmp_path)
    env = _env(tmp_path, PYTHONPATH=f"{src}{os.pathsep}{hidden}")
    check = subprocess.run(
        [sys.executable, "-S", "-c", "import importlib.util as u; print(u.find_spec('wandb'))"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.stdout == "None\n"
    done = subprocess.run(
        [sys.executable, "-S", "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "wandb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[-1] == (
        "Error: the wandb tracker needs wandb: pip install 'sweepspec[wandb]', or run with "
        "--tracker none"
    )
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- what is logged


def test_history_rows_merge_a_step_and_follow_the_steps() -> None:
    record = TrialRecord(
        0,
        {},
        "COMPLETE",
        {},
        [
            Point("seed_0/loss", 3.0, 1000, 2),
            Point("seed_0/loss", 1.0, 2000, 0),
            Point("seed_0/acc", 0.5, 2500, 0),
            Point("seed_1/loss", 4.0, 3000, 0),
            Point("seed_1/loss", 5.0, 4000, 0),
        ],
    )
    assert history_rows(record) == [
        (0, {"seed_0/loss": 1.0, "seed_0/acc": 0.5, "seed_1/loss": 5.0, "_timestamp": 4.0}),
        (2, {"seed_0/loss": 3.0, "_timestamp": 1.0}),
    ]


def test_summary_holds_the_seeds_and_the_state() -> None:
    record = TrialRecord(
        7,
        {},
        "FAIL",
        {"loss": 2.0},
        seeds=[{"seed": 0, "metrics": {"loss": 1.0}}, {"seed": 1, "metrics": {"loss": 3.0}}],
        error="seed 1: ValueError: nan",
    )
    assert summary_of(record, "abc") == {
        "loss": 2.0,
        "seed_0/loss": 1.0,
        "seed_1/loss": 3.0,
        "sweepspec_state": "FAIL",
        "sweepspec_trial": 7,
        "sweepspec_sweep_id": "abc",
        "sweepspec_error": "seed 1: ValueError: nan",
    }


def test_an_unknown_wandb_mode_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path)
    done = _sweepspec(
        tmp_path, _env(tmp_path, WANDB_MODE="bogus"), "run", "sweep.yaml", "--tracker", "wandb"
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[-1] == (
        "Error: cannot start the wandb tracker: WandbSetupError: 'WANDB_MODE in ('online', "
        "'offline', 'shared', 'disabled', 'dryrun', 'run')' must hold, but got 'bogus' (unset "
        "it to log offline without credentials, online with them)"
    )


def test_seeds_share_the_rows_of_their_steps(tmp_path: Path) -> None:
    trial = """
        def objective(trial):
            for step in range(2):
                trial.report({"loss": trial.seed + step}, step=step)
            return {"loss": trial.seed + 1.5}
    """
    spec = """
        name: wbtest
        method: grid
        metric: {name: loss}
        function: wb_trial:objective
        seeds: {values: [0, 10]}
        parameters:
          x: {values: [1]}
    """
    _write(tmp_path, spec, trial)
    env = _env(tmp_path, WANDB_MODE="offline")
    done = _sweepspec(tmp_path, env, "run", "sweep.yaml", "--tracker", "wandb")
    assert done.returncode == 0, done.stderr
    (run,) = _runs(tmp_path).values()
    assert [
        {k: v for k, v in row.items() if not k.startswith("_") or k == "_step"}
        for row in run.history
    ] == [
        {"_step": 0, "seed_0/loss": 0, "seed_10/loss": 10},
        {"_step": 1, "seed_0/loss": 1, "seed_10/loss": 11},
    ]
    summary = _summary(run)
    start, end = summary.pop("sweepspec_times")
    assert isinstance(start, int) and start <= end
    assert summary == {
        "sweepspec_values": [5.0],  # W&B's score: the best of each seed's, averaged
        "loss": 6.5,
        "seed_0/loss": 1.5,
        "seed_10/loss": 11.5,
        "sweepspec_state": "COMPLETE",
        "sweepspec_trial": 0,
        "sweepspec_sweep_id": _sweep_id(tmp_path),
    }
