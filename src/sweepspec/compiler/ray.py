"""Compile a spec to Ray Tune: a search space, a search algorithm, a scheduler, a budget.

Ray is imported only when the live objects are built (:meth:`RayPlan.param_space`,
:meth:`RayPlan.search_alg`, :meth:`RayPlan.scheduler`): importing this module, the compiler
registry or the engines table does not import ray. The plan is built from the Optuna plan
(:func:`sweepspec.compiler.optuna.compile_optuna`), so the two engines cannot drift:

* Distributions: W&B's own words, sampled as W&B samples them. ``uniform`` ->
  ``tune.uniform``; ``log_uniform_values``, ``log_uniform``, ``inv_log_uniform(_values)`` ->
  ``tune.loguniform`` (log-uniform is log-uniform whatever the base); ``int_uniform`` ->
  ``tune.randint(min, max + 1)`` (Tune's upper bound is exclusive); ``categorical`` and
  ``constant`` -> ``tune.choice`` / the value itself (values Tune's search algorithms cannot
  hold as they are become indices). Every other W&B distribution (normal, log_normal, beta,
  the ``q_`` variants, categorical with probabilities) is ``tune.uniform(0, 1)``: a quantile
  ``u`` that :meth:`RayPlan.decode` turns into the value by W&B's inverse CDF
  (:mod:`._ppf`), the Optuna compiler's transform.
* ``method: grid`` -> ``tune.grid_search`` over W&B's grid points (each once, ``num_samples``
  1); ``random`` -> Tune's ``BasicVariantGenerator``; ``bayes`` (and ``custom``, several
  ``metrics``, ``optuna: {sampler: ...}``) -> Tune's ``OptunaSearch`` with the sampler and the
  distributions ``compile_optuna`` gives, define-by-run (conditions included). W&B's bayes is
  a Gaussian process; the sampler is Optuna's TPE, as on the Optuna engine.
* ``early_terminate: hyperband`` -> :class:`WandbHyperbandScheduler`, a Tune
  ``FIFOScheduler`` that stops a trial where W&B's ``stop_runs`` stops it, by the same code
  as the Optuna engine's pruner (:func:`._wandb_hyperband.wandb_stops`). Tune's own
  ``ASHAScheduler`` / ``HyperBandScheduler`` do not make W&B's decisions (they promote from
  rungs once and keep one trial fewer), so they are not used. The other ``early_terminate``
  types, and hyperband with ``brackets`` > 1, are ``unsupported()``: no trial is stopped
  early.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import os
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..spec.models import HyperbandStopping, Spec
from ._script import distribution_source, module_source, script_template
from ._wandb_hyperband import hyperband_bands, wandb_stops
from .base import Note, Policy, Rendered, Unsupported, dump
from .optuna import OptunaPlan, compile_optuna, study_name_for
from .table import DISTRIBUTION_ROWS, EARLY_TERMINATE_ROWS, Column, Section, UnsupportedRow

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

__all__ = ["COLUMN", "RayPlan", "compile_ray", "scheduler_class"]

DEFAULT_METRIC = "objective"
"""Tune's metric when the spec gives none: the number the trial returns, minimised."""

FINAL = "sweepspec_final"
"""A result holding this key (true) is a trial's final metrics, not a logged value: the
scheduler does not count it (W&B's hyperband reads a run's history, not its summary)."""

_OPTUNA_SEARCH = "OptunaSearch"
_BASIC = "BasicVariantGenerator"


