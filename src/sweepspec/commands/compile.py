"""``sweepspec compile``: one spec to an engine's native artifact (SPEC section 6).

Spec errors print as ``validate`` prints them; what the target cannot express prints one line
each on stderr (``FILE: warning: unsupported on ENGINE: FEATURE: MESSAGE``), and under
``--strict`` is an error: exit 1, nothing written. ``compile --engine wandb`` imports no engine.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..compiler.base import CompileError, Unsupported, UnsupportedError
from ..spec import Spec
from . import load_spec

DEFAULT_FORMAT = {"wandb": "yaml", "optuna": "json"}


def compile_spec(
    path: str,
    *,
    engine: str | None = None,
    fmt: str | None = None,
    output: str | None = None,
    strict: bool = False,
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    engine = engine or spec.engine or "optuna"
    fmt = fmt or DEFAULT_FORMAT[engine]
    if engine == "wandb" and fmt == "python":
        import click

        raise click.UsageError(
            "--format python writes an Optuna script; use it with "
            "--engine optuna (W&B takes yaml or json)"
        )
    try:
        text = _compile(spec, path, engine, fmt, output, strict)
    except UnsupportedError as exc:
        _report(path, "error", engine, exc.items)
        return 1
    except CompileError as exc:
        sys.stderr.write(f"{path}: error: {exc}\n")
        return 1
    _write(text, output)
    return 0


def _compile(spec: Spec, path: str, engine: str, fmt: str, output: str | None, strict: bool) -> str:
    if engine == "wandb":
        return _wandb(spec, path, fmt, strict)
    from ..compiler.optuna import compile_optuna

    plan = compile_optuna(spec, strict=strict)
    _report(path, "warning", engine, plan.unsupported)
    if fmt == "python":
        return plan.to_python(os.path.dirname(os.path.abspath(path)), output, path)
    return _dump(plan.to_json(), fmt)


def _wandb(spec: Spec, path: str, fmt: str, strict: bool) -> str:
    from ..compiler.wandb import compile_wandb

    plan = compile_wandb(spec, strict=strict)
    _report(path, "warning", "wandb", plan.unsupported)
    if fmt == "yaml":
        return plan.to_yaml(path)
    for note in plan.notes:  # W&B's schema forbids keys of ours in the JSON itself
        sys.stderr.write(f"{path}: note: {note.key}: {note.message}\n")
    return _dump(plan.to_json(), fmt)


def _report(path: str, level: str, engine: str, items: list[Unsupported]) -> None:
    for item in items:
        sys.stderr.write(f"{path}: {level}: {item.format(engine)}\n")


def _dump(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096))


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(text)
