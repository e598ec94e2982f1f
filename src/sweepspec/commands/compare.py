"""``sweepspec compare``: re-run the best configurations over seeds and test every pair.

``compare SPEC --top K --seeds N`` takes the K best distinct configurations of the sweep's
finished trials (from the engine's storage, whichever engine ran it, as ``results`` finds it;
ids ``trial-<number>``), or with ``--configs FILE.yaml`` the named configurations of that file
(``NAME: {param: value, ...}``), and runs each once per seed 0..N-1 on the spec's engine and
tracker (:mod:`sweepspec.runners.compare`: a second sweep, ``<name>-compare``, resumable
like ``run``). Then every pair is tested (:mod:`sweepspec.analysis.compare`) and each gets a
verdict line. ``--format json`` prints :meth:`Comparison.to_json`; the default prints one
line per configuration, the verdicts, and what is missing.

:func:`load_comparison` reads a comparison already run, without running anything (the report).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli import SweepspecError
from ..escape import strict_json, visible
from . import EXTRAS, emit, load_spec, needs_extra, require

if TYPE_CHECKING:
    from ..analysis.compare import Comparison, ConfigScores
    from ..runners.compare import Candidate
    from ..spec import Spec

__all__ = ["compare", "load_comparison", "read_configs", "top_configs"]


def compare(
    path: str,
    *,
    top: int | None = None,
    seeds: int = 5,
    configs: str | None = None,
    engine: str | None = None,
    tracker: str | None = None,
    storage: str | None = None,
    fresh: bool = False,
    fmt: str = "text",
) -> int:
    spec = load_spec(path)
    if spec is None:
        return 1
    _check_objective(spec, path)
    require("scipy", "compare")  # before anything runs
    if configs is not None and top is not None:
        raise SweepspecError("give --top K or --configs FILE, not both")
    try:
        from ..runners.compare import check_engine, run_configs
        from ..runners.sweep import RunError
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
    name = engine or spec.engine or "optuna"
    try:
        check_engine(name)
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    if configs is not None:
        candidates = read_configs(configs, spec)
    else:
        candidates = top_configs(spec, path, top or 3, storage)
    track = tracker or (spec.tracking.tracker if spec.tracking else "mlflow")
    try:
        run_configs(
            spec, path, candidates, list(range(seeds)), engine=name, tracker=track, fresh=fresh
        )
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    result = load_comparison(path, spec)
    if result is None:  # pragma: no cover - the run just wrote it
        raise SweepspecError("the comparison left nothing to read")
    emit(strict_json(result.to_json()) + "\n" if fmt == "json" else render(result))
    return 0


def _missing(exc: ModuleNotFoundError) -> SweepspecError:
    top = (exc.name or "").split(".")[0]
    if top in EXTRAS:
        return SweepspecError(needs_extra(top, "compare"))
    raise exc


def _check_objective(spec: Spec, path: str) -> None:
    objectives = spec.objectives
    if len(objectives) != 1:
        what = f"{len(objectives)} ('metrics')" if objectives else "none"
        raise SweepspecError(
            f"{path}: compare tests one objective, the spec's 'metric', but the spec has {what}"
        )


# --------------------------------------------------------------------------- which configs


def top_configs(spec: Spec, path: str, count: int, storage: str | None) -> list[Candidate]:
    """The ``count`` best distinct configurations of the sweep's finished trials."""
    from ..runners.compare import Candidate

    rows = _sweep_rows(spec, path, storage)
    goal = spec.objectives[0].goal
    metric = spec.objectives[0].name
    scored = [r for r in rows if r["state"] == "COMPLETE" and _score(r) is not None]
    sign = 1.0 if goal == "minimize" else -1.0
    scored.sort(key=lambda r: sign * (_score(r) or 0.0))
    seen: set[str] = set()
    picked: list[Candidate] = []
    for row in scored:
        key = json.dumps(row["params"], sort_keys=True, default=str)
        if key not in seen and len(picked) < count:
            seen.add(key)
            picked.append(Candidate(f"trial-{row['number']}", dict(row["params"])))
    name = visible(spec.name or Path(path).stem)
    if len(picked) < 2:
        have = f"{len(picked)} finished trial" + ("" if len(picked) == 1 else "s")
        states = _states(rows)
        raise SweepspecError(
            f"sweep {name!r} has {have} with a {metric} score ({states}); compare needs at "
            f"least 2 distinct configurations: run the sweep further ('sweepspec run {path}'), "
            "or give --configs FILE"
        )
    if len(picked) < count:
        sys.stderr.write(
            f"sweepspec: sweep {name!r} has {len(picked)} distinct finished configurations; "
            f"comparing {len(picked)}, not {count}\n"
        )
    return picked


def _score(row: dict[str, Any]) -> float | None:
    values = row.get("values")
    if not values or values[0] is None or not math.isfinite(values[0]):
        return None
    return float(values[0])


