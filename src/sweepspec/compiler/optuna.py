"""Compile a spec to an Optuna study: directions, sampler, pruner, distributions, budget.

Decisions (the README section "How the engines differ" is generated from
:mod:`sweepspec.compiler.table`):

* ``method: grid`` -> ``GridSampler`` over exactly W&B's grid (``int_uniform`` as
  ``range(min, max + 1)``, ``q_uniform`` as ``np.arange(min, max, q)``, repeated values once).
  ``random`` -> ``RandomSampler``, exact for every distribution. ``bayes`` -> ``TPESampler()``
  with Optuna 5's defaults (multivariate for one objective, ``constant_liar=True``,
  10 random start-up trials). W&B's bayes is a Gaussian process; Optuna's twin, ``GPSampler``,
  needs torch, which sweepspec does not install, and TPE is Optuna's default and handles
  conditional spaces. ``optuna: {sampler: gp}`` asks for the GP. Several ``metrics`` ->
  ``NSGAIISampler`` unless the method is grid or random.
* No ``early_terminate`` -> ``NopPruner`` (never Optuna's default ``MedianPruner``). W&B's
  ``hyperband`` -> ``WandbHyperbandPruner`` (:mod:`._wandb_hyperband`), which applies W&B's
  own rule (bands, rank, ``strict``, re-checks), with ``prune_on="count"``: the step
  reported to Optuna is the 1-based count of objective values reported so far, which is
  W&B's iteration. No Optuna pruner makes W&B's decisions (``SuccessiveHalvingPruner`` keeps
  one trial fewer per rung and never re-checks). ``brackets > 1`` (sweepspec's extension)
  -> Optuna's ``HyperbandPruner``. Optuna's own pruners keep their names.
* ``metric.target`` is recorded (``targets``); the runner stops the study when it is reached.
* Distributions come from :mod:`sweepspec.compiler.distributions`: native where Optuna has the
  same distribution, else a quantile ``u ~ U(0, 1)`` mapped through W&B's inverse CDF.
  Constants are not search dimensions: :meth:`OptunaPlan.suggest` passes them as they are.
* ``when:`` conditions are define-by-run: a parameter is suggested only when its controlling
  parameters are active and have one of the given values.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from ..redact import without_password
from ..spec.models import (
    Budget,
    ConstantParam,
    HyperbandStopping,
    NestedParam,
    PatientStopping,
    Spec,
)
from ..spec.paths import leaf_paths, nest
from ._script import distribution_source, module_source, script_template
from ._wandb_hyperband import WandbHyperbandPruner, hyperband_bands
from .base import (
    CompileError,
    Note,
    Policy,
    Rendered,
    SearchSpaceChangedError,
    Unsupported,
    dump,
)
from .distributions import GRID_DISTRIBUTIONS, OptunaParam, to_optuna, wandb_grid_values
from .table import Column, Section, UnsupportedRow

__all__ = [
    "COLUMN",
    "HASH_ATTR",
    "PARAMS_ATTR",
    "SAMPLERS",
    "OptunaPlan",
    "compile_optuna",
    "study_name_for",
    "wandb_bands",
]

PARAMS_ATTR = "sweepspec.params"
"""Trial user attribute holding the real (flat, dotted) parameter values."""
HASH_ATTR = "sweepspec.search_space_hash"
"""Study user attribute holding :meth:`OptunaPlan.search_space_hash`."""

SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "bruteforce": "BruteForceSampler",
}
"""``optuna: {sampler: NAME}`` -> the Optuna sampler class; ``options`` are its kwargs."""

_PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "wilcoxon": "WilcoxonPruner",
}
_NOP: dict[str, Any] = {"name": "NopPruner", "kwargs": {}}


def _nest_dotted(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"opt.lr": 1}`` -> ``{"opt": {"lr": 1}}``, splitting at every dot."""
    return nest(flat, {name: tuple(name.split(".")) for name in flat})


_UNSET = object()  # no raw value for a parameter (see OptunaPlan._walk)


