"""The local W&B engine through the engine protocol, on real state files and real processes.

The reference is W&B's own ``sweeps`` package driven bare, as MAPPING.md section 4 drives it
(a list of ``SweepRun``, ``next_runs`` per run, ``stop_runs`` after each logged value, the
stopped runs marked killed), with the seeds the engine documents (:func:`ask_seed`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import socket
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sweepspec.compiler.wandb import compile_wandb
from sweepspec.runners.base import Asked, Engine, EngineError, EngineOptions, open_engine
from sweepspec.runners.budget import Budget
from sweepspec.runners.wandb import FORMAT, ask_seed, seeded
from sweepspec.spec import load
from sweepspec.trackers import TrialRecord

with warnings.catch_warnings():  # sweeps' pydantic v1-style model config
    warnings.simplefilter("ignore")
    import sweeps

Write = Callable[..., Path]


def engine_for(path: Path, **options: Any) -> Engine:
    return open_engine("wandb", load(str(path)), str(path), EngineOptions(**options))


def finish(engine: Engine, asked: Asked, state: str, metrics: dict[str, float]) -> None:
    values = list(metrics.values())[:1] if state == "COMPLETE" else None
    engine.tell(asked, TrialRecord(asked.number, asked.params, state, metrics, values=values))


def curve(params: dict[str, Any], number: int, epochs: int) -> list[float]:
    """A learning curve that depends on the configuration and the run's arrival: fast or
    slow starters, some that bloom late."""
    key = json.dumps(params, sort_keys=True) + str(number)
    rng = random.Random(hashlib.sha256(key.encode()).hexdigest())
    floor, speed, late = rng.uniform(0.1, 1.0), rng.uniform(0.05, 1.5), rng.random() < 0.3
    out = []
    for epoch in range(1, epochs + 1):
        value = floor + 2.0 / (1.0 + speed * epoch) + rng.gauss(0.0, 0.03)
        if late and epoch > epochs // 3:
            value -= 0.6 * (epoch - epochs // 3) / epochs
        out.append(value)
    return out


# --------------------------------------------------------------------------- (a) decisions

SPACES = {
    "random": """
        method: random
        parameters:
          x: {min: 0.0, max: 1.0}
          n: {min: 1, max: 9}
          q: {distribution: q_uniform, min: 0, max: 10, q: 2}
          kind: {values: [a, b, c]}
          opt:
            parameters:
              lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
              momentum: {value: 0.9}
    """,
    "grid": """
        method: grid
        parameters:
          n: {min: 1, max: 8}
          kind: {values: [a, b, c, d]}
          q: {distribution: q_uniform, min: 0.0, max: 1.0, q: 0.25}
    """,
    "bayes": """
        method: bayes
        parameters:
          x: {min: 0.0, max: 1.0}
          n: {min: 1, max: 9}
    """,
}

HYPERBAND = {
    "min_iter-strict": "{type: hyperband, min_iter: 1, eta: 3, strict: true}",
    "min_iter": "{type: hyperband, min_iter: 2, eta: 2, strict: false}",
    "max_iter-strict": "{type: hyperband, max_iter: 27, s: 3, eta: 3}",
    "max_iter": "{type: hyperband, max_iter: 27, s: 2, eta: 3, strict: false}",
}

CASES = [
    ("random", "min_iter-strict", "minimize", 61),
    ("random", "min_iter", "minimize", 61),
    ("random", "max_iter-strict", "minimize", 61),
    ("random", "max_iter", "maximize", 61),
    ("grid", "min_iter-strict", "minimize", 61),
    ("bayes", "min_iter-strict", "minimize", 24),
]


def spec_text(space: str, form: str, goal: str) -> str:
    head = f"metric: {{name: loss, goal: {goal}}}\nearly_terminate: {HYPERBAND[form]}\n"
    return head + __import__("textwrap").dedent(SPACES[space]).lstrip("\n")


def drive_engine(engine: Engine, count: int, epochs: int, sign: float) -> list[tuple[Any, int]]:
    """One worker, one run at a time: (params, the step it stopped at or 0)."""
    out = []
    for _ in range(count):
        asked = engine.ask()
        assert asked is not None
        stopped, value = 0, 0.0
        for step, value in enumerate(curve(asked.params, asked.number, epochs), start=1):
            if engine.report(asked, sign * value, step):
                stopped = step
                break
        finish(engine, asked, "PRUNED" if stopped else "COMPLETE", {"loss": sign * value})
        out.append((asked.params, stopped))
    return out


def drive_sweeps(
    config: dict[str, Any], sweep_id: str, count: int, epochs: int, sign: float
) -> list[tuple[Any, int]]:
    """The same runs through bare sweeps.next_runs / stop_runs (MAPPING.md section 4)."""
    runs: list[Any] = []
    out = []
    for number in range(count):
        with seeded(ask_seed(sweep_id, number)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="sklearn")  # the GP's kernel bounds
            run = sweeps.next_runs(config, runs, n=1)[0]
        run.name, run.state = f"run-{number}", sweeps.RunState.running
        runs.append(run)
        params = flat(run.config)
        stopped = 0
        for step, value in enumerate(curve(params, number, epochs), start=1):
            run.history.append({"_step": step, "loss": sign * value})
            run.summary_metrics = {"loss": sign * value}
            killed = sweeps.stop_runs(config, runs)
            for other in killed:
                other.state = sweeps.RunState.killed
            if run in killed:
                stopped = step
                break
        if not stopped:
            run.state = sweeps.RunState.finished
        out.append((params, stopped))
    return out


def flat(config: dict[str, Any]) -> dict[str, Any]:
    """A W&B run config as real values by dotted name, plain Python numbers."""
    out: dict[str, Any] = {}
    for name, item in config.items():
        value = json.loads(json.dumps(item["value"], default=lambda v: v.item()))
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


@pytest.mark.parametrize(("space", "form", "goal", "count"), CASES)
def test_every_decision_is_the_one_sweeps_takes(
    sweep_dir: Path, write_spec: Write, space: str, form: str, goal: str, count: int
) -> None:
    path = write_spec(spec_text(space, form, goal))
    engine = engine_for(path)
    epochs = 12  # past every band below max_iter: 27 (1, 3, 9) and min_iter: 1 or 2
    sign = -1.0 if goal == "maximize" else 1.0
    ours = drive_engine(engine, count, epochs, sign)
    config = compile_wandb(load(str(path))).config
    theirs = drive_sweeps(config, engine.sweep_id, count, epochs, sign)

    assert [p for p, _ in ours] == [p for p, _ in theirs]
    assert [s for _, s in ours] == [s for _, s in theirs]
    stopped = sum(1 for _, s in ours if s)
    assert 0 < stopped < count  # hyperband did decide, both ways
    states = [s.state for s in engine.summaries()]
    assert states.count("PRUNED") == stopped
    assert states.count("COMPLETE") == count - stopped


def drive_engine_concurrently(
    engine: Engine, count: int, width: int, epochs: int
) -> list[tuple[Any, int]]:
    """``width`` runs at once, one value each in turn, as ``width`` workers would report them;
    a run stops at its first report after any call has stopped it."""
    active: list[tuple[Asked, list[float]]] = []
    done: dict[int, tuple[Any, int]] = {}
    while len(done) < count:
        while len(active) < width and len(done) + len(active) < count:
            asked = engine.ask()
            assert asked is not None
            active.append((asked, curve(asked.params, asked.number, epochs)))
        for asked, values in list(active):
            step = epochs + 1 - len(values)
            value = values.pop(0)
            stop = engine.report(asked, value, step)
            if stop or not values:
                finish(engine, asked, "PRUNED" if stop else "COMPLETE", {"loss": value})
                done[asked.number] = (asked.params, step if stop else 0)
                active.remove((asked, values))
    return [done[n] for n in range(count)]


def drive_sweeps_concurrently(
    config: dict[str, Any], sweep_id: str, count: int, width: int, epochs: int
) -> list[tuple[Any, int]]:
    """The same interleaving on bare sweeps: every stop_runs call marks what it stops."""
    runs: list[Any] = []
    active: list[tuple[Any, list[float]]] = []
    done: dict[int, tuple[Any, int]] = {}
    while len(done) < count:
        while len(active) < width and len(done) + len(active) < count:
            number = len(runs)
            with seeded(ask_seed(sweep_id, number)), warnings.catch_warnings():
                warnings.filterwarnings("ignore", module="sklearn")
                run = sweeps.next_runs(config, runs, n=1)[0]
            run.name, run.state = f"run-{number}", sweeps.RunState.running
            runs.append(run)
            active.append((run, curve(flat(run.config), number, epochs)))
        for run, values in list(active):
            step = epochs + 1 - len(values)
            value = values.pop(0)
            run.history.append({"_step": step, "loss": value})
            run.summary_metrics = {"loss": value}
            for other in sweeps.stop_runs(config, runs):
                other.state = sweeps.RunState.killed
            stop = run.state == sweeps.RunState.killed
            if stop or not values:
                if not stop:
                    run.state = sweeps.RunState.finished
                done[runs.index(run)] = (flat(run.config), step if stop else 0)
                active.remove((run, values))
    return [done[n] for n in range(count)]


SWEEP_ID_INT = 1


@pytest.mark.parametrize(
    ("space", "form", "count"),
    [("random", "min_iter-strict", 40), ("random", "max_iter", 40), ("bayes", "min_iter", 16)],
)
def test_runs_in_flight_together_get_the_decisions_sweeps_takes(
    sweep_dir: Path,
    write_spec: Write,
    space: str,
    form: str,
    count: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four runs at once: a run is stopped when any report (its own or another's) makes
    stop_runs name it, as W&B's controller re-checks every running run at each call; bayes
    sees the runs in flight and the killed ones as W&B does."""
    # the sweep id seeds the configurations: a fixed one, so that the cross-run stop the
    # test looks for is there every time (with a random id it was there in 2 runs of 3)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=SWEEP_ID_INT))
    path = write_spec(spec_text(space, form, "minimize"))
    engine = engine_for(path)
    ours = drive_engine_concurrently(engine, count, 4, 12)
    config = compile_wandb(load(str(path))).config
    theirs = drive_sweeps_concurrently(config, engine.sweep_id, count, 4, 12)
    assert ours == theirs
    assert 0 < sum(1 for _, s in ours if s) < count
    if space == "random":  # some runs were stopped by another run's report
        events = _events(engine.label)
        crossed = [
            b["stop"]
            for a, b in zip(events, events[1:], strict=False)
            if "stop" in b and "report" in a and a["report"] != b["stop"]
        ]
        assert crossed


