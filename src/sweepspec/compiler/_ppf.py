"""W&B's inverse CDFs (``sweeps.params.HyperParameter.ppf``, sweeps 0.3.0), in plain Python.

A W&B parameter that Optuna cannot express natively is declared in Optuna as a
quantile ``u ~ U(0, 1)``. :func:`decode` turns the suggested ``u`` back into the
value W&B would have drawn for the same ``u`` (W&B's random search draws
``ppf(random.uniform(0, 1))``), so the two samplers agree exactly.

The mapping is described by a JSON-serialisable ``reparam`` dict, e.g.
``{"kind": "normal", "mu": 0.0, "sigma": 1.0, "q": None}``; see :data:`KINDS`.

This module imports only the standard library: the definitions a generated
stand-alone Optuna script needs (those its spec's kinds reach from
:func:`decode`) are copied into it as they are written here. What it reproduces from sweeps,
numpy and scipy:

* ``q`` rounding is numpy's ``round(r / q) * q`` (round half to even, ``-0.0``
  kept); the result is an ``int`` only when ``q`` is a Python ``int``, and that
  cast follows numpy on x86-64 (``inf``, ``nan`` and out-of-range values become
  ``-2**63``).
* Discrete kinds follow ``scipy.stats.randint.ppf``, including its convention
  ``ppf(0) == low - 1``: ``int_uniform`` gives ``min - 1`` and ``categorical``
  gives the *last* value at ``u == 0``.
* ``categorical_w_probabilities`` picks the first value whose cumulative
  probability exceeds ``u``, and the *first* value when none does
  (``np.argmin`` of an all-true mask), e.g. at ``u == 1``.
* Bad shape parameters (``sigma == 0``, ``a == 0``) give ``nan`` as in scipy.

Results are plain ``int``/``float`` (sweeps returns numpy scalars). Continuous
results may differ from sweeps in the last bit or two (``math.exp`` vs
``np.exp``, Wichura's AS241 vs cephes ``ndtri``, the beta inverse below vs
Boost); this changes a rounded result only when ``r / q`` lies within that
error of a rounding boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from statistics import NormalDist
from typing import Any

INT64_MIN = -(2**63)
"""What numpy's ``float64 -> int64`` cast returns for inf, nan and overflow on x86-64."""

_STANDARD_NORMAL = NormalDist(0.0, 1.0)
_BETA_MAX_ITER = 200
_CF_EPS = 1e-16
_CF_TINY = 1e-300


# --------------------------------------------------------------------------- #
# numpy-compatible scalar helpers
# --------------------------------------------------------------------------- #


def _exp(x: float) -> float:
    """``np.exp``: overflow gives ``inf`` instead of raising."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _log(x: float) -> float:
    """``np.log``: ``log(0) == -inf`` and ``log(x < 0) == nan`` instead of raising."""
    if x > 0:
        return math.log(x)
    if x == 0:
        return -math.inf
    return math.nan


def _rint(x: float) -> float:
    """``np.round(x)``: round half to even, keeping the sign of zero, inf and nan."""
    if not math.isfinite(x):
        return x
    return math.copysign(float(round(x)), x)


def _as_int64(x: float) -> int:
    """``np.float64(x).astype(int)`` on x86-64: truncate, or ``INT64_MIN`` when out of range."""
    if math.isfinite(x) and -(2.0**63) <= x < 2.0**63:
        return int(x)
    return INT64_MIN


def _quantise(r: float, q: float | int | None) -> float | int:
    """W&B's ``np.round(r / q) * q``, cast to int when ``q`` is a Python int."""
    if q is None:
        return float(r)
    value = _rint(r / q) * q
    if isinstance(q, int):
        return _as_int64(value)
    return float(value)


# --------------------------------------------------------------------------- #
# scipy-compatible inverse CDFs
# --------------------------------------------------------------------------- #


def _uniform_ppf(u: float, loc: float, scale: float) -> float:
    """``scipy.stats.uniform.ppf(u, loc, scale)``."""
    if not (scale > 0 and loc == loc):
        return math.nan
    return u * scale + loc


