"""Run a W&B sweep program unchanged: give it its parameters as W&B's agent does, and read
back what it logs with ``wandb.log`` while it runs.

W&B's agent (``wandb/wandb_agent.py``) writes a run's parameters to
``$WANDB_DIR/wandb/sweep-<sweep id>/config-<run id>.yaml`` (``{name: {value: v}}`` after a
``wandb_version: 1`` line), and sets ``WANDB_SWEEP_PARAM_PATH``, ``WANDB_SWEEP_ID`` and
``WANDB_RUN_ID``; ``wandb.init()`` in the program reads them, so ``wandb.config`` holds the
sweep's values. sweepspec does the same for every trial, on every engine, with the run in
W&B's offline mode (``wandb sync`` uploads it later). W&B writes the run's records to its
``run-<id>.wandb`` file; with ``WANDB__TRANSACTION_LOG_FLUSH_INTERVAL`` set low, the file
grows while the program runs, and :meth:`WandbRun.poll` turns its new history rows into
reports, which drive early stopping as W&B's controller does with the run's history.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from ..wandb_log import RunLog, RunLogError, find_run_file

__all__ = ["FLUSH_INTERVAL", "Follower", "WandbRun", "config_text"]

FLUSH_INTERVAL = "0.2"
"""Seconds between W&B's flushes of the run file (its default, 15 s, is too slow to prune)."""


class WandbRun:
    """One W&B run of a trial: the environment its program gets, and what it has logged."""

    def __init__(
        self,
        folder: str,
        sweep_id: str,
        params: dict[str, Any],
        run_id: str | None = None,
        param_path: Path | None = None,
    ) -> None:
        self.base = os.environ.get("WANDB_DIR") or folder
        self.sweep_id = sweep_id
        self.run_id = run_id or uuid.uuid4().hex[:8]
        # W&B's agent keeps the file under $WANDB_DIR/wandb/sweep-<id>/; a file in a
        # temporary folder (``param_path``: a command trial's own, or the one a worker writes
        # again for each function trial) leaves nothing behind for programs without W&B
        self.param_path = param_path or (
            Path(self.base) / "wandb" / f"sweep-{sweep_id}" / f"config-{self.run_id}.yaml"
        )
        self.params = params
        self.log: RunLog | None = None
        self.rows = 0

    def env(self) -> dict[str, str]:
        """Write the parameter file; the variables W&B's agent sets for a run."""
        text = config_text(self.params)
        try:
            _write(self.param_path, text.encode())
        except FileNotFoundError:  # its folder, made once
            self.param_path.parent.mkdir(parents=True, exist_ok=True)
            _write(self.param_path, text.encode())
        return {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(self.base),
            "WANDB_SWEEP_ID": self.sweep_id,
            "WANDB_RUN_ID": self.run_id,
            "WANDB_SWEEP_PARAM_PATH": str(self.param_path),
            "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": FLUSH_INTERVAL,
            "WANDB_SILENT": "true",
        }

    def poll(self) -> list[tuple[dict[str, float], int]]:
        """The history rows logged since the last call: (numeric metrics, ``_step``)."""
        if self.log is None:
            path = find_run_file(self.base, self.run_id)
            if path is None:
                return []
            self.log = RunLog(path)
        try:
            self.log.read()
        except RunLogError:
            return []
        rows = self.log.state.history[self.rows :]
        self.rows += len(rows)
        out = []
        for row in rows:
            metrics = {k: float(v) for k, v in row.items() if _metric(k, v)}
            out.append((metrics, int(row.get("_step", self.rows - len(rows)))))
        return out

    def summary(self) -> dict[str, float]:
        """The run's summary: its final metric values (W&B: the last logged, or set)."""
        if self.log is None:
            return {}
        return {k: float(v) for k, v in self.log.state.summary.items() if _metric(k, v)}

    @property
    def started(self) -> bool:
        """Whether the program called ``wandb.init`` (its run file exists)."""
        return self.log is not None


