"""``sweepspec report SPEC -o report.html`` (issue 11 item 5): one self-contained HTML page,
opened in a real headless Chromium (Debian's ``chromium``, driven by Playwright with no
browser download of its own): every image rendered, no console error, no request beyond the
page itself."""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweepspec.main import main

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_LOCK = "/tmp/sweepspec-chromium-install.lock"

SPEC = """
name: rep
method: {method}
metric: {{name: loss, goal: minimize}}
function: report_trial:objective
run_cap: {trials}
parameters:
  lr: {{distribution: log_uniform_values, min: 0.00001, max: 0.1}}
  width: {{values: [32, 64, 128]}}
  act: {{values: [relu, "<b>gelu</b>"]}}
early_terminate: {{type: hyperband, min_iter: 3, eta: 2}}
"""

TRIAL = """
import math


def objective(trial):
    lr, width = trial.params["lr"], trial.params["width"]
    loss = 1.0
    for step in range(12):
        base = abs(math.log10(lr) + 3) * 0.3 + (0.1 if trial.params["act"] == "relu" else 0.2)
        loss = base + 1.0 / (step + 1) + width * 0.001
        trial.report({"loss": loss, "tokens": (step + 1) * width * 16}, step)
        if trial.should_stop():
            break
    return {"loss": loss}
"""


def _sweep(
    folder: Path, capsys: pytest.CaptureFixture[str], *, trials: int = 12, engine: str = "optuna"
) -> Path:
    """A finished sweep of ``trials`` trials in ``folder`` (the working directory)."""
    (folder / "report_trial.py").write_text(textwrap.dedent(TRIAL))
    spec = folder / "sweep.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(method="random", trials=trials)).lstrip())
    args = ["run", "sweep.yaml", "--tracker", "none", "--engine", engine]
    assert main(args) == 0
    capsys.readouterr()
    return spec


@pytest.fixture
def swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    monkeypatch.chdir(tmp_path)
    return _sweep(tmp_path, capsys)


def _figures(page: str) -> dict[str, str]:
    """Each figure's id -> its caption (text, unescaped); the image's presence as a prefix
    ``img:`` when the figure has one."""
    out = {}
    for fid, body in re.findall(r'<figure id="plot-(\w+)">(.*?)</figure>', page, re.S):
        caption = re.sub(
            r"<[^>]+>", "", re.search(r"<figcaption>(.*?)</figcaption>", body, re.S)[1]
        )
        has = 'src="data:image/png;base64,' in body
        out[fid] = ("img:" if has else "") + html.unescape(caption)
    return out


# --------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed once (apt-get, under a file lock shared by every test
    process) when it is missing; a clear failure when it cannot be."""
    with open(CHROMIUM_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(CHROMIUM):
            _install_chromium()
    return CHROMIUM


def _install_chromium() -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.fail(
                f"{CHROMIUM} is missing and {' '.join(command)} failed "
                f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
            )


def _open_in_chromium(chromium: str, page: Path, tmp_path: Path) -> dict[str, Any]:
    """Load ``page`` in headless Chromium; what it saw: console errors, page errors, every
    request other than the page itself, and each image's natural size."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"console": [], "errors": [], "requests": []}
    url = page.as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            tab = browser.new_page()
            tab.on(
                "console",
                lambda m: seen["console"].append(m.text) if m.type == "error" else None,
            )
            tab.on("pageerror", lambda e: seen["errors"].append(str(e)))
            tab.on(
                "request",
                lambda r: (
                    seen["requests"].append(r.url)
                    if r.url != url and not r.url.startswith("data:")
                    else None
                ),
            )
            tab.goto(url, wait_until="load")
            seen["images"] = tab.evaluate(
                "() => Array.from(document.images).map(i => "
                "({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"
            )
            tab.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    return seen


# --------------------------------------------------------------------------- tests


def test_report_renders_in_chromium_with_every_image(
    swept: Path, tmp_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "sweep.yaml", "-o", "report.html"]) == 0
    assert capsys.readouterr() == ("wrote report.html: 12 trials\n", "")
    seen = _open_in_chromium(chromium, tmp_path / "report.html", tmp_path)
    assert (seen["console"], seen["errors"], seen["requests"]) == ([], [], [])
    assert [i["alt"] for i in seen["images"]] == [
        "Learning curves",
        "Optimisation history",
        "Parallel coordinates",
        "Parameter importance",
    ]
    for image in seen["images"]:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0, image


