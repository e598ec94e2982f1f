"""Map each of W&B's 18 parameter distributions to an Optuna distribution.

The goal is that a sweep run on Optuna samples every parameter exactly as W&B
(sweeps 0.3.0, ``HyperParameter.sample`` = ``ppf(random.uniform(0, 1))``) does.

* Kinds with an exact Optuna equivalent compile to it (``native=True``):
  ``uniform``, ``int_uniform``, ``log_uniform_values``, ``log_uniform`` (v1,
  bounds are natural-log exponents), ``inv_log_uniform_values`` and
  ``inv_log_uniform`` (v1), ``categorical`` and ``constant``.
  ``inv_log_uniform_values`` is log-uniform on ``[min, max]``, the same as
  ``log_uniform_values``; ``inv_log_uniform`` is log-uniform on
  ``[e^-max, e^-min]``. (The only gap: at ``u == 0`` exactly, probability
  ``2**-53``, scipy's ``randint.ppf`` makes W&B return ``min - 1`` for
  ``int_uniform`` and the last value for ``categorical``.)
* Categorical and constant values that Optuna cannot store (anything but
  None/bool/int/float/str), or values Optuna would confuse because they compare
  equal (``1``, ``True``, ``1.0``), compile to a categorical over the string
  indices ``"0"``, ``"1"``, ... and :meth:`OptunaParam.to_value` maps back.
* Everything else is declared as a quantile ``u ~ FloatDistribution(0, 1)``
  and :meth:`OptunaParam.to_value` applies W&B's own inverse CDF
  (:func:`sweepspec.compiler._ppf.ppf`), which is exact under Optuna's
  ``RandomSampler``.

Input is always one W&B parameter config in *filled* form (every default
present, ``distribution`` explicit).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..spec.models import DISTRIBUTION_MODELS, GRID_DISTRIBUTIONS, optuna_choice_clash
from ._ppf import decode, ppf

__all__ = [
    "DISTRIBUTIONS",
    "GRID_DISTRIBUTIONS",
    "OptunaParam",
    "ppf",
    "reparam_of",
    "to_optuna",
    "wandb_grid_values",
]

DISTRIBUTIONS: tuple[str, ...] = tuple(DISTRIBUTION_MODELS)
"""W&B's distribution names (sweeps 0.3.0 ``config/schema.json``)."""

_DEFAULTS: dict[str, Any] = {"q": 1.0, "mu": 0.0, "sigma": 1.0, "a": 1, "b": 1}

_QUANTILE_SUFFIX = (
    ", so Optuna samples the quantile u in [0, 1] (and stores u, not the value)"
    " and to_value(u) applies W&B's inverse CDF."
)
_QUANTILE_REASONS: dict[str, str] = {
    "q_uniform": (
        "Optuna's step grid starts at min and weights every point equally, whereas W&B"
        " rounds U(min, max) to multiples of q counted from 0 with half weight at both ends"
    ),
    "q_log_uniform": "Optuna cannot combine log=True with a step",
    "q_log_uniform_values": "Optuna cannot combine log=True with a step",
    "normal": "Optuna has no normal distribution (all of its distributions are bounded)",
    "q_normal": "Optuna has no normal distribution (all of its distributions are bounded)",
    "log_normal": "Optuna has no log-normal distribution (all of its distributions are bounded)",
    "q_log_normal": (
        "Optuna has no log-normal distribution (all of its distributions are bounded)"
    ),
    "beta": "Optuna has no beta distribution",
    "q_beta": "Optuna has no beta distribution",
    "categorical_w_probabilities": (
        "Optuna has no weighted categorical distribution, and model-based samplers will"
        " see the values ordered by cumulative probability"
    ),
}


@dataclass(frozen=True)
class OptunaParam:
    """One W&B parameter compiled for Optuna.

    Attributes:
        distribution: What to pass to ``trial._suggest`` / ``study.ask``.
        native: True when Optuna's suggestion *is* the W&B value.
        reparam: JSON-serialisable description of how a suggestion becomes the
            value (``{"kind": "normal", "mu": 0.0, "sigma": 1.0, "q": None}``, or
            ``{"kind": "index", "values": [...]}``); None when native.
        note: One sentence on what differs from W&B; None when exact.
    """

    distribution: BaseDistribution
    native: bool
    reparam: dict[str, Any] | None = None
    note: str | None = None

    def to_value(self, x: Any) -> Any:
        """The real parameter value for the suggestion ``x`` (identity when native)."""
        if self.reparam is None:
            return x
        return decode(self.reparam, x)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def _kind(cfg: dict[str, Any]) -> str:
    """The ``distribution`` of a filled W&B parameter config, checked."""
    if not isinstance(cfg, dict) or "distribution" not in cfg:
        raise ValueError(
            "W&B parameter config must be a dict with a 'distribution' key (filled form)"
        )
    kind = cfg["distribution"]
    if kind not in DISTRIBUTIONS:
        raise ValueError(
            f"unknown W&B distribution {kind!r}; expected one of: {', '.join(DISTRIBUTIONS)}"
        )
    return str(kind)