def test_nested_parameters_come_flat_and_reach_sweeps_nested(
    sweep_dir: Path, write_spec: Write
) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    engine = engine_for(path)
    asked = engine.ask()
    assert asked is not None
    assert sorted(asked.params) == ["kind", "n", "opt.lr", "opt.momentum", "q", "x"]
    assert asked.params["opt.momentum"] == 0.9
    assert 1e-4 <= asked.params["opt.lr"] <= 1e-1
    assert type(asked.params["q"]) is int  # sweeps gives numpy.int64; the log plain JSON
    event = json.loads(Path(engine.label).read_text().splitlines()[1])
    assert event["config"]["opt"] == {"value": {"lr": asked.params["opt.lr"], "momentum": 0.9}}


# --------------------------------------------------------------------------- (b) grid


def test_grid_ends_when_every_point_has_run(sweep_dir: Path, write_spec: Write) -> None:
    path = write_spec(
        """
        method: grid
        metric: {name: loss}
        parameters:
          a: {values: [1, 2, 3]}
          b: {values: [x, y]}
        """
    )
    engine = engine_for(path)
    seen = []
    for number in range(6):
        assert engine.exhausted() is None
        asked = engine.ask()
        assert asked is not None and asked.number == number
        seen.append((asked.params["a"], asked.params["b"]))
        finish(engine, asked, "FAIL" if number == 2 else "COMPLETE", {"loss": 1.0})
    assert seen == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]
    assert engine.exhausted() == "the grid is exhausted: every point has been run"
    assert engine.ask() is None
    # W&B retries no point, not even the failed one; a second open agrees
    again = engine_for(path)
    assert again.exhausted() == "the grid is exhausted: every point has been run"
    assert again.ask() is None


