"""Trial executors: the trial object, Python functions, and commands run as W&B's agent runs
them (real subprocesses, real signals)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Pipe
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sweepspec.main import main
from sweepspec.runners import trials
from sweepspec.runners.trials import (
    Command,
    FunctionError,
    Monitor,
    Trial,
    calls_bare,
    conclude,
    load_function,
    run_command,
    run_function,
)

Write = Callable[..., Path]


@pytest.fixture(params=["run", "script"])
def contract(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """Where the trial contract (W&B's macros, metric lines) is tested: ``sweepspec run``'s
    trial executors, or the script ``compile --format python`` generates (imported as a
    module), which must behave the same."""
    if request.param == "run":
        return trials
    spec = tmp_path / "sweep.yaml"
    spec.write_text("method: random\nprogram: t.py\nparameters:\n  a: {values: [1]}\n")
    script = tmp_path / "generated_study.py"
    args = ["compile", str(spec), "--engine", "optuna", "--format", "python", "-o", str(script)]
    assert main(args) == 0
    loaded = importlib.util.spec_from_file_location("generated_study", script)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    monkeypatch.setitem(sys.modules, "generated_study", module)  # dataclasses look it up
    loaded.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- W&B's macros


def _wandb_args(params: dict[str, Any]) -> dict[str, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    out = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    out.pop("args_dict")
    return out


@pytest.mark.parametrize(
    "params",
    [
        {"lr": 0.001, "layers": 3, "act": "gelu"},
        {"flag": True, "off": False, "none": None},
        {"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "name": "two words"},
        {"cmd": "x; rm -rf ~", "quote": 'it\'s "quoted"'},
    ],
)
def test_macros_are_wandbs_own(params: dict[str, Any], contract: ModuleType) -> None:
    assert contract.macro_values(params) == _wandb_args(params)


def test_default_command_is_wandbs(contract: ModuleType) -> None:
    argv = contract.command_line(
        None, "train.py", {"lr": 0.1, "flag": False}, "/tmp/c.json", interpreter="/venv/bin/python"
    )
    assert argv == ["/usr/bin/env", "/venv/bin/python", "train.py", "--lr=0.1", "--flag=False"]


def test_command_macros_and_envvars(monkeypatch: pytest.MonkeyPatch, contract: ModuleType) -> None:
    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.delenv("NOT_SET", raising=False)
    template = [
        "${interpreter}",
        "-u",
        "${program}",
        "--data=${envvar:DATA_DIR}",
        "${envvar:NOT_SET}",
        "${args_no_boolean_flags}",
        "${args_json_file}",
        7,
    ]
    argv = contract.command_line(
        template, "t.py", {"a": True, "b": False, "c": 2}, "/w/config.json", interpreter="py"
    )
    assert argv == [
        "py",
        "-u",
        "t.py",
        "--data=/data",
        "NOT_SET",
        "--a",
        "--c=2",
        "/w/config.json",
        "7",
    ]


# --------------------------------------------------------------------------- stdout lines


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"val_loss": 0.5, "_step": 3}', ({"val_loss": 0.5}, 3)),
        ('{"loss": 1, "note": "text", "step": 2}', ({"loss": 1.0}, 2)),
        ("val_loss=0.25 acc=0.9", ({"val_loss": 0.25, "acc": 0.9}, None)),
        ("val_loss=0.25, step=4", ({"val_loss": 0.25}, 4)),
        ("loss=1e-3\r", ({"loss": 0.001}, None)),
        ("Epoch 1: loss=0.3", None),
        ("--lr=0.1", None),
        ("loss=high", None),
        ('{"note": "no numbers"}', None),
        ('{"step": 3}', None),
        ("[1, 2]", None),
        ("", None),
    ],
)
def test_parse_line(line: str, expected: Any, contract: ModuleType) -> None:
    assert contract.parse_line(line) == expected


# --------------------------------------------------------------------------- the trial object


def test_report_checks_its_arguments() -> None:
    trial = Trial({"x": 1}, 0, 0, Monitor("loss"))
    with pytest.raises(
        TypeError,
        match=r"^'metrics' must be a dict of numbers, but got "
        r"float: 0\.5$",
    ):
        trial.report(0.5)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^'metrics\['loss'\]' must be a number, but got "
        r"str: 'low'$",
    ):
        trial.report({"loss": "low"})
    with pytest.raises(ValueError, match=r"^'step >= 0' must hold, but got step=-1$"):
        trial.report({"loss": 1.0}, -1)
    with pytest.raises(TypeError, match=r"^'step' must be an integer, but got float: 1\.5$"):
        trial.report({"loss": 1.0}, 1.5)  # type: ignore[arg-type]


def test_steps_count_from_zero_without_a_step() -> None:
    monitor = Monitor("loss")
    trial = Trial({}, 0, 0, monitor)
    trial.report({"loss": 3.0})
    trial.report({"loss": 2.0}, step=10)
    trial.report({"loss": 1.0})
    assert [(p.key, p.value, p.step) for p in monitor.history] == [
        ("loss", 3.0, 0),
        ("loss", 2.0, 10),
        ("loss", 1.0, 11),
    ]


def test_pruning_is_asked_with_finite_objective_values_only() -> None:
    asked: list[tuple[float, int]] = []

    def prune(value: float, step: int) -> bool:
        asked.append((value, step))
        return step >= 2

    monitor = Monitor("loss", prune)
    trial = Trial({}, 0, 0, monitor)
    trial.report({"acc": 0.5}, 0)
    trial.report({"loss": float("nan")}, 1)
    assert not trial.should_stop()
    trial.report({"loss": 0.4}, 2)
    assert trial.should_stop()
    trial.report({"loss": 0.3}, 3)
    assert asked == [(0.4, 2)]


# --------------------------------------------------------------------------- outcomes


def _run(
    function: Callable[[Trial], Any],
    objectives: list[str] = None,
    monitor: Monitor | None = None,
) -> Any:
    if objectives is None:
        objectives = ["loss"]
    return run_function(
        function,
        {"x": 2},
        0,
        7,
        monitor or Monitor(objectives[0] if objectives else None),
        objectives,
    )


def test_dict_number_and_reported_values_become_the_objective() -> None:
    assert _run(lambda t: {"loss": t.params["x"] * 2, "acc": 0.5}).values == [4.0]
    number = _run(lambda t: 1.5)
    assert (number.state, number.values, number.metrics) == ("COMPLETE", [1.5], {"loss": 1.5})

    def reports(trial: Trial) -> None:
        trial.report({"loss": 3.0, "acc": 0.1}, 0)
        trial.report({"loss": 2.0}, 1)

    reported = _run(reports)
    assert (reported.values, reported.metrics) == ([2.0], {"loss": 2.0, "acc": 0.1})
    unnamed = _run(lambda t: 4, objectives=[])
    assert (unnamed.values, unnamed.metrics) == ([4.0], {"objective": 4.0})


@pytest.mark.parametrize(
    "result, message",
    [
        (
            None,
            "the trial returned None and reported no 'loss'; return {\"loss\": ...} or a "
            "number, or call trial.report",
        ),
        (
            {"acc": 1},
            "the trial returned a dict without 'loss' and reported no 'loss'; return "
            '{"loss": ...} or a number, or call trial.report',
        ),
        ("0.5", "the trial must return a dict of metrics or a number, but returned str: '0.5'"),
        (float("inf"), "the objective must be a finite number, but the trial gave loss=inf"),
        ({"loss": [1]}, "'metrics['loss']' must be a number, but got list: [1]"),
    ],
)
def test_nothing_usable_is_a_failure_naming_the_metric(result: Any, message: str) -> None:
    outcome = _run(lambda t: result)
    assert (outcome.state, outcome.error) == ("FAIL", message)


def test_one_number_for_several_metrics_fails() -> None:
    outcome = _run(lambda t: 1.0, objectives=["loss", "latency"])
    assert outcome.error == (
        "the trial returned one number, but the spec has 2 metrics "
        "(loss, latency); return a dict holding each"
    )


def test_an_exception_is_a_failure_with_its_message() -> None:
    def crash(trial: Trial) -> float:
        trial.report({"loss": 1.0}, 0)
        return 1 / 0

    outcome = _run(crash)
    assert (outcome.state, outcome.error) == ("FAIL", "ZeroDivisionError: division by zero")
    assert outcome.metrics == {"loss": 1.0}
    assert outcome.traceback is not None and "return 1 / 0" in outcome.traceback


def test_sys_exit_in_a_trial_is_a_failure_not_the_end() -> None:
    outcome = _run(lambda t: sys.exit(0))
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the trial function called sys.exit(0) instead of returning its metrics",
    )


class StopEverything(BaseException):
    """Not an Exception: what frameworks raise to unwind (issue 8, item 16)."""


def _raise(exc: BaseException) -> Callable[[Trial], Any]:
    def trial(t: Trial) -> Any:
        t.report({"loss": 2.0}, 0)
        raise exc

    return trial


@pytest.mark.parametrize(
    "exc, message",
    [
        (StopEverything("halt"), "StopEverything: halt"),
        (GeneratorExit(), "GeneratorExit"),
    ],
)
def test_a_base_exception_is_a_failure_naming_it(exc: BaseException, message: str) -> None:
    outcome = _run(_raise(exc))
    assert (outcome.state, outcome.error, outcome.metrics) == ("FAIL", message, {"loss": 2.0})


def test_keyboard_interrupt_in_a_trial_still_interrupts() -> None:
    with pytest.raises(KeyboardInterrupt):
        _run(_raise(KeyboardInterrupt()))


# --------------------------------------------------------------------------- isolation


def test_a_function_runs_in_a_process_of_its_own_with_a_clean_argv() -> None:
    def where(trial: Trial) -> dict[str, float]:
        trial.report({"loss": 1.0, "pid": os.getpid()}, 0)
        return {"loss": 0.5, "argv": len(sys.argv), "argv0": float(sys.argv[0] == "train.py")}

    outcome = run_function(where, {}, 0, 0, Monitor("loss"), ["loss"], argv0="train.py")
    assert outcome.state == "COMPLETE"
    assert outcome.metrics["pid"] != os.getpid()
    assert (outcome.metrics["argv"], outcome.metrics["argv0"]) == (1, 1)


@pytest.mark.parametrize(
    "code, error",
    [
        (
            "import ctypes, faulthandler; faulthandler.disable(); ctypes.string_at(0)",
            "the trial's process was killed by SIGSEGV before the function returned",
        ),
        ("os._exit(0)", "the trial's process exited with code 0 before the function returned"),
        ("os._exit(3)", "the trial's process exited with code 3 before the function returned"),
    ],
)
def test_a_crash_in_a_function_is_a_failure(code: str, error: str) -> None:
    def crashes(trial: Trial) -> float:
        trial.report({"loss": 4.0}, 0)
        exec(code)
        return 1.0

    outcome = _run(crashes)
    assert (outcome.state, outcome.error, outcome.metrics) == ("FAIL", error, {"loss": 4.0})


def test_a_blocked_function_is_killed_after_its_timeout(tmp_path: Path) -> None:
    def blocks(trial: Trial) -> float:
        (tmp_path / "pid").write_text(str(os.getpid()))
        time.sleep(60)
        return 1.0

    started = time.monotonic()
    outcome = run_function(blocks, {}, 0, 0, Monitor("loss", timeout=0.2), ["loss"], grace=0.3)
    assert time.monotonic() - started < 10
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the trial ran past budget.trial_timeout (0.2s) and was stopped",
    )
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_an_overrunning_function_is_not_complete() -> None:
    def overruns(trial: Trial) -> float:
        time.sleep(0.3)  # never asks should_stop()
        return 1.0

    outcome = run_function(overruns, {}, 0, 0, Monitor("loss", timeout=0.1), ["loss"])
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the trial ran past budget.trial_timeout (0.1s) and was stopped",
    )


def test_a_result_that_cannot_leave_its_process_is_a_failure() -> None:
    outcome = _run(lambda t: {"loss": lambda: 1})
    assert outcome.state == "FAIL"
    assert outcome.error is not None and outcome.error.startswith(
        "the trial returned dict, which cannot be sent back from its process: "
    )


def test_returning_after_should_stop_is_stopped_early() -> None:
    def stops(trial: Trial) -> dict[str, float]:
        for step in range(10):
            trial.report({"loss": 1.0 / (step + 1)}, step)
            if trial.should_stop():
                return {"extra": 1.0}
        return {"loss": 0.0}

    outcome = _run(stops, monitor=Monitor("loss", lambda value, step: step == 3))
    assert (outcome.state, outcome.metrics) == ("PRUNED", {"loss": 0.25, "extra": 1.0})
    assert outcome.values is None


def test_a_function_past_its_timeout_is_asked_to_stop_and_fails() -> None:
    def polls(trial: Trial) -> float:
        while not trial.should_stop():
            time.sleep(0.01)
        return 1.0

    monitor = Monitor("loss", timeout=0.1)
    outcome = _run(polls, monitor=monitor)
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the trial ran past budget.trial_timeout (0.1s) and was stopped",
    )


def test_conclude_a_command_that_reported_nothing() -> None:
    outcome = conclude(None, Monitor("val_loss"), ["val_loss"], "the command")
    assert outcome.error == (
        "the command reported no 'val_loss': print a JSON line "
        '{"val_loss": ...} or a line val_loss=..., or use '
        "sweepspec.reporter"
    )


# --------------------------------------------------------------------------- loading


def test_load_function_from_the_specs_folder(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        class Holder:
            @staticmethod
            def run(trial):
                return 1.0
        NOT_CALLABLE = 3
    """,
        "trial_fn_a.py",
    )
    function = load_function("trial_fn_a:Holder.run", str(tmp_path))
    assert function(None) == 1.0  # type: ignore[arg-type]
    with pytest.raises(
        FunctionError,
        match=r"^function 'trial_fn_a:missing': 'trial_fn_a' "
        r"has no attribute 'missing'$",
    ):
        load_function("trial_fn_a:missing", str(tmp_path))
    with pytest.raises(
        FunctionError,
        match=r"^function 'trial_fn_a:NOT_CALLABLE' must be "
        r"callable, but got int$",
    ):
        load_function("trial_fn_a:NOT_CALLABLE", str(tmp_path))
    with pytest.raises(
        FunctionError,
        match=r"^function 'no_such_module_x:f': cannot import "
        r"'no_such_module_x' from .*: ModuleNotFoundError: No module named "
        r"'no_such_module_x'$",
    ):
        load_function("no_such_module_x:f", str(tmp_path))


