"""normlib.stats.meta against statsmodels' combine_effects (DerSimonian-Laird, HKSJ), a
hand-worked example, the truncations statsmodels does not make, and input errors."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.meta_analysis import combine_effects

from normlib.stats.meta import meta_analysis

TOL = 1e-12
# statsmodels takes square roots of its untruncated (negative) DL tau^2 in those cases
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")


def settings(seed, k=None, spread=1.0):
    """Per-setting mean differences and the variances of those means."""
    rng = np.random.default_rng(seed)
    k = k or int(rng.integers(2, 12))
    sd = rng.uniform(0.2, 2.0, k)
    n = rng.integers(2, 10, k)
    means = rng.normal(0.5, spread, k)
    return means, sd**2 / n


SEEDS = range(30)


def case(seed):
    return settings(seed, spread=(0.1, 1.0, 3.0)[seed % 3])


def test_the_cases_cover_every_branch():
    fits = [combine_effects(*case(seed), method_re="dl", use_t=True) for seed in SEEDS]
    assert any(fit.tau2 < 0 for fit in fits)  # DL's tau^2 truncated at 0
    assert any(fit.tau2 > 0 and fit.scale_hksj_re >= 1 for fit in fits)  # HKSJ scale used
    assert any(fit.tau2 > 0 and fit.scale_hksj_re < 1 for fit in fits)  # max(1, q) applies


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_statsmodels_dl_and_hksj(seed):
    means, variances = case(seed)
    ref = combine_effects(means, variances, method_re="dl", use_t=True)
    ours = meta_analysis(means, variances, alternative="two-sided", confidence=0.95)
    assert abs(ours.fixed - ref.mean_effect_fe) <= TOL
    assert abs(ours.fixed_se - ref.sd_eff_w_fe) <= TOL
    assert abs(ours.q - ref.q) <= 1e-9 * max(1.0, ref.q)
    assert abs(ours.tau2 - max(0.0, ref.tau2)) <= TOL  # statsmodels lets DL's tau^2 go negative
    assert abs(ours.i2 - max(0.0, ref.i2)) <= TOL
    fe_ci, re_ci, _, re_wls_ci = ref.conf_int(alpha=0.05, use_t=True)
    if ref.tau2 >= 0:
        assert abs(ours.random - ref.mean_effect_re) <= TOL
        assert abs(ours.random_se - ref.sd_eff_w_re) <= TOL
        assert abs(ours.hksj_scale - ref.scale_hksj_re) <= 1e-9
        # statsmodels' WLS scale is not truncated; ours is max(1, q)
        expected = re_wls_ci if ref.scale_hksj_re >= 1 else re_ci
        np.testing.assert_allclose([ours.ci_low, ours.ci_high], expected, rtol=0, atol=1e-10)
    else:  # tau^2 truncated to 0: the random-effects estimate is the fixed effect
        assert ours.random == pytest.approx(ref.mean_effect_fe, abs=TOL)
    # the fixed-effect interval is normal (statsmodels' conf_int with use_t=False)
    fe_normal = ref.conf_int(alpha=0.05, use_t=False)[0]
    np.testing.assert_allclose([ours.fixed_low, ours.fixed_high], fe_normal, rtol=0, atol=1e-10)
    assert ref.k == ours.k and fe_ci is not None


def test_hand_worked_example():
    # y = (1, 2, 4), v = (1, 1, 1): w = 1, mu_FE = 7/3, Q = (16 + 1 + 25) / 9 = 14/3,
    # c = 3 - 3/3 = 2, tau^2 = (14/3 - 2) / 2 = 4/3, I^2 = (14/3 - 2) / (14/3) = 4/7,
    # w* = 3/7 each: mu_RE = 7/3, se = sqrt(7/9); q = (3/7)(42/9) / 2 = 1 -> se_HKSJ = sqrt(7/9)
    result = meta_analysis([1.0, 2.0, 4.0], [1.0, 1.0, 1.0], alternative="greater")
    assert result.fixed == pytest.approx(7 / 3, abs=TOL)
    assert result.q == pytest.approx(14 / 3, abs=TOL)
    assert result.tau2 == pytest.approx(4 / 3, abs=TOL)
    assert result.i2 == pytest.approx(4 / 7, abs=TOL)
    assert result.random == pytest.approx(7 / 3, abs=TOL)
    assert result.hksj_scale == pytest.approx(1.0, abs=TOL)
    assert result.hksj_se == pytest.approx(math.sqrt(7 / 9), abs=TOL)
    t = (7 / 3) / math.sqrt(7 / 9)
    assert result.statistic == pytest.approx(t, abs=TOL)
    assert result.pvalue == pytest.approx(sps.t.sf(t, 2), abs=TOL)
    assert result.ci_low == pytest.approx(7 / 3 - sps.t.ppf(0.95, 2) * math.sqrt(7 / 9), abs=TOL)
    assert math.isinf(result.ci_high)
    assert sum(result.weights) == pytest.approx(1.0, abs=TOL)


def test_homogeneous_settings_truncate_tau2_and_i2_at_zero():
    result = meta_analysis([1.0, 1.1, 0.9, 1.05], [1.0, 2.0, 1.5, 1.0])
    assert result.q < 3 and result.tau2 == 0.0 and result.i2 == 0.0
    assert result.random == pytest.approx(result.fixed, abs=TOL)
    # q < 1 here: HKSJ falls back to the classical random-effects standard error
    assert result.hksj_scale < 1 and result.hksj_se == pytest.approx(result.random_se, abs=TOL)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_pvalue_and_bound_agree(alternative):
    means, variances = settings(3, k=6)
    result = meta_analysis(means - 0.5, variances, alternative=alternative, confidence=0.9)
    student = sps.t(5)
    if alternative == "greater":
        assert result.pvalue == pytest.approx(student.sf(result.statistic), abs=TOL)
        assert (result.ci_low > 0) == (result.pvalue < 0.1)
    elif alternative == "less":
        assert result.pvalue == pytest.approx(student.cdf(result.statistic), abs=TOL)
        assert (result.ci_high < 0) == (result.pvalue < 0.1)
    else:
        assert result.pvalue == pytest.approx(2 * student.sf(abs(result.statistic)), abs=TOL)
        assert (result.ci_low > 0 or result.ci_high < 0) == (result.pvalue < 0.1)


@pytest.mark.parametrize(
    "means, variances, message",
    [
        ([1.0], [1.0], "at least 2 settings"),
        ([1.0, 2.0], [1.0], "means has 2 values but variances has 1"),
        ([1.0, 2.0], [1.0, 0.0], r"variances\[1\] is 0.0"),
        ([1.0, math.nan], [1.0, 1.0], r"means\[1\] is nan"),
    ],
)
def test_bad_input_is_named(means, variances, message):
    with pytest.raises(ValueError, match=message):
        meta_analysis(means, variances)