def test_the_page_holds_every_section_and_marks_stopped_trials(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    capsys.readouterr()
    page = Path("r.html").read_text()
    for section in ("summary", "best", "decision", "plots", "comparison", "cost", "trials"):
        assert f'<h2 id="{section}">' in page
    assert "no comparison run" in page and "no decision recorded" in page
    assert "no cost metric: the spec has no budget.cost" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert "<b>gelu</b>" not in page and "&lt;b&gt;gelu&lt;/b&gt;" in page  # escaped
    assert main(["results", "sweep.yaml", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    pruned = sum(r["state"] == "PRUNED" for r in rows)
    assert pruned > 0  # hyperband stops some: the x markers have something to show
    figures = _figures(page)
    assert figures["curves"].startswith(
        "img:Learning curves: loss against step for 12 trials, from the engine's storage; "
        f"a red x marks where a trial stopped early ({pruned} did)"
    )
    assert figures["importance"].startswith(
        "img:Parameter importance: Optuna's fanova importance of each parameter for loss"
    )
    assert figures["parallel"].startswith("img:Parallel coordinates: one line per finished")
    assert "(log scale: lr)" in figures["parallel"]


def test_the_comparison_over_seeds_is_on_the_page(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compare = ["compare", "sweep.yaml", "--top", "2", "--seeds", "2", "--tracker", "none"]
    assert main([*compare, "--format", "json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert len(verdicts) == 1
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    page = Path("r.html").read_text()
    assert "no comparison run" not in page
    assert f"<li>{html.escape(verdicts[0])}</li>" in page
    assert "2 configurations over seeds [0, 1] (minimize loss)" in page


def test_report_on_the_wandb_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _sweep(tmp_path, capsys, trials=8, engine="wandb")
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    page = Path("r.html").read_text()
    assert "<tr><th>engine</th><td>wandb</td></tr>" in page
    figures = _figures(page)
    assert sorted(figures) == ["curves", "history", "importance", "parallel"]
    assert all(caption.startswith("img:") for caption in figures.values()), figures


def test_one_trial_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _sweep(tmp_path, capsys, trials=1)
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    figures = _figures(Path("r.html").read_text())
    assert figures["curves"].startswith("img:")
    assert figures["history"].startswith("img:")
    assert (
        figures["parallel"] == "Parallel coordinates: needs at least 2 finished trials; there is 1"
    )
    assert figures["importance"] == (
        "Parameter importance: importance needs at least 2 finished trials with a value of "
        "loss; there is 1"
    )


def test_no_sweep_yet_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC.format(method="random", trials=2)))
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 1
    assert capsys.readouterr().err == (
        "Error: no sweep state at .sweepspec/rep.journal (the sweep has not run from this "
        "folder); run 'sweepspec run' first, or pass --storage\n"
    )
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_output_is_one_error_line(
    swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "r.html"
    assert main(["report", "sweep.yaml", "-o", str(target)]) == 1
    assert capsys.readouterr().err == f"Error: cannot write {target}: No such file or directory\n"


def test_x_counter_without_mlflow_tracking_is_one_error_line(
    swept: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert main(["report", "sweep.yaml", "-o", "r.html", "--x", "tokens"]) == 1
    assert capsys.readouterr().err == (
        f"Error: report --x tokens: MLflow has no store at sqlite:///{db}: {db} does not exist\n"
    )
    assert not db.exists()  # a reader makes no store


@pytest.fixture
def mlflow_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Path]:
    """The sweep, tracked in MLflow on a SQLite store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "report_trial.py").write_text(textwrap.dedent(TRIAL))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(method="random", trials=6)).lstrip())
    assert main(["run", "sweep.yaml", "--tracker", "mlflow"]) == 0
    capsys.readouterr()
    yield spec


def test_x_tokens_and_wall_come_from_mlflow(
    mlflow_swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "sweep.yaml", "-o", "tokens.html", "--x", "tokens"]) == 0
    assert main(["report", "sweep.yaml", "-o", "wall.html", "--x", "wall"]) == 0
    tokens = _figures(Path("tokens.html").read_text())["curves"]
    wall = _figures(Path("wall.html").read_text())["curves"]
    assert tokens.startswith(
        "img:Learning curves: loss against tokens for 6 trials, from the MLflow"
    )
    assert wall.startswith("img:Learning curves: loss against wall for 6 trials, from the MLflow")


def test_without_early_terminate_nor_mlflow_the_curves_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    (tmp_path / "report_trial.py").write_text(textwrap.dedent(TRIAL))
    spec = textwrap.dedent(SPEC.format(method="random", trials=3)).lstrip()
    (tmp_path / "sweep.yaml").write_text(spec.replace("early_terminate", "#"))
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    figures = _figures(Path("r.html").read_text())
    assert figures["curves"] == (
        "Learning curves: no per-step values of loss: the engine keeps each step's value only "
        f"with early_terminate; MLflow has no store at sqlite:///{db}: {db} does not exist"
    )
    assert figures["history"].startswith("img:")


def test_a_seeded_trial_costs_the_sum_of_its_seeds_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``seeds:`` a trial is several runs: the page's total cost is what ``results``
    calls ``cost``, each trial's cost metric summed over its seeds (not their mean)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cost_trial.py").write_text(
        "def objective(trial):\n"
        "    return {'loss': float(trial.params['x']), 'gpu_hours': 1.0 + trial.seed}\n"
    )
    (tmp_path / "sweep.yaml").write_text(
        "name: costly\nmethod: grid\nmetric: {name: loss}\nfunction: cost_trial:objective\n"
        "seeds: [0, 10]\nbudget: {cost: {metric: gpu_hours, max: 1000}}\n"
        "parameters:\n  x: {values: [1, 2]}\n"
    )
    assert main(["run", "sweep.yaml", "--tracker", "none"]) == 0
    assert main(["results", "sweep.yaml", "--format", "csv", "--columns", "number,cost"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["0,12.0", "1,12.0"]  # (1+0) + (1+10)
    assert main(["report", "sweep.yaml", "-o", "r.html"]) == 0
    page = Path("r.html").read_text()
    assert '<tr><th>total</th><td class="num">24</td></tr>' in page
    assert '<tr><th>trials with a cost</th><td class="num">2</td></tr>' in page
    assert '<tr><th>mean per trial</th><td class="num">12</td></tr>' in page