def test_a_function_without_the_trial_argument_is_refused(
    tmp_path: Path, write_spec: Write
) -> None:
    write_spec(
        """
        def train():
            pass
        def two(a, b):
            pass
        def flexible(trial, extra=1, *rest, **kw):
            return 1.0
    """,
        "wandb_style_a.py",
    )
    train = load_function("wandb_style_a:train", str(tmp_path))  # W&B's agent calls it as is
    assert calls_bare("wandb_style_a:train", train) is True
    with pytest.raises(FunctionError) as caught:
        calls_bare("wandb_style_a:two", load_function("wandb_style_a:two", str(tmp_path)))
    assert str(caught.value) == (
        "function 'wandb_style_a:two' cannot be called with the trial nor with no argument "
        "(its signature is two(a, b)): write 'def two(trial):' and read the parameters from "
        "trial.params, or 'def two():' reading wandb.config as for wandb.agent"
    )
    flexible = load_function("wandb_style_a:flexible", str(tmp_path))
    assert calls_bare("wandb_style_a:flexible", flexible) is False
    assert flexible(None) == 1.0  # type: ignore[arg-type]


def test_import_sees_a_clean_argv_and_sys_exit_is_refused(
    tmp_path: Path, write_spec: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["sweepspec", "run", "sweep.yaml", "--trials", "3"])
    write_spec(
        """
        import argparse, sys
        ARGV = list(sys.argv)
        ARGS = argparse.ArgumentParser().parse_args()
        def objective(trial):
            return 1.0
    """,
        "argv_trial_a.py",
    )
    load_function("argv_trial_a:objective", str(tmp_path))
    assert sys.modules["argv_trial_a"].ARGV == [str(tmp_path / "argv_trial_a.py")]
    assert sys.argv == ["sweepspec", "run", "sweep.yaml", "--trials", "3"]
    write_spec("import sys\nsys.exit(0)\n", "exits_trial_a.py")
    with pytest.raises(FunctionError) as caught:
        load_function("exits_trial_a:objective", str(tmp_path))
    assert str(caught.value) == (
        "function 'exits_trial_a:objective': importing 'exits_trial_a' called sys.exit(0), "
        "so there is no function to run; put the module's own run under "
        "'if __name__ == \"__main__\":'"
    )
    write_spec("class Halt(BaseException):\n    pass\nraise Halt('no')\n", "halts_trial_a.py")
    with pytest.raises(
        FunctionError,
        match=r"^function 'halts_trial_a:f': cannot import 'halts_trial_a' from .*: Halt: no$",
    ):
        load_function("halts_trial_a:f", str(tmp_path))


