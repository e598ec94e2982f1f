"""Helpers for the standalone scripts that ``compile --format python`` writes: sweepspec's
standard-library-only code copied into them as it is written (so that the script and
``sweepspec run`` run the same code), and strings written as Python literals.

Imports only the standard library.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

    from ..spec import Spec

__all__ = ["distribution_source", "module_source", "python_lines", "script_template"]


def script_template(
    spec: Spec, name: str, spec_dir: str, script_path: str | None
) -> tuple[jinja2.Template, str | None]:
    """The jinja2 template ``name`` (under ``sweepspec/templates``) of a standalone script for
    ``spec``, with the filters that write every string as a Python literal, and the spec's
    folder relative to the script (None when the script is printed: the absolute path is
    used). A spec without a trial to run is a :class:`~.base.CompileError`."""
    from .base import CompileError

    if spec.function is None and spec.program is None and spec.command is None:
        raise CompileError(
            "--format python needs the trial: give 'function', or 'program'/'command'"
        )
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sweepspec", "templates"),
        keep_trailing_newline=True,
        autoescape=False,
    )
    # every string lands in the script as a Python literal, never in a docstring or comment
    env.filters["pyrepr"] = repr
    env.filters["pylines"] = python_lines
    relative = (
        os.path.relpath(os.path.abspath(spec_dir), os.path.dirname(os.path.abspath(script_path)))
        if script_path
        else None
    )
    return env.get_template(name), relative


def python_lines(text: str) -> str:
    """``text`` as adjacent Python string literals, one per line (a readable multi-line
    literal that no content can break out of)."""
    return "\n".join(f"    {line!r}" for line in text.splitlines(keepends=True))


def module_source(package: str, module: str) -> str:
    """The source of a standard-library-only module of sweepspec (:mod:`._ppf`,
    :mod:`sweepspec.runners.contract`), to copy verbatim into the standalone script."""
    source = (Path(__file__).parent.parent / package / module).read_text(encoding="utf-8")
    return source.replace("from __future__ import annotations\n", "").strip()


def distribution_source(kinds: set[str]) -> str:
    """The parts of :mod:`._ppf` that ``decode`` needs for the reparam ``kinds`` (``normal``,
    ``index``, ...), as they are written there: its ``_PPF`` table cut to those kinds, then
    every top-level definition reachable from ``decode``. Empty without any kind."""
    if not kinds:
        return ""
    source = (Path(__file__).parent / "_ppf.py").read_text(encoding="utf-8")
    lines, tree = source.splitlines(), ast.parse(source)
    uses = {
        name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        for node in tree.body
        for name in _defines(node)
    }
    uses["_PPF"] = {f"_ppf_{k}" for k in sorted(kinds - {"index"})} | {"Callable", "Any"}
    keep, todo = set(), ["decode"]
    while todo:
        name = todo.pop()
        if name in uses and name not in keep:
            keep.add(name)
            todo += sorted(uses[name])
    imports: list[str] = []
    parts: list[str] = []
    kept = False
    for node in tree.body[1:]:  # not the module's docstring
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if kept:  # an attribute's docstring goes with it
                parts[-1] += "\n" + "\n".join(lines[node.lineno - 1 : node.end_lineno])
            continue
        kept = bool(_defines(node) & keep)
        if not kept:
            continue
        if _defines(node) == {"_PPF"}:
            table = "".join(f'    "{k}": _ppf_{k},\n' for k in sorted(kinds - {"index"}))
            parts.append(f"_PPF: dict[str, Callable[[dict[str, Any], float], Any]] = {{\n{table}}}")
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[first - 1 : node.end_lineno])
        (imports if isinstance(node, (ast.Import, ast.ImportFrom)) else parts).append(text)
    return "\n\n\n".join(["\n".join(imports), *parts])


def _defines(node: ast.stmt) -> set[str]:
    """The top-level names ``node`` binds (imports, definitions, assignments)."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return set()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {t.id for t in targets if isinstance(t, ast.Name)}
