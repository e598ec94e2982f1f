"""An engine that runs its own trials (``Drives.drive(loop)``, runners/base.py): the loop
hands it the run, and each trial runs exactly as the loop runs it, in another process.

``RelayEngine`` below is a complete engine of that kind, as a cluster engine is: it walks a
grid itself and sends each trial, pickled (``loop.trial``), to a fresh Python process, which
runs it and sends back the record; the engine keeps the records in a JSON file."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grid_sweep import GRID, write_grid

from sweepspec.cli import SweepspecError
from sweepspec.commands.run import run
from sweepspec.runners import base
from sweepspec.runners.base import Asked, EngineOption, EngineOptions, OwnTrials
from sweepspec.runners.budget import TrialSummary
from sweepspec.runners.sweep import Loop, RunError, run_sweep
from sweepspec.spec import Spec
from sweepspec.trackers import TrialRecord

# the process a trial is sent to: a pickled (TrialRun, number, params, stop_at) on stdin,
# the pickled TrialRecord on stdout; report() stops the trial at step ``stop_at``
RUNNER = """
import pickle, sys
trial, number, params, stop_at = pickle.load(sys.stdin.buffer)
report = None if stop_at is None else (lambda value, step: step >= stop_at)
sys.stdout.buffer.write(pickle.dumps(trial(number, params, report)))
"""


class RelayEngine(OwnTrials):
    """Runs the grid ``x`` itself, each trial in a process of its own."""

    name = "relay"
    artifact_name = "relay.json"
    prunes = True
    grace_period: float | None = None

    def __init__(self, spec: Spec, path: str, options: EngineOptions) -> None:
        grid = spec.parameters.get("x")  # none in compare's sweep (a grid of config, seed)
        self.values = list(getattr(grid, "values", None) or [])
        self.stop_at = options.extra.get("stop_at")
        self.state = Path(".sweepspec") / "relay.json"
        self.state_path = str(self.state)
        self.label, self.sweep_id, self.sweep_name = str(self.state), "relay-1", "relay"
        self.artifact: dict[str, Any] = {"x": self.values}
        self.messages: list[str] = []
        self.kept: list[dict[str, Any]] = (
            json.loads(self.state.read_text()) if self.state.exists() else []
        )

    def drive(self, loop: Loop) -> str:
        loop.start()
        for number in range(len(self.kept), len(self.values)):
            reason = loop.stop_reason()
            if reason is not None:
                return reason
            params = {"x": self.values[number]}
            stop_at = None if self.stop_at is None or number != 2 else int(self.stop_at)
            sent = pickle.dumps((loop.trial, number, params, stop_at))
            done = subprocess.run(
                [sys.executable, "-c", RUNNER], input=sent, capture_output=True, check=True
            )
            record: TrialRecord = pickle.loads(done.stdout)
            self.kept.append({"number": number, "state": record.state, "values": record.values})
            self.state.parent.mkdir(exist_ok=True)
            self.state.write_text(json.dumps(self.kept))
            if not loop.finished(record):
                return "too many failures"
        return "the grid is done"

    def summaries(self) -> list[TrialSummary]:
        return [TrialSummary(t["number"], t["state"], t["values"]) for t in self.kept]

    def start(self) -> None: ...

    def close(self) -> None: ...

    def ask(self) -> Asked | None:
        raise AssertionError("the loop asks nothing of an engine that drives")

    def report(self, trial: Asked, value: float, step: int) -> bool:
        raise AssertionError("the loop asks nothing of an engine that drives")

    def tell(self, trial: Asked, record: TrialRecord) -> None:
        raise AssertionError("the loop asks nothing of an engine that drives")

    def records(self) -> Iterator[dict[str, Any]]:
        return iter(self.kept)

    def curves(self) -> dict[int, list[tuple[int, float]]]:
        return {}

    def worker_settings(self) -> dict[str, Any]:
        return {}

    def decide(self, decision: dict[str, Any]) -> None: ...

    def decisions(self) -> list[dict[str, Any]]:
        return []


DRIVES = True  # this module's engine runs its own trials (base.always_drives)


def open_engine(spec: Spec, path: str, options: EngineOptions) -> RelayEngine:
    return RelayEngine(spec, path, options)


def find_state(spec: Spec, path: str, storage: str | None) -> float | None:
    return None


@pytest.fixture
def relay(sweep_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(base.ENGINES, "relay", __name__)
    monkeypatch.setitem(
        base.ENGINE_OPTIONS, "relay", (EngineOption("--relay-stop-at", "stop_at", "help"),)
    )
    return sweep_dir


def _spec(folder: Path, text: str = GRID) -> tuple[Spec, str]:
    from sweepspec import load

    path = str(write_grid(folder, text))
    return load(path), path


def test_the_engine_runs_each_trial_elsewhere_as_the_loop_would(
    relay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, path = _spec(relay)
    finished = run_sweep(
        spec, path, engine="relay", tracker="none", extra={"stop_at": "1"}, tty=False
    )
    assert finished.reason == "the grid is done"
    assert finished.tally is not None
    assert (finished.tally.finished, finished.tally.pruned, finished.tally.failed) == (2, 1, 1)
    kept = json.loads((relay / ".sweepspec" / "relay.json").read_text())
    # best of what trial 0 reported and returned (objective: best): 1.0; trial 2 stopped at
    # step 1 by the engine's report(), and trial 1's function raised
    assert kept == [
        {"number": 0, "state": "COMPLETE", "values": [1.0]},
        {"number": 1, "state": "FAIL", "values": None},
        {"number": 2, "state": "PRUNED", "values": None},
    ]
    err = capsys.readouterr().err
    assert "sweepspec: sweep 'relay' on relay (storage .sweepspec/relay.json, tracker none)" in err
    assert "trial 1 FAIL" in err and "ValueError: x=2 is broken" in err


def test_a_failure_streak_stops_the_engine_and_the_run(relay: Path) -> None:
    spec, path = _spec(relay, GRID + "budget: {max_consecutive_failures: 1}\n")
    with pytest.raises(RunError) as caught:
        run_sweep(spec, path, engine="relay", tracker="none", tty=False)
    assert str(caught.value) == (
        "1 trials failed in a row (budget.max_consecutive_failures: 1); the last one, trial "
        "1, failed with: ValueError: x=2 is broken"
    )
    assert len(json.loads((relay / ".sweepspec" / "relay.json").read_text())) == 2


def test_an_option_of_another_engine_is_one_line(relay: Path) -> None:
    _spec(relay)
    with pytest.raises(SweepspecError) as caught:
        run("sweep.yaml", engine="optuna", extra={"--relay-stop-at": "1"})
    assert caught.value.message == (
        "--relay-stop-at is an option of the relay engine; this sweep runs on optuna "
        "(--engine relay to run it there)"
    )


def test_run_names_no_engine() -> None:
    import sweepspec.commands.run as command

    source = Path(command.__file__).read_text()
    for name in ("wandb", "server"):
        assert f'"{name}"' not in source, name


def test_ray_says_it_drives_and_the_loops_engines_do_not() -> None:
    from sweepspec.runners.ray import RayEngine

    assert issubclass(RayEngine, base.Drives) and base.always_drives("ray")
    assert not base.always_drives("optuna") and not base.always_drives("wandb")