def _states(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no trials at all"
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _sweep_rows(spec: Spec, path: str, storage: str | None) -> list[dict[str, Any]]:
    from ..runners.base import EngineError, EngineOptions, open_engine
    from .results import which_engine

    name = which_engine(spec, path, storage)
    try:
        engine = open_engine(name, spec, path, EngineOptions(storage=storage, create=False))
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    try:
        return list(engine.records())
    except EngineError as exc:
        raise SweepspecError(str(exc)) from None
    finally:
        engine.close()


def read_configs(file: str, spec: Spec) -> list[Candidate]:
    """The named configurations of a YAML file: ``NAME: {param: value, ...}``, parameters by
    dotted name or nested as in the spec; constants of the spec filled in."""
    import yaml

    from ..runners.compare import Candidate

    try:
        data = yaml.safe_load(Path(file).read_text())
    except OSError as exc:
        raise SweepspecError(f"cannot read {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SweepspecError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from None
    shape = "give one named configuration per key: 'NAME: {param: value, ...}'"
    if not isinstance(data, dict) or len(data) < 2:
        raise SweepspecError(f"{file}: compare needs at least 2 configurations; {shape}")
    out = []
    for name, params in data.items():
        if not isinstance(params, dict):
            raise SweepspecError(f"{file}: {visible(str(name))}: {shape}")
        out.append(Candidate(str(name), _config_params(file, str(name), params, spec)))
    return out


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _config_params(file: str, name: str, given: dict[str, Any], spec: Spec) -> dict[str, Any]:
    from ..spec.messages import did_you_mean
    from ..spec.models import ConstantParam

    known = spec.flat_parameters()
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted not in known and isinstance(value, dict):
                walk(value, dotted + ".")
            else:
                flat[dotted] = value

    walk(given, "")
    for key in flat:
        if key not in known:
            hint = did_you_mean(key, list(known)) or ""
            raise SweepspecError(
                f"{file}: {visible(name)}: {visible(key)!r} is not a parameter of the spec{hint}"
            )
    params: dict[str, Any] = {}
    for key, param in known.items():
        if key in flat:
            params[key] = flat[key]
        elif isinstance(param, ConstantParam):
            params[key] = param.value
        elif param.when is None:
            raise SweepspecError(f"{file}: {visible(name)}: gives no value for {key!r}")
    return params


# --------------------------------------------------------------------------- reading, output


def load_comparison(path: str, spec: Spec | None = None) -> Comparison | None:
    """The comparison of spec ``path`` as it stands (nothing is run): every configuration's
    scores, every pair's tests and verdicts; None when ``compare`` has not run it here."""
    from ..analysis.compare import compare as test_pairs
    from ..runners.compare import read_runs
    from ..runners.sweep import RunError

    spec = spec or load_spec(path)
    if spec is None:
        raise SweepspecError(f"{path}: not a valid spec")
    try:
        found = read_runs(spec, path)
    except RunError as exc:
        raise SweepspecError(str(exc)) from None
    if found is None:
        return None
    candidates, seeds, rows = found
    metric = spec.objectives[0]
    cost = spec.budget.cost.metric if spec.budget and spec.budget.cost else None
    scores = [_scores(c, seeds, rows, cost) for c in candidates]
    return test_pairs(scores, metric.name, metric.goal, seeds, cost)


def _scores(
    candidate: Candidate, seeds: list[int], rows: list[dict[str, Any]], cost: str | None
) -> ConfigScores:
    from ..analysis.compare import ConfigScores
    from ..runners.compare import CONFIG, SEED

    mine = [r for r in rows if r["params"].get(CONFIG) == candidate.id]
    out = ConfigScores(candidate.id, candidate.params, {})
    for seed in seeds:
        runs = [r for r in mine if r["params"].get(SEED) == seed]
        done = [r for r in runs if r["state"] == "COMPLETE" and _score(r) is not None]
        if done:
            out.scores[seed] = _score(done[0]) or 0.0
        else:
            out.missing[seed] = _why(runs)
        if cost is not None:
            spent = [r["metrics"][cost] for r in runs if _finite(r["metrics"].get(cost))]
            if spent:
                out.cost[seed] = math.fsum(spent)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _why(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "not run"
    last = runs[-1]
    if last["state"] == "FAIL":
        return f"failed: {last.get('error') or 'no reason recorded'}"
    if last["state"] == "RUNNING":
        return "still running"
    if last["state"] == "COMPLETE":
        return "finished without a score"
    return f"ended {last['state']}"


def render(result: Comparison) -> str:
    """The comparison for a person: a line per configuration, the verdicts, what is missing."""
    lines = [
        f"{len(result.configs)} configurations x {len(result.seeds)} seeds "
        f"({', '.join(map(str, result.seeds))}), {result.metric} ({result.goal}), best first:"
    ]
    width = max(len(c.id) for c in result.configs)
    for config in result.configs:
        mean, sd = config.mean(), config.sd()
        shown = f"mean {mean:.4g}" if mean is not None else "no score"
        if sd is not None:
            shown += f" sd {sd:.2g}"
        shown += f" over {len(config.scores)} seeds"
        if result.cost_metric is not None:
            total = math.fsum(config.cost.values())
            each = total / len(config.cost) if config.cost else 0.0
            shown += f"; {result.cost_metric} total {total:.4g}, mean {each:.4g}"
        params = ", ".join(f"{k}={v!r}" for k, v in config.params.items())
        lines.append(visible(f"  {config.id.ljust(width)}  {shown}  ({params})"))
    lines += [visible(line) for line in result.verdicts]
    lines += [visible(f"missing: {note}") for note in result.notes]
    if result.cost_metric is not None:
        total = math.fsum(v for c in result.configs for v in c.cost.values())
        lines.append(f"{result.cost_metric}: {total:.4g} in total over the comparison's runs")
    return "\n".join(lines) + "\n"