def test_a_grid_point_is_asked_of_next_runs_once(
    sweep_dir: Path, write_spec: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop checks exhausted() and then asks, under one lock: one next_runs call per
    point, in W&B's order (plus the check at opening, made before the sweep has an id)."""
    path = write_spec(
        """
        method: grid
        metric: {name: loss}
        parameters:
          a: {values: [1, 2, 3]}
          b: {values: [x, y]}
        """
    )
    calls: list[int] = []
    real = sweeps.next_runs

    def counted(config: dict[str, Any], runs: list[Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(runs))
        return real(config, runs, *args, **kwargs)

    monkeypatch.setattr(sweeps, "next_runs", counted)
    engine = engine_for(path)
    seen = []
    while True:
        with engine.ask_lock():
            if engine.exhausted() is not None:
                break
            asked = engine.ask()
        assert asked is not None
        seen.append((asked.params["a"], asked.params["b"]))
        finish(engine, asked, "COMPLETE", {"loss": 1.0})
    assert seen == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]
    assert calls == [0, 0, 1, 2, 3, 4, 5, 6]  # opening, one per point, one that finds none
    # a second open checks the sweep at the point where it resumes: that answer is reused
    calls.clear()
    again = engine_for(path)
    with again.ask_lock():
        assert again.exhausted() == "the grid is exhausted: every point has been run"
        assert again.ask() is None
    assert calls == [6]


# --------------------------------------------------------------------------- (c) resume


def test_a_second_open_resumes_numbering_state_and_histories(
    sweep_dir: Path, write_spec: Write
) -> None:
    path = write_spec(spec_text("random", "min_iter-strict", "minimize"))
    first = engine_for(path)
    done = drive_engine(first, 5, 9, 1.0)
    sweep_id, label = first.sweep_id, first.label
    assert label == ".sweepspec/sweep.wandb.jsonl"
    del first

    second = engine_for(path)
    assert second.sweep_id == sweep_id
    assert [r["number"] for r in second.records()] == [0, 1, 2, 3, 4]
    assert [r["params"] for r in second.records()] == [p for p, _ in done]
    assert [r["state"] for r in second.records()] == [
        "PRUNED" if s else "COMPLETE" for _, s in done
    ]
    more = drive_engine(second, 5, 9, 1.0)
    assert [s.number for s in second.summaries()] == list(range(10))

    # the ten runs decided as one uninterrupted sweep decides them
    config = compile_wandb(load(str(path))).config
    assert done + more == drive_sweeps(config, sweep_id, 10, 9, 1.0)


def test_a_changed_search_space_is_refused_and_fresh_starts_over(
    sweep_dir: Path, write_spec: Write
) -> None:
    path = write_spec(spec_text("bayes", "min_iter", "minimize"))
    drive_engine(engine_for(path), 2, 3, 1.0)
    text = Path(".sweepspec/sweep.wandb.jsonl").read_bytes()
    path.write_text(path.read_text().replace("max: 9", "max: 12"))
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        "the search space differs from that of the sweep in .sweepspec/sweep.wandb.jsonl "
        f"(created from {path}), which has 2 runs; to start a fresh sweep, run again with "
        "--fresh (deletes that state), or give the new one another name"
    )
    assert Path(".sweepspec/sweep.wandb.jsonl").read_bytes() == text

    fresh = engine_for(path, fresh=True)
    assert fresh.summaries() == []  # the old runs no longer count, but nothing is deleted
    assert Path(".sweepspec/sweep.wandb.jsonl").read_bytes() == text  # until the run is up
    fresh.start()
    assert fresh.messages == [
        "sweepspec: --fresh: deleted sweep .sweepspec/sweep.wandb.jsonl (2 runs)"
    ]
    assert fresh.summaries() == []
    asked = fresh.ask()
    assert asked is not None and asked.number == 0


