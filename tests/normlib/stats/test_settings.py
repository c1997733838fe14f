"""normlib.stats.settings: one arm across settings, each piece checked against scipy,
statsmodels or rliable on the same numbers, and the cases where a piece does not apply."""

import math

import numpy as np
import pytest
from rliable import metrics
from scipy import stats as sps
from statsmodels.stats.meta_analysis import combine_effects

from normlib.stats.settings import WILCOXON_FROM, across_settings

# statsmodels takes square roots of its untruncated (negative) DL tau^2 in some cases
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")


def study(seed, n_settings, n_seeds=4, effect=0.5):
    """Per-setting arm and baseline scores, paired by seed (a seed-shared component)."""
    rng = np.random.default_rng(seed)
    arm, baseline = [], []
    for s in range(n_settings):
        shared = rng.normal(80 + 5 * s, 2.0, n_seeds)
        baseline.append(shared + rng.normal(0, 0.5 + 0.3 * s, n_seeds))
        arm.append(shared + rng.normal(effect + rng.normal(0, 0.5), 0.5 + 0.3 * s, n_seeds))
    return arm, baseline


@pytest.mark.parametrize("seed", range(10))
def test_pieces_match_their_references(seed):
    arm, baseline = study(seed, n_settings=6)
    result = across_settings(arm, baseline, resamples=200, seed=1)
    diffs = [np.asarray(a) - np.asarray(b) for a, b in zip(arm, baseline, strict=True)]
    means = np.array([d.mean() for d in diffs])
    for test, a, b in zip(result.per_setting, arm, baseline, strict=True):
        reference = sps.ttest_rel(a, b, alternative="greater")
        assert abs(test.pvalue - reference.pvalue) <= 1e-12
    pooled = sps.ttest_1samp(means, 0.0, alternative="greater")
    assert abs(result.pooled.statistic - pooled.statistic) <= 1e-10
    assert abs(result.pooled.pvalue - pooled.pvalue) <= 1e-12
    assert abs(result.pooled.mean_diff - means.mean()) <= 1e-12
    variances = np.array([d.var(ddof=1) / d.size for d in diffs])
    np.testing.assert_allclose(result.variances, variances, rtol=1e-12, atol=0)
    meta = combine_effects(means, variances, method_re="dl")
    assert abs(result.meta.random - meta.mean_effect_re) <= 1e-12 or meta.tau2 < 0
    assert abs(result.meta.fixed - meta.mean_effect_fe) <= 1e-12
    wilcoxon = sps.wilcoxon(means, alternative="greater")
    assert abs(result.wilcoxon.pvalue - wilcoxon.pvalue) <= 1e-12
    assert abs(result.improvement.probability - metrics.probability_of_improvement(
        np.array(arm).T, np.array(baseline).T)) <= 1e-12


def test_pooled_bound_excludes_zero_exactly_when_the_pooled_test_rejects():
    for seed in range(20):
        arm, baseline = study(seed, n_settings=3, effect=0.3)
        pooled = across_settings(arm, baseline, resamples=50).pooled
        assert (pooled.ci_low > 0) == (pooled.pvalue < 0.05)


def test_lower_is_better_mirrors_higher_is_better():
    arm, baseline = study(3, n_settings=5)
    up = across_settings(arm, baseline, "greater", resamples=300)
    down = across_settings([-np.asarray(a) for a in arm], [-np.asarray(b) for b in baseline],
                           "less", resamples=300)  # fmt: skip
    assert down.pooled.pvalue == pytest.approx(up.pooled.pvalue, abs=1e-12)
    assert down.meta.pvalue == pytest.approx(up.meta.pvalue, abs=1e-12)
    assert down.improvement.probability == up.improvement.probability
    assert down.pooled.ci_high == pytest.approx(-up.pooled.ci_low, abs=1e-12)


def test_what_does_not_apply_is_none_and_says_why():
    arm, baseline = study(0, n_settings=1)
    one = across_settings(arm, baseline, resamples=50)
    assert one.pooled is None and one.meta is None and one.wilcoxon is None
    assert "one setting" in one.meta_note
    arm, baseline = study(0, n_settings=WILCOXON_FROM - 1)
    assert across_settings(arm, baseline, resamples=50).wilcoxon is None
    arm[1] = np.asarray(baseline[1]) + 0.25  # every seed differs by the same amount
    flat = across_settings(arm, baseline, resamples=50)
    assert flat.meta is None and "setting 1 has identical differences" in flat.meta_note
    assert flat.pooled is not None and math.isfinite(flat.pooled.pvalue)


@pytest.mark.parametrize(
    "arm, baseline, kwargs, message",
    [
        ([[1.0, 2.0]], [[1.0, 2.0], [1.0, 2.0]], {}, "arm has 1 settings but baseline has 2"),
        ([[1.0, 2.0], [1.0, 2.0]], [[1.0, 2.0], [1.0]], {}, "setting 1: method has 2 values"),
        ([[1.0]], [[1.0]], {}, "setting 0: need at least 2 pairs"),
        ([[1.0, 2.0]], [[1.0, 2.0]], {"alternative": "two-sided"}, "'greater' or 'less'"),
    ],
)
def test_bad_input_is_named(arm, baseline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        across_settings(arm, baseline, **kwargs)
