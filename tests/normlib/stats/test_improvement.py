"""normlib.stats.improvement: the probability of improvement against rliable's, its stratified
bootstrap against a plain loop that draws the same indices, and in distribution against
resamples scored by rliable's own metric.

rliable's interval routine (``rliable.library``) cannot run here: it needs arch < 8, which does
not import under pandas 3, and arch 8 refuses the ``random_state`` keyword rliable passes. So
its resampling scheme (each setting's runs resampled with replacement, the two algorithms
independently) is written out below as the reference, and each resample is scored with
``rliable.metrics.probability_of_improvement``."""

import math

import numpy as np
import pytest
from rliable import metrics

from normlib.stats.improvement import (
    improvement_interval,
    pair_scores,
    probability_of_improvement,
)


def runs(seed, n_runs=5, n_settings=4, rounded=False):
    """(runs x settings) score matrices of an arm and a baseline."""
    rng = np.random.default_rng(seed)
    baseline = rng.normal(90.0, 1.0, (n_runs, n_settings)) + rng.normal(0, 2, n_settings)
    arm = baseline + rng.normal(rng.uniform(-0.5, 1.0), 1.0, (n_runs, n_settings))
    if rounded:  # ties, as accuracies on a small test set have
        arm, baseline = np.round(arm), np.round(baseline)
    return arm, baseline


def columns(matrix):
    return [matrix[:, s] for s in range(matrix.shape[1])]


@pytest.mark.parametrize("rounded", [False, True])
@pytest.mark.parametrize("seed", range(15))
def test_probability_matches_rliable(seed, rounded):
    arm, baseline = runs(seed, n_runs=3 + seed % 5, rounded=rounded)
    ours = probability_of_improvement(columns(arm), columns(baseline))
    assert abs(ours - metrics.probability_of_improvement(arm, baseline)) <= 1e-12
    # lower is better: the improvement of the negated scores
    less = probability_of_improvement(columns(arm), columns(baseline), alternative="less")
    assert abs(less - metrics.probability_of_improvement(-arm, -baseline)) <= 1e-12


def test_identical_scores_give_one_half_and_ties_count_half():
    assert probability_of_improvement([[1.0, 2.0]], [[1.0, 2.0]]) == 0.5
    # pairs (2 vs 1) win, (2 vs 2) tie, (1 vs 1) tie, (1 vs 2) lose: (1 + .5 + .5 + 0) / 4
    np.testing.assert_array_equal(pair_scores([2.0, 1.0], [1.0, 2.0]), [[1, 0.5], [0.5, 0]])
    assert probability_of_improvement([[2.0, 1.0]], [[1.0, 2.0]]) == 0.5


def test_unequal_seeds_per_setting_average_each_settings_pairs():
    arm = [[3.0, 1.0, 2.0], [5.0]]
    baseline = [[2.0, 2.0, 0.0], [4.0, 6.0]]
    # setting 0: 3 beats all 3, 1 beats 0 only, 2 ties twice and beats 0: (3 + 1 + 2) / 9
    # setting 1: 5 beats 4, loses to 6: 1 / 2
    expected = (6 / 9 + 1 / 2) / 2
    assert probability_of_improvement(arm, baseline) == pytest.approx(expected, abs=1e-15)


def loop_bootstrap(arm, baseline, alternative, confidence, resamples, seed):
    """The stratified bootstrap as a loop: same index draws, scores counted pair by pair."""
    rng = np.random.default_rng(seed)
    draws = []
    for x, y in zip(arm, baseline, strict=True):
        draws.append((rng.integers(0, len(x), size=(resamples, len(x))),
                      rng.integers(0, len(y), size=(resamples, len(y)))))  # fmt: skip
    values = []
    for b in range(resamples):
        per_setting = []
        for (x, y), (ix, iy) in zip(zip(arm, baseline, strict=True), draws, strict=True):
            wins = 0.0
            for i in ix[b]:
                for j in iy[b]:
                    a, c = x[i], y[j]
                    better = a > c if alternative == "greater" else a < c
                    wins += 1.0 if better else 0.5 if a == c else 0.0
            per_setting.append(wins / (len(ix[b]) * len(iy[b])))
        values.append(sum(per_setting) / len(per_setting))
    low = (1 - confidence) / 2 * 100
    return np.percentile(values, [low, 100 - low])