def test_a_module_of_the_same_name_elsewhere_is_not_reused(tmp_path: Path) -> None:
    for name, value in (("one", 1), ("two", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same_name_trial.py").write_text(f"def f(t):\n    return {value}\n")
    one = load_function("same_name_trial:f", str(tmp_path / "one"))
    two = load_function("same_name_trial:f", str(tmp_path / "two"))
    assert (one(None), two(None)) == (1, 2)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- commands


def _command(tmp_path: Path, program: str = "prog.py", **kwargs: Any) -> Command:
    return Command(None, program, str(tmp_path), echo=lambda line, stream: None, **kwargs)


def test_shell_metacharacters_arrive_as_one_argument(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        import json, sys
        json.dump(sys.argv[1:], open("argv.json", "w"))
        print(json.dumps({"loss": 0.5}))
    """,
        "prog.py",
    )
    value = "x; rm -rf ~ && touch pwned $(touch pwned2) `touch pwned3` | cat"
    outcome = run_command(
        _command(tmp_path), {"name": value, "n": 2}, 0, 0, Monitor("loss"), ["loss"]
    )
    assert outcome.state == "COMPLETE"
    assert json.loads((tmp_path / "argv.json").read_text()) == [f"--name={value}", "--n=2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["argv.json", "prog.py"]


def test_reporter_json_lines_and_katib_lines_all_count(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        import json, os
        from sweepspec import reporter
        print(json.dumps({"loss": 3.0, "_step": 0}))
        print("loss=2.5 acc=0.7 step=1")
        print("some other output")
        reporter.report({"loss": 2.0}, step=2)
        reporter.report({"loss": 1.0, "seed": reporter.seed(),
                         "trial": int(os.environ["SWEEPSPEC_TRIAL"])}, step=3)
    """,
        "prog.py",
    )
    monitor = Monitor("loss")
    outcome = run_command(_command(tmp_path), {}, 5, 9, monitor, ["loss"])
    # stdout and the reporter's pipe are two channels: order within each is kept
    assert sorted((p.step, p.key, p.value) for p in monitor.history) == [
        (0, "loss", 3.0),
        (1, "acc", 0.7),
        (1, "loss", 2.5),
        (2, "loss", 2.0),
        (3, "loss", 1.0),
        (3, "seed", 5.0),
        (3, "trial", 9.0),
    ]
    assert (outcome.state, outcome.values) == ("COMPLETE", [1.0])


def test_failed_command_keeps_its_last_error_line(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        print("loss=0.5")
        1 / 0
    """,
        "prog.py",
    )
    outcome = run_command(_command(tmp_path), {}, 0, 0, Monitor("loss"), ["loss"])
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the command exited with code 1: ZeroDivisionError: division by zero",
    )
    assert outcome.metrics == {"loss": 0.5}


def test_a_command_that_cannot_start(tmp_path: Path) -> None:
    command = Command(["./missing-binary", "${args}"], None, str(tmp_path))
    outcome = run_command(command, {}, 0, 0, Monitor("loss"), ["loss"])
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "cannot start the command './missing-binary': No such file or directory",
    )


def test_pruned_command_gets_sigterm(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        import signal, sys, time
        from sweepspec import reporter
        def stop(signum, frame):
            open("terminated", "w").write(signal.Signals(signum).name)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        for step in range(1000):
            reporter.report({"loss": 1.0 / (step + 1)}, step=step)
            time.sleep(0.02)
    """,
        "prog.py",
    )
    monitor = Monitor("loss", lambda value, step: step >= 2)
    outcome = run_command(_command(tmp_path), {}, 0, 0, monitor, ["loss"])
    assert outcome.state == "PRUNED"
    assert (tmp_path / "terminated").read_text() == "SIGTERM"
    assert max(p.step for p in monitor.history) == 2


def test_command_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, write_spec: Write
) -> None:
    write_spec(
        """
        import os, signal, time
        from sweepspec import reporter
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open("pid", "w").write(str(os.getpid()))
        reporter.report({"loss": 1.0}, step=0)
        time.sleep(60)
    """,
        "prog.py",
    )
    started = time.monotonic()
    outcome = run_command(
        _command(tmp_path, grace=0.5), {}, 0, 0, Monitor("loss", lambda value, step: True), ["loss"]
    )
    elapsed = time.monotonic() - started
    assert outcome.state == "PRUNED"
    assert 0.5 <= elapsed < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_trial_timeout_stops_a_command(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        import time
        print("loss=1.0", flush=True)
        time.sleep(60)
    """,
        "prog.py",
    )
    monitor = Monitor("loss", timeout=0.3)
    outcome = run_command(_command(tmp_path, grace=1.0), {}, 0, 0, monitor, ["loss"])
    assert (outcome.state, outcome.error) == (
        "FAIL",
        "the command ran past budget.trial_timeout (0.3s) and was stopped",
    )


def test_command_output_is_echoed(tmp_path: Path, write_spec: Write) -> None:
    write_spec(
        """
        import sys
        print("hello")
        print("warn", file=sys.stderr)
        print("loss=2")
    """,
        "prog.py",
    )
    lines: list[tuple[str, str]] = []
    command = Command(
        None, "prog.py", str(tmp_path), echo=lambda line, stream: lines.append((stream, line))
    )
    run_command(command, {}, 0, 0, Monitor("loss"), ["loss"])
    assert sorted(lines) == [("err", "warn"), ("out", "hello"), ("out", "loss=2")]


# --------------------------------------------------------------- one process per worker

KEEPER = """
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = []  # module globals last from one trial to the next in the worker's trial process


def objective(trial):
    CALLS.append(trial.number)
    seen = {
        "number": trial.number,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "calls": list(CALLS),
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
        "left": os.environ.get("LEFT_BY_A_TRIAL"),
    }
    with open(os.path.join(HERE, "seen.jsonl"), "a") as fh:
        fh.write(json.dumps(seen) + "\\n")
    os.environ["LEFT_BY_A_TRIAL"] = str(trial.number)
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")
    sys.argv.append("--left-by-a-trial")
    if trial.number == 2:
        os._exit(5)
    return {"loss": trial.params["x"]}
"""


def test_a_worker_runs_its_function_trials_in_one_process_and_replaces_a_dead_one(
    tmp_path: Path, write_spec: Write
) -> None:
    """One process per worker runs the trials one after another (no fork per trial): module
    globals stay, the working folder, sys.argv and the environment are put back after each
    trial; a trial that kills it is a FAIL and the next trials run in a new one."""
    write_spec(
        """
        method: random
        metric: {name: loss}
        function: keeper:objective
        run_cap: 5
        parameters:
          x: {min: 0.0, max: 1.0}
        """
    )
    write_spec(KEEPER, "keeper.py")
    done = subprocess.Popen(
        [sys.executable, "-m", "sweepspec", "run", "sweep.yaml", "--tracker", "none"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert [s["number"] for s in seen] == [0, 1, 2, 3, 4, 5]  # 5 finished, 1 failed
    assert [s["calls"] for s in seen] == [[0], [0, 1], [0, 1, 2], [3], [3, 4], [3, 4, 5]]
    first, second = seen[0]["pid"], seen[3]["pid"]
    assert [s["pid"] for s in seen] == [first] * 3 + [second] * 3
    assert done.pid not in (first, second) and first != second
    assert {s["ppid"] for s in seen} == {done.pid}
    assert {s["cwd"] for s in seen} == {str(tmp_path)}
    assert {tuple(s["argv"]) for s in seen} == {(str(tmp_path / "keeper.py"),)}
    assert {s["left"] for s in seen} == {None}
    rows = json.loads(
        subprocess.run(
            [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", "json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [r["state"] for r in rows] == ["COMPLETE"] * 2 + ["FAIL"] + ["COMPLETE"] * 3
    assert rows[2]["error"] == "the trial's process exited with code 5 before the function returned"


def test_a_trial_that_must_see_other_devices_gets_a_new_process() -> None:
    """The trial process keeps the environment it was started with (a worker's GPUs): a
    trial with other devices is run in a new one, never in one that saw others."""

    def devices(trial: Trial) -> dict[str, float]:
        return {"loss": 0.0, "pid": os.getpid(), "cuda": float(os.environ["CUDA_VISIBLE_DEVICES"])}

    def run(cuda: str) -> dict[str, float]:
        env = {"CUDA_VISIBLE_DEVICES": cuda}
        outcome = run_function(devices, {}, 0, 0, Monitor("loss"), ["loss"], env=env)
        assert outcome.state == "COMPLETE", outcome.error
        return outcome.metrics

    one, again, other = run("1"), run("1"), run("2")
    assert (one["cuda"], again["cuda"], other["cuda"]) == (1.0, 1.0, 2.0)
    assert one["pid"] == again["pid"] != other["pid"]
    trials.reap_trials()
    with pytest.raises(ProcessLookupError):
        os.kill(int(other["pid"]), 0)


def test_a_worker_whose_environment_changed_gets_a_new_trial_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trial process was forked with the worker's environment: once the worker's
    changes (a program that sets a variable, then runs again), the next trial runs in a new
    process that sees it; an unchanged one keeps the process."""

    def seen(trial: Trial) -> dict[str, float]:
        return {"loss": 0.0, "pid": os.getpid(), "seen": float(os.environ.get("SET_LATER", -1))}

    def run() -> dict[str, float]:
        outcome = run_function(seen, {}, 0, 0, Monitor("loss"), ["loss"])
        assert outcome.state == "COMPLETE", outcome.error
        return outcome.metrics

    first, same = run(), run()
    monkeypatch.setenv("SET_LATER", "7")
    changed = run()
    trials.reap_trials()
    assert (first["seen"], same["seen"], changed["seen"]) == (-1.0, -1.0, 7.0)
    assert first["pid"] == same["pid"] != changed["pid"]


def test_each_function_trial_gets_its_own_parameters_in_its_workers_wandb_file(
    tmp_path: Path,
) -> None:
    """W&B's agent gives a run its parameters in a file (``WANDB_SWEEP_PARAM_PATH``): a
    worker writes one file again for each of its trials (they run one at a time), and each
    trial finds its own parameters there, under a run id of its own."""

    def given(trial: Trial) -> dict[str, float]:
        import yaml

        path = os.environ["WANDB_SWEEP_PARAM_PATH"]
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
        with open(tmp_path / "seen.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps([path, os.environ["WANDB_RUN_ID"]]) + "\n")
        return {"loss": 0.0, "lr": config["lr"]["value"], "version": config["wandb_version"]}

    metrics = []
    for lr in (0.1, 0.2, 0.3):
        outcome = run_function(
            given, {"lr": lr}, 0, 0, Monitor("loss"), ["loss"], folder=str(tmp_path)
        )
        assert outcome.state == "COMPLETE", outcome.error
        metrics.append(outcome.metrics)
    trials.reap_trials()
    assert [(m["lr"], m["version"]) for m in metrics] == [(0.1, 1.0), (0.2, 1.0), (0.3, 1.0)]
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len({path for path, _ in seen}) == 1
    assert len({run for _, run in seen}) == 3


def test_a_worker_polls_for_a_short_trials_end_before_it_sleeps() -> None:
    """:func:`trials._spun`: what is already there, what comes while it polls, and a trial
    process that is gone (its end of the pipe closed) are seen; nothing within the time
    given is not."""
    here, there = Pipe()
    assert trials._spun(here, 0.0) is False
    assert trials._spun(here, 0.001) is False
    there.send("done")
    assert trials._spun(here, 0.0) is True
    assert here.recv() == "done"
    later = threading.Timer(0.01, there.send, ("late",))
    later.start()
    assert trials._spun(here, 30.0) is True  # returns as soon as it comes
    later.join()
    assert here.recv() == "late"
    there.close()
    assert trials._spun(here, 0.0) is True
    with pytest.raises(EOFError):
        here.recv()
    here.close()
