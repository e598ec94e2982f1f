"""``sweepspec compare`` (issue 11 items 2, 4, 7): the best configurations re-run over seeds on
the spec's engine, every pair tested, one verdict line each; resumable; what is missing said.

The quickstart test runs the README's quickstart sweep (examples/quickstart, copied, with a
shorter training: ``epochs: {value: 3}``, 4 trials) and recomputes every p-value of
``compare --top 3 --seeds 5 --format json`` with scipy from the scores it reports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy import stats

from sweepspec.analysis.compare import holm
from sweepspec.commands.compare import load_comparison
from sweepspec.main import main

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"

VERDICT = re.compile(
    r"^(?P<w>\S+) (?:beats|is ahead of|ties with) (?P<l>\S+): -?[0-9.e+-]+ val_loss "
    r"\(95% CI -?[0-9.e+-]+ to -?[0-9.e+-]+\), p(?:=[0-9.e+-]+|<0\.001) after Holm: "
    r"(?:significant|not significant)$"
)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _quickstart(folder: Path) -> Path:
    shutil.copy(QUICKSTART / "train.py", folder / "train.py")
    text = (QUICKSTART / "sweep.yaml").read_text()
    text = text.replace("run_cap: 30", "run_cap: 4")
    text = text.replace("parameters:\n", "parameters:\n  epochs: {value: 3}\n", 1)
    spec = folder / "sweep.yaml"
    spec.write_text(text)
    return spec


def test_quickstart_top_3_over_5_seeds_gives_scipys_p_values_and_a_verdict_per_pair(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _quickstart(sweep_dir)
    code, _, err = _cli(capsys, "run", "sweep.yaml", "--tracker", "none")
    assert code == 0, err
    code, out, err = _cli(
        capsys,
        "compare",
        "sweep.yaml",
        "--top",
        "3",
        "--seeds",
        "5",
        "--format",
        "json",
        "--tracker",
        "none",
    )
    assert code == 0, err
    data = json.loads(out)
    configs = {c["id"]: c for c in data["configs"]}
    assert len(configs) == 3 and all(c["seeds"] == [0, 1, 2, 3, 4] for c in configs.values())
    # trial.seed is the seed: one configuration scores differently over its seeds
    assert all(len(set(c["scores"])) > 1 for c in configs.values())
    # the three best distinct configurations of the sweep, by its val_loss
    code, out, _ = _cli(capsys, "results", "sweep.yaml", "--format", "json")
    rows = sorted(
        (r for r in json.loads(out) if r["state"] == "COMPLETE"), key=lambda r: r["values"][0]
    )
    assert [configs[f"trial-{r['number']}"]["params"] for r in rows[:3]] == [
        r["params"] for r in rows[:3]
    ]
    assert len(data["pairs"]) == 6  # 3 pairs x (ttest_rel, wilcoxon)
    for test, scipy_test in (("ttest_rel", stats.ttest_rel), ("wilcoxon", stats.wilcoxon)):
        family = [p for p in data["pairs"] if p["test"] == test]
        for pair in family:
            a, b = configs[pair["a"]]["scores"], configs[pair["b"]]["scores"]
            assert pair["p_value"] == scipy_test(a, b).pvalue
        assert [p["p_adjusted"] for p in family] == holm([p["p_value"] for p in family])
    assert len(data["verdicts"]) == 3
    assert all(VERDICT.match(line) for line in data["verdicts"]), data["verdicts"]

    # a second compare resumes: nothing runs again, the same figures come back as text
    code, out, err = _cli(capsys, "compare", "sweep.yaml", "--tracker", "none")
    assert code == 0, err
    assert "resuming after 15 trials" in err
    assert "trial 0 " not in err  # no trial ran
    lines = out.splitlines()
    assert (
        lines[0] == "3 configurations x 5 seeds (0, 1, 2, 3, 4), val_loss (minimize), best first:"
    )
    assert lines[4:] == data["verdicts"]


TRIAL = """
def objective(trial):
    x = trial.params["x"]
    if (x, trial.seed) in {(3.0, 1), (3.0, 3)}:
        raise ValueError("boom")
    value = x + 0.01 * ((trial.seed * 7) % 5)
    trial.report({"loss": value, "cost_usd": 0.5 * x}, 0)
    return {"loss": value, "cost_usd": 0.5 * x}
"""

SPEC = """
method: random
metric: {name: loss, goal: minimize}
function: trial_fn:objective
run_cap: 3
budget: {cost: {metric: cost_usd, max: 1000}}
parameters:
  x: {min: 0.0, max: 10.0}
