"""The spec, as pydantic models: W&B's sweep configuration plus sweepspec's extensions.

W&B semantics exactly (``sweeps/config/schema.json`` of W&B's ``sweeps`` package): the same keys,
the same defaults, the same inference of a parameter's distribution when ``distribution`` is left
out. Checks that involve several keys at once live in :mod:`sweepspec.spec.rules`, where they
can point at the right line.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..runners.base import ENGINES

if TYPE_CHECKING:
    EngineName = str
else:
    EngineName = Literal[tuple(ENGINES)]  # the engine registry's names, in its order

# W&B's schema says "number": an int or a float, never a bool, never a string.
Number = StrictInt | StrictFloat
PositiveNumber = Annotated[Number, Field(gt=0)]
NonNegativeNumber = Annotated[Number, Field(ge=0)]


def _integral(value: Any) -> Any:
    """JSON Schema (draft 7, as W&B validates) counts ``27.0`` as an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# W&B "integer" without a format check: 27 and 27.0, never True or "27".
WBInt = Annotated[StrictInt, BeforeValidator(_integral)]

PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME)]

# ``function: package.module:callable``
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
FUNCTION_REF = rf"^{_DOTTED}:{_DOTTED}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


# --------------------------------------------------------------------------- parameters


class _Param(_Model):
    when: dict[str, Any] | None = Field(
        default=None,
        description="sweepspec: the parameter is only active when each named parameter has "
        "the given value (or one of the given values). Not expressible on W&B.",
    )


class _Bounded(_Param):
    """A parameter with ``min`` and ``max``: W&B requires ``min < max``."""

    @model_validator(mode="after")
    def _check_bounds(self) -> _Bounded:
        lo, hi = self.min, self.max  # type: ignore[attr-defined]
        if lo >= hi:
            raise PydanticCustomError(
                "min_max",
                "'min < max' must hold, but got min={lo}, max={hi}",
                {"lo": lo, "hi": hi},
            )
        return self


class ConstantParam(_Param):
    """A fixed value; W&B removes it from the search space."""

    distribution: Literal["constant"] = "constant"
    value: Any


class CategoricalParam(_Param):
    """Uniform over ``values``."""

    distribution: Literal["categorical"] = "categorical"
    values: Annotated[list[Any], Field(min_length=1)]