def _get(cfg: dict[str, Any], key: str) -> Any:
    """``cfg[key]``, falling back to W&B's schema default."""
    return cfg[key] if key in cfg else _DEFAULTS[key]


def _unstorable_reason(values: list[Any]) -> str | None:
    """Why Optuna's CategoricalDistribution cannot hold ``values`` as they are, or None."""
    clash = optuna_choice_clash(values)
    if clash is None:
        return None
    value, other = clash
    if other is None:
        return (
            f"Optuna's categorical choices must be None/bool/int/float/str but"
            f" {value!r} is a {type(value).__name__}"
        )
    return (
        f"Optuna's categorical cannot tell apart {value!r} and {other!r} because they compare equal"
    )


def _categorical(values: list[Any]) -> OptunaParam:
    """Native categorical, or one over string indices when Optuna cannot hold the values."""
    reason = _unstorable_reason(values)
    if reason is None:
        return OptunaParam(CategoricalDistribution(values), native=True)
    return OptunaParam(
        CategoricalDistribution([str(i) for i in range(len(values))]),
        native=False,
        reparam={"kind": "index", "values": list(values)},
        note=f"{reason}, so Optuna sees the string indices '0', '1', ... and to_value maps"
        " them back to the values.",
    )


# --------------------------------------------------------------------------- #
# reparam: W&B's inverse CDF as data
# --------------------------------------------------------------------------- #


