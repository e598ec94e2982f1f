"""The trial contract, once: what ``sweepspec run`` and the generated Optuna script share.

* :func:`command_line`: W&B's agent expansion of ``command`` (its macros, ``${envvar:NAME}``
  anywhere inside an item), never through a shell.
* :func:`parse_line`: the metrics in one line of a command's stdout, a JSON object
  (``{"val_loss": 0.3, "_step": 2}``) or Katib's ``name=value`` pairs (``val_loss=0.3
  step=2``).
* :class:`FailureStreak`: a failed trial is recorded and the sweep goes on, until
  ``budget.max_consecutive_failures`` trials in a row have failed.
* :func:`default_journal` and :func:`journal_path`: the sweep's state lives in an Optuna
  journal file under the working directory unless a storage is given.
* :func:`state_file` and :func:`state_written`: where an engine keeps a sweep's state under
  the working directory, and whether (and when) an engine's JSON-lines state file was written.

This module imports only the standard library: ``compile --format python`` copies its source
verbatim into the script (as it does :mod:`sweepspec.compiler._ppf`), so the two cannot drift.
:mod:`.trials`, :mod:`.budget` and :mod:`.optuna` import their names from here.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
"""W&B's default command (``wandb/sdk/launch/sweeps/utils.py``)."""
ENVVAR = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")
"""W&B's ``${envvar:NAME}`` macro, replaced inside any part of a command item."""
STEP_KEYS = ("_step", "step")
STATE_DIR = ".sweepspec"
"""Where the default journal lives, under the working directory."""


# --------------------------------------------------------------------------- numbers


def to_float(value: Any) -> float | None:
    """``value`` as a float; None for what is not a number (bools and strings included)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def numeric_only(data: dict[str, Any]) -> dict[str, float]:
    """The entries of ``data`` that are numbers, as floats."""
    return {str(k): f for k, v in data.items() if (f := to_float(v)) is not None}


# --------------------------------------------------------------------------- commands


def macro_values(params: dict[str, Any]) -> dict[str, list[str]]:
    """W&B's argument macros for top-level ``params`` (``create_sweep_command_args``): a
    nested parameter's value is printed with ``str()``, as W&B prints it."""
    out: dict[str, list[str]] = {
        "args": [],
        "args_no_equals": [],
        "args_no_hyphens": [],
        "args_no_boolean_flags": [],
        "args_append_hydra": [],
        "args_override_hydra": [],
    }
    for name, value in params.items():
        flag = f"{name}={value}"
        out["args"].append("--" + flag)
        out["args_no_hyphens"].append(flag)
        out["args_no_equals"] += [f"--{name}", str(value)]
        out["args_append_hydra"].append("+" + flag)
        out["args_override_hydra"].append("++" + flag)
        if not isinstance(value, bool):
            out["args_no_boolean_flags"].append("--" + flag)
        elif value:
            out["args_no_boolean_flags"].append("--" + name)
    out["args_json"] = [json.dumps(params)]
    return out


def command_line(
    template: list[Any] | None,
    program: str | None,
    params: dict[str, Any],
    json_file: str,
    interpreter: str = sys.executable,
) -> list[str]:
    """The argument vector W&B's agent builds (``wandb_agent.py``), for ``params`` nested as
    the trial sees them. ``${interpreter}`` is the Python running the sweep, not whatever
    ``python`` is first on PATH. Unknown macros expand to nothing, as in W&B."""
    macros = macro_values(params)
    macros.update(
        env=[] if os.name == "nt" else ["/usr/bin/env"],
        interpreter=[interpreter],
        program=[program] if program is not None else [],
        args_json_file=[json_file],
    )
    argv: list[str] = []
    for item in template or DEFAULT_COMMAND:
        item = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(item))
        if item.startswith("${") and item.endswith("}"):
            argv += macros.get(item[2:-1]) or []
        else:
            argv.append(item)
    return argv


# --------------------------------------------------------------------------- metric lines


def parse_line(line: str) -> tuple[dict[str, float], int | None] | None:
    """Metrics in one stdout line, with the step if the line gives one, or None.

    Either a JSON object (``{"val_loss": 0.3, "_step": 2}``: its numbers are metrics) or a
    line made only of ``name=value`` pairs (``val_loss=0.3 acc=0.9 step=2``). ``_step`` or
    ``step`` is the step, not a metric.
    """
    text = line.strip()
    if text.startswith("{"):
        pairs = _json_pairs(text)
    else:
        pairs = _katib_pairs(text)
    if not pairs:
        return None
    step = next((pairs.pop(k) for k in STEP_KEYS if k in pairs), None)
    if not pairs:
        return None
    whole = int(step) if step is not None and float(step).is_integer() and step >= 0 else None
    return pairs, whole


def _json_pairs(text: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return numeric_only(data) if isinstance(data, dict) else {}


_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_./-]*)=(\S+)$")


def _katib_pairs(text: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for token in re.split(r"[\s,]+", text):
        match = _PAIR.match(token)
        value = _float_text(match.group(2)) if match else None
        if match is None or value is None:
            return {}
        pairs[match.group(1)] = value
    return pairs


def _float_text(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- failures


@dataclass
class FailureStreak:
    """Failed trials in a row in this worker; :meth:`add` gives the error message once the
    streak reaches ``limit``."""

    limit: int
    count: int = 0

    def add(self, number: int, state: str, error: str | None) -> str | None:
        if state != "FAIL":
            self.count = 0
            return None
        self.count += 1
        if self.count < self.limit:
            return None
        return (
            f"{self.count} trials failed in a row (budget.max_consecutive_failures: "
            f"{self.limit}); the last one, trial {number}, failed with: {error}"
        )


# --------------------------------------------------------------------------- storage


def state_file(name: str, suffix: str) -> Path:
    """The file under the working directory where an engine keeps sweep ``name``'s state
    (``suffix``: ``.journal``, ``.wandb.jsonl``...), its name made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "sweep"
    return Path(STATE_DIR) / f"{safe}{suffix}"


def state_written(path: Path, fmt: str) -> float | None:
    """When the JSON-lines state file ``path`` was last written (``st_mtime``), or None when
    there is none or its head does not hold ``fmt`` (the ``format`` of the engine that keeps
    such files): how ``results`` finds which engine ran a sweep."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(fmt) + 16)
        return path.stat().st_mtime if fmt.encode() in head else None
    except OSError:
        return None


def default_journal(name: str) -> Path:
    """The journal file of study ``name`` under the working directory."""
    return state_file(name, ".journal")


def journal_path(storage: str | None, name: str) -> Path | None:
    """The journal file that ``storage`` names (a path, or None for the default journal of
    study ``name``); None when ``storage`` is a database URL (``scheme://...``)."""
    if storage is not None and "://" in storage:
        return None
    return Path(storage) if storage is not None else default_journal(name)
