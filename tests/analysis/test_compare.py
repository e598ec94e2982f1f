"""The statistics of ``compare`` (sweepspec.analysis.compare): Holm's correction, the tests
on the seeds both configurations have, and the verdict lines, on scores given by hand."""

from __future__ import annotations

import pytest
from scipy import stats

from sweepspec.analysis.compare import ConfigScores, compare, holm


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_1_and_keeps_the_order() -> None:
    # m = 3, sorted 0.01, 0.03, 0.04: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04,
    # raised to 0.06 (an adjusted p never falls below that of a smaller raw p)
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def _scores(name: str, values: list[float], missing: dict[int, str] | None = None) -> ConfigScores:
    scores = {seed: v for seed, v in enumerate(values) if seed not in (missing or {})}
    return ConfigScores(name, {"x": name}, scores, dict(missing or {}))


def test_a_clear_winner_beats_the_baseline_with_scipys_p_values() -> None:
    base = [0.30, 0.32, 0.31, 0.29, 0.33]
    better = [0.27, 0.30, 0.28, 0.26, 0.30]
    result = compare(
        [_scores("baseline", base), _scores("lora_r16", better)],
        "val_loss",
        "minimize",
        [0, 1, 2, 3, 4],
    )
    assert [c.id for c in result.configs] == ["lora_r16", "baseline"]
    t_test, signed_rank = result.pairs
    assert (t_test.a, t_test.b, t_test.test) == ("lora_r16", "baseline", "ttest_rel")
    assert t_test.p_value == stats.ttest_rel(better, base).pvalue
    assert signed_rank.p_value == stats.wilcoxon(better, base).pvalue
    assert t_test.p_adjusted == t_test.p_value  # one pair: Holm changes nothing
    low, high = stats.ttest_rel(better, base).confidence_interval(0.95)
    assert (t_test.ci_low, t_test.ci_high) == (low, high)
    assert result.verdicts == [
        "lora_r16 beats baseline: -0.028 val_loss (95% CI -0.034 to -0.022), p<0.001 after "
        "Holm: significant"
    ]


def test_a_difference_within_the_noise_is_not_significant_and_maximize_flips_the_sign() -> None:
    a = [0.90, 0.80, 0.95, 0.85]
    b = [0.88, 0.84, 0.90, 0.86]
    result = compare([_scores("a", a), _scores("b", b)], "accuracy", "maximize", [0, 1, 2, 3])
    p = stats.ttest_rel(a, b).pvalue
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert result.verdicts == [
        f"a is ahead of b: 0.005 accuracy (95% CI {low:.2g} to {high:.2g}), p={p:.2g} after "
        "Holm: not significant"
    ]


def test_equal_scores_on_every_seed_are_a_tie_with_nothing_to_test() -> None:
    same = [0.5, 0.6, 0.7]
    result = compare([_scores("a", same), _scores("b", same)], "loss", "minimize", [0, 1, 2])
    assert result.verdicts == [
        "a ties with b: 0 loss on every one of the 3 seeds both have: nothing to test"
    ]
    assert [p.p_value for p in result.pairs] == [None, None]
    assert [p.to_json()["note"] for p in result.pairs] == ["the same score on every seed"] * 2


def test_a_pair_is_tested_on_the_seeds_both_have_and_says_which_are_missing() -> None:
    a = [0.1, 0.2, 0.3, 0.4, 0.5]
    b = [0.3, 0.5, 0.4, 0.7, 0.9]
    result = compare(
        [_scores("a", a), _scores("b", b, {1: "failed: ValueError: boom", 4: "not run"})],
        "loss",
        "minimize",
        [0, 1, 2, 3, 4],
    )
    t_test = result.pairs[0]
    assert t_test.seeds == [0, 2, 3]
    assert t_test.p_value == stats.ttest_rel([0.1, 0.3, 0.4], [0.3, 0.4, 0.7]).pvalue
    assert result.verdicts[0].endswith(
        "after Holm: not significant (tested on the 3 seeds both have; b lacks seeds 1, 4)"
    )
    assert result.notes == [
        "b: 3 of 5 seeds finished: seed 1 failed: ValueError: boom; seed 4 not run"
    ]


def test_fewer_than_two_seeds_in_common_cannot_be_tested() -> None:
    result = compare(
        [_scores("a", [0.1, 0.2]), _scores("b", [0.3, 0.4], {1: "not run"})],
        "loss",
        "minimize",
        [0, 1],
    )
    assert result.verdicts == [
        "a vs b: cannot test: only 1 seed both have (0); a test needs 2 (b lacks seed 1)"
    ]
    assert result.to_json()["pairs"][0]["p_value"] is None


def test_holm_is_applied_over_the_pairs_of_each_test() -> None:
    configs = [
        _scores("a", [0.10, 0.12, 0.11, 0.13, 0.10]),
        _scores("b", [0.20, 0.21, 0.25, 0.22, 0.21]),
        _scores("c", [0.21, 0.20, 0.26, 0.23, 0.20]),
    ]
    result = compare(configs, "loss", "minimize", [0, 1, 2, 3, 4])
    for test in ("ttest_rel", "wilcoxon"):
        family = [p for p in result.pairs if p.test == test]
        assert [(p.a, p.b) for p in family] == [("a", "b"), ("a", "c"), ("b", "c")]
        assert [p.p_adjusted for p in family] == holm([p.p_value for p in family])
    assert len(result.verdicts) == 3


def test_cost_totals_and_means_per_configuration() -> None:
    a = ConfigScores("a", {}, {0: 0.1, 1: 0.2}, cost={0: 1.5, 1: 2.5})
    b = ConfigScores("b", {}, {0: 0.3}, {1: "failed: x"}, cost={0: 1.0, 1: 0.25})
    data = compare([a, b], "loss", "minimize", [0, 1], "cost_usd").to_json()
    assert [c["cost"] for c in data["configs"]] == [
        {"metric": "cost_usd", "total": 4.0, "mean": 2.0, "runs": 2},
        {"metric": "cost_usd", "total": 1.25, "mean": 0.625, "runs": 2},
    ]
    assert data["cost"] == {"metric": "cost_usd", "total": 5.25, "runs": 4}
