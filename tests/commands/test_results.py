"""``sweepspec results`` (SPEC section 6): the trials from the engine's storage, found from the
spec alone, as a table, CSV or JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepspec.main import main

GRID = """
method: grid
metric: {name: loss}
function: results_trial:objective
parameters:
  x: {values: [1, 2, 3]}
  opt:
    parameters:
      lr: {value: 0.5}
"""

TRIAL = """
def objective(trial):
    if trial.params["x"] == 2:
        raise ValueError("x=2 is broken")
    trial.report({"loss": 100.0, "acc": 0.5}, 0)
    return {"loss": trial.params["x"] * trial.params["opt"]["lr"], "nan": float("nan")}
"""


@pytest.fixture
def swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A finished grid sweep in a fresh working directory; its spec's path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results_trial.py").write_text(textwrap.dedent(TRIAL))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(GRID).lstrip())
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    capsys.readouterr()
    return spec


def _results(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["results", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _by_x(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return sorted(rows, key=lambda r: r["params"]["x"])  # type: ignore[index]


def test_json_one_object_per_trial(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _results(capsys, "sweep.yaml", "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [r["number"] for r in rows] == [0, 1, 2]
    assert all(r["datetime_start"] and r["datetime_complete"] for r in rows)
    shown = [
        {k: r[k] for k in ("state", "params", "metrics", "values", "error") if k in r}
        for r in _by_x(rows)
    ]
    assert shown == [
        {
            "state": "COMPLETE",
            "params": {"x": 1, "opt.lr": 0.5},
            "metrics": {"loss": 0.5, "acc": 0.5, "nan": None},
            "values": [0.5],
        },
        {
            "state": "FAIL",
            "params": {"x": 2, "opt.lr": 0.5},
            "metrics": {},
            "values": None,
            "error": "ValueError: x=2 is broken",
        },
        {
            "state": "COMPLETE",
            "params": {"x": 3, "opt.lr": 0.5},
            "metrics": {"loss": 1.5, "acc": 0.5, "nan": None},
            "values": [1.5],
        },
    ]


def test_table_and_csv_have_params_and_metrics_columns(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads(_results(capsys, "sweep.yaml", "--format", "json")[1])
    order = {r["params"]["x"]: r["number"] for r in rows}
    columns = "number,state,params.*,metrics.*,error"
    _, table, _ = _results(capsys, "sweep.yaml", "--columns", columns)
    expected_csv = {
        1: ["COMPLETE", "1", "0.5", "0.5", "0.5", "nan", ""],
        2: ["FAIL", "2", "0.5", "", "", "", "ValueError: x=2 is broken"],
        3: ["COMPLETE", "3", "0.5", "1.5", "0.5", "nan", ""],
    }
    expected = {
        1: "COMPLETE  1         0.5            0.5           0.5          nan",
        2: "FAIL      2         0.5                                                    "
        "ValueError: x=2 is broken",
        3: "COMPLETE  3         0.5            1.5           0.5          nan",
    }
    assert table.splitlines() == [
        "number  state     params.x  params.opt.lr  metrics.loss  metrics.acc  metrics.nan  error"
    ] + [
        f"{n}       {expected[x]}".rstrip()
        for x, n in sorted(order.items(), key=lambda item: item[1])
    ]
    _, csv, _ = _results(capsys, "sweep.yaml", "--format", "csv")
    lines = [line.split(",") for line in csv.splitlines()]
    assert lines[0] == (
        "number,state,params.x,params.opt.lr,metrics.loss,metrics.acc,metrics.nan,duration,error"
    ).split(",")
    durations = {line[0]: float(line[7]) for line in lines[1:]}
    assert all(0 <= d < 30 for d in durations.values()), durations
    assert [line[:7] + line[8:] for line in lines[1:]] == [
        [str(n), *expected_csv[x]] for x, n in sorted(order.items(), key=lambda item: item[1])
    ]


def _run_seeded(folder: Path, capsys: pytest.CaptureFixture[str], xs: str) -> None:
    """Run ``seeds.yaml`` in ``folder``: the grid over ``x`` in ``xs`` with ``seeds: [0, 10]``,
    each run's loss ``x + seed``."""
    (folder / "results_trial.py").write_text(
        "def objective(trial):\n    return trial.params['x'] + trial.seed\n"
    )
    (folder / "seeds.yaml").write_text(
        textwrap.dedent(GRID.replace("[1, 2, 3]", xs)).lstrip() + "seeds: [0, 10]\n"
    )
    assert main(["run", "seeds.yaml", "--tracker", "none"]) == 0
    capsys.readouterr()


