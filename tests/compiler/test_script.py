"""``compile --engine optuna --format python``: a standalone script that runs a small sweep on
its own, with sweepspec made impossible to import."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from sweepspec.compiler.base import CompileError
from sweepspec.compiler.optuna import compile_optuna
from sweepspec.main import main
from sweepspec.spec import check_text

TRAIN_FUNCTION = """
def objective(trial):
    p = trial.params
    loss = 0.0
    for step in range(1, 10):
        loss = abs(p["opt"]["lr"] - 0.01) * 10 + p["noise"] ** 2 + 1.0 / step
        if p["kind"] == "b":
            loss += sum(p["layout"]) / 1000
        trial.report({"loss": loss}, step)
        if trial.should_stop():
            break
    return {"loss": loss, "seed": trial.seed}
"""

FUNCTION_SPEC = """
method: random
function: train:objective
metric: {name: loss}
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
run_cap: 12
parameters:
  opt:
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
  noise: {distribution: normal, mu: 0, sigma: 0.1}
  kind: {values: [a, b]}
  layout: {values: [[1, 2], [3]], when: {kind: b}}
  c: {value: 3}
"""

TRAIN_PROGRAM = """
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
parser.add_argument("--depth", type=int)
args = parser.parse_args()
for step in range(3):
    print(json.dumps({"val_loss": args.lr * args.depth / (step + 1), "_step": step}))
print("seed", os.environ["SWEEPSPEC_SEED"])
"""

PROGRAM_SPEC = """
method: grid
program: train.py
metric: {name: val_loss}
parameters:
  lr: {values: [0.1, 0.2]}
  depth: {min: 1, max: 2}
"""


@pytest.fixture
def blocked(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import sweepspec`` fails."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sweepspec.py").write_text("raise ImportError('sweepspec must not be needed')\n")
    return {**os.environ, "PYTHONPATH": str(block)}


def _script(
    write_spec: Callable[..., Path], spec: str, module: str, code: str, tmp_path: Path
) -> Path:
    path = write_spec(spec)
    (tmp_path / module).write_text(code)
    out = tmp_path / "out" / "study.py"
    out.parent.mkdir()
    assert (
        main(["compile", str(path), "--engine", "optuna", "--format", "python", "-o", str(out)])
        == 0
    )
    return out


def _run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=script.parent,
        timeout=120,
    )


def test_function_sweep_runs_without_sweepspec(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    script = _script(write_spec, FUNCTION_SPEC, "train.py", TRAIN_FUNCTION, tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    done = _run(script, blocked, "--seed", "1", "--storage", storage, "--study-name", "s")
    assert done.returncode == 0, done.stderr
    best = json.loads(done.stdout.splitlines()[-1])
    assert best[0]["params"]["c"] == 3
    assert 1e-4 <= best[0]["params"]["opt.lr"] <= 1e-1
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 12
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.PRUNED in states
    plan = compile_optuna(check_text(FUNCTION_SPEC).spec)  # type: ignore[arg-type]
    assert study.user_attrs["sweepspec.search_space_hash"] == plan.search_space_hash()
    for trial in study.trials:
        real = trial.user_attrs["sweepspec.params"]
        assert ("layout" in real) == (real["kind"] == "b")
        assert real == plan.real_params(trial)


def test_same_seed_same_trials_as_the_compiled_study(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    spec = FUNCTION_SPEC.replace("early_terminate: {type: hyperband, min_iter: 1, eta: 3}\n", "")
    script = _script(write_spec, spec, "train.py", TRAIN_FUNCTION, tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert (
        _run(script, blocked, "--seed", "4", "--storage", storage, "--study-name", "s").returncode
        == 0
    )
    from_script = optuna.load_study(study_name="s", storage=storage)
    plan = compile_optuna(check_text(spec).spec)  # type: ignore[arg-type]
    study = plan.create_study(seed=4)
    study.optimize(lambda t: plan.suggest(t)["opt.lr"], n_trials=12)
    assert [t.params for t in from_script.trials] == [t.params for t in study.trials]


def test_program_sweep_runs_the_command_and_reads_json_lines(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    script = _script(write_spec, PROGRAM_SPEC, "train.py", TRAIN_PROGRAM, tmp_path)
    done = _run(script, blocked, "--trials", "4")
    assert done.returncode == 0, done.stderr
    best = json.loads(done.stdout.splitlines()[-1])
    assert best == [
        {
            "number": best[0]["number"],
            "values": [pytest.approx(0.1 / 3)],
            "params": {"lr": 0.1, "depth": 1},
        }
    ]
    assert "seed 0" in done.stdout


def test_script_inlines_wandbs_inverse_cdfs_and_imports_no_sweepspec(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    script = _script(write_spec, FUNCTION_SPEC, "train.py", TRAIN_FUNCTION, tmp_path)
    tree = ast.parse(script.read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert "sweepspec" not in imported
    text = script.read_text()
    assert "\ndef ppf(reparam" in text and "\ndef decode(reparam" in text


def test_python_needs_a_trial() -> None:
    plan = compile_optuna(check_text("method: random\nparameters:\n  a: {values: [1]}\n").spec)  # type: ignore[arg-type]
    with pytest.raises(
        CompileError,
        match=r"^--format python needs the trial: give "
        r"'function', or 'program'/'command'$",
    ):
        plan.to_python(".")


def test_a_nameless_spec_s_script_names_its_study_as_run_does(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    """Without ``name``, the study is named after the spec file, so that a second run of the
    script on the same storage resumes the study instead of starting an unnamed one."""
    script = _script(write_spec, FUNCTION_SPEC, "train.py", TRAIN_FUNCTION, tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for _ in range(2):
        done = _run(script, blocked, "--seed", "1", "--storage", storage, "--trials", "2")
        assert done.returncode == 0, done.stderr
    assert [(s.study_name, s.n_trials) for s in optuna.get_all_study_summaries(storage)] == [
        ("sweep", 4)
    ]


REPLAY = """
CURVES = {0: [0.5, 0.2, 0.4], 1: [0.6, 0.3, 0.35], 2: [0.9, 0.8, 0.7]}

