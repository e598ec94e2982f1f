"""Seeds and significance: every pair of configurations tested over the seeds both have.

The design is paired: every configuration ran with the same seeds, and a seed fixes what it
fixes in the trial (``trial.seed``), so the scores of two configurations are compared seed by
seed. For every pair, two tests of the per-seed differences (``scipy.stats``):

* ``ttest_rel``: the paired t-test; its 95 % confidence interval of the mean difference
  (Student's t with ``n - 1`` degrees of freedom) is the one in the verdict;
* ``wilcoxon``: the Wilcoxon signed-rank test (scipy's defaults: exact for small samples,
  zero differences dropped), which does not assume the differences are normal.

Each test's p-values are corrected over the pairs by Holm's step-down method (family-wise
error rate at most 5 %), and a pair is *significant* when the paired t-test's Holm-adjusted p
is below 0.05. A pair is tested on the seeds both configurations finished; the verdict says
so when some are missing.

The verdict, one line per pair, the better configuration first (by the mean difference on the
seeds both have) and the difference as *better minus worse* in the metric's unit::

    lora beats base: -0.026 loss (95% CI -0.04 to -0.01), p=0.003 after Holm: significant
    lora is ahead of base: -0.004 loss (95% CI -0.02 to 0.01), p=0.41 after Holm: not significant
    lora ties with base: 0 loss on every one of the 5 seeds both have: nothing to test
    lora vs base: cannot test: only 1 seed both have (0); a test needs 2

A pair tested on fewer seeds than were run ends with what is missing: ``(tested on the 3 seeds
both have; base lacks seeds 1, 4)``. Numbers have two significant digits; a p below 0.001 is
written ``p<0.001``.

This module computes; it runs nothing and reads no storage (:func:`compare` takes scores).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALPHA",
    "TESTS",
    "Comparison",
    "ConfigScores",
    "PairTest",
    "compare",
    "holm",
]

ALPHA = 0.05
"""A pair is significant when its Holm-adjusted paired t-test p-value is below this."""

TESTS = ("ttest_rel", "wilcoxon")
"""The tests, named by their ``scipy.stats`` function."""


@dataclass
class ConfigScores:
    """One configuration's runs: its score per seed that finished, what is missing.

    Attributes:
        id: its name (``trial-12`` for a sweep's trial, or the name in a configs file).
        params: its real parameter values by dotted name.
        scores: seed -> the score (the objective's value the sweep scores a trial by).
        missing: seed -> why it has no score (``failed: ...``, ``not run``, ``running``).
        cost: seed -> the ``budget.cost`` metric's final value, for every run that logged it.
    """

    id: str
    params: dict[str, Any]
    scores: dict[int, float]
    missing: dict[int, str] = field(default_factory=dict)
    cost: dict[int, float] = field(default_factory=dict)

    def mean(self) -> float | None:
        return statistics.fmean(self.scores.values()) if self.scores else None

    def sd(self) -> float | None:
        return statistics.stdev(self.scores.values()) if len(self.scores) > 1 else None


@dataclass
class PairTest:
    """One test of one pair: ``a`` minus ``b`` on the seeds both have."""

    a: str
    b: str
    test: str
    seeds: list[int]
    p_value: float | None = None
    p_adjusted: float | None = None
    statistic: float | None = None
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str | None = None  # why there is no p-value

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < ALPHA

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "test": self.test,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "statistic": self.statistic,
            "n": len(self.seeds),
            "seeds": self.seeds,
            "mean_difference": self.mean_difference,
            "ci95": [self.ci_low, self.ci_high] if self.test == "ttest_rel" else None,
            "significant": self.significant,
            "note": self.note,
        }


@dataclass
class Comparison:
    """Every configuration's scores and every pair's tests and verdict."""

    metric: str
    goal: str  # minimize | maximize
    seeds: list[int]
    configs: list[ConfigScores]
    pairs: list[PairTest]  # per pair, one entry per test in TESTS
    verdicts: list[str]
    cost_metric: str | None = None
    notes: list[str] = field(default_factory=list)  # what is missing, one line each

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "goal": self.goal,
            "seeds": self.seeds,
            "alpha": ALPHA,
            "configs": [self._config(c) for c in self.configs],
            "pairs": [p.to_json() for p in self.pairs],
            "verdicts": self.verdicts,
            "notes": self.notes,
            "cost": self._total_cost(),
        }

    def _config(self, config: ConfigScores) -> dict[str, Any]:
        seeds = sorted(config.scores)
        out: dict[str, Any] = {
            "id": config.id,
            "params": config.params,
            "scores": [config.scores[s] for s in seeds],
            "seeds": seeds,
            "mean": config.mean(),
            "sd": config.sd(),
            "missing": {str(s): why for s, why in sorted(config.missing.items())},
        }
        if self.cost_metric is not None:
            out["cost"] = _cost(self.cost_metric, config.cost)
        return out

    def _total_cost(self) -> dict[str, Any] | None:
        if self.cost_metric is None:
            return None
        every = {(c.id, s): v for c in self.configs for s, v in c.cost.items()}
        return {"metric": self.cost_metric, "total": math.fsum(every.values()), "runs": len(every)}


def _cost(metric: str, costs: dict[int, float]) -> dict[str, Any]:
    total = math.fsum(costs.values())
    return {
        "metric": metric,
        "total": total,
        "mean": total / len(costs) if costs else None,
        "runs": len(costs),
    }


# --------------------------------------------------------------------------- the statistics


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``p_values`` (None: no test, left out of the family):
    the k-th smallest of m is multiplied by ``m - k + 1``, capped at 1, and made monotone."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - k) * p))
        out[i] = running
    return out


def compare(
    configs: list[ConfigScores],
    metric: str,
    goal: str,
    seeds: list[int],
    cost_metric: str | None = None,
) -> Comparison:
    """Test every pair of ``configs`` (best mean first) and write the verdicts."""
    ranked = sorted(configs, key=lambda c: _rank_key(c, goal))
    pairs: list[PairTest] = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            pairs += [_test(test, a, b) for test in TESTS]
    for test in TESTS:
        family = [p for p in pairs if p.test == test]
        for pair, adjusted in zip(family, holm([p.p_value for p in family]), strict=True):
            pair.p_adjusted = adjusted
    by_id = {c.id: c for c in ranked}
    verdicts = [
        verdict(p, by_id[p.a], by_id[p.b], metric, goal) for p in pairs if p.test == TESTS[0]
    ]
    notes = [_missing_line(c, len(seeds)) for c in ranked if c.missing]
    return Comparison(metric, goal, seeds, ranked, pairs, verdicts, cost_metric, notes)


def _rank_key(config: ConfigScores, goal: str) -> tuple[int, float]:
    mean = config.mean()
    if mean is None or not math.isfinite(mean):
        return (1, 0.0)
    return (0, mean if goal == "minimize" else -mean)


def _test(test: str, a: ConfigScores, b: ConfigScores) -> PairTest:
    seeds = sorted(set(a.scores) & set(b.scores))
    pair = PairTest(a.id, b.id, test, seeds)
    x = [a.scores[s] for s in seeds]
    y = [b.scores[s] for s in seeds]
    if not all(math.isfinite(v) for v in x + y):
        pair.note = "a score is not finite"
        return pair
    if seeds:
        pair.mean_difference = statistics.fmean(u - v for u, v in zip(x, y, strict=True))
    if len(seeds) < 2:
        pair.note = f"only {len(seeds)} seed{'' if len(seeds) == 1 else 's'} both have"
        return pair
    if all(u == v for u, v in zip(x, y, strict=True)):
        pair.note = "the same score on every seed"
        return pair
    from scipy import stats

    with warnings.catch_warnings():  # constant differences, exact p with ties: scipy says
        warnings.simplefilter("ignore")
        if test == "ttest_rel":
            result = stats.ttest_rel(x, y)
            low, high = result.confidence_interval(1 - ALPHA)
            pair.ci_low, pair.ci_high = _number(low), _number(high)
        else:
            result = stats.wilcoxon(x, y)
    pair.statistic = _number(result.statistic)
    pair.p_value = _number(result.pvalue)
    if pair.p_value is None:
        pair.note = "the test gives no p-value for these differences"
    return pair


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- the verdicts


def verdict(pair: PairTest, a: ConfigScores, b: ConfigScores, metric: str, goal: str) -> str:
    """The plain line for ``pair`` (a paired t-test entry)."""
    if len(pair.seeds) < 2 or pair.mean_difference is None:
        both = f" ({_seed_list(pair.seeds)})" if pair.seeds else ""
        line = (
            f"{a.id} vs {b.id}: cannot test: only {len(pair.seeds)} "
            f"seed{'' if len(pair.seeds) == 1 else 's'} both have{both}; a test needs 2"
        )
        return line + _lacking(pair, a, b)
    if pair.note == "the same score on every seed":
        line = (
            f"{a.id} ties with {b.id}: 0 {metric} on every one of the {len(pair.seeds)} "
            "seeds both have: nothing to test"
        )
        return line + _lacking(pair, a, b)
    diff, low, high = pair.mean_difference, pair.ci_low, pair.ci_high
    first, second = a, b
    if (diff > 0) == (goal == "minimize") and diff != 0:  # b did better on the common seeds
        first, second = b, a
        diff = -diff
        low, high = (-high if high is not None else None), (-low if low is not None else None)
    if diff == 0:
        relation = "ties with"
    elif pair.significant:
        relation = "beats"
    else:
        relation = "is ahead of"
    ci = f" (95% CI {_fmt(low)} to {_fmt(high)})" if low is not None and high is not None else ""
    outcome = "significant" if pair.significant else "not significant"
    p = pair.p_adjusted
    shown = "p=n/a" if p is None else "p<0.001" if p < 0.001 else f"p={_fmt(p)}"
    line = f"{first.id} {relation} {second.id}: {_fmt(diff)} {metric}{ci}, {shown} after Holm: "
    return line + outcome + _lacking(pair, a, b)


def _lacking(pair: PairTest, a: ConfigScores, b: ConfigScores) -> str:
    """Which seeds the pair was not tested on, and whose they are."""
    parts = []
    for config in (a, b):
        gone = sorted(set(config.missing) - set(pair.seeds))
        if gone:
            parts.append(f"{config.id} lacks seed{'s' if len(gone) > 1 else ''} {_seed_list(gone)}")
    if not parts or len(pair.seeds) < 2:
        return f" ({'; '.join(parts)})" if parts else ""
    return f" (tested on the {len(pair.seeds)} seeds both have; {'; '.join(parts)})"


def _missing_line(config: ConfigScores, total: int) -> str:
    reasons = "; ".join(f"seed {s} {why}" for s, why in sorted(config.missing.items()))
    return f"{config.id}: {len(config.scores)} of {total} seeds finished: {reasons}"


def _seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def _fmt(value: float) -> str:
    """Two significant digits, without a trailing exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    return f"{value:.2g}"