def test_per_seed_values_are_kept(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_seeded(sweep_dir, capsys, "[1]")
    rows = json.loads(_results(capsys, "seeds.yaml", "--format", "json")[1])
    assert (rows[0]["metrics"], rows[0]["seeds"]) == (
        {"loss": 6.0},
        [{"seed": 0, "metrics": {"loss": 1.0}}, {"seed": 10, "metrics": {"loss": 11.0}}],
    )


def test_a_sweep_that_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(GRID).lstrip())
    assert _results(capsys, "sweep.yaml") == (
        1,
        "",
        (
            "Error: no sweep state at .sweepspec/sweep.journal (the sweep has not run from this "
            "folder); run 'sweepspec run' first, or pass --storage\n"
        ),
    )
    assert not (tmp_path / ".sweepspec").exists()


def test_results_from_an_rdb_storage(
    swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    (tmp_path / "other.yaml").write_text(textwrap.dedent(GRID).lstrip())
    assert main(["run", "other.yaml", "--tracker", "none", "--storage", url]) == 0
    capsys.readouterr()
    code, out, _ = _results(capsys, "other.yaml", "--storage", url, "--format", "json")
    assert (code, len(json.loads(out))) == (0, 3)
    assert _results(capsys, "sweep.yaml", "--storage", url) == (
        1,
        "",
        f"Error: no study 'sweep' in {url}; it holds 'other'\n",
    )


HOSTILE = r"""
method: grid
metric: {name: loss}
function: hostile_trial:objective
parameters:
  text:
    values: ["=HYPERLINK(\"http://x\")", "@SUM(A1)", "+1", "-1", "\t=1", "\r=1", "plain",
             "\e[31mred\e[0m", "two\nlines"]
"""

HOSTILE_TRIAL = """
def objective(trial):
    return {"loss": -0.5, "nan": float("nan"), "inf": float("-inf")}
"""


@pytest.fixture
def hostile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """A finished sweep whose parameter values are spreadsheet formulas and terminal escapes;
    the values in the order of the trials."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile_trial.py").write_text(textwrap.dedent(HOSTILE_TRIAL))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(HOSTILE).lstrip())
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    capsys.readouterr()
    rows = json.loads(_results(capsys, "sweep.yaml", "--format", "json")[1])
    return [r["params"]["text"] for r in rows]


def test_csv_cells_cannot_be_formulas(
    hostile: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """OWASP's CSV-injection rule: a text cell starting with = + - @ tab or CR gets a leading
    quote; numbers (the metric -0.5) stay numbers."""
    import csv as csv_module

    code, out, err = _results(capsys, "sweep.yaml", "--format", "csv")
    assert (code, err) == (0, "")
    rows = list(csv_module.reader(io.StringIO(out, newline="")))
    assert rows[0] == [
        "number",
        "state",
        "params.text",
        "metrics.loss",
        "metrics.inf",
        "metrics.nan",
        "duration",
    ]
    safe = {
        '=HYPERLINK("http://x")': '\'=HYPERLINK("http://x")',
        "@SUM(A1)": "'@SUM(A1)",
        "+1": "'+1",
        "-1": "'-1",
        "\t=1": "'\t=1",
        "\r=1": "'\r=1",
        "plain": "plain",
        "\x1b[31mred\x1b[0m": "\x1b[31mred\x1b[0m",
        "two\nlines": "two\nlines",
    }
    assert [r[2:6] for r in rows[1:]] == [[safe[v], "-0.5", "-inf", "nan"] for v in hostile]


def test_the_table_prints_no_control_characters(
    hostile: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _results(capsys, "sweep.yaml")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 1 + len(hostile)
    assert all(line.isprintable() for line in lines)
    shown = {line.split()[2] for line in lines[1:]}
    assert {"\\x1b[31mred\\x1b[0m", "two\\nlines", "\\t=1", "\\r=1"} <= shown


def test_json_has_no_bare_nan_or_infinity(
    hostile: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-finite numbers are null: a strict parser (no NaN/Infinity tokens) reads the output."""

    def refuse(token: str) -> None:
        raise ValueError(f"bare {token} in the JSON")

    code, out, _ = _results(capsys, "sweep.yaml", "--format", "json")
    rows = json.loads(out, parse_constant=refuse)
    assert code == 0
    assert {json.dumps(r["metrics"]) for r in rows} == {'{"loss": -0.5, "inf": null, "nan": null}'}


def test_a_full_stdout_is_one_line(hostile: list[str], tmp_path: Path) -> None:
    """``results > /dev/full``: one error line and exit 1, not a traceback or exit 3/120."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "sweepspec", "results", "sweep.yaml", "--format", "json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
    assert (done.returncode, done.stderr) == (
        1,
        "Error: cannot write to stdout: No space left on device\n",
    )


def test_filter_state_sort_and_columns(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 1: the table filtered, sorted and cut to columns named as
    mlflow.search_runs names them."""
    code, out, err = _results(
        capsys,
        "sweep.yaml",
        "--filter",
        "metrics.loss < 1.4 and params.opt.lr = 0.5",
        "--format",
        "csv",
        "--columns",
        "params.x,metrics.loss",
    )
    assert (code, out, err) == (0, "params.x,metrics.loss\r\n1,0.5\r\n", "")
    code, out, _ = _results(
        capsys,
        "sweep.yaml",
        "--state",
        "COMPLETE",
        "--sort",
        "-metrics.loss",
        "--format",
        "csv",
        "--columns",
        "params.x,state",
    )
    assert (code, out) == (0, "params.x,state\r\n3,COMPLETE\r\n1,COMPLETE\r\n")
    code, out, _ = _results(
        capsys,
        "sweep.yaml",
        "--sort",
        "params.x",
        "--desc",
        "--format",
        "json",
        "--columns",
        "params.x",
    )
    assert (code, json.loads(out)) == (0, [{"params.x": 3}, {"params.x": 2}, {"params.x": 1}])
    code, out, _ = _results(capsys, "sweep.yaml", "--state", "FAIL", "--format", "json")
    assert [r["error"] for r in json.loads(out)] == ["ValueError: x=2 is broken"]


def test_a_selection_that_cannot_be_read_is_one_line(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _results(capsys, "sweep.yaml", "--filter", "metrics.los < 1") == (
        1,
        "",
        "Error: --filter: no column 'metrics.los' in the table; did you mean 'metrics.loss'? "
        "(columns: number, state, params.x, params.opt.lr, metrics.loss, metrics.acc, "
        "metrics.nan, duration, error, datetime_start, datetime_complete)\n",
    )
    assert _results(capsys, "sweep.yaml", "--desc") == (
        1,
        "",
        "Error: --desc needs --sort COLUMN\n",
    )
    assert _results(capsys, "sweep.yaml", "--per-seed") == (
        1,
        "",
        "Error: --per-seed: the spec has no 'seeds', so each trial is one run\n",
    )
    code, out, err = _results(capsys, "sweep.yaml", "--filter", "metrics.loss > 99")
    assert (code, err) == (0, "sweepspec: no trial of the 3 matches the selection\n")
    assert out.startswith("number  state  params.x  params.opt.lr  metrics.loss")


def test_per_seed_rows(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_seeded(sweep_dir, capsys, "[1, 2]")
    code, out, _ = _results(
        capsys,
        "seeds.yaml",
        "--per-seed",
        "--format",
        "csv",
        "--columns",
        "number,seed,params.x,metrics.loss",
        "--sort",
        "metrics.loss",
    )
    assert code == 0
    trials = json.loads(_results(capsys, "seeds.yaml", "--format", "json")[1])
    by_x = {r["params"]["x"]: r["number"] for r in trials}
    assert out.splitlines() == [
        "number,seed,params.x,metrics.loss",
        f"{by_x[1]},0,1,1.0",
        f"{by_x[2]},0,2,2.0",
        f"{by_x[1]},10,1,11.0",
        f"{by_x[2]},10,2,12.0",
    ]


def test_results_as_a_pandas_dataframe(swept: Path) -> None:
    import sweepspec

    frame = sweepspec.results("sweep.yaml")
    assert list(frame.columns) == [
        "number",
        "state",
        "params.x",
        "params.opt.lr",
        "metrics.loss",
        "metrics.acc",
        "metrics.nan",
        "duration",
        "error",
        "datetime_start",
        "datetime_complete",
    ]
    complete = frame[frame["state"] == "COMPLETE"].sort_values("metrics.loss")
    assert list(complete["params.x"]) == [1, 3]
    assert list(complete["metrics.loss"]) == [0.5, 1.5]