def _randint_ppf(u: float, low: int, high: int) -> int:
    """``scipy.stats.randint.ppf(u, low, high).astype(int)``, with ``ppf(0) == low - 1``."""
    if not high > low:
        return INT64_MIN
    if u == 0:
        return low - 1
    if u == 1:
        return high - 1
    vals = math.ceil(u * (high - low) + low) - 1
    vals1 = min(max(vals - 1, low), high)
    cdf_vals1 = (math.floor(vals1) - low + 1.0) / (high - low)
    return vals1 if cdf_vals1 >= u else vals


def _norm_ppf(u: float, mu: float, sigma: float) -> float:
    """``scipy.stats.norm.ppf(u, loc=mu, scale=sigma)``."""
    if not (sigma > 0 and mu == mu):
        return math.nan
    if u == 0:
        return -math.inf * sigma + mu
    if u == 1:
        return math.inf * sigma + mu
    return _STANDARD_NORMAL.inv_cdf(u) * sigma + mu


def _lognorm_ppf(u: float, s: float, mu: float) -> float:
    """``scipy.stats.lognorm.ppf(u, s=s, scale=np.exp(mu))``."""
    scale = _exp(mu)
    if not (s > 0 and scale > 0):
        return math.nan
    if u == 0:
        return 0.0
    if u == 1:
        return math.inf
    return _exp(s * _STANDARD_NORMAL.inv_cdf(u)) * scale


# ----------------------------- beta ---------------------------------------- #