def _reparam_quantised(kind: str, cfg: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``{"kind": kind, key: ..., "q": q or None}``; ``q`` only for the ``q_`` variants."""
    reparam: dict[str, Any] = {"kind": kind}
    for key in keys:
        reparam[key] = _get(cfg, key) if key in _DEFAULTS else cfg[key]
    reparam["q"] = _get(cfg, "q") if cfg["distribution"].startswith("q_") else None
    return reparam


_REPARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "constant": lambda c: {"kind": "constant", "value": c["value"]},
    "categorical": lambda c: {"kind": "categorical", "values": list(c["values"])},
    "categorical_w_probabilities": lambda c: {
        "kind": "categorical_w_probabilities",
        "values": list(c["values"]),
        "probabilities": list(c["probabilities"]),
    },
    "int_uniform": lambda c: {"kind": "int_uniform", "min": c["min"], "max": c["max"]},
    "uniform": lambda c: _reparam_quantised("uniform", c, "min", "max"),
    "q_uniform": lambda c: _reparam_quantised("uniform", c, "min", "max"),
    "log_uniform": lambda c: _reparam_quantised("log_uniform", c, "min", "max"),
    "q_log_uniform": lambda c: _reparam_quantised("log_uniform", c, "min", "max"),
    "log_uniform_values": lambda c: _reparam_quantised("log_uniform_values", c, "min", "max"),
    "q_log_uniform_values": lambda c: _reparam_quantised("log_uniform_values", c, "min", "max"),
    "inv_log_uniform": lambda c: {"kind": "inv_log_uniform", "min": c["min"], "max": c["max"]},
    "inv_log_uniform_values": lambda c: {
        "kind": "inv_log_uniform_values",
        "min": c["min"],
        "max": c["max"],
    },
    "normal": lambda c: _reparam_quantised("normal", c, "mu", "sigma"),
    "q_normal": lambda c: _reparam_quantised("normal", c, "mu", "sigma"),
    "log_normal": lambda c: _reparam_quantised("log_normal", c, "mu", "sigma"),
    "q_log_normal": lambda c: _reparam_quantised("log_normal", c, "mu", "sigma"),
    "beta": lambda c: _reparam_quantised("beta", c, "a", "b"),
    "q_beta": lambda c: _reparam_quantised("beta", c, "a", "b"),
}


def reparam_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """W&B's inverse CDF for ``cfg`` as a reparam dict, for *any* of the 18 kinds.

    ``ppf(reparam_of(cfg), u)`` equals ``HyperParameter(name, cfg).ppf(u)``; for
    native kinds :func:`to_optuna` does not need it (its ``reparam`` is None).
    """
    return _REPARAMS[_kind(cfg)](cfg)


# --------------------------------------------------------------------------- #
# to_optuna
# --------------------------------------------------------------------------- #


def _quantile(cfg: dict[str, Any]) -> OptunaParam:
    """``u ~ U(0, 1)`` mapped through W&B's ppf."""
    kind = cfg["distribution"]
    return OptunaParam(
        FloatDistribution(0.0, 1.0),
        native=False,
        reparam=reparam_of(cfg),
        note=_QUANTILE_REASONS[kind] + _QUANTILE_SUFFIX,
    )


def _log_float(low: float, high: float) -> OptunaParam:
    """Exact log-uniform on ``[low, high]``."""
    return OptunaParam(FloatDistribution(low, high, log=True), native=True)


_NATIVE: dict[str, Callable[[dict[str, Any]], OptunaParam]] = {
    "constant": lambda c: _categorical([c["value"]]),
    "categorical": lambda c: _categorical(list(c["values"])),
    "int_uniform": lambda c: OptunaParam(IntDistribution(c["min"], c["max"]), native=True),
    "uniform": lambda c: OptunaParam(FloatDistribution(c["min"], c["max"]), native=True),
    "log_uniform_values": lambda c: _log_float(c["min"], c["max"]),
    # v1: min/max are natural-log exponents; W&B draws exp(U(min, max)).
    "log_uniform": lambda c: _log_float(math.exp(c["min"]), math.exp(c["max"])),
    # W&B's ppf is exp(-U(min, max)) evaluated at 1 - u: log-uniform on [e^-max, e^-min].
    "inv_log_uniform": lambda c: _log_float(math.exp(-c["max"]), math.exp(-c["min"])),
    # exp(-(-ln max + (1 - u)(ln max - ln min))) = exp(ln min + u (ln max - ln min)).
    "inv_log_uniform_values": lambda c: _log_float(c["min"], c["max"]),
}


def to_optuna(cfg: dict[str, Any]) -> OptunaParam:
    """Compile one filled W&B parameter config to an Optuna distribution.

    Raises ``ValueError`` for a config without a known ``distribution``.
    """
    kind = _kind(cfg)
    if kind in _NATIVE:
        return _NATIVE[kind](cfg)
    return _quantile(cfg)


# --------------------------------------------------------------------------- #
# grid
# --------------------------------------------------------------------------- #


def _yaml_hash(value: Any) -> str:
    """``sweeps.grid_search.yaml_hash``: W&B's grid identifies values by this."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    dumped = yaml.dump(value, default_flow_style=True, sort_keys=True)
    return hashlib.md5(dumped.encode("ascii")).hexdigest()


def _dedupe_by_yaml_hash(values: list[Any]) -> list[Any]:
    """W&B's grid skips repeated hashes: first position wins, the last equal value is used."""
    by_hash: dict[str, Any] = {}
    for value in values:
        by_hash[_yaml_hash(value)] = value
    order = dict.fromkeys(_yaml_hash(value) for value in values)
    return [by_hash[h] for h in order]


def _numpy_arange(start: float, stop: float, step: float) -> list[float | int]:
    """``np.arange(start, stop, step).tolist()`` for Python numbers (excludes stop).

    numpy computes ``ceil((stop - start) / step)`` points, stores ``start`` and
    ``start + step`` and fills the rest as ``start + i * (second - first)``.
    """
    length = math.ceil((stop - start) / step)
    if length <= 0:
        return []
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(length)]
    first = float(start)
    if length == 1:
        return [first]
    delta = float(start + step) - first
    return [first, float(start + step)] + [first + i * delta for i in range(2, length)]


def wandb_grid_values(cfg: dict[str, Any]) -> list[Any]:
    """The values W&B's grid search enumerates for this parameter, in W&B's order.

    ``int_uniform`` is ``range(min, max + 1)``; ``q_uniform`` is
    ``np.arange(min, max, q)`` (counted from min, max excluded); repeated values
    (by W&B's yaml hash, so ``1`` and ``1.0`` are the same) are enumerated once.
    Raises ``ValueError`` for every kind W&B's grid refuses.
    """
    kind = _kind(cfg)
    if kind not in GRID_DISTRIBUTIONS:
        raise ValueError(
            f"W&B grid search cannot enumerate distribution {kind!r}: grid search accepts"
            " only categorical, constant, int_uniform and q_uniform parameters"
        )
    if kind == "constant":
        return [cfg["value"]]
    if kind == "int_uniform":
        values: list[Any] = list(range(cfg["min"], cfg["max"] + 1))
    elif kind == "q_uniform":
        values = _numpy_arange(cfg["min"], cfg["max"], _get(cfg, "q"))
    else:
        values = list(cfg["values"])
    return _dedupe_by_yaml_hash(values)