@dataclass
class RayPlan:
    """A spec compiled for Ray Tune.

    Attributes:
        optuna: the Optuna plan it is built from (distributions, conditions, sampler).
        metric, mode: Tune's ``metric`` and ``mode`` (lists with several ``metrics``);
            :data:`DEFAULT_METRIC` and ``"min"`` without a metric.
        num_samples: Tune's ``num_samples``: ``run_cap`` (else ``budget.trials``) trials, -1
            when unbounded; with ``method: grid`` 1, each grid point once.
        space: dotted name -> ``{"domain": NAME, "args": [...]}`` (a ``ray.tune`` sampling
            function) or ``{"value": v}`` (a constant).
        searcher, scheduler_spec: what :meth:`search_alg` and :meth:`scheduler` build
            (``{"name": ..., "kwargs": {...}}``; the scheduler None without early
            termination).
        unsupported: what Tune cannot keep (empty under ``strict``).
    """

    spec: Spec
    optuna: OptunaPlan
    metric: str | list[str]
    mode: str | list[str]
    num_samples: int
    space: dict[str, dict[str, Any]]
    searcher: dict[str, Any]
    scheduler_spec: dict[str, Any] | None
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    # ---- the artifact

    def to_json(self) -> dict[str, Any]:
        """The plan as one JSON object (``compile --engine ray``)."""
        optuna = self.optuna.to_json()
        return {
            "metric": self.metric,
            "mode": self.mode,
            "num_samples": self.num_samples,
            "objective": optuna["objective"],
            "targets": optuna["targets"],
            "search_alg": copy.deepcopy(self.searcher),
            "scheduler": copy.deepcopy(self.scheduler_spec),
            "param_space": copy.deepcopy(self.space),
            "reparametrised": optuna["reparametrised"],
            "conditions": optuna["conditions"],
            "budget": optuna["budget"],
            "unsupported": [u.to_json() for u in self.unsupported],
        }

    def render(self, fmt: str, source: str, output: str | None = None) -> Rendered:
        """``json`` (the default) / ``yaml``: :meth:`to_json`; ``python``: a standalone Tune
        script (:meth:`to_python`)."""
        if fmt == "python":
            return Rendered(
                self.to_python(os.path.dirname(os.path.abspath(source)), output, source)
            )
        return Rendered(dump(self.to_json(), fmt))

    # ---- the live Tune objects

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``, by flat dotted name: sampling functions for
        ``BasicVariantGenerator``; empty with ``OptunaSearch``, which holds the space."""
        if self.searcher["name"] == _OPTUNA_SEARCH:
            return {}
        from ray import tune

        out: dict[str, Any] = {}
        for name, dim in self.space.items():
            out[name] = (
                dim["value"] if "value" in dim else getattr(tune, dim["domain"])(*dim["args"])
            )
        return out

    def search_alg(self, seed: int | None = None) -> Searcher | None:
        """Tune's search algorithm: None for ``BasicVariantGenerator`` (Tune's default, given
        :meth:`param_space`), else ``OptunaSearch`` over the Optuna plan's distributions."""
        if self.searcher["name"] != _OPTUNA_SEARCH:
            return None
        from ray.tune.search.optuna import OptunaSearch

        searcher: Searcher = OptunaSearch(
            space=_DefineByRun(self.optuna),
            metric=self.metric,
            mode=self.mode,
            sampler=self.optuna.create_sampler(seed),
        )
        return searcher

    def scheduler(self) -> TrialScheduler | None:
        """W&B's hyperband as a Tune scheduler, or None (Tune's FIFO: nothing stopped)."""
        if self.scheduler_spec is None:
            return None
        cls: Any = scheduler_class()
        scheduler: TrialScheduler = cls(
            metric=self.metric, mode=self.mode, **self.scheduler_spec["kwargs"]
        )
        return scheduler

    def decode(self, config: dict[str, Any]) -> dict[str, Any]:
        """A trial's Tune ``config`` -> the real values by flat dotted name (active
        parameters only), as the other engines record them."""
        return self.optuna.decode(config)

    # ---- --format python

    def to_python(
        self, spec_dir: str, script_path: str | None = None, source: str | None = None
    ) -> str:
        """A standalone Tune script that runs this plan without sweepspec."""
        spec = self.spec
        template, relative = script_template(spec, "ray_script.py.j2", spec_dir, script_path)
        kinds = {p.reparam["kind"] for p in self.optuna.params.values() if p.reparam is not None}
        hyperband = self.scheduler_spec is not None
        return template.render(
            source=source,
            trial_kind="a Python function" if spec.function else "a command",
            needs_optuna=self.searcher["name"] == _OPTUNA_SEARCH,
            contract_source=module_source("runners", "contract.py"),
            ppf_source=distribution_source(kinds),
            rule_source=(
                inspect.getsource(hyperband_bands) + "\n\n" + inspect.getsource(wandb_stops)
                if hyperband
                else ""
            ),
            scheduler_source=_scheduler_source() if hyperband else "",
            final=FINAL,
            plan_json=json.dumps(self._script_plan(source), indent=4),
            spec_dir=os.path.abspath(spec_dir),
            spec_dir_relative=relative,
        )

    def _script_plan(self, source: str | None) -> dict[str, Any]:
        optuna = self.optuna.to_json()
        return {
            **self.to_json(),
            "name": study_name_for(self.spec, source) or "sweepspec",
            "metric_names": list(self.optuna.metric_names),
            "distributions": optuna["distributions"],
            "constants": optuna["constants"],
            "order": list(self.optuna.order),
            "names": list(self.optuna.params),
            "paths": {name: list(path) for name, path in self.optuna.paths.items()},
            "trial": {
                "function": self.spec.function,
                "program": self.spec.program,
                "command": self.spec.command,
            },
        }


