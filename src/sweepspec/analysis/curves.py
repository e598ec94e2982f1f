"""Learning curves: each trial's metric against step, a logged counter or wall time.

Where the points come from depends on the x-axis asked for:

* ``step`` (the default): the engine's own storage, which holds the objective as the trial
  reported it (``Engine.curves``): Optuna's intermediate values (at the 1-based count of
  reported values when the spec uses W&B's ``hyperband``, whose iteration that is; else at the
  trial's step), the W&B engine's report events (at the trial's step). Nothing but the
  objective is kept there, and no time.
* ``wall`` or a counter metric (``tokens``, ``samples``, any logged name): the MLflow tracker,
  which keeps every reported metric's history with its step and timestamp (one nested run per
  trial, tagged ``sweepspec.sweep_id`` and ``sweepspec.trial_number``). ``wall`` is seconds
  since the trial's first reported point; a counter is the counter's value logged at the same
  step as the objective (points whose step logged no counter are left out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..spec import Spec

__all__ = ["Curve", "CurveError", "from_mlflow", "from_steps"]

WALL = "wall"
STEP = "step"


class CurveError(Exception):
    """The curves cannot be read (no tracker, an unreachable one): one line for the user."""


@dataclass
class Curve:
    """One trial's curve: ``ys`` against ``xs``, with the trial's final state."""

    number: int
    state: str
    xs: list[float]
    ys: list[float]


def from_steps(curves: dict[int, list[tuple[int, float]]], states: dict[int, str]) -> list[Curve]:
    """Curves against step from the engine's ``curves()``; trials with no point are left out."""
    return [
        Curve(
            number,
            states.get(number, "RUNNING"),
            [float(s) for s, _ in points],
            [float(v) for _, v in points],
        )
        for number, points in sorted(curves.items())
        if points
    ]


def from_mlflow(
    spec: Spec, path: str, sweep_id: str, metric: str, x: str, states: dict[int, str]
) -> list[Curve]:
    """Curves of ``metric`` against ``x`` (``step``, ``wall`` or a metric's name) from the
    MLflow runs of sweep ``sweep_id``, in the store and experiment ``run`` logged to."""
    from ..trackers.mlflow import SETTINGS, absolute_uri

    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    from ..runners.sweep import experiment_name

    uri = absolute_uri(spec.tracking.uri if spec.tracking else None)
    experiment = experiment_name(spec, path)
    missing = _missing_store(uri)
    if missing is not None:  # MLflow would make an empty one: a reader makes nothing
        raise CurveError(f"MLflow has no store at {_shown(uri)}: {missing} does not exist")
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise CurveError(f"MLflow at {_shown(uri)} has no experiment {experiment!r}")
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`sweepspec.sweep_id` = '{sweep_id}'",
            max_results=50000,
        )
        trials = [r for r in runs if "sweepspec.trial_number" in r.data.tags]
        if not trials:
            raise CurveError(
                f"MLflow at {_shown(uri)} has no trial of this sweep in experiment "
                f"{experiment!r} (was it run with --tracker mlflow?)"
            )
        out = [_mlflow_curve(client, r, metric, x, states) for r in trials]
    except CurveError:
        raise
    except Exception as exc:  # MLflow's own errors: a server that is down, a bad store
        raise CurveError(
            f"cannot read the curves from MLflow at {_shown(uri)}: {_first_line(exc)}"
        ) from None
    return sorted((c for c in out if c.xs), key=lambda c: c.number)


def _mlflow_curve(client: Any, run: Any, metric: str, x: str, states: dict[int, str]) -> Curve:
    number = int(run.data.tags["sweepspec.trial_number"])
    state = states.get(number) or run.data.tags.get("sweepspec.state", "RUNNING")
    points = sorted(client.get_metric_history(run.info.run_id, metric), key=_order)
    if x == STEP:
        xs = [float(p.step) for p in points]
        ys = [float(p.value) for p in points]
    elif x == WALL:
        first = min((p.timestamp for p in points), default=0)
        xs = [(p.timestamp - first) / 1000.0 for p in points]
        ys = [float(p.value) for p in points]
    else:
        counter = {p.step: float(p.value) for p in client.get_metric_history(run.info.run_id, x)}
        kept = [p for p in points if p.step in counter]
        xs = [counter[p.step] for p in kept]
        ys = [float(p.value) for p in kept]
    return Curve(number, state, xs, ys)


def _missing_store(uri: str) -> str | None:
    """The file of a local store (SQLite or a folder) that is not there, else None."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("sqlite:///"):
        where = uri[len("sqlite:///") :].split("?")[0]
        where = where if where.startswith("/") else os.path.abspath(where)
    elif uri.startswith("file:"):
        where = unquote(urlparse(uri).path)
    elif "://" not in uri:
        where = uri
    else:
        return None
    return None if os.path.exists(where) or where in ("", ":memory:") else where


def _order(point: Any) -> tuple[int, int]:
    return int(point.step), int(point.timestamp)


def _shown(uri: str) -> str:
    from ..redact import redact

    return redact(uri)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