@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize("seed", range(4))
def test_bootstrap_matches_a_loop_with_the_same_draws(seed, alternative):
    arm, baseline = runs(seed, n_runs=4, n_settings=3, rounded=seed % 2 == 1)
    arm_list, base_list = columns(arm), columns(baseline)
    arm_list[0] = arm_list[0][:3]  # unequal seeds in one setting
    ours = improvement_interval(arm_list, base_list, alternative, confidence=0.9, resamples=300,
                                seed=seed)  # fmt: skip
    expected = loop_bootstrap(arm_list, base_list, alternative, 0.9, 300, seed)
    assert abs(ours.ci_low - expected[0]) <= 1e-12 and abs(ours.ci_high - expected[1]) <= 1e-12
    assert ours.probability == probability_of_improvement(arm_list, base_list, alternative)


def rliable_scheme_interval(arm, baseline, resamples, rng, confidence=0.95):
    """rliable's StratifiedIndependentBootstrap draw (each (run, task) cell picks a run of
    its own task, the two matrices independently), scored by rliable's metric."""
    values = []
    n, tasks = arm.shape
    m = baseline.shape[0]
    for _ in range(resamples):
        ix = rng.integers(0, n, size=(n, tasks))
        iy = rng.integers(0, m, size=(m, tasks))
        values.append(metrics.probability_of_improvement(
            np.take_along_axis(arm, ix, axis=0), np.take_along_axis(baseline, iy, axis=0)))
    low = (1 - confidence) / 2 * 100
    return np.percentile(values, [low, 100 - low])


def test_interval_agrees_in_distribution_with_rliables_scheme():
    arm, baseline = runs(0, n_runs=5, n_settings=4, rounded=True)
    ours = improvement_interval(columns(arm), columns(baseline), resamples=2000, seed=0)
    theirs = rliable_scheme_interval(arm, baseline, 2000, np.random.default_rng(100))
    # two independent sets of 2,000 resamples: their percentiles differ by Monte Carlo error
    # (about 0.01 here)
    assert abs(ours.ci_low - theirs[0]) <= 0.04 and abs(ours.ci_high - theirs[1]) <= 0.04
    assert ours.ci_low <= ours.probability <= ours.ci_high


def test_fixed_seed_is_reproducible_and_the_seed_matters():
    arm, baseline = runs(7)
    first = improvement_interval(columns(arm), columns(baseline), resamples=500, seed=3)
    again = improvement_interval(columns(arm), columns(baseline), resamples=500, seed=3)
    other = improvement_interval(columns(arm), columns(baseline), resamples=500, seed=4)
    assert first == again and (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert len(first.per_setting) == 4 and math.isclose(
        sum(first.per_setting) / 4, first.probability, abs_tol=1e-15)


@pytest.mark.parametrize(
    "arm, baseline, kwargs, message",
    [
        ([[1.0]], [[1.0], [2.0]], {}, "arm has 1 settings but baseline has 2"),
        ([], [], {}, "at least one setting"),
        ([[]], [[1.0]], {}, "setting 0 has no score for the arm"),
        ([[1.0]], [[1.0]], {"alternative": "two-sided"}, "'greater' or 'less'"),
        ([[1.0]], [[1.0]], {"confidence": 1.0}, "confidence"),
        ([[1.0]], [[1.0]], {"resamples": 0}, "resamples"),
        ([[math.inf]], [[1.0]], {}, r"arm\[0\]\[0\] is inf"),
    ],
)
def test_bad_input_is_named(arm, baseline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        improvement_interval(arm, baseline, **kwargs)
