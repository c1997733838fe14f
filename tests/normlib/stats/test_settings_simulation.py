"""The pooled test across settings is honest: simulated under the null with heterogeneous
settings (few seeds, unequal within-setting sds, tau^2 > 0) its type-I error stays at or below
alpha within Monte Carlo error and its interval covers near its level; the simulation's
formulas are those of normlib.stats on the same numbers. bench/across.py runs more studies."""

import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats.meta import meta_analysis
from normlib.stats.settings_simulation import _hksj, simulate_settings

ALPHA = 0.05
STUDIES = 20_000
# (within-setting sds, seeds per setting, tau): the DESIGN's hard cases
HETEROGENEOUS = [
    ((0.2, 0.5, 1.0, 2.0, 4.0), 3, 1.0),  # sds 20x apart, 3 seeds, settings differ
    ((0.1, 0.1, 0.1, 0.1, 3.0), 3, 0.3),  # four settings whose seeds agree by chance-like
    ((0.5, 2.0), 3, 0.5),  # K = 2: one degree of freedom
    ((0.3, 1.0, 3.0), 3, 1.0),
]


@pytest.mark.parametrize("sds, seeds, tau", HETEROGENEOUS)
def test_pooled_t_type_one_error_is_at_most_alpha(sds, seeds, tau):
    result = simulate_settings(sds, seeds, tau, effect=0.0, alpha=ALPHA, n_studies=STUDIES)
    rate, se = result.rejection["pooled_t"], result.mc_se["pooled_t"]
    assert rate <= ALPHA + 3 * se, (rate, se)


@pytest.mark.parametrize("sds, seeds, tau", HETEROGENEOUS)
def test_pooled_t_interval_covers_near_its_level(sds, seeds, tau):
    result = simulate_settings(sds, seeds, tau, effect=0.7, alpha=ALPHA, n_studies=STUDIES,
                               seed=1)  # fmt: skip
    se = np.sqrt(0.95 * 0.05 / STUDIES)
    for name in ("pooled_t_bound", "pooled_t_interval"):
        coverage = result.coverage[name]
        assert 0.95 - 3 * se <= coverage <= 0.995, (name, coverage)


def test_homogeneous_settings_make_the_pooled_t_exact():
    result = simulate_settings((1.0,) * 5, 4, 0.0, alpha=ALPHA, n_studies=STUDIES, seed=2)
    assert abs(result.rejection["pooled_t"] - ALPHA) <= 3 * result.mc_se["pooled_t"]
    assert abs(result.coverage["pooled_t_interval"] - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / STUDIES)


def test_the_simulation_catches_the_tests_that_are_not_honest():
    # Where settings differ (tau > 0), a t-test over all (setting, seed) pairs, the fixed effect
    # and DerSimonian-Laird's z-test reject a true null far more often than alpha; HKSJ on
    # variances from 3 seeds does too (why the one-sample t over the means is the test of record)
    result = simulate_settings(*HETEROGENEOUS[0], alpha=ALPHA, n_studies=STUDIES)
    for name in ("all_pairs_t", "fixed_z", "dl_z", "hksj"):
        assert result.rejection[name] > ALPHA + 3 * result.mc_se[name], name


def test_simulation_formulas_equal_normlib_on_the_same_numbers():
    rng = np.random.default_rng(0)
    means = rng.normal(0.3, 1.0, (50, 6))
    variances = rng.uniform(0.05, 1.0, (50, 6))
    random, classical, hksj_se, fixed, fixed_se = _hksj(means, variances)
    for row in range(50):
        reference = meta_analysis(means[row], variances[row])
        assert abs(random[row] - reference.random) <= 1e-12
        assert abs(classical[row] - reference.random_se) <= 1e-12
        assert abs(hksj_se[row] - reference.hksj_se) <= 1e-12
        assert abs(fixed[row] - reference.fixed) <= 1e-12
        assert abs(fixed_se[row] - reference.fixed_se) <= 1e-12
    t = sps.ttest_1samp(means, 0.0, axis=1, alternative="greater").statistic
    assert np.allclose(t, means.mean(axis=1) / (means.std(axis=1, ddof=1) / np.sqrt(6)))


def test_same_seed_same_result_and_input_errors():
    assert simulate_settings((1.0, 2.0), 3, 0.5, n_studies=500, seed=4) == simulate_settings(
        (1.0, 2.0), 3, 0.5, n_studies=500, seed=4)
    with pytest.raises(ValueError, match="at least 2 within-setting sds"):
        simulate_settings((1.0,), 3, 0.5)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        simulate_settings((1.0, 1.0), 3, -1.0)
    with pytest.raises(ValueError, match="seeds must be an integer >= 2"):
        simulate_settings((1.0, 1.0), 1, 0.0)
