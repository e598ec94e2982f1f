"""The analysis table from W&B's run folders (``results --from wandb``).

W&B's SDK writes every run, offline or online, to a ``run-<id>.wandb`` file in its folder under
``$WANDB_DIR/wandb`` (else ``./wandb``): the run's config, history and summary, which
:class:`sweepspec.wandb_log.RunLog` reads with W&B's own protobuf messages (``wandb.proto``).
The runs of the sweep are those the W&B tracker wrote (:mod:`sweepspec.trackers.wandb`): their
summary's ``sweepspec_sweep_id`` is the sweep's id in the engine's storage when that is here,
else the latest sweep whose runs are in the group named after the sweep. A trial's row comes
from its run: ``number``, ``state``, ``values``, ``error`` and the times from the summary's
``sweepspec_*`` keys, ``params`` from the config (nested parameters by dotted name), ``metrics``
from the rest of the summary (W&B's own ``_*`` keys left out; with ``seeds:``, the
``seed_<s>/<name>`` ones are the per-seed ``seeds``). An offline run cannot be changed after it
has finished, so a decision (``sweepspec decide``) is read from the engine's storage.

With a W&B server (``wandb login``), the same runs are in W&B's public API
(``wandb.Api().runs(path, filters={"summary_metrics.sweepspec_sweep_id": ...})``); this reader
does not use it: it reads what the machine holds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .table import KnownSweep, Table, TableError, decision_columns

if TYPE_CHECKING:
    from ..spec import Spec

__all__ = ["find_run", "read", "run_folder"]

_SEED_KEY = re.compile(r"seed_(-?\d+)/(.+)")


def run_folder() -> Path:
    """Where W&B writes runs: ``$WANDB_DIR/wandb``, else ``./wandb``."""
    return Path(os.environ.get("WANDB_DIR") or ".") / "wandb"


def read(table: Table, spec: Spec, path: str, known: KnownSweep | None) -> None:
    """Fill ``table`` with the sweep's trials from W&B's run files."""
    from ..wandb_log import RunLog, RunLogError

    folder = run_folder()
    files = sorted(folder.glob("*run-*/run-*.wandb"))
    if not files:
        raise TableError(
            f"no W&B runs in {folder} ($WANDB_DIR/wandb, else ./wandb): was the sweep run "
            "with the wandb tracker, from this folder?"
        )
    table.where = f"W&B runs in {folder}"
    runs: list[tuple[float, dict[str, Any], dict[str, Any], str | None]] = []
    damaged = []
    for file in files:
        log = RunLog(file)
        try:
            log.read()
        except RunLogError:
            damaged.append(file.parent.name)
            continue
        summary = log.state.summary
        if "sweepspec_sweep_id" in summary:
            runs.append((file.stat().st_mtime, summary, log.state.config, log.state.group))
    sweep_id = known.sweep_id if known is not None else _latest(runs, spec, path)
    chosen = sorted(
        (r for r in runs if r[1].get("sweepspec_sweep_id") == sweep_id), key=lambda r: r[0]
    )
    if not chosen:
        what = f"sweep id {sweep_id}" if sweep_id else f"a group named {_names(spec, path)}"
        raise TableError(f"no W&B run in {folder} is of this sweep ({what})")
    paths = _leaf_paths(spec)
    by_number: dict[int, dict[str, Any]] = {}
    for _, summary, config, _ in chosen:
        row = _row(summary, config, spec, paths)
        by_number[row["number"]] = row
    table.rows = list(by_number.values())
    if known is not None:
        marks = decision_columns(known.decisions)
        for row in table.rows:
            if row["number"] in marks:
                row["decision"], row["decision_why"] = marks[row["number"]]
    if damaged:
        table.notes.append(
            f"sweepspec: W&B: {len(damaged)} run files could not be read and are left out: "
            f"{', '.join(damaged[:5])}"
        )
    from .mlflow import _say_missing

    _say_missing(table, known, "W&B")


def _names(spec: Spec, path: str) -> set[str]:
    from .mlflow import _sweep_names

    return _sweep_names(spec, path)


def _latest(
    runs: list[tuple[float, dict[str, Any], dict[str, Any], str | None]], spec: Spec, path: str
) -> str | None:
    names = _names(spec, path)
    mine = [r for r in runs if r[3] in names]
    if not mine:
        return None
    return str(max(mine, key=lambda r: r[0])[1]["sweepspec_sweep_id"])


def _leaf_paths(spec: Spec) -> dict[str, list[str]]:
    from ..spec.paths import leaf_paths

    return {name: list(p) for name, p in leaf_paths(spec.parameters).items()}


def _row(
    summary: dict[str, Any], config: dict[str, Any], spec: Spec, paths: dict[str, list[str]]
) -> dict[str, Any]:
    from ..runners.trials import iso_ms

    params: dict[str, Any] = {}
    for name, keys in paths.items():
        node: Any = config
        for key in keys:
            node = node.get(key, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            params[name] = node
    metrics = {
        k: _number(v)
        for k, v in summary.items()
        if not k.startswith(("_", "sweepspec_"))
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
    }
    row: dict[str, Any] = {
        "number": int(summary["sweepspec_trial"]),
        "state": str(summary.get("sweepspec_state", "RUNNING")),
        "params": params,
    }
    values = summary.get("sweepspec_values")
    if spec.seeds is not None:
        from .mlflow import _seeds

        row["metrics"] = {k: v for k, v in metrics.items() if _SEED_KEY.fullmatch(k) is None}
        row["values"] = [float(v) for v in values] if values is not None else None
        error = {"sweepspec.error": str(summary.get("sweepspec_error", ""))}
        row["seeds"] = _seeds(metrics, spec.seeds.values, row["state"], error)
    else:
        row["metrics"] = metrics
        row["values"] = [float(v) for v in values] if values is not None else None
    if "sweepspec_error" in summary:
        row["error"] = summary["sweepspec_error"]
    times = summary.get("sweepspec_times")
    row["datetime_start"] = iso_ms(times[0]) if times else None
    row["datetime_complete"] = iso_ms(times[1]) if times else None
    return row


_ABSENT = object()


def _number(value: Any) -> float:
    return float(value)


def find_run(sweep_id: str, number: int) -> tuple[Path, str, str] | None:
    """The folder, project and id of trial ``number``'s W&B run of sweep ``sweep_id``."""
    from ..wandb_log import RunLog, RunLogError

    for file in sorted(run_folder().glob("*run-*/run-*.wandb")):
        log = RunLog(file)
        try:
            log.read()
        except RunLogError:
            continue
        summary = log.state.summary
        if (
            summary.get("sweepspec_sweep_id") == sweep_id
            and summary.get("sweepspec_trial") == number
        ):
            return file.parent, log.state.project or "", log.state.run_id or ""
    return None
