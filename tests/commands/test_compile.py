"""``sweepspec compile`` against hostile input and a hostile environment: strings that try to
break out of the artifact, output onto the spec itself, into a folder that cannot take it or
to a full stdout, values JSON cannot hold."""

from __future__ import annotations

import ast
import json
import os
import resource
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sweepspec.main import main

# A newline, triple quotes, quotes and a backslash in every string that reaches an artifact:
# the spec's folder and file name, the metric name, a program, a description, a categorical
# value (in a condition) and the budget's cost metric.
HOSTILE_NAME = 'x\ncommand: [sh, -c, "touch pwned"]\n#"""\\\'.yaml'
HOSTILE_FOLDER = 'd\n"""\\\'q'
HOSTILE_SPEC = r"""
method: random
engine: optuna
metric: {name: "m\n\"\"\"\\'"}
program: "train\nrun: 1.py"
description: "d\ncommand: [sh, -c, id]"
parameters:
  a: {values: ["x\n\"\"\"y", 2]}
  c: {values: [1, 2], when: {a: "x\n\"\"\"y"}}
budget:
  cost: {metric: "cost\ncommand: [sh, -c, id]\n#\"\"\"\\", max: 3}
"""


@pytest.fixture
def hostile_spec(tmp_path: Path) -> Path:
    folder = tmp_path / HOSTILE_FOLDER
    folder.mkdir()
    path = folder / HOSTILE_NAME
    path.write_text(HOSTILE_SPEC.lstrip(), encoding="utf-8")
    return path


def _compile(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compile", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_wandb_yaml_header_cannot_inject_keys(
    hostile_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The header comment holds the path and the spec's strings, each escaped onto its comment
    line: the YAML reads back as exactly the compiled config, with no key added."""
    code, as_json, _ = _compile(capsys, str(hostile_spec), "--engine", "wandb", "--format", "json")
    assert code == 0
    code, out, err = _compile(capsys, str(hostile_spec), "--engine", "wandb")
    assert code == 0
    assert yaml.safe_load(out) == json.loads(as_json)
    assert sorted(json.loads(as_json)) == [
        "description",
        "method",
        "metric",
        "parameters",
        "program",
    ]
    header = out[: out.index("description:")].splitlines()
    assert all(line.startswith("#") for line in header)
    escaped = str(hostile_spec).replace("\n", "\\n")
    assert header[0] == f"# W&B sweep config compiled by sweepspec from {escaped}."
    assert header[3] == (
        '#   budget.cost: W&B has no such limit (cost=cost\\ncommand: [sh, -c, id]\\n#"""\\ '
        "<= 3); removed"
    )
    # the warnings on stderr are one line each too, and so are the notes of --format json
    assert len(err.splitlines()) == 2
    notes = _compile(capsys, str(hostile_spec), "--engine", "wandb", "--format", "json")[2]
    assert notes.splitlines()[2] == (
        f"{escaped}: note: engine: removed: the default engine is sweepspec's choice, not part "
        "of a W&B config"
    )
    assert len(notes.splitlines()) == 3
    assert err.splitlines()[1] == (
        f"{escaped}: warning: unsupported on wandb: budget.cost: W&B has no such limit "
        '(cost=cost\\ncommand: [sh, -c, id]\\n#"""\\ <= 3); removed'
    )


def _statements(script: Path) -> list[str]:
    """The script's top-level statements, by kind and name."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    out = []
    for node in tree.body:
        name = getattr(node, "name", None)
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = ast.unparse(target)
        out.append(f"{type(node).__name__} {name}")
    return out


def _assigned(script: Path, name: str, **env: object) -> object:
    """Evaluate the top-level assignment of ``name`` in the script, with ``env`` as globals."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == name:
            assert node.value is not None  # type: ignore[union-attr]
            expr = ast.Expression(node.value)  # type: ignore[union-attr]
            return eval(compile(expr, str(script), "eval"), {"json": json, "os": os, **env})
    raise AssertionError(f"no {name} in the script")


