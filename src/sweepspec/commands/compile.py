"""``sweepspec compile``: one spec to an engine's native artifact (SPEC section 6).

Spec errors print as ``validate`` prints them; what the target cannot express prints one line
each on stderr (``FILE: warning: unsupported on ENGINE: FEATURE: MESSAGE``), and under
``--strict`` is an error: exit 1, nothing written. ``compile --engine wandb`` imports no engine.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..cli import SweepspecError
from ..compiler.base import CompileError, Unsupported, UnsupportedError
from ..escape import strict_json, visible
from ..spec import Spec
from . import emit, load_spec, require

DEFAULT_FORMAT = {"wandb": "yaml", "optuna": "json"}


def compile_spec(
    path: str,
    *,
    engine: str | None = None,
    fmt: str | None = None,
    output: str | None = None,
    strict: bool = False,
) -> int:
    _check_output(path, output)
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
        sys.stderr.write(visible(f"{path}: error: {exc}") + "\n")
        return 1
    _write(text, output)
    return 0


def _compile(spec: Spec, path: str, engine: str, fmt: str, output: str | None, strict: bool) -> str:
    if engine == "wandb":
        return _wandb(spec, path, fmt, strict)
    require("optuna", "compile --engine optuna")
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
        sys.stderr.write(visible(f"{path}: note: {note.key}: {note.message}") + "\n")
    return _dump(plan.to_json(), fmt)


def _report(path: str, level: str, engine: str, items: list[Unsupported]) -> None:
    for item in items:
        sys.stderr.write(visible(f"{path}: {level}: {item.format(engine)}") + "\n")


def _dump(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return strict_json(data) + "\n"  # NaN and +-Infinity are null: strict parsers take it
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096))


def _check_output(path: str, output: str | None) -> None:
    """``-o`` must not be the spec itself (the same file by any name or link)."""
    if output is None or output == "-" or not os.path.exists(output):
        return
    try:
        same = os.path.samefile(output, path)
    except OSError:
        return  # the spec cannot be read: load_spec says so
    if same:
        raise SweepspecError(
            f"-o {output} is the spec {path} itself; write the artifact to another file"
        )


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        emit(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise SweepspecError(f"cannot write {output}: {exc.strerror or exc}") from None