def objective(trial):
    for value in CURVES[trial.params["i"]][:-1]:
        trial.report({"m": value}, 0)
    return {"m": CURVES[trial.params["i"]][-1]}
"""


@pytest.mark.parametrize(
    ("objective", "expected"), [("", {0: 0.2, 1: 0.3, 2: 0.7}), ("last", {0: 0.4, 1: 0.35, 2: 0.7})]
)
def test_the_script_scores_trials_as_the_runner_does(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    blocked: dict[str, str],
    objective: str,
    expected: dict[int, float],
) -> None:
    """W&B's score, the best value reported or returned, unless ``objective: last``."""
    spec = "method: grid\nmetric: {name: m}\nfunction: replay:objective\n"
    spec += f"objective: {objective}\n" if objective else ""
    spec += "parameters:\n  i: {values: [0, 1, 2]}\n"
    script = _script(write_spec, spec, "replay.py", REPLAY, tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    done = _run(script, blocked, "--storage", storage, "--study-name", "s")
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="s", storage=storage)
    assert {t.user_attrs["sweepspec.params"]["i"]: t.value for t in study.trials} == expected


# ----------------------------------------------- the script keeps `sweepspec run`'s contract

CONTRACT_PROGRAM = """
import json, os, sys
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:] if "=" in a)
with open(os.path.join("argvs", args["x"] + ".json"), "w") as fh:
    json.dump(sys.argv[1:], fh)
if args["x"] in os.environ.get("FAIL_ON", "").split(","):
    sys.exit("failing on purpose")
print(f"loss={float(args['x']) / 10} step=0")  # Katib's name=value line, not JSON
"""

CONTRACT_SPEC = """
method: grid
program: prog.py
command: ["${env}", "${interpreter}", "${program}", "--data=${envvar:DATA_DIR}/x", "${args}"]
metric: {name: loss}
parameters:
  x: {values: [1, 2, 3]}
"""


def _contract_script(
    write_spec: Callable[..., Path], tmp_path: Path, spec: str = CONTRACT_SPEC
) -> Path:
    (tmp_path / "argvs").mkdir()
    return _script(write_spec, spec, "prog.py", CONTRACT_PROGRAM, tmp_path)


def test_the_script_expands_envvar_inside_an_item_and_reads_katib_lines(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    script = _contract_script(write_spec, tmp_path)
    done = _run(script, {**blocked, "DATA_DIR": "/data"})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "argvs" / "2.json").read_text()) == ["--data=/data/x", "--x=2"]
    assert json.loads(done.stdout.splitlines()[-1])[0]["values"] == [pytest.approx(0.1)]