class _NestMethod:
    """``OptunaPlan.nest(flat)`` splits at every dot; ``plan.nest(flat)`` follows the spec, so
    a top-level W&B name that contains a dot (``trainer.epochs``) stays one key."""

    def __get__(
        self, obj: OptunaPlan | None, objtype: type | None = None
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        if obj is None:
            return _nest_dotted
        return lambda flat: nest(flat, obj.paths)


@dataclass
class OptunaPlan:
    """A spec compiled for Optuna; builds the real sampler, pruner and study.

    Attributes:
        directions: one per objective; ``["minimize"]`` without a metric (the number the
            trial returns is minimised).
        metric_names: the objective metrics in order; ``[]`` without a metric.
        params: dotted flat name -> :class:`OptunaParam`, constants included.
        conditions: dotted name -> {dotted controlling name: allowed real values}.
        n_trials: ``run_cap``, else ``budget.trials``; None when unbounded.
        prune_on: ``"count"``: the step reported to Optuna is the 1-based count of objective
            values reported so far (W&B hyperband's iteration); ``"step"``: the trial's step.
        unsupported: what Optuna cannot express (empty under ``strict``).
        sampler, pruner: ``{"name": <Optuna class>, "kwargs": {...}}``.
        constants: dotted name -> value. Suggested as a single-choice categorical, which
            Optuna records (so ``best_params`` shows it) without asking the sampler.
        targets: ``metric.target`` per objective (None when unset): the runner stops the
            study when one is reached.
        paths: dotted name -> its path of keys (for :meth:`nest`).
        order: suggestion order: file order, controlling parameters first.
    """

    spec: Spec
    directions: list[str]
    metric_names: list[str]
    params: dict[str, OptunaParam]
    conditions: dict[str, dict[str, list[Any]]]
    n_trials: int | None
    prune_on: Literal["count", "step"]
    unsupported: list[Unsupported]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "TPESampler", "kwargs": {}})
    pruner: dict[str, Any] = field(default_factory=lambda: dict(_NOP))
    constants: dict[str, Any] = field(default_factory=dict)
    targets: list[float | None] = field(default_factory=list)
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    nest = _NestMethod()

    # ---- the artifact

    @property
    def objective(self) -> str:
        """How a trial is scored: ``"best"`` (W&B's: the best value of its one metric over
        what it reported and returned) or ``"last"`` (its final values; always with several
        metrics)."""
        return self.spec.objective if len(self.metric_names) == 1 else "last"

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter's Optuna distribution, in file order; a constant is a single-choice
        categorical, which Optuna records without consulting the sampler."""
        return {n: p.distribution for n, p in self.params.items()}

    def render(self, fmt: str, source: str, output: str | None = None) -> Rendered:
        """``json`` / ``yaml``: :meth:`to_json`; ``python``: :meth:`to_python`, the script
        written to ``output`` beside (or away from) the spec ``source``."""
        if fmt == "python":
            text = self.to_python(os.path.dirname(os.path.abspath(source)), output, source)
            note = self._script_storage()[1]
            return Rendered(text, [Note("optuna.storage", note)] if note else [])
        return Rendered(dump(self.to_json(), fmt))

    def to_json(self) -> dict[str, Any]:
        """SPEC section 6: the study as one JSON object."""
        return {
            "directions": list(self.directions),
            "metric_names": list(self.metric_names),
            "targets": list(self.targets),
            "sampler": copy.deepcopy(self.sampler),
            "pruner": copy.deepcopy(self.pruner),
            "prune_on": self.prune_on,
            "objective": self.objective,
            "n_trials": self.n_trials,
            "budget": self._budget(),
            "distributions": {
                n: json.loads(distribution_to_json(d)) for n, d in self.distributions.items()
            },
            "reparametrised": {
                n: p.reparam for n, p in self.params.items() if p.reparam is not None
            },
            "constants": dict(self.constants),
            "conditions": copy.deepcopy(self.conditions),
            "notes": {n: p.note for n, p in self.params.items() if p.note is not None},
            "unsupported": [u.to_json() for u in self.unsupported],
        }

    def _budget(self) -> dict[str, Any]:
        budget = self.spec.budget
        out: dict[str, Any] = {"n_trials": self.n_trials}
        if budget is not None:
            # added later, shown only when the spec sets them (the goldens stay as they were)
            unset = {"gpus_per_trial"} if budget.gpus_per_trial is None else set()
            unset |= {"cpus_per_trial"} if budget.cpus_per_trial is None else set()
            unset |= {"heartbeat_interval", "grace_period"} - budget.model_fields_set
            out.update(budget.model_dump(exclude={"trials", *unset}, mode="json"))
        if self.spec.seeds is not None:
            out["seeds"] = self.spec.seeds.model_dump(mode="json")
        return out

    def search_space_hash(self) -> str:
        """A stable hash of what is sampled (distributions, reparametrisations, conditions,
        constants): a resumed study must have been created from the same one."""
        space = {
            k: v
            for k, v in self.to_json().items()
            if k in ("distributions", "reparametrised", "conditions", "constants")
        }
        text = json.dumps(space, sort_keys=True, default=repr, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_python(
        self, spec_dir: str, script_path: str | None = None, source: str | None = None
    ) -> str:
        """A standalone Optuna script (``--format python``) that runs this study without
        sweepspec: it calls the spec's ``function`` or runs its ``program``/``command``.

        ``spec_dir`` is the spec's folder (``function`` and ``program`` resolve there); with
        ``script_path`` the script finds it relative to itself, else by absolute path.
        ``source`` is the spec file: its stem names the study when the spec gives no name, as
        ``sweepspec run`` names it.
        """
        spec = self.spec
        template, relative = script_template(spec, "optuna_script.py.j2", spec_dir, script_path)
        return template.render(
            source=source,
            trial_kind="a Python function" if spec.function else "a command",
            contract_source=module_source("runners", "contract.py"),
            ppf_source=distribution_source(self._reparam_kinds()),
            hyperband_source=module_source("compiler", "_wandb_hyperband.py"),
            plan_json=json.dumps(self._script_plan(source), indent=4),
            spec_dir=os.path.abspath(spec_dir),
            spec_dir_relative=relative,
            storage_note=self._script_storage()[1],
        )

    def _script_storage(self) -> tuple[str | None, str | None]:
        """The spec's ``optuna.storage`` as the script keeps it, without a password (a file
        is no place for one), and what the user must do then (None when nothing was left
        out): libpq, under psycopg, reads ``PGPASSWORD`` when the URL has no password."""
        section = self.spec.optuna
        storage = section.storage if section else None
        if storage is None or "://" not in storage:
            return storage, None
        bare, removed = without_password(storage)
        if not removed:
            return storage, None
        if storage.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
            how = "set PGPASSWORD when running it (libpq reads it when the URL has none)"
        else:
            how = "give the whole URL with --storage when running it"
        return bare, f"written to the script without its password; {how}"

    def _reparam_kinds(self) -> set[str]:
        return {p.reparam["kind"] for p in self.params.values() if p.reparam is not None}

    def _script_plan(self, source: str | None) -> dict[str, Any]:
        budget = self.spec.budget or Budget()
        return {
            **self.to_json(),
            "order": list(self.order),
            "names": list(self.params),
            "paths": {name: list(path) for name, path in self.paths.items()},
            "trial": {
                "function": self.spec.function,
                "program": self.spec.program,
                "command": self.spec.command,
            },
            "study": {
                "name": study_name_for(self.spec, source),
                "storage": self._script_storage()[0],
            },
            "search_space_hash": self.search_space_hash(),
            "max_consecutive_failures": budget.max_consecutive_failures,
        }

    # ---- the real Optuna objects

    def create_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        kwargs = copy.deepcopy(self.sampler["kwargs"])
        if seed is not None:
            kwargs["seed"] = seed
        sampler: optuna.samplers.BaseSampler = getattr(optuna.samplers, self.sampler["name"])(
            **kwargs
        )
        return sampler

    def create_pruner(self) -> optuna.pruners.BasePruner:
        return _build_pruner(self.pruner)

    def create_study(
        self,
        storage: str | optuna.storages.BaseStorage | None = None,
        study_name: str | None = None,
        load_if_exists: bool = True,
        seed: int | None = None,
    ) -> optuna.Study:
        """A real study with this plan's sampler, pruner and directions.

        ``storage`` and ``study_name`` default to the spec's ``optuna`` section (then
        ``name``). An existing study created from another search space, or with another
        metric goal (directions), raises :class:`~.base.SearchSpaceChangedError`.
        """
        section = self.spec.optuna
        storage = storage if storage is not None else (section.storage if section else None)
        study_name = study_name or study_name_for(self.spec)
        study = optuna.create_study(
            storage=storage,
            sampler=self.create_sampler(seed),
            pruner=self.create_pruner(),
            study_name=study_name,
            directions=list(self.directions),  # type: ignore[arg-type]  # goals are checked
            load_if_exists=load_if_exists,
        )
        self._stamp(study)
        return study

    def _stamp(self, study: optuna.Study) -> None:
        expected = self.search_space_hash()
        found = study.user_attrs.get(HASH_ATTR)
        if found is None:
            study.set_user_attr(HASH_ATTR, expected)
        elif found != expected:
            raise SearchSpaceChangedError(
                f"study {study.study_name!r} was created from a different search space "
                f"(hash {found[:12]}, the spec now gives {expected[:12]}); start a fresh "
                "study (another study_name or storage) to sample the new space"
            )
        # checked after the search space (which is stamped even when the goal differs)
        goal = [optuna.study.StudyDirection[d.upper()] for d in self.directions]
        if list(study.directions) != goal:
            had = [d.name.lower() for d in study.directions]
            raise SearchSpaceChangedError(
                f"study {study.study_name!r} was created with another metric goal "
                f"(directions {had}, the spec now gives {list(self.directions)}); start a "
                "fresh study (another study_name or storage) to optimise the new goal",
                "metric goal",
            )

    # ---- define-by-run

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every active parameter; return ``{dotted name: real value}`` in file order.
        When a value is not Optuna's own (a quantile, an index), the real values are also
        recorded as the trial's user attribute ``sweepspec.params``."""
        values: dict[str, Any] = {}
        for name in self.order:
            if not self._active(name, values):
                continue
            param = self.params[name]
            values[name] = param.to_value(_suggest(trial, name, param.distribution))
        real = {name: values[name] for name in self.params if name in values}
        if any(not self.params[name].native for name in real):
            # Optuna holds a quantile or an index there: keep the real values beside it (one
            # storage write; native values are already what ``trial.params`` holds).
            trial.set_user_attr(PARAMS_ATTR, real)
        return real

    def _active(self, name: str, values: dict[str, Any]) -> bool:
        return self.active(name, values)

    def active(self, name: str, values: dict[str, Any]) -> bool:
        """Whether parameter ``name`` is active given the real ``values`` of the parameters
        before it (its ``when:`` conditions hold)."""
        for other, allowed in self.conditions.get(name, {}).items():
            if other not in values or not any(_same(values[other], a) for a in allowed):
                return False
        return True

    def _walk(self, raw_of: Callable[[str, Any], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The active parameters in file order: ``raw_of(name, param)`` gives each
        non-constant one's raw value (``_UNSET``: none); the raw values and the real ones
        (constants included), by dotted name."""
        raw: dict[str, Any] = {}
        real: dict[str, Any] = {}
        for name in self.order:
            if not self.active(name, real):
                continue
            if name in self.constants:
                real[name] = self.constants[name]
                continue
            value = raw_of(name, self.params[name])
            if value is not _UNSET:
                raw[name] = value
                real[name] = self.params[name].to_value(value)
        return raw, real

    def suggest_raw(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every active non-constant parameter through the trial's public
        ``suggest_*`` methods; return what Optuna holds (a quantile, an index, or the value),
        by dotted name: :meth:`decode` gives the real values. For search algorithms that wrap
        Optuna's trial (Ray Tune's ``OptunaSearch``)."""
        raw, _ = self._walk(lambda name, param: _suggest(trial, name, param.distribution))
        return raw

    def decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        """What a search algorithm suggested (``raw``: a quantile, an index or the value by
        dotted name; constants need not be there) -> the real values of the active
        parameters by dotted name, in file order; inactive ones are left out."""
        _, real = self._walk(lambda name, param: raw.get(name, _UNSET))
        return {name: real[name] for name in self.params if name in real}

    def real_params(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """The real values of a finished trial (what ``best_params`` would show for a native
        space): the recorded user attribute, else decoded from ``trial.params``."""
        if PARAMS_ATTR in trial.user_attrs:
            return dict(trial.user_attrs[PARAMS_ATTR])
        decoded = {
            n: self.params[n].to_value(v) for n, v in trial.params.items() if n in self.params
        }
        decoded.update({n: v for n, v in self.constants.items() if self._active(n, decoded)})
        return {n: decoded[n] for n in self.params if n in decoded}


def _same(a: Any, b: Any) -> bool:
    """Equal, with ``True`` never equal to ``1`` (YAML's ``true`` is not the number 1)."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"cannot suggest {type(dist).__name__} for {name!r}")


def _build_pruner(cfg: dict[str, Any]) -> optuna.pruners.BasePruner:
    kwargs = dict(cfg["kwargs"])
    if cfg["name"] == "PatientPruner":
        wrapped = kwargs.get("wrapped_pruner")
        kwargs["wrapped_pruner"] = _build_pruner(wrapped) if wrapped is not None else None
    if cfg["name"] == WandbHyperbandPruner.__name__:
        return WandbHyperbandPruner(**kwargs)
    pruner: optuna.pruners.BasePruner = getattr(optuna.pruners, cfg["name"])(**kwargs)
    return pruner


# --------------------------------------------------------------------------- compile


def compile_optuna(spec: Spec, *, strict: bool = False) -> OptunaPlan:
    """The Optuna study for ``spec``.

    Raises :class:`~.base.UnsupportedError` under ``strict`` when Optuna cannot express part
    of the spec, and :class:`~.base.CompileError` when it cannot be compiled at all.
    """
    policy = Policy("optuna", strict)
    if spec.parameters is None:
        raise CompileError(
            "'parameters' is required to compile for Optuna: the search space "
            "of a W&B custom scheduler ('scheduler.search_space') is code"
        )
    flat = spec.flat_parameters()
    sampler_name = _sampler_name(spec)
    if sampler_name == "GridSampler":
        _check_grid_size(flat)
    params = {name: _param(name, p, sampler_name == "GridSampler") for name, p in flat.items()}
    constants = {n: p.value for n, p in flat.items() if isinstance(p, ConstantParam)}
    conditions = _conditions(spec.parameters, "")
    order = _order(list(flat), conditions)
    pruner, prune_on = _pruner(spec, policy)
    if spec.scheduler is not None:
        policy.unsupported(
            "scheduler",
            f"W&B's custom scheduler (engine: "
            f"{spec.scheduler.engine}) is not used; {sampler_name} samples",
            "scheduler",
        )
    objectives = spec.objectives
    return OptunaPlan(
        spec=spec,
        directions=[m.goal for m in objectives] or ["minimize"],
        metric_names=[m.name for m in objectives],
        params=params,
        conditions=conditions,
        n_trials=spec.run_cap or (spec.budget.trials if spec.budget else None),
        prune_on=prune_on,
        unsupported=policy.finish(),
        sampler=_sampler(spec, sampler_name, params, constants),
        pruner=pruner,
        constants=constants,
        targets=[m.target for m in objectives],
        paths=leaf_paths(spec.parameters),
        order=order,
        notes=policy.notes,
    )


# --------------------------------------------------------------------------- parameters


def _param(name: str, param: Any, grid: bool) -> OptunaParam:
    cfg = param.model_dump(exclude={"when"})
    try:
        return _compile_param(name, cfg, grid)
    except (ValueError, OverflowError) as exc:
        raise CompileError(
            f"parameters.{name}: Optuna cannot take this {cfg['distribution']}: {exc}"
        ) from exc


GRID_LIMIT = 1_000_000
"""The most points a grid may have: Optuna's ``GridSampler`` holds every point in memory."""


def _check_grid_size(flat: dict[str, Any]) -> None:
    """Count the grid before anything enumerates it (the product of the axis sizes, computed
    arithmetically): a grid over ``q_uniform`` 0..1e6 step 1e-4 is refused at once, in
    bounded memory, instead of growing until the machine kills it."""
    sizes = {n: _axis_size(p.model_dump(exclude={"when"})) for n, p in flat.items()}
    total = math.prod(sizes.values())
    if total > GRID_LIMIT:
        axes = " x ".join(f"{n}: {size:,}" for n, size in sizes.items() if size > 1)
        raise CompileError(
            f"method: grid: the grid has {total:,} points ({axes}), more than the limit of "
            f"{GRID_LIMIT:,}; coarsen q or narrow the ranges, or use method: random"
        )


def _axis_size(cfg: dict[str, Any]) -> int:
    """How many values W&B's grid takes for one parameter (an upper bound: repeated values
    are counted); 1 for the kinds a grid refuses (:func:`_compile_param` names them)."""
    kind = cfg["distribution"]
    if kind == "int_uniform":
        return max(0, int(cfg["max"]) - int(cfg["min"]) + 1)
    if kind == "q_uniform":
        count = (cfg["max"] - cfg["min"]) / (cfg.get("q") or 1.0)
        return max(0, math.ceil(count)) if math.isfinite(count) else GRID_LIMIT + 1
    if kind == "categorical":
        return len(cfg["values"])
    return 1


def _compile_param(name: str, cfg: dict[str, Any], grid: bool) -> OptunaParam:
    if not grid or cfg["distribution"] == "int_uniform":
        return to_optuna(cfg)
    if cfg["distribution"] not in GRID_DISTRIBUTIONS:
        raise CompileError(
            f"parameters.{name}: grid search cannot enumerate "
            f"{cfg['distribution']!r} (W&B's grid raises on it too); give "
            "'values', or use int_uniform or q_uniform"
        )
    return to_optuna({"distribution": "categorical", "values": wandb_grid_values(cfg)})


def _conditions(
    params: dict[str, Any], prefix: str, inherited: dict[str, list[Any]] | None = None
) -> dict[str, dict[str, list[Any]]]:
    """Dotted name -> {dotted controlling name: allowed values}; a nested group's ``when``
    applies to every parameter inside it."""
    out: dict[str, dict[str, list[Any]]] = {}
    for name, param in params.items():
        own = dict(inherited or {})
        for other, wanted in (param.when or {}).items():
            own[f"{prefix}{other}"] = list(wanted) if isinstance(wanted, list) else [wanted]
        if isinstance(param, NestedParam):
            out.update(_conditions(param.parameters, f"{prefix}{name}.", own))
        elif own:
            out[f"{prefix}{name}"] = own
    return out


def _order(names: list[str], conditions: dict[str, dict[str, list[Any]]]) -> list[str]:
    """File order, except that a controlling parameter comes before those it controls."""
    done: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in chain:
            cycle = " -> ".join(chain[chain.index(name) :] + (name,))
            raise CompileError(f"the 'when' conditions form a cycle: {cycle}")
        for other in conditions.get(name, {}):
            if other in names:
                visit(other, chain + (name,))
        done.append(name)

    for name in names:
        visit(name, ())
    return done


# --------------------------------------------------------------------------- sampler


def _sampler_name(spec: Spec) -> str:
    if spec.optuna is not None and spec.optuna.sampler is not None:
        return SAMPLERS[spec.optuna.sampler.name]
    if spec.method == "grid":
        return "GridSampler"
    if spec.method == "random":
        return "RandomSampler"
    return "NSGAIISampler" if len(spec.objectives) > 1 else "TPESampler"


def _sampler(
    spec: Spec, name: str, params: dict[str, OptunaParam], constants: dict[str, Any]
) -> dict[str, Any]:
    options = spec.optuna.sampler.options if spec.optuna and spec.optuna.sampler else {}
    kwargs = copy.deepcopy(options)
    if name == "GridSampler":
        kwargs["search_space"] = {
            n: _grid_values(p.distribution) for n, p in params.items() if n not in constants
        }
    return {"name": name, "kwargs": kwargs}


def _grid_values(dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert isinstance(dist, CategoricalDistribution)
    return list(dist.choices)


# --------------------------------------------------------------------------- pruner


def _pruner(spec: Spec, policy: Policy) -> tuple[dict[str, Any], Literal["count", "step"]]:
    et = spec.early_terminate
    if et is None:
        return dict(_NOP), "step"
    if len(spec.objectives) > 1:
        policy.unsupported(
            "early_terminate",
            f"Optuna's pruners take one objective, and this "
            f"spec has {len(spec.objectives)} metrics; no trial is stopped early "
            "(NopPruner)",
            "multi-objective-pruning",
        )
        return dict(_NOP), "step"
    if not spec.objectives:
        policy.unsupported(
            "early_terminate",
            f"{et.type} compares runs on 'metric', which the "
            "spec does not give (W&B stops the sweep with an error); no trial "
            "is stopped early (NopPruner)",
            "pruning-without-metric",
        )
        return dict(_NOP), "step"
    return _stopping(et, policy)


def _stopping(et: Any, policy: Policy) -> tuple[dict[str, Any], Literal["count", "step"]]:
    if isinstance(et, HyperbandStopping):
        return _hyperband(et, policy), "count"
    if isinstance(et, PatientStopping):
        wrapped: dict[str, Any] | None = None
        prune_on: Literal["count", "step"] = "step"
        if et.wrapped:
            wrapped, prune_on = _stopping(et.wrapped, policy)
        kwargs = {"wrapped_pruner": wrapped, "patience": et.patience, "min_delta": et.min_delta}
        return {"name": "PatientPruner", "kwargs": kwargs}, prune_on
    kwargs = et.model_dump(exclude={"type"})
    return {"name": _PRUNERS[et.type], "kwargs": kwargs}, "step"


def study_name_for(spec: Spec, path: str | None = None) -> str | None:
    """The study's name: ``optuna.study_name``, else the spec's ``name``, else the stem of the
    spec file ``path`` (None without one: Optuna then makes up a name)."""
    section = spec.optuna
    return (
        (section.study_name if section else None)
        or spec.name
        or (Path(path).stem if path else None)
    )


def wandb_bands(et: HyperbandStopping) -> list[int]:
    """The iterations at which W&B's hyperband stops runs (``hyperband_stopping.py``): from
    ``max_iter`` (which wins when both are given) down by ``eta``, or ``min_iter`` up."""
    return hyperband_bands(min_iter=et.min_iter, max_iter=et.max_iter, s=et.s, eta=et.eta)


def _hyperband(et: HyperbandStopping, policy: Policy) -> dict[str, Any]:
    bands = wandb_bands(et)
    if not bands:
        raise CompileError(
            f"early_terminate: hyperband with max_iter={et.max_iter}, s={et.s}, "
            f"eta={et.eta} has no band (W&B stops with 'Bands must be an array "
            "of length at least 1'); increase max_iter or s, or lower eta"
        )
    if et.brackets > 1:
        return _multi_bracket(et, bands[0], max(2, round(et.eta)), policy)
    form: dict[str, Any] = (
        {"max_iter": et.max_iter, "s": et.s}
        if et.max_iter is not None and et.s is not None
        else {"min_iter": et.min_iter or 1}
    )
    kwargs = {**form, "eta": et.eta, "strict": et.strict}
    return {"name": WandbHyperbandPruner.__name__, "kwargs": kwargs}


def _multi_bracket(et: HyperbandStopping, first: int, rf: int, policy: Policy) -> dict[str, Any]:
    if not et.strict:
        policy.unsupported(
            "early_terminate.strict",
            "W&B's non-strict hyperband compares the best value so far; Optuna's "
            "HyperbandPruner compares the value at the rung",
            "hyperband-strict",
        )
    max_resource = et.max_iter if et.max_iter is not None else first * rf ** (et.brackets - 1)
    # HyperbandPruner's own formula for its number of brackets
    n = math.floor(math.log(max_resource / first, rf)) + 1
    if n != et.brackets:
        policy.unsupported(
            "early_terminate.brackets",
            f"HyperbandPruner(min_resource={first}, "
            f"max_resource={max_resource}, reduction_factor={rf}) makes {n} "
            f"brackets, not {et.brackets}",
            "hyperband-brackets",
        )
    if rf != et.eta:
        policy.unsupported(
            "early_terminate.eta",
            f"eta={et.eta} is not an integer: HyperbandPruner uses reduction_factor={rf}",
            "hyperband-bands",
        )
    kwargs = {"min_resource": first, "max_resource": max_resource, "reduction_factor": rf}
    return {"name": "HyperbandPruner", "kwargs": kwargs}


# --------------------------------------------------------------------------- the engines table

QUANTILE = "quantile `FloatDistribution(0, 1)` + W&B's inverse CDF"
"""How a W&B distribution Optuna lacks is declared."""

_DISTRIBUTIONS: dict[str, tuple[str, bool, str]] = {
    "constant": (
        "`CategoricalDistribution([value])`",
        True,
        (
            "a single choice: Optuna records it without asking the sampler, as W&B removes "
            "constants from its search space"
        ),
    ),
    "categorical": (
        "`CategoricalDistribution(values)`",
        True,
        (
            "values Optuna cannot store (lists, mappings) or cannot tell apart (`1`, `1.0`, `true`)"
            " become the string indices `'0'`, `'1'`, ... and are mapped back to the values"
        ),
    ),
    "categorical_w_probabilities": (
        QUANTILE,
        False,
        (
            "Optuna has no weighted categorical; sampled values follow the probabilities exactly, "
            "model-based samplers see the values ordered by cumulative probability"
        ),
    ),
    "int_uniform": (
        "`IntDistribution(min, max)`",
        True,
        "both ends included, as in W&B",
    ),
    "uniform": (
        "`FloatDistribution(min, max)`",
        True,
        "",
    ),
    "q_uniform": (
        QUANTILE,
        False,
        (
            "Optuna's `step` grid starts at `min` and weights every point equally; W&B rounds to "
            "multiples of `q` counted from 0 with half weight at both ends. Under `method: grid`: "
            "`np.arange(min, max, q)`, as W&B enumerates it"
        ),
    ),
    "log_uniform": (
        "`FloatDistribution(e^min, e^max, log=True)`",
        True,
        "W&B's current validator refuses this exponent form; the rewrite has the same quantiles",
    ),
    "log_uniform_values": (
        "`FloatDistribution(min, max, log=True)`",
        True,
        "",
    ),
    "inv_log_uniform": (
        "`FloatDistribution(e^-max, e^-min, log=True)`",
        True,
        "W&B's current validator refuses this exponent form; `e^-U(min, max)` is log-uniform",
    ),
    "inv_log_uniform_values": (
        "`FloatDistribution(min, max, log=True)`",
        True,
        "W&B's inverse CDF is algebraically the log-uniform one",
    ),
    "q_log_uniform": (
        QUANTILE,
        False,
        "Optuna cannot combine `log=True` with a step",
    ),
    "q_log_uniform_values": (
        QUANTILE,
        False,
        "Optuna cannot combine `log=True` with a step",
    ),
    "normal": (
        QUANTILE,
        False,
        "Optuna's distributions are all bounded",
    ),
    "q_normal": (
        QUANTILE,
        False,
        "Optuna's distributions are all bounded",
    ),
    "log_normal": (
        QUANTILE,
        False,
        "Optuna's distributions are all bounded",
    ),
    "q_log_normal": (
        QUANTILE,
        False,
        "Optuna's distributions are all bounded",
    ),
    "beta": (
        QUANTILE,
        False,
        "Optuna has no beta distribution",
    ),
    "q_beta": (
        QUANTILE,
        False,
        "Optuna has no beta distribution",
    ),
}
"""W&B distribution -> (on Optuna, native: equal in law to W&B's, note)."""

_METHODS: dict[str, tuple[str, bool, str]] = {
    "grid": (
        "`GridSampler` over W&B's grid",
        True,
        (
            "the same points (`int_uniform` as `range(min, max + 1)`, `q_uniform` as "
            "`np.arange(min, max, q)`, repeated values once); Optuna visits them in a shuffled "
            "order"
        ),
    ),
    "random": (
        "`RandomSampler`",
        True,
        "every distribution samples as W&B's does",
    ),
    "bayes": (
        "`TPESampler()` with Optuna 5's defaults",
        False,
        (
            "W&B's bayes is a Gaussian process (scikit-learn, Matern nu=1.5, on the CDF-normalised "
            "cube, expected improvement over 1000 random candidates). Optuna's `GPSampler` is the "
            "closest twin but needs torch, which sweepspec does not install; TPE (multivariate for "
            "one objective, constant liar for parallel workers) is Optuna's default and handles "
            "conditional spaces. Ask for `optuna: {sampler: gp}` to get the GP"
        ),
    ),
    "custom": (
        "`TPESampler()`",
        False,
        (
            "W&B's `custom` needs its own scheduler; sweepspec samples with TPE (NSGA-II for "
            "several metrics)"
        ),
    ),
    "`metrics` (several objectives)": (
        "`NSGAIISampler()` unless the method is grid or random",
        False,
        "W&B accepts `metrics` only with `method: custom`",
    ),
}

_EARLY_TERMINATE: dict[str, tuple[str, str, str]] = {
    "(none)": (
        "`NopPruner()`",
        "step",
        "never Optuna's default `MedianPruner`",
    ),
    "hyperband": (
        "`WandbHyperbandPruner(min_iter | max_iter and s, eta, strict)` (sweepspec's)",
        "count",
        (
            "W&B's own rule, decision for decision (tested against `sweeps.stop_runs`): its "
            "iteration is the count of logged metric values, so the step reported to Optuna is that"
            " 1-based count; at each of W&B's bands a trial is stopped when its value (`strict`) or"
            " its best so far (`strict: false`) is worse than rank `int(n/eta)` among the `n` "
            "trials that reached the band, in any state; re-checked at every report. No Optuna "
            "pruner does this: `SuccessiveHalvingPruner` keeps one trial fewer per rung, never "
            "re-checks and adds rungs past `max_iter`"
        ),
    ),
    "hyperband with `brackets` > 1": (
        (
            "`HyperbandPruner(min_resource=first band, max_resource=max_iter or first band * "
            "eta^(brackets - 1), reduction_factor=round(eta))`"
        ),
        "count",
        "sweepspec extension",
    ),
    "median": (
        "`MedianPruner(...)`",
        "step",
        "",
    ),
    "percentile": (
        "`PercentilePruner(...)`",
        "step",
        "",
    ),
    "successive_halving": (
        "`SuccessiveHalvingPruner(...)`",
        "step",
        "",
    ),
    "threshold": (
        "`ThresholdPruner(...)`",
        "step",
        "",
    ),
    "patient": (
        "`PatientPruner(wrapped, ...)`",
        "step",
        "`wrapped` compiles by the same table",
    ),
    "wilcoxon": (
        "`WilcoxonPruner(...)`",
        "step",
        "",
    ),
}

_OTHER_KEYS: dict[str, str] = {
    "`metric.target`": (
        "`targets` in the plan: the runner stops the study when it is reached (not a pruner)"
    ),
    "`metric` absent": "`directions: [minimize]`: the number the trial returns is minimised",
    "`run_cap`, `budget.trials`": "`n_trials` (`run_cap` first)",
    "`seeds`, `budget`": "`budget` in the plan, for the runner",
    "`engine`, `tracking`, `optuna`, `wandb`": (
        "`optuna.storage` and `optuna.study_name` are the study's defaults"
    ),
    "`function`": "called by the runner or by `--format python`",
    "nested `parameters`": "flat dotted names (`optimizer.lr`); the trial gets nested dicts",
}

_UNSUPPORTED: tuple[UnsupportedRow, ...] = (
    UnsupportedRow(
        "optuna",
        "multi-objective-pruning",
        "`metrics` with `early_terminate`",
        "`NopPruner`: Optuna's pruners take one objective",
    ),
    UnsupportedRow(
        "optuna",
        "pruning-without-metric",
        "`early_terminate` without `metric`",
        "`NopPruner`: there is no metric to compare runs on (W&B stops the sweep with an error)",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-bands",
        "hyperband with `brackets` > 1 and a non-integer `eta`",
        "`HyperbandPruner` with `reduction_factor=round(eta)`",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-strict",
        "hyperband with `brackets` > 1 and `strict: false`",
        "`HyperbandPruner` compares the value at the rung, not the best value so far",
    ),
    UnsupportedRow(
        "optuna",
        "hyperband-brackets",
        "`brackets` that Optuna's `HyperbandPruner` cannot make from `max_iter`",
        "Optuna's own bracket count",
    ),
    UnsupportedRow(
        "optuna",
        "scheduler",
        "`scheduler` (a W&B custom scheduler)",
        "ignored: sweepspec's sampler is used",
    ),
)


COLUMN = Column(
    "optuna",
    distributions=Section(
        ("on Optuna", "native", "note"),
        {
            k: (text, "yes" if exact else "no", note)
            for k, (text, exact, note) in _DISTRIBUTIONS.items()
        },
        intro="A *native* distribution is Optuna's own and equal in law to W&B's. The others are "
        "declared to Optuna as a quantile `u` in [0, 1] and turned into the value by W&B's "
        "own inverse CDF, so that sampled values follow W&B's distribution exactly; the real "
        "value is what trials, trackers and tables show.",
    ),
    methods=Section(
        ("Optuna sampler", "same as W&B", "note"),
        {k: (text, "yes" if exact else "no", note) for k, (text, exact, note) in _METHODS.items()},
        footnote="`optuna: {sampler: NAME, options: {...}}` picks any of "
        + ", ".join(f"`{k}` ({v})" for k, v in SAMPLERS.items())
        + "; `options` are its keyword arguments.",
    ),
    early_terminate=Section(
        ("Optuna pruner", "step reported", "note"),
        {k: (pruner, f"`{on}`", note) for k, (pruner, on, note) in _EARLY_TERMINATE.items()},
        footnote="`count`: the step passed to `trial.report` is the 1-based count of objective "
        "values reported so far (W&B's hyperband iteration); `step`: the trial's own "
        "step.",
    ),
    other_keys=Section(("on Optuna",), {k: (v,) for k, v in _OTHER_KEYS.items()}),
    unsupported=_UNSUPPORTED,
)
"""Optuna's column of the engines table (:mod:`sweepspec.compiler.table`)."""