"""

CONFIGS = """
one: {x: 1.0}
two: {x: 2.0}
three: {x: 3.0}
"""


def _write(folder: Path, spec: str = SPEC, trial: str = TRIAL, configs: str = CONFIGS) -> None:
    (folder / "trial_fn.py").write_text(textwrap.dedent(trial).lstrip())
    (folder / "sweep.yaml").write_text(textwrap.dedent(spec).lstrip())
    (folder / "configs.yaml").write_text(textwrap.dedent(configs).lstrip())


@pytest.mark.parametrize("engine", ["optuna", "wandb"])
def test_named_configs_failed_seeds_and_cost(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    _write(sweep_dir)
    code, out, err = _cli(
        capsys,
        "compare",
        "sweep.yaml",
        "--configs",
        "configs.yaml",
        "--seeds",
        "4",
        "--engine",
        engine,
        "--tracker",
        "none",
        "--format",
        "json",
    )
    assert code == 0, err
    data = json.loads(out)
    three = next(c for c in data["configs"] if c["id"] == "three")
    assert three["seeds"] == [0, 2] and three["scores"] == [3.0, 3.04]
    assert three["missing"] == {"1": "failed: ValueError: boom", "3": "failed: ValueError: boom"}
    assert three["cost"] == {"metric": "cost_usd", "total": 3.0, "mean": 1.5, "runs": 2}
    one = next(c for c in data["configs"] if c["id"] == "one")
    assert one["cost"] == {"metric": "cost_usd", "total": 2.0, "mean": 0.5, "runs": 4}
    assert data["cost"] == {"metric": "cost_usd", "total": 9.0, "runs": 10}
    pair = next(
        p for p in data["pairs"] if (p["a"], p["b"], p["test"]) == ("one", "three", "ttest_rel")
    )
    assert pair["seeds"] == [0, 2]
    with warnings.catch_warnings():  # the differences are equal: scipy warns, as compare does
        warnings.simplefilter("ignore")
        assert pair["p_value"] == stats.ttest_rel([1.0, 1.04], [3.0, 3.04]).pvalue
    assert data["verdicts"][1].endswith(
        "after Holm: significant (tested on the 2 seeds both have; three lacks seeds 1, 3)"
    )
    assert data["notes"] == [
        "three: 2 of 4 seeds finished: seed 1 failed: ValueError: boom; seed 3 failed: "
        "ValueError: boom"
    ]
    assert load_comparison("sweep.yaml") is not None  # what the report reads, nothing run


def test_the_text_output_names_the_cost_and_what_is_missing(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir)
    code, out, err = _cli(
        capsys,
        "compare",
        "sweep.yaml",
        "--configs",
        "configs.yaml",
        "--seeds",
        "4",
        "--tracker",
        "none",
    )
    assert code == 0, err
    assert out.splitlines()[1:4] == [
        "  one    mean 1.018 sd 0.017 over 4 seeds; cost_usd total 2, mean 0.5  (x=1.0)",
        "  two    mean 2.018 sd 0.017 over 4 seeds; cost_usd total 4, mean 1  (x=2.0)",
        "  three  mean 3.02 sd 0.028 over 2 seeds; cost_usd total 3, mean 1.5  (x=3.0)",
    ]
    assert out.splitlines()[-2:] == [
        "missing: three: 2 of 4 seeds finished: seed 1 failed: ValueError: boom; seed 3 "
        "failed: ValueError: boom",
        "cost_usd: 9 in total over the comparison's runs",
    ]


def test_other_seeds_are_a_changed_comparison_until_fresh(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir)
    args = ["compare", "sweep.yaml", "--configs", "configs.yaml", "--tracker", "none"]
    assert _cli(capsys, *args, "--seeds", "2")[0] == 0
    code, out, err = _cli(capsys, *args, "--seeds", "3")
    assert (code, out) == (1, "")
    assert err.startswith("Error: the search space differs from that of study 'sweep-compare'")
    assert err.count("\n") == 1
    code, out, err = _cli(capsys, *args, "--seeds", "3", "--fresh", "--format", "json")
    assert code == 0, err
    assert [c["seeds"] for c in json.loads(out)["configs"]] == [[0, 1, 2], [0, 1, 2], [0, 2]]


# --------------------------------------------------------------------------- bad input


def test_a_sweep_never_run_is_one_line(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(sweep_dir)
    code, out, err = _cli(capsys, "compare", "sweep.yaml", "--tracker", "none")
    assert (code, out, err) == (
        1,
        "",
        "Error: no sweep state at .sweepspec/sweep.journal (the sweep has not run from this "
        "folder); run 'sweepspec run' first, or pass --storage\n",
    )


@pytest.mark.parametrize(
    ("trial", "expected"),
    [
        (
            "def objective(trial):\n    raise ValueError('no')\n",
            "Error: sweep 'sweep' has 0 finished trials with a loss score (9 FAIL); compare "
            "needs at least 2 distinct configurations: run the sweep further ('sweepspec run "
            "sweep.yaml'), or give --configs FILE\n",
        ),
        (
            "def objective(trial):\n    return {'loss': 1.0}\n",
            "Error: sweep 'sweep' has 1 finished trial with a loss score (3 COMPLETE); compare "
            "needs at least 2 distinct configurations: run the sweep further ('sweepspec run "
            "sweep.yaml'), or give --configs FILE\n",
        ),
    ],
    ids=["no-finished-trial", "one-configuration"],
)
def test_too_few_finished_configurations_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], trial: str, expected: str
) -> None:
    spec = SPEC.replace("x: {min: 0.0, max: 10.0}", "x: {values: [1.0]}").replace(
        "budget: {cost: {metric: cost_usd, max: 1000}}\n", "budget: {max_consecutive_failures: 9}\n"
    )
    _write(sweep_dir, spec=spec, trial=trial)
    _cli(capsys, "run", "sweep.yaml", "--tracker", "none")
    assert _cli(capsys, "compare", "sweep.yaml", "--tracker", "none") == (1, "", expected)


def test_a_metric_never_logged_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir, trial="def objective(trial):\n    return {'accuracy': 0.5}\n")
    code, out, err = _cli(
        capsys, "compare", "sweep.yaml", "--configs", "configs.yaml", "--tracker", "none"
    )
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith("Error: trial ")
    assert err.splitlines()[-1].endswith(
        "never reported 'loss', the spec's metric; it reported 'accuracy'. Stopped after this "
        "trial: fix metric.name in the spec, or what the trial reports"
    )


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        (
            "one: {x: 1.0}\n",
            "Error: configs.yaml: compare needs at least 2 configurations; give "
            "one named configuration per key: 'NAME: {param: value, ...}'\n",
        ),
        (
            "one: {x: 1.0}\ntwo: {xx: 2.0}\n",
            "Error: configs.yaml: two: 'xx' is not a parameter of the spec; did you mean 'x'?\n",
        ),
        ("one: {x: 1.0}\ntwo: {}\n", "Error: configs.yaml: two: gives no value for 'x'\n"),
        (
            "one: [x]\ntwo: {x: 1}\n",
            "Error: configs.yaml: one: give one named configuration "
            "per key: 'NAME: {param: value, ...}'\n",
        ),
        ("one: {x: 1.0\n", None),
    ],
    ids=["one-config", "unknown-param", "missing-param", "not-a-mapping", "bad-yaml"],
)
def test_a_bad_configs_file_is_one_line(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], configs: str, expected: str | None
) -> None:
    _write(sweep_dir, configs=configs)
    code, out, err = _cli(
        capsys, "compare", "sweep.yaml", "--configs", "configs.yaml", "--tracker", "none"
    )
    assert (code, out) == (1, "")
    if expected is None:
        assert err.startswith("Error: configs.yaml: not valid YAML: line ")
        assert err.count("\n") == 1
    else:
        assert err == expected


# 'sweepspec' with tests/runners/test_drive.py's engine that drives its own trials registered
# as 'relay' before the CLI is built (its --engine choices come from the registry then); with
# "nodrives" the module does not say it drives, and only the opened engine shows it
RELAY_CLI = """
import sys
from sweepspec.runners import base
base.ENGINES["relay"] = "runners.test_drive"
if sys.argv[1] == "nodrives":
    import runners.test_drive as module
    del module.DRIVES
