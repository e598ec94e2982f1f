"""``sweepspec results``: the analysis table of a sweep (SPEC section 6; issue 11 item 1).

The trials come from the engine's storage (found whichever engine ran the sweep), or with
``--from mlflow`` / ``--from wandb`` from the tracker: see :mod:`sweepspec.analysis.table`.
``json`` is an array with one object per trial (``number``, ``state``, ``params``, ``metrics``,
``values``, ``seeds``, ``error``, ``cost``, ``decision``, ``decision_why``, ``duration``,
``datetime_start``, ``datetime_complete``); with ``--columns`` or ``--per-seed`` it holds the
flat rows instead, one object per row keyed by column name. ``table`` and ``csv`` have one
column per ``params.*`` and ``metrics.*``, as ``mlflow.search_runs`` names them, then
``duration`` (and ``seed``, ``cost``, ``decision``, ``error`` when there are any).
``--filter``, ``--state``, ``--sort`` and ``--columns`` select on those columns
(:mod:`sweepspec.analysis.query`). Non-finite numbers are ``null`` in JSON (strict JSON has
no token for them). In CSV, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return gets a leading ``'`` (OWASP's rule against formula injection; numbers stay
numbers). In the table, control characters (line breaks, terminal escapes) are shown escaped
(``\\n``, ``\\x1b``). What is missing (no trial finished, a metric no trial logged, trials the
tracker does not hold) is said on stderr, one line each; the table is on stdout.
"""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from ..escape import csv_cell, strict_json, visible
from . import emit, load_spec, needs_extra

if TYPE_CHECKING:
    from ..analysis.table import Table
    from ..spec import Spec

Row = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    """What of the table to show."""

    filter: str | None = None
    states: tuple[str, ...] = ()
    sort: str | None = None
    descending: bool = False
    columns: str | None = None
    per_seed: bool = False


def results(
    path: str,
    *,
    storage: str | None = None,
    fmt: str = "table",
    source: str = "engine",
    selection: Selection | None = None,
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    table = read_table(spec, path, storage=storage, source=source)
    for line in table.notes:
        sys.stderr.write(line + "\n")
    text, notes = render_selection(table, spec, selection or Selection(), fmt)
    for line in notes:
        sys.stderr.write(line + "\n")
    emit(text)
    return 0


def which_engine(spec: Spec, path: str, storage: str | None) -> str:
    """The engine whose state of this sweep is there (the latest written when several are);
    the spec's engine (else optuna) when none is, so that its own message says what is
    missing. See :func:`sweepspec.analysis.table.which_engine`."""
    from ..analysis.table import which_engine as found

    return found(spec, path, storage) or spec.engine or "optuna"


def read_table(spec: Spec, path: str, *, storage: str | None, source: str) -> Table:
    """The table, its errors as one line each (:class:`SweepspecError`)."""
    from ..analysis.table import MissingExtra, TableError, load_table

    try:
        return load_table(spec, path, storage=storage, source=source)
    except MissingExtra as exc:
        raise SweepspecError(needs_extra(exc.module, "results")) from None
    except TableError as exc:
        raise SweepspecError(str(exc)) from None


def render_selection(
    table: Table, spec: Spec, selection: Selection, fmt: str
) -> tuple[str, list[str]]:
    """The selected rows in ``fmt``, and the lines that say what is missing."""
    from ..analysis.query import QueryError, parse_filter, pick_columns, sort_rows

    if selection.per_seed and not table.seeded:
        raise SweepspecError("--per-seed: the spec has no 'seeds', so each trial is one run")
    records = table.records(selection.per_seed)
    shown = table.columns(selection.per_seed)
    known = _known_columns(table, selection.per_seed)
    pairs = list(zip(records, _trials(table, selection.per_seed), strict=True))
    try:
        if selection.states:
            pairs = [p for p in pairs if p[0]["state"] in selection.states]
        if selection.filter:
            conditions = parse_filter(selection.filter, known)
            pairs = [p for p in pairs if all(c.holds(p[0]) for c in conditions)]
        if selection.sort:
            order = sort_rows([p[0] for p in pairs], selection.sort, known, selection.descending)
            where = {id(p[0]): p for p in pairs}
            pairs = [where[id(r)] for r in order]
        elif selection.descending:
            raise QueryError("--desc needs --sort COLUMN")
        if selection.columns:
            shown = pick_columns(selection.columns, known)
    except QueryError as exc:
        raise SweepspecError(str(exc)) from None
    notes = _missing(table, spec, shown, len(pairs), selection)
    if fmt == "json":
        if selection.columns or selection.per_seed:
            return strict_json([{c: r.get(c) for c in shown} for r, _ in pairs]) + "\n", notes
        return strict_json([trial for _, trial in pairs]) + "\n", notes
    return render([r for r, _ in pairs], shown, fmt), notes


def _trials(table: Table, per_seed: bool) -> list[Row]:
    """The trial of each of :meth:`Table.records`, in the same order."""
    out = []
    for row in table.rows:
        out += [row] * (len(row["seeds"]) if per_seed and row.get("seeds") else 1)
    return out


def _known_columns(table: Table, per_seed: bool) -> list[str]:
    """Every column of the table, and the spec's own params and metrics even when no trial
    holds them (a filter on them then keeps nothing, and says why)."""
    known = table.columns(per_seed, every=True)
    extra = [f"params.{p}" for p in table.params] + [f"metrics.{m}" for m in table.objectives]
    return known + [c for c in extra if c not in known]


def _missing(
    table: Table, spec: Spec, shown: list[str], count: int, selection: Selection
) -> list[str]:
    """One line for each thing a reader would otherwise wonder about (issue 11 item 7)."""
    notes = []
    if not table.rows:
        notes.append(f"sweepspec: the sweep has no trials yet ({table.where})")
        return notes
    states = Counter(r["state"] for r in table.rows)
    if not states["COMPLETE"]:
        done = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        notes.append(f"sweepspec: no trial of the sweep has finished (COMPLETE) yet: {done}")
    held = {k for r in table.rows for k in r["metrics"]}
    for name in table.objectives:
        if name not in held:
            notes.append(
                f"sweepspec: no trial logged metrics.{name} (the spec's metric), so its "
                "column is empty"
            )
    if count == 0 and (selection.filter or selection.states):
        notes.append(f"sweepspec: no trial of the {len(table.rows)} matches the selection")
    return notes


def render(records: list[Row], header: list[str], fmt: str) -> str:
    """``records`` (flat, column -> value) as a CSV or a terminal table of ``header``."""
    cells = [[r.get(c) for c in header] for r in records]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)  # RFC 4180: CRLF rows, so a CR in a cell is quoted too
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([[csv_cell(c) for c in row] for row in cells])
        return out.getvalue()
    return _table([visible(h) for h in header], [[_cell(c) for c in row] for row in cells])


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
