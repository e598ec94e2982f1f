"""``sweepspec results``: the sweep's trials from the engine's storage (SPEC section 6).

The sweep's state is found whichever engine ran it (:func:`which_engine`): on Optuna as ``run``
finds it (``--storage``, else ``optuna.storage``, else the journal under the working directory;
the name from ``optuna.study_name``, ``name`` or the file stem), on the local W&B engine
``--storage``, else ``.sweepspec/<name>.wandb.jsonl``; when both are there, the latest written.
Both engines give the same keys and states. ``json`` is an array with one object per trial:
``number``, ``state``, ``params`` (real values by dotted name), ``metrics`` (final values),
``values`` (the objective values told to the engine), ``seeds`` (per-seed final metrics, when
the spec has ``seeds``), ``error`` (for a failure), ``datetime_start`` and
``datetime_complete``. ``table`` and ``csv`` have one column per ``params.*`` and
``metrics.*``, as ``mlflow.search_runs`` names them. Non-finite numbers are ``null`` in JSON
(strict JSON has no token for them). In CSV, a text cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading ``'`` (OWASP's rule against formula injection;
numbers stay numbers). In the table, control characters (line breaks, terminal escapes) are
shown escaped (``\\n``, ``\\x1b``).
"""

from __future__ import annotations

import csv
import io
import sys
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from ..escape import csv_cell, strict_json, visible
from ..runners.base import engine_names, find_state
from . import EXTRAS, emit, load_spec, needs_extra

if TYPE_CHECKING:
    from ..spec import Spec

Row = dict[str, Any]


def results(path: str, *, storage: str | None = None, fmt: str = "table") -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    engine = which_engine(spec, path, storage)
    params = list(spec.flat_parameters())
    metrics = [m.name for m in spec.objectives]
    rows = _rows(engine, spec, path, storage)
    emit(render(rows, params, metrics, fmt))
    return 0


def which_engine(spec: Spec, path: str, storage: str | None) -> str:
    """The engine whose state of this sweep is there (``storage``, else each engine's default
    place); the latest written when several are; the spec's engine (else optuna) when none
    is, so that its own message says what is missing."""
    found: dict[str, float] = {}
    for name in engine_names():
        try:
            when = find_state(name, spec, path, storage)
        except ImportError:  # that engine is not installed: it cannot have run the sweep
            continue
        if when is not None:
            found[name] = when
    if not found:
        return spec.engine or "optuna"
    if storage is not None and len(found) > 1:  # a file one engine recognises as its own
        found.pop("optuna", None)
    return max(found, key=lambda name: found[name])


def _rows(name: str, spec: Spec, path: str, storage: str | None) -> list[Row]:
    from ..runners.base import EngineError, EngineOptions, open_engine

    try:
        engine = open_engine(name, spec, path, EngineOptions(storage=storage, create=False))
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in EXTRAS:  # the sweep's state is that engine's
            raise SweepspecError(needs_extra(top, "results")) from None
        raise
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    try:
        for line in engine.messages:  # what was set aside from a torn journal
            sys.stderr.write(line + "\n")  # (stdout is the results)
        return list(engine.records())
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    finally:
        engine.close()


def render(rows: list[Row], params: list[str], metrics: list[str], fmt: str) -> str:
    """``rows`` in ``fmt``; ``params`` and ``metrics`` (the spec's, in file order) order the
    columns of a table or CSV."""
    if fmt == "json":
        return strict_json(rows) + "\n"
    header, cells = _flat(rows, params, metrics)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)  # RFC 4180: CRLF rows, so a CR in a cell is quoted too
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([[csv_cell(c) for c in row] for row in cells])
        return out.getvalue()
    return _table([visible(h) for h in header], [[_cell(c) for c in row] for row in cells])


def _flat(
    rows: list[Row], names: list[str], objectives: list[str]
) -> tuple[list[str], list[list[Any]]]:
    params = [n for n in names if any(n in r["params"] for r in rows)]
    found = {m for r in rows for m in r["metrics"]}
    metrics = [m for m in objectives if m in found]
    metrics += sorted(found - set(metrics))
    errors = any("error" in r for r in rows)
    header = (
        ["number", "state"]
        + [f"params.{p}" for p in params]
        + [f"metrics.{m}" for m in metrics]
        + (["error"] if errors else [])
    )
    cells = [
        [r["number"], r["state"]]
        + [r["params"].get(p) for p in params]
        + [r["metrics"].get(m) for m in metrics]
        + ([r.get("error")] if errors else [])
        for r in rows
    ]
    return header, cells


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = visible(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
