"""Turn pydantic's validation errors into findings that point at the line and suggest a fix."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from . import models
from .findings import Finding, Path
from .loader import Document

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

# keys that only mean something with another distribution
_KEY_HINTS = {
    "q": "'q' needs an explicit quantized distribution, e.g. 'distribution: q_uniform'",
    "probabilities": "'probabilities' needs 'values' (categorical_w_probabilities)",
    "mu": "'mu' needs 'distribution: normal' or 'log_normal'",
    "sigma": "'sigma' needs 'distribution: normal' or 'log_normal'",
    "a": "'a' needs 'distribution: beta'",
    "b": "'b' needs 'distribution: beta'",
    "values": "'values' lists choices: write 'distribution: categorical' or leave "
    "'distribution' out",
    "value": "'value' is a constant: write 'distribution: constant' or leave 'distribution' out",
    "min": "'min' needs a distribution with bounds, e.g. 'uniform'",
    "max": "'max' needs a distribution with bounds, e.g. 'uniform'",
}
_PARAM_KEYS = (
    "distribution",
    "values",
    "value",
    "probabilities",
    "min",
    "max",
    "q",
    "mu",
    "sigma",
    "a",
    "b",
    "parameters",
    "when",
)


def did_you_mean(word: Any, choices: typing.Iterable[str]) -> str:
    """`` did you mean 'x'?`` or an empty string."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unwrap(annotation: Any) -> list[Any]:
    """The classes an annotation can stand for (through Optional, Annotated, Union)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _tagged(part: Any) -> type[BaseModel] | None:
    if part == models.NESTED:
        return models.NestedParam
    if isinstance(part, str):
        return models.DISTRIBUTION_MODELS.get(part) or models.STOPPING_MODELS.get(part)
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose field ``loc[-1]`` is, following pydantic's loc (with union tags)."""
    current: list[Any] = [models.Spec]
    for part in loc[:-1]:
        tagged = _tagged(part)
        if tagged is not None and tagged in current:
            current = [tagged]
            continue
        nxt: list[Any] = []
        for cand in current:
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                if part in cand.model_fields:
                    nxt.extend(_unwrap(cand.model_fields[part].annotation))
            elif typing.get_origin(cand) is dict:
                nxt.extend(_unwrap(typing.get_args(cand)[1]))
            elif typing.get_origin(cand) is list:
                nxt.extend(_unwrap(typing.get_args(cand)[0]))
        current = nxt
    models_here = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
    return models_here[0] if len(models_here) == 1 else None


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[Path, bool]:
    """Follow ``loc`` through the raw data; skip union tags. Returns (path, is_key)."""
    path: list[Any] = []
    node = data
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key = True
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and part == loc[-1] and kind in ("missing", "extra_forbidden"):
            path.append(part)  # a missing or unknown key
            node = None
    return tuple(path), is_key