def test_python_script_holds_every_string_as_a_literal(
    hostile_spec: Path, tmp_path: Path, write_spec: Callable[..., Path]
) -> None:
    """The path and the spec's strings are Python literals, never pasted into the docstring or
    a comment: the script has the same statements as a plain spec's, and each literal holds
    exactly the string."""
    out_folder = tmp_path / 'o\n"""\\'
    out_folder.mkdir()
    script = out_folder / 'study\n"""\\.py'
    argv = ["compile", str(hostile_spec), "--engine", "optuna", "--format", "python"]
    assert main([*argv, "-o", str(script)]) == 0
    plain = write_spec(
        "method: random\nmetric: {name: m}\nprogram: train.py\n"
        "parameters:\n  a: {values: [x, 2]}\n  c: {values: [1, 2], when: {a: x}}\n"
        "budget:\n  cost: {metric: cost, max: 3}\n",
        "plain.yaml",
    )
    plain_script = tmp_path / "plain.py"
    assert (
        main(
            [
                "compile",
                str(plain),
                "--engine",
                "optuna",
                "--format",
                "python",
                "-o",
                str(plain_script),
            ]
        )
        == 0
    )
    assert _statements(script) == _statements(plain_script)
    assert _assigned(script, "SOURCE") == str(hostile_spec)
    assert _assigned(script, "SPEC_DIR", __file__=str(script)) == str(hostile_spec.parent)
    plan = _assigned(script, "PLAN")
    assert isinstance(plan, dict)
    assert plan["metric_names"] == ['m\n"""\\\'']
    assert plan["trial"]["program"] == "train\nrun: 1.py"
    assert plan["conditions"] == {"c": {"a": ['x\n"""y']}}
    assert plan["budget"]["cost"] == {"metric": 'cost\ncommand: [sh, -c, id]\n#"""\\', "max": 3.0}


