from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweepspec.cli import cli
from sweepspec.main import main

GOOD = """
method: bayes
metric: {name: val_loss, goal: minimize}
parameters:
  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}
  bs: {values: [8, 16, 32]}
"""
WARN = """
method: grid
parameters:
  lr: {min: 0.001, max: 0.1}
"""
BAD = """
method: bayes
metric: {name: val_loss, goal: minimise}
parameters:
  lr: {distribution: log_uniform_value, min: 1.0e-5, max: 1.0e-2}
"""


def test_valid_file_exits_0_silently(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(GOOD)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_errors_exit_1_one_line_each(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(BAD)
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', but got "
        "'minimise'; did you mean 'minimize'?\n"
        f"{path}:4:22: error: parameters.lr.distribution: unknown distribution "
        "'log_uniform_value'; did you mean 'log_uniform_values'?\n"
    )


def test_warnings_pass_unless_strict(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(WARN)
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1
    warning = (
        f"{path}:3:3: warning: parameters.lr: W&B's grid search cannot enumerate "
        "'uniform'; give 'values', or use int_uniform or q_uniform\n"
    )
    assert capsys.readouterr().err == warning * 2


def test_every_file_is_checked(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_spec(BAD, "bad.yaml")
    good = write_spec(GOOD, "good.yaml")
    missing = good.parent / "missing.yaml"
    assert main(["validate", str(bad), str(good), str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"{bad}:2:32: error: metric.goal: must be one of 'minimize' or 'maximize', but got "
        "'minimise'; did you mean 'minimize'?\n"
        f"{bad}:4:22: error: parameters.lr.distribution: unknown distribution "
        "'log_uniform_value'; did you mean 'log_uniform_values'?\n"
        f"{missing}:1:1: error: cannot read the file: No such file or directory\n"
    )


def test_json_format(write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(WARN)
    assert main(["validate", "--format", "json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "file": str(path),
            "line": 3,
            "col": 3,
            "level": "warning",
            "path": "parameters.lr",
            "rule": "grid-continuous",
            "message": "W&B's grid search cannot enumerate 'uniform'; give 'values', or use "
            "int_uniform or q_uniform",
        }
    ]


def test_click_path_gives_the_same_result(write_spec) -> None:
    """main() takes a click-free path for plain `validate` calls; click gives the same."""
    path = write_spec(BAD)
    result = CliRunner().invoke(cli, ["validate", "--format=json", str(path)])
    fast = subprocess.run(
        [sys.executable, "-m", "sweepspec", "validate", "--format=json", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.exit_code == fast.returncode == 1
    assert json.loads(result.output) == json.loads(fast.stdout)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert capsys.readouterr().err == (
        "Usage: sweepspec validate [OPTIONS] FILES...\n"
        "Try 'sweepspec validate --help' for help.\n"
        "\n"
        "Error: Missing argument 'FILES...'.\n"
    )
    assert main(["validate", "--bogus", "x.yaml"]) == 2


def test_help() -> None:
    result = CliRunner().invoke(cli, ["validate", "--help"])
    assert result.exit_code == 0
    assert (
        "  Check spec FILES; one line per finding on stderr: FILE:LINE:COL: LEVEL:"
        in result.output.splitlines()
    )


def test_imports_no_engine_and_runs_no_user_code(
    tmp_path: Path, imported_modules: Callable[..., set[str]]
) -> None:
    """validate must stay light (pre-commit) and safe on any branch: it neither imports
    optuna, mlflow, wandb or sweeps, nor the module a spec names."""
    (tmp_path / "evil.py").write_text("open('pwned', 'w').write('x')\ndef objective(t): pass\n")
    (tmp_path / "sweep.yaml").write_text(
        "method: random\nfunction: evil:objective\n"
        "program: evil.py\nparameters: {x: {values: [1]}}\n"
    )
    # exit code 1: function and program are both set
    imported = imported_modules(
        "from sweepspec.main import main\nassert main(['validate', 'sweep.yaml']) == 1\n",
        cwd=tmp_path,
    )
    assert "sweepspec" in imported
    assert imported & {"optuna", "mlflow", "wandb", "sweeps", "evil", "numpy"} == set()
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- issue 8


def test_two_parameters_with_one_flat_name_are_refused_everywhere(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.6: a nested optimizer.lr and a literal 'optimizer.lr' flatten to one name, and
    one of them was silently dropped; validate and compile refuse the file, at the second."""
    path = write_spec("""
        method: random
        metric: {name: loss}
        parameters:
          optimizer:
            parameters:
              lr: {values: [0.1, 0.01]}
          optimizer.lr: {values: [1.0]}
    """)
    line = (
        f"{path}:7:3: error: parameters.optimizer.lr: 'optimizer.lr' is also the flat name of "
        "parameters.optimizer.parameters.lr (line 6); one of them would be lost: rename one "
        "(nested parameters are named by their dotted path)\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == line
    assert main(["compile", str(path), "--engine", "optuna"]) == 1
    assert capsys.readouterr() == ("", line)


def test_a_huge_file_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.10: a 50 MB spec (one list of 9M ints) took 102 s and 3.2 GB to refuse."""
    path = tmp_path / "sweep.yaml"
    with path.open("w") as fh:
        fh.write("method: grid\nparameters:\n  x:\n    values: [0")
        fh.write(", 1" * 9_000_000)
        fh.write("]\n")
    size = path.stat().st_size
    # VmHWM is the process's peak memory (ru_maxrss would count the forking test process)
    code = (
        "import re, time\n"
        "from sweepspec.main import main\n"
        "start = time.monotonic()\n"
        f"assert main(['validate', {str(path)!r}]) == 1\n"
        "status = open('/proc/self/status').read()\n"
        "print(time.monotonic() - start, re.search(r'VmHWM:\\s+(\\d+) kB', status)[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr == (
        f"{path}:1:1: error: the file is {size} bytes, more than 1048576 (1 MiB); a sweep spec "
        "is a few KB: refusing to read it\n"
    )
    seconds, max_rss_kb = map(float, done.stdout.split())
    assert seconds < 10 and max_rss_kb < 200_000  # was 102 s and 3.2 GB


def test_a_list_too_long_for_a_sweep_is_one_line(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.10: a categorical of a million values cannot be a sweep; under 1 MiB such a list
    has at most ~500,000 items, and is refused at the list with bounded memory."""
    values = ",".join(["1"] * 100_001)
    path = write_spec(f"method: random\nparameters:\n  x:\n    values: [{values}]\n")
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}:4:13: error: a list of more than 100000 items is too long for a sweep (no "
        "search explores that many values); use a range such as int_uniform or q_uniform\n"
    )


def test_values_that_are_not_numbers_strings_or_booleans(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.16: a date, !!binary or a NUL character reached compile, run and results
    ("not JSON serializable"); now they are findings, and nothing runs with them."""
    path = write_spec("""
        method: grid
        metric: {name: loss}
        program: train.py
        parameters:
          day: {values: [2024-01-01, "2024-01-02"]}
          blob: {value: !!binary aGVsbG8=}
          name: {values: ["a\\0b"]}
    """)
    expected = (
        f"{path}:5:18: error: parameters.day.values[0]: YAML reads '2024-01-01' as a date; a "
        "value must be a number, a string, true/false or null: quote it to keep it as a string\n"
        f"{path}:6:17: error: parameters.blob.value: YAML reads 'aGVsbG8=' as binary data; a "
        "value must be a number, a string, true/false or null: remove '!!binary' to keep it as "
        "a string\n"
        f"{path}:7:19: error: parameters.name.values[0]: a string must not hold a NUL character "
        "(\\0): no command line, file name or tracker can carry it\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == expected
    for command in (
        ["compile", "--engine", "wandb"],
        ["compile", "--engine", "optuna"],
        ["run", "--tracker", "none"],
        ["results"],
    ):
        assert main([command[0], str(path), *command[1:]]) == 1
        assert capsys.readouterr() == ("", expected)


def test_infinite_and_overflowing_bounds_are_errors_before_any_run(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.16: NaN, inf or 1e308 bounds were compiled to `Infinity` and sampled."""
    path = write_spec("""
        method: random
        metric: {name: loss}
        program: train.py
        parameters:
          lr: {min: 0.0, max: .inf}
          wide: {min: -1.0e+308, max: 1.0e+308}
    """)
    expected = (
        f"{path}:5:23: error: parameters.lr.max: max=inf is not a finite number: W&B would "
        "sample infinite or undefined (nan) values from this parameter, and Optuna cannot\n"
        f"{path}:6:31: error: parameters.wide.max: 'max - min' must be a finite number, but "
        "got min=-1e+308, max=1e+308: their difference overflows, and the samples would be inf\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == expected
    for command in (
        ["compile", "--engine", "optuna", "--format", "json"],
        ["run", "--tracker", "none"],
        ["results"],
    ):
        assert main([command[0], str(path), *command[1:]]) == 1
        assert capsys.readouterr() == ("", expected)


def test_wandb_scheduler_and_run_cap_as_wandb_sees_them(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.23: W&B refuses a scheduler 'optimizer' without 'source' (validate passed it and
    compile wrote it), and a float run_cap got a hint about int_uniform."""
    path = write_spec("""
        method: custom
        metric: {name: loss}
        run_cap: 10.5
        scheduler: {engine: optuna, optimizer: make_study}
        parameters: {x: {values: [1]}}
    """)
    expected = (
        f"{path}:3:10: error: run_cap: must be an integer, but got 10.5; run_cap is the number "
        "of runs the sweep starts at most, a whole number > 0 (e.g. 'run_cap: 10')\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == expected
    path.write_text(path.read_text().replace("10.5", "10"))
    expected = (
        f"{path}:4:29: error: scheduler.optimizer: 'scheduler.optimizer' names a function in "
        "'scheduler.source', which is not set: add 'source: FILE.py' (W&B refuses the file "
        "without it)\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == expected
    assert main(["compile", str(path), "--engine", "wandb"]) == 1
    assert capsys.readouterr() == ("", expected)


def test_multi_objective_outside_custom_warns_that_wandb_refuses_it(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.23: W&B's validator refuses `metrics` unless `method: custom`."""
    path = write_spec("""
        method: bayes
        metrics: [{name: accuracy, goal: maximize}, {name: latency}]
        parameters: {x: {values: [1, 2]}}
    """)
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1
    assert capsys.readouterr().err == 2 * (
        f"{path}:2:1: warning: metrics: W&B refuses 'metrics' with 'method: bayes' (it needs "
        "'method: custom' and a custom scheduler); Optuna optimises every metric, W&B only the "
        "first\n"
    )


def test_unquoted_macro_in_a_flow_list_says_quote_it(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.24: `command: [${env}, ...]`, as the docs had it, is not YAML."""
    path = write_spec("""
        method: random
        program: train.py
        command: [python, ${program}, "${args}"]
        parameters: {x: {values: [1]}}
    """)
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}:3:19: error: not valid YAML: while parsing a flow sequence did not find "
        "expected ',' or ']'; inside [...] YAML reads '${' as the start of a mapping: quote "
        'the macro, "${program}"\n'
    )


def test_unquoted_macro_in_a_flow_mapping_says_quote_it_inside_braces(
    write_spec, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8.24: in a {...} the hint named [...], a bracket the line does not have."""
    path = write_spec("""
        method: random
        program: train.py
        parameters:
          data: {value: ${envvar:DATA_DIR}}
    """)
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}:4:17: error: not valid YAML: while parsing a flow mapping did not find "
        "expected ',' or '}'; inside {...} YAML reads '${' as the start of a mapping: quote "
        'the macro, "${envvar:DATA_DIR}"\n'
    )


@pytest.mark.parametrize("end", [[], ["--"]])  # the click-free path, and click's
def test_json_to_a_full_stdout_is_one_line(end: list[str], write_spec, tmp_path: Path) -> None:
    """Issue 8.16: ``validate --format json > /dev/full`` was an internal error (exit 3) on
    the click-free path pre-commit takes; it is one line, exit 1, as through click."""
    path = write_spec("method: random\nparameters:\n  a: {values: [1, 2]}\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "sweepspec", "validate", "--format", "json", *end, str(path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
    assert (done.returncode, done.stderr) == (
        1,
        "Error: cannot write to stdout: No space left on device\n",
    )