def test_a_reader_finds_no_state_and_says_where_it_looked(
    sweep_dir: Path, write_spec: Write
) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    with pytest.raises(EngineError) as err:
        engine_for(path, create=False)
    assert str(err.value) == (
        "no sweep state at .sweepspec/sweep.wandb.jsonl (the sweep has not run from this "
        "folder); run 'sweepspec run' first, or pass --storage"
    )
    assert not Path(".sweepspec/sweep.wandb.jsonl").exists()


# --------------------------------------------------------------------------- (d) processes


def _worker(path: str, start: Any, budget: int, out: Any) -> None:
    engine = engine_for(Path(path), storage=".sweepspec/shared.wandb.jsonl")
    limit = Budget(trials=budget)
    numbers = []
    start.wait()
    while True:
        with engine.ask_lock():
            if limit.stop_reason(limit.tally(engine.summaries())) is not None:
                break
            asked = engine.ask()
        assert asked is not None
        numbers.append(asked.number)
        for step, value in enumerate(curve(asked.params, asked.number, 3), start=1):
            engine.report(asked, value, step)
        finish(engine, asked, "COMPLETE", {"loss": value})
    out.put(numbers)


def test_two_processes_share_one_sweep_and_one_budget(sweep_dir: Path, write_spec: Write) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    engine_for(path, storage=".sweepspec/shared.wandb.jsonl")  # created before they start
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(2), context.Queue()
    procs = [context.Process(target=_worker, args=(str(path), start, 14, out)) for _ in "ab"]
    for proc in procs:
        proc.start()
    got = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0
    assert sorted(got[0] + got[1]) == list(range(14))
    assert got[0] and got[1]  # both asked
    engine = engine_for(path, storage=".sweepspec/shared.wandb.jsonl")
    assert [s.state for s in engine.summaries()] == ["COMPLETE"] * 14
    workers = {r["worker"] for r in _events(engine.label) if "ask" in r}
    assert len(workers) == 2


def _events(label: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(label).read_text().splitlines()[1:]]