def _scheduler_source() -> str:
    """The source of :class:`WandbHyperbandScheduler` as it is written in this module (read
    from the file: building the class would import ray)."""
    path = os.path.abspath(__file__)
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    tree = ast.parse(source)
    maker = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_make_scheduler_class"
    )
    node = next(n for n in maker.body if isinstance(n, ast.ClassDef))
    lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(lines))


class _DefineByRun:
    """``OptunaSearch``'s define-by-run space: the Optuna plan's own suggestions (conditions,
    quantiles), kept as Optuna holds them in Tune's config. A class, not a closure: Tune
    pickles the searcher with its experiment state."""

    def __init__(self, plan: OptunaPlan) -> None:
        self.plan = plan

    def __call__(self, trial: Any) -> None:
        self.plan.suggest_raw(trial)


# --------------------------------------------------------------------------- compile


def compile_ray(spec: Spec, *, strict: bool = False) -> RayPlan:
    """The Tune plan for ``spec``; :class:`~.base.UnsupportedError` under ``strict`` when Tune
    cannot keep part of it, :class:`~.base.CompileError` when it cannot be compiled."""
    optuna = compile_optuna(spec)
    policy = Policy("ray", strict)
    for item in optuna.unsupported:  # the sampler's: OptunaSearch uses the same one
        if item.kind == "scheduler":
            policy.unsupported(item.feature, item.message, item.kind)
    directions = optuna.directions
    modes = ["min" if d == "minimize" else "max" for d in directions]
    names = optuna.metric_names or [DEFAULT_METRIC]
    metric: str | list[str] = names[0] if len(names) == 1 else list(names)
    mode: str | list[str] = modes[0] if len(modes) == 1 else modes
    grid = optuna.sampler["name"] == "GridSampler"
    searcher = _searcher(optuna, grid)
    space = _space(optuna, grid, policy, searcher["name"] == _BASIC)
    if grid:
        num_samples = 1
    else:
        num_samples = optuna.n_trials if optuna.n_trials is not None else -1
    return RayPlan(
        spec=spec,
        optuna=optuna,
        metric=metric,
        mode=mode,
        num_samples=num_samples,
        space=space,
        searcher=searcher,
        scheduler_spec=_scheduler(spec, optuna, policy),
        unsupported=policy.finish(),
        notes=list(optuna.notes),
    )


def _searcher(optuna: OptunaPlan, grid: bool) -> dict[str, Any]:
    if grid or optuna.sampler["name"] == "RandomSampler":
        return {"name": _BASIC, "kwargs": {}}
    return {"name": _OPTUNA_SEARCH, "kwargs": {"sampler": copy.deepcopy(optuna.sampler)}}


def _space(
    optuna: OptunaPlan, grid: bool, policy: Policy, basic: bool
) -> dict[str, dict[str, Any]]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if grid and optuna.conditions and basic:
        policy.unsupported(
            "parameters",
            "tune.grid_search enumerates every value of a conditional parameter even where it "
            "is inactive: configurations repeat (decode gives each the same real values)",
            "grid-condition",
        )
    points = optuna.sampler["kwargs"].get("search_space", {}) if grid else {}
    space: dict[str, dict[str, Any]] = {}
    for name, param in optuna.params.items():
        dist = param.distribution
        if name in optuna.constants:
            space[name] = {"value": optuna.constants[name]}
        elif grid:
            space[name] = {"domain": "grid_search", "args": [list(points[name])]}
        elif isinstance(dist, CategoricalDistribution):
            space[name] = {"domain": "choice", "args": [list(dist.choices)]}
        elif isinstance(dist, IntDistribution):
            space[name] = {"domain": "randint", "args": [dist.low, dist.high + 1]}
        elif isinstance(dist, FloatDistribution) and dist.log:
            space[name] = {"domain": "loguniform", "args": [dist.low, dist.high]}
        else:
            assert isinstance(dist, FloatDistribution) and dist.step is None
            space[name] = {"domain": "uniform", "args": [dist.low, dist.high]}
    return space