class CategoricalWProbabilitiesParam(_Param):
    """``values`` drawn with the given ``probabilities``."""

    distribution: Literal["categorical_w_probabilities"] = "categorical_w_probabilities"
    values: Annotated[list[Any], Field(min_length=1)]
    probabilities: Annotated[list[NonNegativeNumber], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_probabilities(self) -> CategoricalWProbabilitiesParam:
        if len(self.values) != len(self.probabilities):
            raise PydanticCustomError(
                "probabilities",
                "'len(values) == len(probabilities)' must hold, but got "
                "{nv} values and {np} probabilities",
                {"nv": len(self.values), "np": len(self.probabilities)},
            )
        total = math.fsum(self.probabilities)
        if abs(total - 1.0) > 1e-8 + 1e-5:  # numpy.isclose, as W&B checks it
            raise PydanticCustomError(
                "probabilities",
                "'sum(probabilities) == 1' must hold, but got {total}",
                {"total": total},
            )
        return self


class IntUniformParam(_Bounded):
    """Integers ``min..max``, both ends included."""

    distribution: Literal["int_uniform"] = "int_uniform"
    min: StrictInt
    max: StrictInt


class UniformParam(_Bounded):
    """Real numbers, uniform on ``[min, max]``."""

    distribution: Literal["uniform"] = "uniform"
    min: Number
    max: Number


class QUniformParam(_Bounded):
    """``round(U(min, max) / q) * q``; an int only when ``q`` is an int."""

    distribution: Literal["q_uniform"]
    min: Number
    max: Number
    q: PositiveNumber = 1.0


class LogUniformParam(_Bounded):
    """W&B's old form: ``min`` and ``max`` are natural-log exponents; samples ``e^U(min, max)``."""

    distribution: Literal["log_uniform"]
    min: Number
    max: Number


class LogUniformValuesParam(_Bounded):
    """Log-uniform between the values ``min`` and ``max``."""

    distribution: Literal["log_uniform_values"]
    min: PositiveNumber
    max: Number


class InvLogUniformParam(_Bounded):
    """W&B's old form: ``e^-U(min, max)``, bounds are exponents."""

    distribution: Literal["inv_log_uniform"]
    min: Number
    max: Number


class InvLogUniformValuesParam(_Bounded):
    distribution: Literal["inv_log_uniform_values"]
    min: PositiveNumber
    max: Number


class QLogUniformParam(_Bounded):
    """W&B's old form: exponent bounds, rounded by ``q``."""

    distribution: Literal["q_log_uniform"]
    min: Number
    max: Number
    q: PositiveNumber = 1.0


class QLogUniformValuesParam(_Bounded):
    distribution: Literal["q_log_uniform_values"]
    min: PositiveNumber
    max: Number
    q: PositiveNumber = 1.0


class NormalParam(_Param):
    distribution: Literal["normal"]
    mu: Number = 0.0
    sigma: NonNegativeNumber = 1.0


class QNormalParam(_Param):
    distribution: Literal["q_normal"]
    mu: Number = 0
    sigma: NonNegativeNumber = 1
    q: PositiveNumber = 1.0


class LogNormalParam(_Param):
    distribution: Literal["log_normal"]
    mu: Number = 0.0
    sigma: NonNegativeNumber = 1.0


class QLogNormalParam(_Param):
    distribution: Literal["q_log_normal"]
    mu: Number = 0
    sigma: NonNegativeNumber = 1
    q: PositiveNumber = 1.0


class BetaParam(_Param):
    distribution: Literal["beta"]
    a: NonNegativeNumber = 1
    b: NonNegativeNumber = 1


class QBetaParam(_Param):
    distribution: Literal["q_beta"]
    a: NonNegativeNumber = 1
    b: NonNegativeNumber = 1
    q: PositiveNumber = 1.0


class NestedParam(_Param):
    """W&B's nested parameters: the trial sees a dict; flat names are dotted (``opt.lr``)."""

    parameters: Annotated[dict[ParamName, Parameter], Field(min_length=1)]


DISTRIBUTION_MODELS: dict[str, type[_Param]] = {
    "constant": ConstantParam,
    "categorical": CategoricalParam,
    "categorical_w_probabilities": CategoricalWProbabilitiesParam,
    "int_uniform": IntUniformParam,
    "uniform": UniformParam,
    "q_uniform": QUniformParam,
    "log_uniform": LogUniformParam,
    "log_uniform_values": LogUniformValuesParam,
    "inv_log_uniform": InvLogUniformParam,
    "inv_log_uniform_values": InvLogUniformValuesParam,
    "q_log_uniform": QLogUniformParam,
    "q_log_uniform_values": QLogUniformValuesParam,
    "normal": NormalParam,
    "q_normal": QNormalParam,
    "log_normal": LogNormalParam,
    "q_log_normal": QLogNormalParam,
    "beta": BetaParam,
    "q_beta": QBetaParam,
}
NESTED = "nested"

GRID_DISTRIBUTIONS: tuple[str, ...] = ("categorical", "constant", "int_uniform", "q_uniform")
"""The only kinds W&B's grid search accepts (``sweeps/grid_search.py``)."""

OPTUNA_CHOICE_TYPES = (bool, int, float, str)
"""What Optuna's ``CategoricalDistribution`` stores as it is (besides None)."""


def optuna_choice_clash(values: list[Any]) -> tuple[Any, Any] | None:
    """Why Optuna's categorical cannot hold ``values`` as they are, or None: ``(value, None)``
    for a value of another type (a list, a mapping), ``(earlier, value)`` for two values that
    compare equal but differ (``1``, ``True``, ``1.0``), which Optuna would merge."""
    for value in values:
        if value is not None and not isinstance(value, OPTUNA_CHOICE_TYPES):
            return value, None
    seen: dict[Any, Any] = {}
    for value in values:
        other = seen.setdefault(value, value)
        if type(other) is not type(value) or repr(other) != repr(value):
            return other, value
    return None


EXPONENT_FORMS: dict[str, str] = {
    "log_uniform": "log_uniform_values",
    "inv_log_uniform": "inv_log_uniform_values",
    "q_log_uniform": "q_log_uniform_values",
}
"""W&B's old forms whose bounds are natural-log exponents, each with its ``*_values`` form."""


def infer_distribution(raw: Any) -> str | None:
    """The distribution W&B gives a parameter (``schema.fill_parameter``), or None.

    An explicit ``distribution`` wins. Otherwise, as W&B's schema order decides: ``parameters``
    -> nested; ``values`` + ``probabilities`` -> categorical_w_probabilities; ``values`` ->
    categorical; ``value`` -> constant; two int bounds -> int_uniform; numeric bounds with a
    float among them -> uniform.
    """
    if isinstance(raw, BaseModel):
        return NESTED if isinstance(raw, NestedParam) else getattr(raw, "distribution", None)
    if not isinstance(raw, dict):
        return None
    if "distribution" in raw:
        dist = raw["distribution"]
        return dist if isinstance(dist, str) and dist in DISTRIBUTION_MODELS else None
    if "parameters" in raw:
        return NESTED
    if "values" in raw:
        return "categorical_w_probabilities" if "probabilities" in raw else "categorical"
    if "value" in raw:
        return "constant"
    if "min" in raw or "max" in raw:
        bounds = [raw.get("min"), raw.get("max")]
        if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            return "int_uniform"
        return "uniform"
    return None


# Written out (not built from DISTRIBUTION_MODELS) so that type checkers read the union;
# tests/spec/test_models.py checks that the two list the same models.
Parameter = Annotated[
    Union[  # noqa: UP007 (a union of Annotated members reads best this way)
        Annotated[ConstantParam, Tag("constant")],
        Annotated[CategoricalParam, Tag("categorical")],
        Annotated[CategoricalWProbabilitiesParam, Tag("categorical_w_probabilities")],
        Annotated[IntUniformParam, Tag("int_uniform")],
        Annotated[UniformParam, Tag("uniform")],
        Annotated[QUniformParam, Tag("q_uniform")],
        Annotated[LogUniformParam, Tag("log_uniform")],
        Annotated[LogUniformValuesParam, Tag("log_uniform_values")],
        Annotated[InvLogUniformParam, Tag("inv_log_uniform")],
        Annotated[InvLogUniformValuesParam, Tag("inv_log_uniform_values")],
        Annotated[QLogUniformParam, Tag("q_log_uniform")],
        Annotated[QLogUniformValuesParam, Tag("q_log_uniform_values")],
        Annotated[NormalParam, Tag("normal")],
        Annotated[QNormalParam, Tag("q_normal")],
        Annotated[LogNormalParam, Tag("log_normal")],
        Annotated[QLogNormalParam, Tag("q_log_normal")],
        Annotated[BetaParam, Tag("beta")],
        Annotated[QBetaParam, Tag("q_beta")],
        Annotated[NestedParam, Tag(NESTED)],
    ],
    Discriminator(
        infer_distribution,
        custom_error_type="distribution",
        custom_error_message="the distribution is unknown or cannot be inferred",
    ),
]

# --------------------------------------------------------------------------- metric


class Metric(_Model):
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"
    target: Number | None = None
    impute: Literal["latest", "best", "worst"] = "worst"
    impute_while_running: Literal["latest", "best", "worst", "false"] = "false"


# --------------------------------------------------------------------------- early termination


class HyperbandStopping(_Model):
    """W&B's hyperband: one successive-halving bracket (``sweeps/hyperband_stopping.py``)."""

    type: Literal["hyperband"]
    min_iter: Annotated[WBInt, Field(ge=1)] | None = None
    max_iter: WBInt | None = None
    s: Number | None = None
    eta: Annotated[Number, Field(gt=1)] = 3
    strict: bool = True
    brackets: Annotated[int, Field(ge=1)] = Field(
        default=1,
        description="sweepspec: more than one bracket runs Optuna's HyperbandPruner "
        "(not expressible on W&B, which always runs one bracket)",
    )


class MedianStopping(_Model):
    """Optuna's MedianPruner."""

    type: Literal["median"]
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    n_warmup_steps: Annotated[int, Field(ge=0)] = 0
    interval_steps: Annotated[int, Field(ge=1)] = 1
    n_min_trials: Annotated[int, Field(ge=1)] = 1


class PercentileStopping(MedianStopping):
    """Optuna's PercentilePruner: stop below the given percentile of the other trials."""

    type: Literal["percentile"]  # type: ignore[assignment]
    percentile: Annotated[Number, Field(ge=0, le=100)]


class SuccessiveHalvingStopping(_Model):
    """Optuna's SuccessiveHalvingPruner (asynchronous successive halving)."""

    type: Literal["successive_halving"]
    min_resource: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    reduction_factor: Annotated[int, Field(ge=2)] = 4
    min_early_stopping_rate: Annotated[int, Field(ge=0)] = 0
    bootstrap_count: Annotated[int, Field(ge=0)] = 0


class ThresholdStopping(_Model):
    """Optuna's ThresholdPruner: stop when the metric leaves ``[lower, upper]``."""

    type: Literal["threshold"]
    lower: Number | None = None
    upper: Number | None = None
    n_warmup_steps: Annotated[int, Field(ge=0)] = 0
    interval_steps: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check_bounds(self) -> ThresholdStopping:
        if self.lower is None and self.upper is None:
            raise PydanticCustomError(
                "threshold", "'lower' or 'upper' must be given, but got neither", {}
            )
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise PydanticCustomError(
                "threshold",
                "'lower <= upper' must hold, but got lower={lo}, upper={hi}",
                {"lo": self.lower, "hi": self.upper},
            )
        return self


class WilcoxonStopping(_Model):
    """Optuna's WilcoxonPruner, for objectives that are sums over instances or folds."""

    type: Literal["wilcoxon"]
    p_threshold: Annotated[Number, Field(gt=0, lt=1)] = 0.1
    n_startup_steps: Annotated[int, Field(ge=0)] = 2


class PatientStopping(_Model):
    """Optuna's PatientPruner: wait ``patience`` steps without improvement, then ask ``wrapped``."""

    type: Literal["patient"]
    patience: Annotated[int, Field(ge=0)]
    min_delta: Annotated[Number, Field(ge=0)] = 0.0
    wrapped: EarlyTerminate | None = None


def _stopping_type(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        return getattr(raw, "type", None)
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        return raw["type"] if raw["type"] in STOPPING_MODELS else None
    return None


STOPPING_MODELS: dict[str, type[_Model]] = {
    "hyperband": HyperbandStopping,
    "median": MedianStopping,
    "percentile": PercentileStopping,
    "successive_halving": SuccessiveHalvingStopping,
    "threshold": ThresholdStopping,
    "patient": PatientStopping,
    "wilcoxon": WilcoxonStopping,
}

# Written out for type checkers, like Parameter; a test checks it against STOPPING_MODELS.
EarlyTerminate = Annotated[
    Union[  # noqa: UP007
        Annotated[HyperbandStopping, Tag("hyperband")],
        Annotated[MedianStopping, Tag("median")],
        Annotated[PercentileStopping, Tag("percentile")],
        Annotated[SuccessiveHalvingStopping, Tag("successive_halving")],
        Annotated[ThresholdStopping, Tag("threshold")],
        Annotated[PatientStopping, Tag("patient")],
        Annotated[WilcoxonStopping, Tag("wilcoxon")],
    ],
    Discriminator(
        _stopping_type,
        custom_error_type="stopping_type",
        custom_error_message="the early termination type is unknown",
    ),
]


# --------------------------------------------------------------------------- W&B extras


class Controller(_Model):
    type: Literal["local", "cloud"]


class Scheduler(_Model):
    engine: Literal["optuna", "ax", "wandb"]
    source: str | None = None
    optimizer: str | None = None
    search_space: str | None = None


# --------------------------------------------------------------------------- sweepspec extensions


class Tracking(_Model):
    """Where runs are logged. MLflow honours ``MLFLOW_TRACKING_URI`` when ``uri`` is unset."""

    tracker: Literal["mlflow", "wandb", "none"] = "mlflow"
    uri: str | None = None
    experiment: str | None = None
    project: str | None = None
    entity: str | None = None


MAX_SEEDS = 1000  # each seed is a full run of every configuration


class Seeds(_Model):
    values: Annotated[list[StrictInt], Field(min_length=1, max_length=MAX_SEEDS)]
    aggregate: Literal["mean", "median", "min", "max"] = "mean"

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[int]) -> list[int]:
        counts = Counter(values)
        repeated = sorted(v for v, n in counts.items() if n > 1)
        if repeated:
            raise PydanticCustomError(
                "seeds",
                "seeds must be distinct, but got {rep} more than once",
                {"rep": ", ".join(map(str, repeated))},
            )
        return values


def _seeds(value: Any) -> Any:
    """``seeds: 3`` means seeds 0, 1, 2; ``seeds: [0, 7]`` lists them."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise PydanticCustomError(
                "seeds",
                "'1 <= seeds <= {top}' must hold, but got {n}",
                {"n": value, "top": MAX_SEEDS},
            )
        return {"values": list(range(value))}
    if isinstance(value, list):
        return {"values": value}
    return value


_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
    r"(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or ``"1h30m"``, ``"45m"``, ``"90s"``, ``"2d"``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not value.strip() or not match or not any(match.groups()):
            raise PydanticCustomError(
                "duration",
                "must be seconds or a duration like '1h30m', '45m', '90s'; got {v!r}",
                {"v": value},
            )
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        return ((d * 24 + h) * 60 + m) * 60 + s
    return value


Duration = Annotated[
    PositiveNumber, BeforeValidator(parse_duration, json_schema_input_type=PositiveNumber | str)
]


class CostCap(_Model):
    """Stop the sweep once the sum of a logged metric over every trial reaches ``max``."""

    metric: str
    max: PositiveNumber


class Budget(_Model):
    trials: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="finished trials over all workers (like run_cap)"
    )
    wall_clock: Duration | None = None
    workers: Annotated[int, Field(ge=1)] = 1
    cost: CostCap | None = None
    trial_timeout: Duration | None = None
    max_consecutive_failures: Annotated[int, Field(ge=1)] = 5
    gpus_per_trial: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="sweepspec: GPUs each trial process sees (CUDA_VISIBLE_DEVICES and the "
        "like); the workers share out --gpus, else CUDA_VISIBLE_DEVICES, else nvidia-smi -L's "
        "GPUs, this many each; 0: no GPU",
    )
    cpus_per_trial: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="sweepspec: CPUs each trial needs: what Ray Tune reserves per trial "
        "(fractions allowed; default 1); sweepspec's own workers: --workers is capped at this "
        "machine's CPUs divided by it",
    )
    heartbeat_interval: Duration = Field(
        default=30,
        description="a worker records that its running trial is alive this often (seconds "
        "or a duration; whole seconds on a database)",
    )
    grace_period: Duration | None = Field(
        default=None,
        description="a running trial with no heartbeat for this long is failed by another "
        "worker, and its place in the budget is run again (default: twice heartbeat_interval)",
    )

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> Budget:
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise PydanticCustomError(
                "grace_period",
                "'grace_period > heartbeat_interval' must hold (a live worker's trial would "
                "be failed), but got grace_period={g}, heartbeat_interval={h}",
                {"g": self.grace_period, "h": self.heartbeat_interval},
            )
        return self

    @property
    def grace(self) -> float:
        """The grace period in seconds: ``grace_period``, else twice ``heartbeat_interval``."""
        return self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval


SamplerName = Literal[
    "tpe", "gp", "cmaes", "qmc", "nsgaii", "nsgaiii", "random", "grid", "bruteforce"
]


class Sampler(_Model):
    name: SamplerName
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the Optuna sampler"
    )


def _sampler(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class OptunaSection(_Model):
    sampler: (
        Annotated[Sampler, BeforeValidator(_sampler, json_schema_input_type=SamplerName | Sampler)]
        | None
    ) = None
    storage: str | None = None
    study_name: str | None = None


class WandbSection(_Model):
    mode: Literal["local", "server"] = "local"


# --------------------------------------------------------------------------- the spec


class Spec(_Model):
    """A sweepspec file: a W&B sweep configuration plus optional sweepspec sections."""

    # W&B's keys (sweeps/config/schema.json)
    method: Literal["bayes", "random", "grid", "custom"]
    parameters: Annotated[dict[ParamName, Parameter], Field(min_length=1)] | None = None
    metric: Metric | None = None
    metrics: Annotated[list[Metric], Field(min_length=2)] | None = None
    early_terminate: EarlyTerminate | None = None
    run_cap: Annotated[WBInt, Field(gt=0)] | None = None
    name: str | None = None
    description: str | None = None
    program: str | None = None
    command: list[Any] | None = None
    project: str | None = None
    entity: str | None = None
    job: str | None = None
    image_uri: str | None = None
    apiVersion: str | None = None
    kind: Literal["sweep"] | None = None
    controller: Controller | None = None
    scheduler: Scheduler | None = None

    # sweepspec's extensions
    function: Annotated[str, StringConstraints(pattern=FUNCTION_REF)] | None = Field(
        default=None, description="package.module:callable, relative to the spec's folder"
    )
    engine: EngineName | None = None
    tracking: Tracking | None = None
    seeds: (
        Annotated[
            Seeds,
            BeforeValidator(
                _seeds,
                json_schema_input_type=Annotated[StrictInt, Field(ge=1)] | list[StrictInt] | Seeds,
            ),
        ]
        | None
    ) = None
    budget: Budget | None = None
    objective: Literal["best", "last"] = Field(
        default="best",
        description="sweepspec: the value of 'metric' a trial is scored by. 'best' (default, "
        "what W&B's controller reads, SweepRun.metric_extremum): the best value the trial "
        "reported or returned; 'last': its final value. With several 'metrics', each trial is "
        "scored by its final values (one point it reached)",
    )
    optuna: OptunaSection | None = None
    wandb: WandbSection | None = None

    # ---- views used by the compiler and the runner

    def flat_parameters(self) -> dict[str, _Param]:
        """Leaf parameters by dotted path (``optimizer.lr``), in file order."""
        out: dict[str, _Param] = {}

        def walk(params: dict[str, Any], prefix: str) -> None:
            for name, param in params.items():
                if isinstance(param, NestedParam):
                    walk(param.parameters, f"{prefix}{name}.")
                else:
                    out[f"{prefix}{name}"] = param

        walk(self.parameters or {}, "")
        return out

    @property
    def objectives(self) -> list[Metric]:
        return list(self.metrics or ([self.metric] if self.metric else []))