def test_a_failing_trial_does_not_end_the_script_and_results_reads_its_journal(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    """As ``sweepspec run``: a failed trial is recorded and the sweep goes on; without
    ``--storage`` the study is in the journal ``run`` uses, so ``sweepspec results`` (run in
    the same folder) shows it."""
    script = _contract_script(write_spec, tmp_path)
    done = _run(script, {**blocked, "FAIL_ON": "2"})
    assert done.returncode == 0, done.stderr
    assert (script.parent / ".sweepspec" / "sweep.journal").is_file()
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweepspec",
            "results",
            str(tmp_path / "sweep.yaml"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=script.parent,
    )
    assert shown.returncode == 0, shown.stderr
    rows = sorted(json.loads(shown.stdout), key=lambda r: r["params"]["x"])
    assert [(r["params"], r["state"], r["values"]) for r in rows] == [
        ({"x": 1}, "COMPLETE", [pytest.approx(0.1)]),
        ({"x": 2}, "FAIL", None),
        ({"x": 3}, "COMPLETE", [pytest.approx(0.3)]),
    ]


def test_the_script_stops_after_max_consecutive_failures(
    write_spec: Callable[..., Path], tmp_path: Path, blocked: dict[str, str]
) -> None:
    spec = CONTRACT_SPEC + "budget: {max_consecutive_failures: 2}\n"
    script = _contract_script(write_spec, tmp_path, spec)
    done = _run(script, {**blocked, "FAIL_ON": "1,2,3"})
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: 2 trials failed in a row (budget.max_consecutive_failures: 2); the last one, "
        "trial 1, failed with: RuntimeError: the command exited with code 1"
    ), done.stderr
    assert len(list((tmp_path / "argvs").iterdir())) == 2


def test_the_script_carries_wandbs_inverse_cdfs_only_when_its_spec_needs_them(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """A spec whose every parameter is native to Optuna gets no quantile code; one with a
    ``normal`` parameter gets it (``test_script_inlines_wandbs_inverse_cdfs...``)."""
    text = _script(write_spec, PROGRAM_SPEC, "train.py", TRAIN_PROGRAM, tmp_path).read_text()
    assert "\ndef ppf(" not in text and "\ndef decode(" not in text
    assert "\ndef command_line(" in text and "\ndef parse_line(" in text


KIND_CONFIGS = {
    "constant": {"distribution": "constant", "value": 3},
    "categorical": {"distribution": "categorical", "values": ["a", "b", "c"]},
    "categorical_w_probabilities": {
        "distribution": "categorical_w_probabilities",
        "values": ["a", "b"],
        "probabilities": [0.3, 0.7],
    },
    "int_uniform": {"distribution": "int_uniform", "min": 1, "max": 9},
    "uniform": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    "log_uniform": {"distribution": "q_log_uniform", "min": 0.0, "max": 2.0, "q": 0.5},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
    "inv_log_uniform": {"distribution": "inv_log_uniform", "min": 0.0, "max": 3.0},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1.0},
    "normal": {"distribution": "q_normal", "mu": 1.0, "sigma": 2.0, "q": 0.5},
    "log_normal": {"distribution": "log_normal", "mu": 0.0, "sigma": 1.0},
    "beta": {"distribution": "beta", "a": 2.0, "b": 5.0},
}


@pytest.mark.parametrize("kind", sorted(KIND_CONFIGS))
def test_the_script_s_distribution_code_is_cut_to_its_kinds_and_decodes_as_ppf_does(
    kind: str,
) -> None:
    """Each reparam kind alone: the code the script carries decodes every quantile exactly as
    sweepspec's own inverse CDFs, and holds no other kind's function."""
    from sweepspec.compiler import _ppf
    from sweepspec.compiler._script import distribution_source
    from sweepspec.compiler.distributions import reparam_of

    reparam = reparam_of(KIND_CONFIGS[kind])
    assert reparam["kind"] == kind
    source = distribution_source({kind, "index"})
    namespace: dict[str, object] = {}
    exec(compile(source, f"<{kind}>", "exec"), namespace)
    decode = namespace["decode"]
    assert callable(decode)
    for u in (0.0, 1e-9, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        expected, got = _ppf.decode(reparam, u), decode(reparam, u)
        assert got == expected or (got != got and expected != expected), (kind, u)
    assert decode({"kind": "index", "values": [[1], {"a": 2}]}, "1") == {"a": 2}
    others = {f"def _ppf_{k}(" for k in KIND_CONFIGS if k != kind}
    assert [o for o in others if o in source] == []