def _scheduler(spec: Spec, optuna: OptunaPlan, policy: Policy) -> dict[str, Any] | None:
    et = spec.early_terminate
    if et is None:
        return None
    if len(spec.objectives) > 1:
        policy.unsupported(
            "early_terminate",
            f"Tune's schedulers take one metric, and this spec has {len(spec.objectives)} "
            "metrics; no trial is stopped early",
            "multi-objective-pruning",
        )
        return None
    if not spec.objectives:
        policy.unsupported(
            "early_terminate",
            f"{et.type} compares runs on 'metric', which the spec does not give (W&B stops "
            "the sweep with an error); no trial is stopped early",
            "pruning-without-metric",
        )
        return None
    if isinstance(et, HyperbandStopping) and et.brackets == 1:
        # W&B's form, as the Optuna plan's pruner has it (the min_iter form has 100 bands)
        return {"name": "WandbHyperbandScheduler", "kwargs": dict(optuna.pruner["kwargs"])}
    feature = "early_terminate.brackets" if isinstance(et, HyperbandStopping) else "early_terminate"
    policy.unsupported(
        feature,
        f"Tune has no scheduler that makes the decisions of Optuna's {optuna.pruner['name']}; "
        "no trial is stopped early",
        "early-termination",
    )
    return None


# --------------------------------------------------------------------------- the scheduler


def scheduler_class() -> type[TrialScheduler]:
    """:class:`WandbHyperbandScheduler` (made on first use: it subclasses a Ray class)."""
    global _SCHEDULER
    if _SCHEDULER is None:
        _SCHEDULER = _make_scheduler_class()
    return _SCHEDULER


_SCHEDULER: type[TrialScheduler] | None = None


def _make_scheduler_class() -> type[TrialScheduler]:
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class WandbHyperbandScheduler(FIFOScheduler):  # type: ignore[misc]
        """Stop a trial where W&B's hyperband stops a run: at each result holding a finite
        value of the metric, W&B's rule (:func:`wandb_stops`) over the values every trial
        has reported so far, in any state; re-checked at every result."""

        _supports_buffered_results = False  # one decision per result, as W&B's controller

        def __init__(
            self,
            *,
            metric: str,
            mode: str,
            min_iter: int | None = None,
            max_iter: int | None = None,
            s: float | None = None,
            eta: float = 3,
            strict: bool = True,
        ) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._metric, self._mode = metric, mode
            self.metric_name = metric
            self.bands = hyperband_bands(min_iter=min_iter, max_iter=max_iter, s=s, eta=eta)
            self.eta, self.strict = eta, strict
            self.histories: dict[str, list[float]] = {}

        def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
            return True  # compiled from the spec: Tune's own metric must not replace it

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            if result.get(FINAL) or not self.record(
                str(trial.trial_id), result.get(self.metric_name)
            ):
                return str(TrialScheduler.CONTINUE)
            return str(TrialScheduler.STOP)

        def record(self, key: str, value: Any) -> bool:
            """Take ``value`` (a reported value of the metric, or None) for trial ``key``;
            whether W&B would stop the trial now."""
            own = self.histories.setdefault(key, [])
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            if number != number or number in (float("inf"), float("-inf")):
                return False
            own.append(number if self._mode == "min" else -number)
            return wandb_stops(
                own, list(self.histories.values()), self.bands, self.eta, self.strict
            )

        def debug_string(self) -> str:
            return f"W&B hyperband: bands {self.bands}, eta {self.eta}, strict {self.strict}"

    return WandbHyperbandScheduler


# --------------------------------------------------------------------------- the engines table

_QUANTILE = "quantile `tune.uniform(0, 1)` + W&B's inverse CDF"
_NATIVE: dict[str, str] = {
    "constant": "the value itself in `param_space`",
    "categorical": "`tune.choice(values)`",
    "int_uniform": "`tune.randint(min, max + 1)`",
    "uniform": "`tune.uniform(min, max)`",
    "log_uniform": "`tune.loguniform(e^min, e^max)`",
    "log_uniform_values": "`tune.loguniform(min, max)`",
    "inv_log_uniform": "`tune.loguniform(e^-max, e^-min)`",
    "inv_log_uniform_values": "`tune.loguniform(min, max)`",
}
_NATIVE_NOTES: dict[str, str] = {
    "categorical": "values Optuna cannot hold become the string indices `'0'`, `'1'`, ..., "
    "as on Optuna (the same plan feeds `OptunaSearch`); `decode` maps them back",
    "int_uniform": "Tune's upper bound is exclusive",
    "inv_log_uniform_values": "W&B's inverse CDF is algebraically the log-uniform one",
}
_QUANTILE_NOTE = (
    "the Optuna compiler's transform: sampled values follow W&B's distribution exactly, "
    "whatever the search algorithm; `decode` gives the value"
)

