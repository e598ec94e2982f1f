"""``sweepspec compile``: one spec to an engine's native artifact (SPEC section 6).

Spec errors print as ``validate`` prints them; what the target cannot express prints one line
each on stderr (``FILE: warning: unsupported on ENGINE: FEATURE: MESSAGE``), and under
``--strict`` is an error: exit 1, nothing written. The engines, their formats and default
formats come from :data:`sweepspec.compiler.COMPILERS`; each plan renders its own formats,
and only the compiler asked for is imported.
"""

from __future__ import annotations

import os
import sys

from ..cli import SweepspecError
from ..compiler import COMPILERS, DEFAULT_ENGINE, load_compiler
from ..compiler.base import CompileError, Unsupported, UnsupportedError
from ..escape import visible
from ..spec import Spec
from . import emit, load_spec, require


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
    engine = engine or spec.engine or DEFAULT_ENGINE
    if engine not in COMPILERS:
        raise SweepspecError(f"sweepspec has no compiler for the {engine} engine")
    fmt = fmt or COMPILERS[engine].default_format
    _check_format(engine, fmt)
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


def _check_format(engine: str, fmt: str) -> None:
    """``fmt`` must be one that engine's compiler renders (a usage error otherwise)."""
    formats = COMPILERS[engine].formats
    if fmt in formats:
        return
    import click

    others = [name for name, c in COMPILERS.items() if fmt in c.formats]
    hint = f"; --format {fmt} is for --engine {' or '.join(others)}" if others else ""
    raise click.UsageError(f"--engine {engine} writes {' or '.join(formats)}, not {fmt}{hint}")


def _compile(spec: Spec, path: str, engine: str, fmt: str, output: str | None, strict: bool) -> str:
    needs = COMPILERS[engine].needs
    if needs is not None:
        require(needs, f"compile --engine {engine}")
    plan = load_compiler(engine)(spec, strict=strict)
    _report(path, "warning", engine, plan.unsupported)
    rendered = plan.render(fmt, path, output)
    for note in rendered.notes:  # what the artifact itself cannot carry
        sys.stderr.write(visible(f"{path}: note: {note.key}: {note.message}") + "\n")
    return rendered.text


def _report(path: str, level: str, engine: str, items: list[Unsupported]) -> None:
    for item in items:
        sys.stderr.write(visible(f"{path}: {level}: {item.format(engine)}") + "\n")


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