def _log_beta(a: float, b: float) -> float:
    """``log B(a, b)``."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            break
    return h


def _log_lower_ibeta(a: float, b: float, lbeta: float, t: float) -> float:
    """``log I_x(a, b)`` at ``x = e^t``; accurate for ``x <= (a + 1) / (a + b + 2)``."""
    x = math.exp(t)
    return a * t + b * math.log1p(-x) - lbeta + math.log(_beta_cf(a, b, x) / a)


def _solve_lower_tail(a: float, b: float, p: float, x_max: float) -> float:
    """The ``x`` in ``(0, x_max]`` with ``I_x(a, b) == p``, by safeguarded Newton on ``log x``."""
    lbeta = _log_beta(a, b)
    target = math.log(p)
    t_hi = math.log(x_max)
    t_lo = -math.inf

    def residual(t: float) -> tuple[float, float]:
        log_i = _log_lower_ibeta(a, b, lbeta, t)
        x = math.exp(t)
        slope = math.exp(a * t + (b - 1.0) * math.log1p(-x) - lbeta - log_i)
        return log_i - target, slope

    # I_x ~ x^a / (a B(a, b)) for small x.
    t = min((target + math.log(a) + lbeta) / a, t_hi)
    floor_t = math.log(5e-324)
    expand = 1.0
    for _ in range(_BETA_MAX_ITER):
        if t <= floor_t:
            return 0.0
        g, slope = residual(t)
        if g == 0:
            break
        if g > 0:
            t_hi = t
        else:
            t_lo = t
        step = g / slope if slope > 0 and math.isfinite(slope) else math.nan
        t_new = t - step
        if not (t_lo < t_new < t_hi) or step != step:
            if math.isfinite(t_lo):
                t_new = (t_lo + t_hi) / 2
            else:
                t_new, expand = t_hi - expand, 2 * expand
        if abs(t_new - t) <= 1e-16 * max(1.0, abs(t)):
            t = t_new
            break
        t = t_new
    return math.exp(t)


@lru_cache(maxsize=64)
def _beta_split(a: float, b: float) -> tuple[float, float]:
    """The point ``s = (a + 1) / (a + b + 2)`` where the tails switch, and ``I_s(a, b)``."""
    s = (a + 1.0) / (a + b + 2.0)
    return s, math.exp(_log_lower_ibeta(a, b, _log_beta(a, b), math.log(s)))


def _beta_ppf(u: float, a: float, b: float) -> float:
    """``scipy.stats.beta.ppf(u, a, b)`` (the inverse regularised incomplete beta)."""
    if not (a > 0 and b > 0):
        return math.nan
    if u == 0:
        return 0.0
    if u == 1:
        return 1.0
    if a == 1 and b == 1:
        return u
    s, i_s = _beta_split(a, b)
    if u <= i_s:
        return _solve_lower_tail(a, b, u, s)
    # Upper tail: 1 - x solves I_{1-x}(b, a) == 1 - u.
    return 1.0 - _solve_lower_tail(b, a, 1.0 - u, 1.0 - s)


# --------------------------------------------------------------------------- #
# one function per reparam kind
# --------------------------------------------------------------------------- #


def _ppf_constant(r: dict[str, Any], u: float) -> Any:
    return r["value"]


def _ppf_categorical(r: dict[str, Any], u: float) -> Any:
    values = r["values"]
    return values[_randint_ppf(u, 0, len(values))]


def _ppf_categorical_w_probabilities(r: dict[str, Any], u: float) -> Any:
    cumulative = 0
    for index, probability in enumerate(r["probabilities"]):
        cumulative = cumulative + probability
        if not u >= cumulative:
            return r["values"][index]
    return r["values"][0]


def _ppf_int_uniform(r: dict[str, Any], u: float) -> int:
    return _randint_ppf(u, r["min"], r["max"] + 1)


def _ppf_uniform(r: dict[str, Any], u: float) -> float | int:
    return _quantise(_uniform_ppf(u, r["min"], r["max"] - r["min"]), r.get("q"))


def _ppf_log_uniform(r: dict[str, Any], u: float) -> float | int:
    value = _exp(_uniform_ppf(u, r["min"], r["max"] - r["min"]))
    return _quantise(value, r.get("q"))


def _ppf_log_uniform_values(r: dict[str, Any], u: float) -> float | int:
    low, high = _log(r["min"]), _log(r["max"])
    return _quantise(_exp(_uniform_ppf(u, low, high - low)), r.get("q"))


def _ppf_inv_log_uniform(r: dict[str, Any], u: float) -> float:
    return _exp(-_uniform_ppf(1 - u, r["min"], r["max"] - r["min"]))


def _ppf_inv_log_uniform_values(r: dict[str, Any], u: float) -> float:
    low, high = -_log(r["max"]), -_log(r["min"])
    return _exp(-_uniform_ppf(1 - u, low, high - low))


def _ppf_normal(r: dict[str, Any], u: float) -> float | int:
    return _quantise(_norm_ppf(u, r["mu"], r["sigma"]), r.get("q"))


def _ppf_log_normal(r: dict[str, Any], u: float) -> float | int:
    return _quantise(_lognorm_ppf(u, r["sigma"], r["mu"]), r.get("q"))


def _ppf_beta(r: dict[str, Any], u: float) -> float | int:
    return _quantise(_beta_ppf(u, r["a"], r["b"]), r.get("q"))


_PPF: dict[str, Callable[[dict[str, Any], float], Any]] = {
    "constant": _ppf_constant,
    "categorical": _ppf_categorical,
    "categorical_w_probabilities": _ppf_categorical_w_probabilities,
    "int_uniform": _ppf_int_uniform,
    "uniform": _ppf_uniform,
    "log_uniform": _ppf_log_uniform,
    "log_uniform_values": _ppf_log_uniform_values,
    "inv_log_uniform": _ppf_inv_log_uniform,
    "inv_log_uniform_values": _ppf_inv_log_uniform_values,
    "normal": _ppf_normal,
    "log_normal": _ppf_log_normal,
    "beta": _ppf_beta,
}

KINDS: tuple[str, ...] = (*_PPF, "index")
"""Reparam kinds: the W&B distributions with the ``q_`` variants folded in via ``q``
(``None`` = no rounding), plus ``index`` (Optuna suggests ``"0"``, ``"1"``, ... and
the value is ``values[int(x)]``)."""


def ppf(reparam: dict[str, Any], u: float) -> Any:
    """The value W&B draws at quantile ``u``: ``HyperParameter.ppf(u)`` as plain Python.

    Raises ``ValueError`` (W&B's message) when ``u`` is outside ``[0, 1]``.
    """
    if u < 0.0 or u > 1.0:
        raise ValueError("Can't call ppf on value outside of [0,1]")
    kind = reparam["kind"]
    if kind not in _PPF:
        raise ValueError(f"ppf: unknown reparam kind {kind!r}; expected one of {sorted(_PPF)}")
    return _PPF[kind](reparam, u)


def decode(reparam: dict[str, Any], x: Any) -> Any:
    """Turn what Optuna suggested into the real value: an index lookup or :func:`ppf`."""
    if reparam["kind"] == "index":
        return reparam["values"][int(x)]
    return ppf(reparam, float(x))