from sweepspec.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("declared", ["drives", "nodrives"])
def test_an_engine_that_drives_its_own_trials_is_refused(sweep_dir: Path, declared: str) -> None:
    _write(sweep_dir)
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", RELAY_CLI, declared, "compare", "sweep.yaml"]
        + ["--configs", "configs.yaml", "--engine", "relay", "--tracker", "none"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tests)},
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "Error: compare cannot run on the relay engine: it drives its own trials, and compare "
        "runs each configuration and seed in sweepspec's own loop; use an engine that does "
        "not: --engine optuna or wandb\n",
    )
    assert not (sweep_dir / ".sweepspec").exists()


def test_top_and_configs_together_and_several_metrics_are_refused(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(sweep_dir)
    assert _cli(capsys, "compare", "sweep.yaml", "--top", "2", "--configs", "configs.yaml") == (
        1,
        "",
        "Error: give --top K or --configs FILE, not both\n",
    )
    spec = SPEC.replace(
        "metric: {name: loss, goal: minimize}",
        "metrics: [{name: loss, goal: minimize}, {name: cost_usd, goal: minimize}]",
    )
    _write(sweep_dir, spec=spec)
    assert _cli(capsys, "compare", "sweep.yaml") == (
        1,
        "",
        "Error: sweep.yaml: compare tests one objective, the spec's 'metric', but the spec "
        "has 2 ('metrics')\n",
    )


def test_the_runs_are_logged_to_the_specs_mlflow_with_their_real_values(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], mlflow_store: Callable[[Path], str]
) -> None:
    import mlflow

    uri = mlflow_store(sweep_dir / "mlflow.db")
    _write(
        sweep_dir,
        spec=SPEC + f"tracking: {{tracker: mlflow, uri: '{uri}'}}\n",
        configs="one: {x: 1.0}\ntwo: {x: 2.0}\n",
    )
    code, out, err = _cli(
        capsys,
        "compare",
        "sweep.yaml",
        "--configs",
        "configs.yaml",
        "--seeds",
        "2",
        "--format",
        "json",
    )
    assert code == 0, err
    data = json.loads(out)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_name for r in parents] == ["sweep-compare"]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    logged = sorted((r.data.params["x"], r.data.metrics["loss"]) for r in trials)
    scores = sorted(
        (str(c["params"]["x"]), score) for c in data["configs"] for score in c["scores"]
    )
    assert logged == scores == [("1.0", 1.0), ("1.0", 1.02), ("2.0", 2.0), ("2.0", 2.02)]