class Follower:
    """Feeds a W&B run's logged rows to a trial's reports, every ``interval`` seconds.

    A trial reports through one channel: if it also reports through sweepspec
    (``trial.report``, the reporter, metric lines), W&B's rows are no longer read, so that
    no value counts twice.
    """

    def __init__(self, run: WandbRun, report: Any, reported: Any, interval: float = 0.2):
        self.run = run
        self.report = report  # (metrics, step) -> None
        self.reported = reported  # () -> how many points the trial's reports hold
        self.interval = interval
        self.next_at = time.monotonic() + interval  # the program has only just started
        self.fed = 0
        self.active = True

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.active or (not force and now < self.next_at):
            return
        self.next_at = now + self.interval
        if self.reported() != self.fed:
            self.active = False  # the trial reports through sweepspec
            return
        for metrics, step in self.run.poll():
            if metrics:
                self.report(metrics, step)
        self.fed = self.reported()


def config_text(params: dict[str, Any]) -> str:
    """The parameter file: ``wandb_version: 1``, then ``{name: {value: v}}`` for each
    parameter, in order, as ``yaml.dump`` writes it (and W&B's ``config_util`` reads it). A
    number, a boolean or None is its name's lines (:func:`_entry`, one ``yaml.dump`` per
    name) and the text PyYAML's own representer gives it; a string is ``yaml.dump``'s text,
    kept per name and value (a sampled string is one of a few); anything else is dumped.
    The whole file through ``yaml.dump`` cost a trial 0.11 ms (issue 10 item 4)."""
    parts = ["wandb_version: 1\n\n"]
    for name, value in params.items():
        kind = type(value)
        head = _entry(name) if kind in _SCALARS else None
        if head is not None:
            parts.append(f"{head}{_SCALARS[kind](_REPRESENTER, value).value}\n")
        elif kind is str:
            parts.append(_dumped_string(name, value))
        else:
            parts.append(_yaml({name: {"value": value}}))
    return "".join(parts)


_REPRESENTER = yaml.representer.SafeRepresenter()
_SCALARS = {  # exact types (a subclass, such as NumPy's float, is dumped: PyYAML refuses it)
    int: yaml.representer.SafeRepresenter.represent_int,
    float: yaml.representer.SafeRepresenter.represent_float,
    bool: yaml.representer.SafeRepresenter.represent_bool,
    type(None): yaml.representer.SafeRepresenter.represent_none,
}
_PLACEHOLDER = 8086042315271905  # (an int: written plain, after the name's lines)


@functools.lru_cache(maxsize=1024)
def _entry(name: str) -> str | None:
    """``yaml.dump({name: {"value": v}})`` up to ``v``; None if PyYAML writes ``v`` any
    other way than at the end of the text (none of its names so far)."""
    text = _yaml({name: {"value": _PLACEHOLDER}})
    end = f" {_PLACEHOLDER}\n"
    return text[: -len(end) + 1] if text.endswith(end) else None


@functools.lru_cache(maxsize=1024)
def _dumped_string(name: str, value: str) -> str:
    return _yaml({name: {"value": value}})


def _yaml(data: Any) -> str:
    # libyaml's emitter when PyYAML has it: the same text, a fraction of the time
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False)


def _metric(key: str, value: Any) -> bool:
    """A metric W&B's controller could read: a number logged under a name of the user's."""
    return (
        not key.startswith("_") and isinstance(value, (int, float)) and not isinstance(value, bool)
    )


def _write(path: Path, data: bytes) -> None:
    """``data`` as the whole file at ``path`` (one ``write``: a trial's file is small),
    written over what was there and cut to its length: a file emptied first
    (``O_TRUNC``) gives its disk block back and takes a new one, which cost 0.1 ms to
    0.3 ms here each time a worker wrote its file again (issue 10 item 4)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