COLUMN = Column(
    "ray",
    distributions=Section(
        ("on Ray Tune", "native", "note"),
        intro="On Ray Tune, a *native* distribution is a `ray.tune` sampling function equal in "
        "law to W&B's; the others are the quantile `u` as on Optuna, drawn by "
        "`tune.uniform(0, 1)` (or suggested by `OptunaSearch`) and turned into the value by "
        "the same inverse CDF (`RayPlan.decode`).",
        cells={
            kind: (_NATIVE[kind], "yes", _NATIVE_NOTES.get(kind, ""))
            if kind in _NATIVE
            else (_QUANTILE, "no", _QUANTILE_NOTE)
            for kind in DISTRIBUTION_ROWS
        },
    ),
    methods=Section(
        ("Tune search algorithm", "same as W&B", "note"),
        {
            "grid": (
                "`tune.grid_search` over W&B's grid",
                "yes",
                "the same points as on Optuna, each once (`num_samples: 1`)",
            ),
            "random": ("`BasicVariantGenerator`", "yes", "every distribution samples as W&B's"),
            "bayes": (
                "`OptunaSearch` with the Optuna column's sampler",
                "no",
                "the sampler and distributions of `compile --engine optuna`, define-by-run; "
                "W&B's bayes is a Gaussian process",
            ),
            "custom": ("`OptunaSearch` with `TPESampler()`", "no", "as on Optuna"),
            "`metrics` (several objectives)": (
                "`OptunaSearch` with `NSGAIISampler()` unless the method is grid or random",
                "no",
                "Tune's `metric` and `mode` are lists",
            ),
        },
    ),
    early_terminate=Section(
        ("Tune scheduler", "note"),
        {
            **{
                kind: (
                    "`FIFOScheduler` (unsupported)",
                    "no Tune scheduler makes the decisions of the Optuna column's pruner",
                )
                for kind in EARLY_TERMINATE_ROWS
            },
            "(none)": ("`FIFOScheduler` (Tune's default)", "no trial is stopped early"),
            "hyperband": (
                "`WandbHyperbandScheduler` (sweepspec's, a `FIFOScheduler`)",
                "W&B's own rule, by the code of the Optuna engine's pruner; the iteration is "
                "the count of finite values of the metric a trial reported (its final metrics, "
                f"marked `{FINAL}`, are not one). Tune's `ASHAScheduler` and "
                "`HyperBandScheduler` keep one trial fewer per rung and never re-check",
            ),
        },
    ),
    other_keys=Section(
        ("on Ray",),
        {
            "`metric.target`": ("`targets` in the plan: the runner stops when it is reached",),
            "`metric` absent": (
                f"`metric: {DEFAULT_METRIC}`, `mode: min`: the number the trial returns",
            ),
            "`run_cap`, `budget.trials`": (
                "`num_samples` (`run_cap` first; -1 when unbounded; 1 for grid)",
            ),
            "`seeds`, `budget`": ("`budget` in the plan, for the runner",),
            "`engine`, `tracking`, `optuna`, `wandb`": (
                "`optuna.sampler` is `OptunaSearch`'s sampler",
            ),
            "`function`": ("called by the runner or by `--format python`",),
            "nested `parameters`": (
                "flat dotted names in `param_space`; the trial gets nested dicts",
            ),
        },
    ),
    unsupported=(
        UnsupportedRow(
            "ray",
            "multi-objective-pruning",
            "`metrics` with `early_terminate`",
            "`FIFOScheduler`: Tune's schedulers take one metric",
        ),
        UnsupportedRow(
            "ray",
            "pruning-without-metric",
            "`early_terminate` without `metric`",
            "`FIFOScheduler`: there is no metric to compare trials on",
        ),
        UnsupportedRow(
            "ray",
            "early-termination",
            "`early_terminate` other than hyperband, or hyperband with `brackets` > 1",
            "`FIFOScheduler`: no trial is stopped early",
        ),
        UnsupportedRow(
            "ray",
            "grid-condition",
            "`when:` with `method: grid`",
            "`tune.grid_search` also enumerates inactive parameters: configurations repeat",
        ),
        UnsupportedRow(
            "ray",
            "scheduler",
            "`scheduler` (a W&B custom scheduler)",
            "ignored: sweepspec's search algorithm is used",
        ),
    ),
)
"""Ray Tune's column of the engines table (:mod:`sweepspec.compiler.table`)."""
