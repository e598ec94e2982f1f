"""Where each parameter sits in a spec's nested ``parameters``: the one walk of that tree.

A leaf parameter is named by its dotted path (``optimizer.lr``); a top-level W&B name that
itself holds a dot (``trainer.epochs``) stays one key, so the path is kept as a tuple of keys
rather than split at every dot. Engine-free: compilers, engines and trackers all use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .models import NestedParam

__all__ = ["leaf_paths", "nest", "nested_names"]


def leaf_paths(parameters: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """Dotted name of each leaf parameter -> its path of keys, in file order."""
    out: dict[str, tuple[str, ...]] = {}

    def walk(params: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for name, param in params.items():
            if isinstance(param, NestedParam):
                walk(param.parameters, prefix + (name,))
            else:
                out[".".join(prefix + (name,))] = prefix + (name,)

    walk(parameters or {}, ())
    return out


def nested_names(parameters: Mapping[str, Any] | None) -> set[str]:
    """The dotted paths of the nested parameters themselves (``optimizer``,
    ``optimizer.adam``), not of their leaves."""
    out: set[str] = set()

    def walk(params: Mapping[str, Any], prefix: str) -> None:
        for name, param in params.items():
            if isinstance(param, NestedParam):
                out.add(prefix + name)
                walk(param.parameters, f"{prefix}{name}.")

    walk(parameters or {}, "")
    return out


def nest(flat: Mapping[str, Any], paths: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Real values by dotted name -> the nested dict a trial reads (``params["opt"]["lr"]``);
    a name without a path in ``paths`` is one key."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = paths.get(name, (name,))
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
