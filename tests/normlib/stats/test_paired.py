"""normlib.stats.paired: the paired t-test and Wilcoxon against scipy, hand-checked values,
defined edge cases and input errors."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats.paired import paired_ttest, wilcoxon

ALTERNATIVES = ("greater", "less", "two-sided")

# The BN-init README example (accuracies in %, five seeds).
SEED_METHOD = [91.7, 93.4, 92.2, 90.0, 91.9]
SEED_BASELINE = [91.0, 92.7, 92.2, 90.1, 91.5]


def random_pair(seed, rounded=False):
    """Paired accuracies with a seed-shared component, a seed-dependent n and true shift."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 31))
    shared = rng.normal(90.0, 1.5, n)
    baseline = shared + rng.normal(0.0, 0.4, n)
    method = shared + rng.normal(rng.uniform(-0.4, 0.6), 0.4, n)
    if rounded:
        return np.round(method, 1), np.round(baseline, 1)
    return method, baseline


# ---------------------------------------------------------------- paired t-test


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_ttest_matches_scipy(seed, alternative):
    method, baseline = random_pair(seed)
    ours = paired_ttest(method, baseline, alternative=alternative)
    reference = sps.ttest_rel(method, baseline, alternative=alternative)
    assert abs(ours.statistic - reference.statistic) <= 1e-12
    assert abs(ours.pvalue - reference.pvalue) <= 1e-12
    assert ours.n == len(method)
    assert ours.alternative == alternative


def test_ttest_seed_readme_example():
    result = paired_ttest(SEED_METHOD, SEED_BASELINE)
    assert round(result.pvalue, 4) == 0.0574
    # d = [0.7, 0.7, 0.0, -0.1, 0.4]: mean 0.34, sum of squared deviations 0.572,
    # sd = sqrt(0.572 / 4) = 0.378153..., t = 0.34 / (sd / sqrt(5)) = 2.010462...
    assert result.mean_diff == pytest.approx(0.34, abs=1e-12)
    assert result.sd_diff == pytest.approx(math.sqrt(0.572 / 4), abs=1e-12)
    assert result.statistic == pytest.approx(2.0104621463629, abs=1e-12)
    assert result.effect_size == pytest.approx(0.34 / math.sqrt(0.572 / 4), abs=1e-12)
    # Not significant at 5%, so the one-sided 95% lower bound is below zero.
    assert result.ci_low < 0 < result.mean_diff
    assert result.ci_high == math.inf


@pytest.mark.parametrize("seed", range(20))
def test_ttest_descriptives_and_ci(seed):
    method, baseline = random_pair(seed)
    diffs = method - baseline
    n = len(diffs)
    mean, sd = diffs.mean(), diffs.std(ddof=1)
    se = sd / math.sqrt(n)

    two_sided = paired_ttest(method, baseline, alternative="two-sided")
    assert two_sided.mean_diff == pytest.approx(mean, abs=1e-12)
    assert two_sided.sd_diff == pytest.approx(sd, abs=1e-12)
    assert two_sided.effect_size == pytest.approx(mean / sd, abs=1e-12)
    half_width = sps.t.ppf(0.975, n - 1) * se
    assert two_sided.ci_low == pytest.approx(mean - half_width, abs=1e-12)
    assert two_sided.ci_high == pytest.approx(mean + half_width, abs=1e-12)

    greater = paired_ttest(method, baseline, alternative="greater")
    assert greater.ci_low == pytest.approx(mean - sps.t.ppf(0.95, n - 1) * se, abs=1e-12)
    assert greater.ci_high == math.inf

    less = paired_ttest(method, baseline, alternative="less", confidence=0.9)
    assert less.ci_low == -math.inf
    assert less.ci_high == pytest.approx(mean + sps.t.ppf(0.9, n - 1) * se, abs=1e-12)
    assert less.confidence == 0.9

    # scipy's own interval agrees too.
    for ours in (two_sided, greater, less):
        reference = sps.ttest_rel(method, baseline, alternative=ours.alternative)
        interval = reference.confidence_interval(confidence_level=ours.confidence)
        assert ours.ci_low == pytest.approx(interval.low, abs=1e-12)
        assert ours.ci_high == pytest.approx(interval.high, abs=1e-12)


def test_one_sided_pvalue_agrees_with_lower_bound():
    outcomes = set()
    for seed in range(200):
        result = paired_ttest(*random_pair(seed), alternative="greater", confidence=0.95)
        significant = result.pvalue < 0.05
        assert significant == (result.ci_low > 0)
        outcomes.add(significant)
    assert outcomes == {True, False}  # both branches were exercised


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_ttest_zero_differences_defined(alternative):
    scores = [91.0, 92.5, 90.25, 93.0]
    result = paired_ttest(scores, scores, alternative=alternative)
    assert result.statistic == 0.0
    assert result.pvalue == 1.0
    assert result.mean_diff == 0.0
    assert result.sd_diff == 0.0
    assert result.effect_size == 0.0
    assert not any(
        isinstance(value, float) and math.isnan(value) for value in vars(result).values()
    )