def _message(err: Any, path: Path) -> tuple[str, Path, bool]:
    """(message, path to report, point at the key?)"""
    kind = err["type"]
    loc = err["loc"]
    given = err.get("input")
    if kind == "extra_forbidden":
        key = path[-1] if path else loc[-1]
        model = _model_at(loc)
        allowed = [n for n in (model.model_fields if model else {})]
        hint = did_you_mean(key, allowed)
        if not hint and key in _KEY_HINTS and model is not None and key not in allowed:
            hint = f"; {_KEY_HINTS[key]}"
        return f"unknown key {key!r}{hint}", path, True
    if kind == "missing":
        holder = path[:-1] if path and path[-1] == loc[-1] else path
        return f"{loc[-1]!r} is required", holder, False
    if kind == "distribution":
        unknown = [k for k in given if k not in _PARAM_KEYS] if isinstance(given, dict) else []
        if unknown and isinstance(given, dict) and "distribution" not in given:
            return (
                f"cannot infer the distribution: unknown key {unknown[0]!r}"
                f"{did_you_mean(unknown[0], _PARAM_KEYS)}",
                path + (unknown[0],),
                True,
            )
        return _distribution_message(given), path, False
    if kind == "stopping_type":
        if not isinstance(given, dict):
            return (
                f"must be a mapping such as {{type: hyperband, min_iter: 3}}, but got "
                f"{_show(given)}",
                path,
                False,
            )
        kind_given = given.get("type")
        if kind_given is None:
            return (
                "'type' is required: one of " + ", ".join(map(repr, models.STOPPING_MODELS)),
                path,
                False,
            )
        return (
            f"unknown early termination type {_show(kind_given)}; must be one of "
            + ", ".join(map(repr, models.STOPPING_MODELS))
            + did_you_mean(kind_given, models.STOPPING_MODELS),
            path + ("type",),
            False,
        )
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
        hint = did_you_mean(given, choices)
        if given is False and "'false'" in expected:
            hint = "; write 'false' in quotes: W&B wants the string, not the boolean"
        return f"must be one of {expected}, but got {_show(given)}{hint}", path, False
    if kind == "string_pattern_mismatch":
        if path and path[0] == "function":
            return (f"must be 'package.module:callable', but got {_show(given)}", path, False)
        return (
            f"parameter name {_show(given)} is not allowed: W&B wants letters, digits, "
            "'_', '.', '-', starting with a letter or '_'",
            path,
            True,
        )
    if kind in _TYPE_NAMES:
        want = _TYPE_NAMES[kind]
        hint = ""
        if isinstance(given, str) and want in ("a number", "an integer"):
            hint = "; remove the quotes to make it a number"
        if path == ("run_cap",):
            hint = (
                "; run_cap is the number of runs the sweep starts at most, a whole number "
                f"> 0 (e.g. 'run_cap: {_whole(given)}')"
            )
        elif isinstance(given, float) and want == "an integer" and path[:1] == ("parameters",):
            hint = "; int_uniform wants integer bounds, use 'distribution: uniform' for reals"
        return f"must be {want}, but got {_show(given)}{hint}", path, False
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = err.get("ctx", {})
        op, bound = {
            "greater_than": (">", ctx.get("gt")),
            "greater_than_equal": (">=", ctx.get("ge")),
            "less_than": ("<", ctx.get("lt")),
            "less_than_equal": ("<=", ctx.get("le")),
        }[kind]
        return f"'{loc[-1]} {op} {bound}' must hold, but got {_show(given)}", path, False
    if kind == "too_short":
        n = err.get("ctx", {}).get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}", path, False
    return err["msg"], path, False


def _whole(given: Any) -> int:
    """A whole number close to what was given, for an example."""
    try:
        return max(1, int(float(given)))
    except (TypeError, ValueError, OverflowError):
        return 10


def _distribution_message(given: Any) -> str:
    names = list(models.DISTRIBUTION_MODELS)
    if isinstance(given, dict) and "distribution" in given:
        dist = given["distribution"]
        return (
            f"unknown distribution {_show(dist)}{did_you_mean(dist, names)}"
            if did_you_mean(dist, names)
            else f"unknown distribution {_show(dist)}; must be one of {', '.join(names)}"
        )
    if not isinstance(given, dict):
        return f"a parameter must be a mapping (e.g. 'values: [...]'), but got {_show(given)}"
    return (
        "cannot infer the distribution: give 'distribution', or 'values', 'value', "
        "'min' and 'max', or nested 'parameters'"
    )


def findings_from(exc: ValidationError, doc: Document) -> list[Finding]:
    """One finding per pydantic error, placed on the offending node of ``doc``."""
    out: list[Finding] = []
    seen: set[tuple[Path, str]] = set()
    for err in exc.errors(include_url=False):
        path, is_key = _data_path(doc.data, tuple(err["loc"]), err["type"])
        message, path, at_key = _message(err, path)
        if (
            err["type"] == "distribution"
            and isinstance(err.get("input"), dict)
            and "distribution" in err["input"]
        ):
            path = path + ("distribution",)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        out.append(doc.finding("error", path, message, key=at_key or is_key))
    return out


def error_paths(exc: ValidationError, data: Any) -> list[Path]:
    """The data paths of the nodes in error (the node itself, or for a missing or unknown key
    the mapping that holds it), deepest first."""
    paths = set()
    for err in exc.errors(include_url=False):
        path, _ = _data_path(data, tuple(err["loc"]), err["type"])
        if err["type"] in ("missing", "extra_forbidden") and path:
            path = path[:-1] if err["type"] == "missing" else path
        if path:
            paths.add(path)
    return sorted(paths, key=len, reverse=True)
