"""``sweepspec sync`` for trackers that keep no backlog: one line saying why, nothing else.
(The MLflow backlog itself is tested with a real ``mlflow server`` in
``tests/trackers/test_mlflow.py``.)"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sweepspec.main import main

SPEC = """
name: nothing-waits
method: grid
metric: {name: loss}
function: t:objective
tracking: {tracker: TRACKER}
parameters:
  x: {values: [1, 2]}
"""


@pytest.mark.parametrize(
    ("tracker", "line"),
    [
        ("none", "sweepspec: nothing to sync for the none tracker\n"),
        (
            "wandb",
            "sweepspec: nothing to sync for the wandb tracker: W&B's offline runs are uploaded "
            "with 'wandb sync'\n",
        ),
    ],
)
def test_a_tracker_without_a_backlog_has_nothing_to_sync(
    tracker: str,
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC).replace("TRACKER", tracker))
    assert main(["sync", "sweep.yaml"]) == 0
    assert capsys.readouterr() == ("", line)