@pytest.mark.parametrize(
    ("alternative", "expected_p"), [("greater", 0.0), ("less", 1.0), ("two-sided", 0.0)]
)
def test_ttest_constant_nonzero_difference_defined(alternative, expected_p):
    baseline = np.array([90.0, 91.0, 92.0, 93.0])
    result = paired_ttest(baseline + 0.5, baseline, alternative=alternative)
    assert result.statistic == math.inf
    assert result.effect_size == math.inf
    assert result.pvalue == expected_p
    assert result.sd_diff == 0.0
    # The interval collapses onto the mean difference.
    finite_bounds = [b for b in (result.ci_low, result.ci_high) if math.isfinite(b)]
    assert finite_bounds and all(b == pytest.approx(0.5) for b in finite_bounds)


def test_ttest_constant_negative_difference_less():
    baseline = np.array([90.0, 91.0, 92.0])
    result = paired_ttest(baseline - 1.0, baseline, alternative="less")
    assert result.statistic == -math.inf
    assert result.effect_size == -math.inf
    assert result.pvalue == 0.0


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize("test", [paired_ttest, wilcoxon])
def test_unequal_lengths_raise(test):
    with pytest.raises(ValueError, match=r"method has 5 values but baseline has 4"):
        test(SEED_METHOD, SEED_BASELINE[:4])


@pytest.mark.parametrize("test", [paired_ttest, wilcoxon])
@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_pairs_raise(test, n):
    with pytest.raises(ValueError, match=r"at least 2 pairs"):
        test(SEED_METHOD[:n], SEED_BASELINE[:n])


@pytest.mark.parametrize("test", [paired_ttest, wilcoxon])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_raise_with_index(test, bad):
    baseline = list(SEED_BASELINE)
    baseline[2] = bad
    with pytest.raises(ValueError, match=r"baseline\[2\]"):
        test(SEED_METHOD, baseline)
    method = list(SEED_METHOD)
    method[4] = bad
    with pytest.raises(ValueError, match=r"method\[4\]"):
        test(method, SEED_BASELINE)


@pytest.mark.parametrize("test", [paired_ttest, wilcoxon])
def test_bad_alternative_raises(test):
    with pytest.raises(ValueError, match=r"'greater', 'less', 'two-sided'.*'bigger'"):
        test(SEED_METHOD, SEED_BASELINE, alternative="bigger")


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.2])
def test_bad_confidence_raises(confidence):
    with pytest.raises(ValueError, match=r"confidence"):
        paired_ttest(SEED_METHOD, SEED_BASELINE, confidence=confidence)


def test_two_dimensional_or_non_numeric_input_raises():
    with pytest.raises(ValueError, match=r"method must be one-dimensional"):
        paired_ttest([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"baseline must be a sequence of numbers"):
        paired_ttest([1.0, 2.0], ["a", "b"])


# ---------------------------------------------------------------- Wilcoxon


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("rounded", [False, True], ids=["continuous", "rounded"])
def test_wilcoxon_matches_scipy(seed, alternative, rounded):
    method, baseline = random_pair(seed, rounded=rounded)
    ours = wilcoxon(method, baseline, alternative=alternative)
    diffs = method - baseline
    if not np.any(diffs):
        pytest.skip("all differences zero; covered by the defined-result test")
    reference = sps.wilcoxon(diffs, alternative=alternative)
    assert ours.statistic == reference.statistic
    assert ours.pvalue == reference.pvalue
    assert ours.n == len(method)


def test_wilcoxon_seed_readme_example():
    # Nonzero d = [0.7, 0.7, -0.1, 0.4] (the tie at 0.0 is dropped); ranks of |d|:
    # 0.1 -> 1, 0.4 -> 2, 0.7 -> 3.5 each; R+ = 2 + 3.5 + 3.5 = 9.
    result = wilcoxon(SEED_METHOD, SEED_BASELINE)
    assert result.statistic == 9.0
    assert result.n == 5
    assert 0.05 < result.pvalue < 1.0


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_wilcoxon_zero_differences_defined(alternative):
    result = wilcoxon(SEED_BASELINE, SEED_BASELINE, alternative=alternative)
    assert result.statistic == 0.0
    assert result.pvalue == 1.0
    assert result.n == 5