def test_output_onto_the_spec_itself_is_refused(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec("method: random\nparameters:\n  a: {values: [1, 2]}\n")
    before = path.read_text()
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    for target in (str(path), str(link), f"{tmp_path}/./sweep.yaml"):
        assert _compile(capsys, str(path), "--engine", "wandb", "-o", target) == (
            1,
            "",
            f"Error: -o {target} is the spec {path} itself; write the artifact to another file\n",
        )
    assert path.read_text() == before


@pytest.mark.parametrize("where", ["missing", "read-only"])
def test_output_into_a_folder_that_cannot_take_it(
    where: str, write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec("method: random\nparameters:\n  a: {values: [1, 2]}\n")
    if where == "missing":
        target, reason = tmp_path / "no" / "such" / "c.yaml", "No such file or directory"
    elif os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o555)
        target, reason = folder / "c.yaml", "Permission denied"
    else:  # root writes into any mode-555 folder; sysfs refuses even root
        target, reason = Path("/sys/sweepspec-c.yaml"), "Permission denied"
    assert _compile(capsys, str(path), "--engine", "wandb", "-o", str(target)) == (
        1,
        "",
        f"Error: cannot write {target}: {reason}\n",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["compile", "sweep.yaml", "--engine", "wandb"],
        ["compile", "sweep.yaml", "--engine", "optuna", "--format", "json"],
        ["schema"],
    ],
)
def test_a_full_stdout_is_one_line(
    args: list[str], write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """``> /dev/full``: one error line and exit 1, not a traceback at exit (exit 120) or 3."""
    write_spec("method: random\nparameters:\n  a: {values: [1, 2]}\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "sweepspec", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
    assert (done.returncode, done.stderr) == (
        1,
        "Error: cannot write to stdout: No space left on device\n",
    )


@pytest.mark.parametrize("engine", ["wandb", "optuna"])
@pytest.mark.parametrize(
    ("value", "read"),
    [
        (
            "2024-01-01",
            "'2024-01-01' as a date; a value must be a number, a string, "
            "true/false or null: quote it",
        ),
        (
            "2024-01-01 10:20:30",
            "'2024-01-01 10:20:30' as a date; a value must be a number, a "
            "string, true/false or null: quote it",
        ),
        (
            "!!binary aGVsbG8=",
            "'aGVsbG8=' as binary data; a value must be a number, a string, "
            "true/false or null: remove '!!binary'",
        ),
    ],
)
def test_a_value_json_cannot_hold_is_a_finding(
    engine: str,
    value: str,
    read: str,
    write_spec: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The spec loader refuses them (as validate does), so no compiler sees them."""
    path = write_spec(f"method: random\nparameters:\n  a: {{values: [1, {value}]}}\n")
    assert _compile(capsys, str(path), "--engine", engine) == (
        1,
        "",
        f"{path}:3:19: error: parameters.a.values[1]: YAML reads {read} to keep it as a string\n",
    )


def test_json_has_no_bare_nan_or_infinity(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Strict JSON has no NaN or Infinity: a non-finite number is written as null."""

    def refuse(token: str) -> None:
        raise ValueError(f"bare {token} in the JSON")

    path = write_spec("method: random\nparameters:\n  a: {values: [.nan, 1, .inf]}\n")
    for engine in ("wandb", "optuna"):
        code, out, _ = _compile(capsys, str(path), "--engine", engine, "--format", "json")
        assert code == 0
        data = json.loads(out, parse_constant=refuse)
        if engine == "wandb":
            assert data["parameters"]["a"] == {"values": [None, 1, None]}
        else:
            choices = data["distributions"]["a"]["attributes"]["choices"]
            assert choices == [None, 1, None]


HUGE_GRID = """
method: grid
metric: {name: loss}
program: train.py
parameters:
  x: {distribution: q_uniform, min: 0, max: 1000000, q: 0.0001}
  y: {values: [1, 2, 3]}
"""


def _one_gigabyte() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (["compile", "sweep.yaml"], "sweep.yaml: error: "),
        (["run", "sweep.yaml", "--tracker", "none"], "sweep.yaml: error: "),
        (["results", "sweep.yaml"], "Error: "),
    ],
)
def test_a_huge_grid_is_counted_not_enumerated(
    args: list[str], prefix: str, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """3e10 grid points: refused at once under a 1 GB address-space cap (enumerating them
    grew to 24 GB before), with how many points there are and the limit."""
    write_spec(HUGE_GRID)
    done = subprocess.run(
        [sys.executable, "-m", "sweepspec", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        preexec_fn=_one_gigabyte,
        timeout=120,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"{prefix}method: grid: the grid has 30,000,000,000 points (x: 10,000,000,000 x y: 3), "
        "more than the limit of 1,000,000; coarsen q or narrow the ranges, or use method: "
        "random\n",
    )


GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "compiler"


@pytest.mark.parametrize(
    "case", sorted(p.name for p in GOLDEN.iterdir() if (p / "spec.yaml").is_file())
)
def test_compile_for_wandb_writes_only_configs_wandb_accepts(
    case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``compile --engine wandb`` writes (YAML or JSON) passes W&B's own validator, or
    it writes nothing and exits 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps import schema_violations_from_proposed_config

    spec = str(GOLDEN / case / "spec.yaml")
    for fmt, parse in (("yaml", yaml.safe_load), ("json", json.loads)):
        code, out, _ = _compile(capsys, spec, "--engine", "wandb", "--format", fmt)
        if code == 0:
            assert schema_violations_from_proposed_config(parse(out)) == [], fmt
        else:
            assert (code, out) == (1, "")


def test_an_exponent_range_with_no_values_form_is_an_error_not_a_refused_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = str(GOLDEN / "log_uniform_underflow" / "spec.yaml")
    assert _compile(capsys, spec, "--engine", "wandb") == (
        1,
        "",
        f"{spec}: error: parameters.tiny: log_uniform with min=-800, max=-700 has no "
        "log_uniform_values form (the bounds 0.0, 9.85967654375977e-305 overflow or collapse), "
        "and W&B's validator refuses log_uniform: no config that W&B takes samples this range\n",
    )


def test_a_compile_error_in_another_command_is_one_line(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` on W&B's server compiles the W&B config too: a spec no W&B config can say is
    one line and exit 1 there as well, as on every engine, not an internal error."""
    path = write_spec(
        "method: random\nprogram: train.py\nengine: wandb\nwandb: {mode: server}\n"
        "parameters:\n  tiny: {distribution: log_uniform, min: -800, max: -700}\n"
    )
    assert main(["run", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}: error: parameters.tiny: log_uniform with min=-800, max=-700 has no "
        "log_uniform_values form (the bounds 0.0, 9.85967654375977e-305 overflow or collapse), "
        "and W&B's validator refuses log_uniform: no config that W&B takes samples this range\n"
    )


@pytest.mark.parametrize(
    ("storage", "written", "how"),
    [
        (
            "postgresql://ann@db.example:5432/sweeps?password=Pw-123&sslmode=require",
            "postgresql://ann@db.example:5432/sweeps?sslmode=require",
            "set PGPASSWORD when running it (libpq reads it when the URL has none)",
        ),
        (
            "mysql+pymysql://ann:Pw-123@db.example/sweeps",
            "mysql+pymysql://ann@db.example/sweeps",
            "give the whole URL with --storage when running it",
        ),
    ],
    ids=["postgres-query", "mysql"],
)
def test_the_script_keeps_no_storage_password(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], storage: str, written: str, how: str
) -> None:
    (sweep_dir / "sweep.yaml").write_text(
        "method: random\nmetric: {name: loss}\nprogram: train.py\n"
        f"optuna: {{storage: '{storage}'}}\nparameters:\n  x: {{min: 0.0, max: 1.0}}\n"
    )
    assert main(["compile", "sweep.yaml", "--engine", "optuna", "--format", "python"]) == 0
    out, err = capsys.readouterr()
    note = f"optuna.storage: written to the script without its password; {how}"
    assert err == f"sweep.yaml: note: {note}\n"
    assert "Pw-123" not in out
    assert f'"storage": "{written}"' in out and f"\n# {note}\n" in out
