"""Compile a spec to a W&B sweep config that ``wandb sweep`` takes as is.

The config passes W&B's own validator (``sweeps.schema_violations_from_proposed_config``) and
means what the spec means:

* W&B's keys are kept as written (defaults are left for W&B to fill, exactly as it would).
* The exponent forms ``log_uniform``, ``inv_log_uniform`` and ``q_log_uniform``, which W&B's
  current validator refuses, are rewritten to their ``*_values`` forms with the same quantiles
  (``e^U(a, b)`` is log-uniform on ``[e^a, e^b]``; ``e^-U(a, b)`` on ``[e^-b, e^-a]``).
* sweepspec's extensions are removed (a note each) or mapped (``budget.trials`` ->
  ``run_cap``); those whose meaning W&B cannot carry are named as unsupported.

Imports no engine: ``compile --engine wandb`` stays light. The validator runs in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..escape import visible
from ..spec.models import EXPONENT_FORMS, HyperbandStopping, NestedParam, Spec
from ._ppf import _exp
from .base import CompileError, Note, Policy, Rendered, Unsupported, dump
from .table import (
    DISTRIBUTION_ROWS,
    EARLY_TERMINATE_ROWS,
    Column,
    Section,
    UnsupportedRow,
)

__all__ = ["COLUMN", "WandbPlan", "compile_wandb"]

_ORDER = (
    "name",
    "description",
    "project",
    "entity",
    "program",
    "command",
    "method",
    "metric",
    "metrics",
    "early_terminate",
    "run_cap",
    "controller",
    "scheduler",
    "job",
    "image_uri",
    "apiVersion",
    "kind",
    "parameters",
)

_EXTENSION_NOTES = {
    "engine": "the default engine is sweepspec's choice, not part of a W&B config",
    "tracking": "where sweepspec logs runs; under 'wandb agent' the program logs to W&B",
    "optuna": "Optuna's settings",
    "wandb": "how sweepspec runs W&B (local or server), not part of a W&B config",
}


@dataclass
class WandbPlan:
    """A spec compiled for W&B: ``config`` is the sweep config, the rest says what changed."""

    spec: Spec
    config: dict[str, Any]
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def render(self, fmt: str, source: str, output: str | None = None) -> Rendered:
        """``yaml``: the config after a comment that says what changed; ``json``: the config
        alone (W&B's schema forbids keys of ours in it), the notes apart."""
        if fmt == "yaml":
            return Rendered(self.to_yaml(source))
        return Rendered(dump(self.to_json(), fmt), list(self.notes))

    def to_json(self) -> dict[str, Any]:
        """The sweep config itself (W&B's schema forbids any key of ours beside it)."""
        return self.config

    def to_yaml(self, source: str | None = None) -> str:
        """The config as YAML that PyYAML reads back as the same numbers (``1.0e-05``), after
        a comment block that lists what is unsupported and what was removed or rewritten (one
        comment line each: line breaks and other control characters in them are escaped)."""
        body = yaml.dump(
            self.config,
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=4096,
        )
        return "".join(f"# {visible(line)}\n" for line in self._header(source)) + body

    def _header(self, source: str | None) -> list[str]:
        """The comment's lines, without ``# ``: each may hold the user's strings (the path,
        names, values), which :meth:`to_yaml` escapes so that none can end the comment."""
        origin = f" from {source}" if source else ""
        lines = [f"W&B sweep config compiled by sweepspec{origin}."]
        if self.unsupported:
            lines.append("Unsupported on W&B (the spec says this; this config does not):")
            lines += [f"  {u.feature}: {u.message}" for u in self.unsupported]
        if self.notes:
            lines.append("Removed or rewritten (same meaning):")
            lines += [f"  {n.key}: {n.message}" for n in self.notes]
        return lines


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper (floats as ``1.0e-05``), with short lists of scalars on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = (
        all(not isinstance(item, (list, dict)) for item in data)
        and sum(len(str(item)) + 2 for item in data) <= 60
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def compile_wandb(spec: Spec, *, strict: bool = False) -> WandbPlan:
    """The W&B sweep config for ``spec``; :class:`~.base.UnsupportedError` under ``strict``
    when W&B cannot express part of it, :class:`~.base.CompileError` when no config that
    W&B's validator accepts can say what the spec says."""
    policy = Policy("wandb", strict)
    config = _core_keys(spec, policy)
    if spec.parameters is not None:
        config["parameters"] = _parameters(spec.parameters, "parameters", policy)
    _extensions(spec, config, policy)
    ordered = {key: config[key] for key in _ORDER if key in config}
    return WandbPlan(spec, ordered, policy.finish(), policy.notes)


# --------------------------------------------------------------------------- W&B's own keys


def _core_keys(spec: Spec, policy: Policy) -> dict[str, Any]:
    plain = (
        "name",
        "description",
        "project",
        "entity",
        "program",
        "command",
        "method",
        "metric",
        "run_cap",
        "controller",
        "scheduler",
        "job",
        "image_uri",
        "apiVersion",
        "kind",
    )
    config = {
        key: value
        for key, value in spec.model_dump(include=set(plain), exclude_unset=True).items()
        if value is not None
    }
    if spec.metrics is not None:
        _metrics(spec, config, policy)
    if spec.early_terminate is not None:
        _early_terminate(spec, config, policy)
    return config


def _metrics(spec: Spec, config: dict[str, Any], policy: Policy) -> None:
    metrics = [m.model_dump(exclude_unset=True) for m in spec.metrics or []]
    if spec.method == "custom":
        config["metrics"] = metrics
        return
    config["metric"] = metrics[0]
    names = ", ".join(repr(m["name"]) for m in metrics)
    policy.unsupported(
        "metrics",
        f"W&B optimises several metrics ({names}) only with "
        f"'method: custom' and a custom scheduler; this config optimises "
        f"{metrics[0]['name']!r} alone",
        "multi-objective",
    )


def _early_terminate(spec: Spec, config: dict[str, Any], policy: Policy) -> None:
    et = spec.early_terminate
    if isinstance(et, HyperbandStopping):
        config["early_terminate"] = et.model_dump(exclude_unset=True, exclude={"brackets"})
        if et.brackets > 1:
            policy.unsupported(
                "early_terminate.brackets",
                f"W&B's hyperband runs one bracket, not {et.brackets}",
                "hyperband-brackets",
            )
        return
    assert et is not None
    policy.unsupported(
        "early_terminate",
        f"W&B stops runs early only with hyperband; "
        f"'{et.type}' is removed and every run goes to its end",
        "pruner",
    )


# --------------------------------------------------------------------------- parameters


def _parameters(params: dict[str, Any], path: str, policy: Policy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, param in params.items():
        where = f"{path}.{name}"
        if param.when:
            _condition(where, param.when, policy)
        if isinstance(param, NestedParam):
            out[name] = {"parameters": _parameters(param.parameters, f"{where}.parameters", policy)}
        else:
            out[name] = _leaf(param.model_dump(exclude_unset=True, exclude={"when"}), where, policy)
    return out


def _condition(where: str, when: dict[str, Any], policy: Policy) -> None:
    terms = " and ".join(
        f"{k} in {v!r}" if isinstance(v, list) else f"{k} == {v!r}" for k, v in when.items()
    )
    policy.unsupported(
        f"{where}.when",
        f"W&B has no conditional parameters; the parameter "
        f"(active only when {terms}) is sampled in every run",
        "condition",
    )


def _leaf(cfg: dict[str, Any], where: str, policy: Policy) -> dict[str, Any]:
    kind = cfg.get("distribution")
    if kind not in EXPONENT_FORMS:
        return cfg
    low, high = _exponent_bounds(kind, cfg["min"], cfg["max"])
    if not (0 < low < high < math.inf):
        raise CompileError(
            f"{where}: {kind} with min={cfg['min']}, max={cfg['max']} has no "
            f"{EXPONENT_FORMS[kind]} form (the bounds {low!r}, {high!r} overflow or "
            f"collapse), and W&B's validator refuses {kind}: no config that W&B takes "
            "samples this range"
        )
    policy.note(
        where,
        f"{kind} (exponents {cfg['min']}..{cfg['max']}) rewritten to "
        f"{EXPONENT_FORMS[kind]} {low!r}..{high!r}, the same distribution",
    )
    rewritten = {**cfg, "distribution": EXPONENT_FORMS[kind], "min": low, "max": high}
    return rewritten


def _exponent_bounds(kind: str, a: float, b: float) -> tuple[float, float]:
    """The value bounds of an exponent form: ``[e^a, e^b]``, or ``[e^-b, e^-a]`` for inv."""
    if kind == "inv_log_uniform":
        return _exp(-b), _exp(-a)
    return _exp(a), _exp(b)


# --------------------------------------------------------------------------- extensions


def _objective(spec: Spec, policy: Policy) -> None:
    if spec.objective == "last":
        policy.unsupported(
            "objective",
            "W&B's controller scores a run by the best value of the metric over its "
            "history and summary, not by its last value; removed",
            "objective-last",
        )
    else:
        policy.note("objective", "removed: W&B's controller scores a run by its best value")


def _extensions(spec: Spec, config: dict[str, Any], policy: Policy) -> None:
    for key, message in _EXTENSION_NOTES.items():
        if getattr(spec, key) is not None:
            policy.note(key, f"removed: {message}")
    if spec.function is not None:
        policy.unsupported(
            "function",
            f"'wandb agent' runs a program or command, not the "
            f"Python function {spec.function!r}; call wandb.agent(sweep_id, "
            "function=...) yourself",
            "function",
        )
    if "objective" in spec.model_fields_set:
        _objective(spec, policy)
    if spec.seeds is not None:
        seeds = ", ".join(map(str, spec.seeds.values))
        policy.unsupported(
            "seeds", f"W&B runs each configuration once, not once per seed ({seeds})", "seeds"
        )
    if spec.budget is not None:
        _budget(spec, config, policy)


def _budget(spec: Spec, config: dict[str, Any], policy: Policy) -> None:
    budget = spec.budget
    assert budget is not None
    if budget.trials is not None:
        if "run_cap" in config:
            policy.note(
                "budget.trials",
                f"removed: run_cap={config['run_cap']} is the limit "
                f"(budget.trials={budget.trials} is not used when run_cap is set)",
            )
        else:
            config["run_cap"] = budget.trials
            policy.note("budget.trials", f"mapped to run_cap: {budget.trials}")
    for key in sorted(budget.model_fields_set - {"trials"}):
        value = getattr(budget, key)
        if key == "cost" and value is not None:
            value = f"{value.metric} <= {value.max}"
        policy.unsupported(
            f"budget.{key}",
            f"W&B has no such limit ({key}={value}); removed"
            + ("; start as many agents as workers" if key == "workers" else "")
            + (
                "; start one agent per device set, each with its CUDA_VISIBLE_DEVICES"
                if key == "gpus_per_trial"
                else ""
            ),
            "budget",
        )


# --------------------------------------------------------------------------- the engines table

_REWRITTEN = {
    "log_uniform": "rewritten to `log_uniform_values` with `min: e^min`, `max: e^max`",
    "inv_log_uniform": "rewritten to `inv_log_uniform_values` with `min: e^-max`, `max: e^-min`",
    "q_log_uniform": "rewritten to `q_log_uniform_values` with `min: e^min`, `max: e^max`",
}

_REMOVED = "removed (unsupported)"

COLUMN = Column(
    "wandb",
    distributions=Section(
        ("on W&B",), {kind: (_REWRITTEN.get(kind, "as written"),) for kind in DISTRIBUTION_ROWS}
    ),
    early_terminate=Section(
        ("on W&B",),
        {
            **{kind: (_REMOVED,) for kind in EARLY_TERMINATE_ROWS},
            "(none)": ("(none)",),
            "hyperband": ("as written",),
            "hyperband with `brackets` > 1": ("one bracket (unsupported)",),
        },
    ),
    other_keys=Section(
        ("on W&B",),
        {
            "`metric.target`": ("as written (W&B never reads it)",),
            "`metric` absent": ("as written",),
            "`run_cap`, `budget.trials`": (
                "`run_cap` (from `budget.trials` when `run_cap` is absent)",
            ),
            "`seeds`, `budget`": (_REMOVED,),
            "`engine`, `tracking`, `optuna`, `wandb`": ("removed (a note each)",),
            "`function`": (_REMOVED,),
            "nested `parameters`": ("as written",),
        },
    ),
    unsupported=(
        UnsupportedRow(
            "wandb",
            "condition",
            "`when:` (conditional parameters)",
            "removed: W&B samples the parameter in every run",
        ),
        UnsupportedRow(
            "wandb",
            "pruner",
            "`early_terminate` other than hyperband",
            "removed: W&B runs every trial to its end",
        ),
        UnsupportedRow(
            "wandb",
            "hyperband-brackets",
            "hyperband `brackets` > 1",
            "removed: W&B runs one bracket",
        ),
        UnsupportedRow(
            "wandb",
            "multi-objective",
            "`metrics` without `method: custom`",
            "W&B optimises the first metric alone",
        ),
        UnsupportedRow(
            "wandb",
            "function",
            "`function`",
            "removed: `wandb agent` runs a `program` or `command`; pass the function to "
            "`wandb.agent(sweep_id, function=...)` yourself",
        ),
        UnsupportedRow("wandb", "seeds", "`seeds`", "removed: W&B runs each configuration once"),
        UnsupportedRow(
            "wandb",
            "objective-last",
            "`objective: last`",
            "removed: W&B's controller scores a run by the best value of its metric",
        ),
        UnsupportedRow(
            "wandb",
            "budget",
            "`budget` beyond `trials`",
            "removed: W&B has no wall-clock, cost or failure limits; start as many agents as "
            "workers",
        ),
    ),
)
"""W&B's column of the engines table (:mod:`sweepspec.compiler.table`): the reference, the
spec's own words."""