def test_a_run_left_running_by_a_dead_worker_is_failed(sweep_dir: Path, write_spec: Write) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_ask_and_die, args=(str(path),))
    child.start()
    child.join()
    engine = engine_for(path)
    assert [s.state for s in engine.summaries()] == ["RUNNING"]
    assert engine.fail_stale() == [0]
    assert [s.state for s in engine.summaries()] == ["FAIL"]
    (row,) = engine.records()
    assert row["error"] == (
        f"its worker (pid {child.pid} on {socket.gethostname()}) ended while the trial ran: it "
        "was killed, or stopped by an error (a full disk)"
    )
    assert engine.fail_stale() == []


def _ask_and_die(path: str) -> None:
    engine = engine_for(Path(path))
    asked = engine.ask()
    assert asked is not None
    engine.report(asked, 0.5, 1)
    os._exit(0)


# --------------------------------------------------------------------------- (e) bad state


def test_a_corrupt_state_file_is_one_error_line_and_left_untouched(
    sweep_dir: Path, write_spec: Write
) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    drive_engine(engine_for(path), 2, 3, 1.0)
    state = Path(".sweepspec/sweep.wandb.jsonl")
    lines = state.read_bytes().splitlines(keepends=True)
    broken = b"".join(lines[:3]) + b'{"report": 1, "step": 4, "val\n' + b"".join(lines[3:])
    state.write_bytes(broken)
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        ".sweepspec/sweep.wandb.jsonl:4: error: the W&B engine's sweep state is unreadable: "
        "not JSON (Unterminated string starting at: line 1 column 26 (char 25)); it is left "
        "untouched (restore it, or move it away to start a new sweep)"
    )
    assert state.read_bytes() == broken

    state.write_bytes(b"".join(lines)[:-1])  # the last line cut short
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        f".sweepspec/sweep.wandb.jsonl:{len(lines)}: error: the W&B engine's sweep state is "
        "unreadable: the line is cut short; it is left untouched (restore it, or move it "
        "away to start a new sweep)"
    )


def test_a_file_that_is_not_its_state_is_refused(sweep_dir: Path, write_spec: Write) -> None:
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    journal = Path("study.journal")
    journal.write_text('{"op_code": 0, "worker_id": "w", "study_name": "s"}\n')
    with pytest.raises(EngineError) as err:
        engine_for(path, storage="study.journal")
    assert str(err.value) == (
        f"study.journal:1: error: not a sweep state of sweepspec's W&B engine (no "
        f"{FORMAT!r} header); it is left untouched"
    )
    with pytest.raises(EngineError) as err:
        engine_for(path, storage="postgresql://me:secret@db/sweeps")
    assert str(err.value) == (
        "the W&B engine keeps its state in a file; --storage must be a file path, not the "
        "URL postgresql://me:***@db/sweeps"
    )


def test_a_sweep_sweeps_cannot_decide_on_is_refused_before_any_trial(
    sweep_dir: Path, write_spec: Write
) -> None:
    # W&B's bayes cannot encode categorical_w_probabilities (MAPPING.md section 4, pitfall 7)
    path = write_spec(
        """
        method: bayes
        metric: {name: loss}
        parameters:
          x: {min: 0.0, max: 1.0}
          kind:
            distribution: categorical_w_probabilities
            values: [a, b]
            probabilities: [0.3, 0.7]
        """
    )
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        "W&B's sweeps.next_runs failed on run 0 of .sweepspec/sweep.wandb.jsonl: IndexError: "
        "arrays used as indices must be of integer (or boolean) type"
    )
    assert not Path(".sweepspec/sweep.wandb.jsonl").exists()
    # hyperband whose max_iter and s leave no band
    path = write_spec(spec_text("random", "min_iter", "minimize"))
    path.write_text(
        path.read_text().replace(HYPERBAND["min_iter"], "{type: hyperband, max_iter: 2, s: 1}")
    )
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        "W&B's sweeps.stop_runs failed on .sweepspec/sweep.wandb.jsonl: ValueError: Bands must "
        "be an array of length at least 1. Try increasing s, decreasing eta, or increasing "
        "min_iter."
    )


def test_custom_method_is_refused(sweep_dir: Path, write_spec: Write) -> None:
    path = write_spec(
        """
        method: custom
        metric: {name: loss}
        scheduler: {engine: optuna}
        parameters:
          x: {min: 0.0, max: 1.0}
        """
    )
    with pytest.raises(EngineError) as err:
        engine_for(path)
    assert str(err.value) == (
        "the W&B engine runs method grid, random or bayes; 'method: custom' needs a custom "
        "scheduler (use --engine optuna)"
    )
