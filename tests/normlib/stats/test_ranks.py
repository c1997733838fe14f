"""normlib.stats.ranks: Friedman's test against scipy, average ranks and Nemenyi's critical
difference against autorank, Demsar's table, ties and input errors."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from normlib.stats.ranks import friedman, nemenyi_cd, setting_ranks

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # autorank imports seaborn/matplotlib helpers
    import autorank


def matrix(seed, rounded=False, min_settings=2):
    """(settings x arms) scores with arm effects, K and k drawn per seed."""
    rng = np.random.default_rng(seed)
    n_settings, n_arms = int(rng.integers(min_settings, 15)), int(rng.integers(3, 8))
    scores = rng.normal(size=(n_settings, n_arms)) + rng.uniform(0, 1.5) * np.arange(n_arms)
    return np.round(scores) if rounded else scores


@pytest.mark.parametrize("rounded", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_statistic_and_pvalue_match_scipy(seed, rounded):
    scores = matrix(seed, rounded)
    ours = friedman(scores)
    reference = sps.friedmanchisquare(*scores.T)
    if not np.isfinite(reference.statistic):  # every setting ties every arm: scipy's 0 / 0
        assert ours.statistic == 0 and ours.pvalue == 1
        return
    assert abs(ours.statistic - reference.statistic) <= 1e-10
    assert abs(ours.pvalue - reference.pvalue) <= 1e-12


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("seed", range(8))
def test_mean_ranks_and_cd_match_autorank(seed, higher_is_better):
    scores = matrix(seed + 100, rounded=seed % 2 == 1, min_settings=5)  # autorank needs 5
    frame = pd.DataFrame(scores, columns=[f"arm{j}" for j in range(scores.shape[1])])
    order = "descending" if higher_is_better else "ascending"
    result = autorank.autorank(frame, alpha=0.05, order=order, force_mode="nonparametric")
    assert result.omnibus == "friedman" and result.posthoc == "nemenyi"
    ours = friedman(scores, higher_is_better=higher_is_better)
    theirs = result.rankdf["meanrank"].reindex(frame.columns).to_numpy()
    np.testing.assert_allclose(ours.mean_ranks, theirs, rtol=0, atol=1e-12)
    # autorank's studentized range is statsmodels' interpolated table (qsturng), ours scipy's
    # exact quantile: they agree to about 1e-5
    assert abs(ours.critical_difference - result.cd) <= 1e-4 * result.cd
    assert abs(ours.pvalue - result.pvalue) <= 1e-12


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850),
                                  (7, 2.949), (8, 3.031), (9, 3.102), (10, 3.164)])  # fmt: skip
def test_critical_difference_uses_demsars_table(k, q):
    # Demsar (2006), Table 5a: q_0.05 for the Nemenyi test to 3 decimals (his 2.949 for k = 7
    # is 2.9483 rounded up); CD = q sqrt(k (k + 1) / (6 N))
    assert nemenyi_cd(k, 10) / math.sqrt(k * (k + 1) / 60) == pytest.approx(q, abs=1e-3)


def test_ties_share_their_mean_rank_and_rank_one_is_best():
    ranks = setting_ranks([[0.9, 0.8, 0.9], [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(ranks, [[1.5, 3, 1.5], [3, 2, 1]])
    np.testing.assert_array_equal(setting_ranks([[1, 2, 3]], higher_is_better=False), [[1, 2, 3]])


def test_all_ties_are_no_evidence():
    result = friedman(np.ones((4, 3)))
    assert result.statistic == 0 and result.pvalue == 1 and result.mean_ranks == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(
    "scores, message",
    [
        (np.ones((4, 2)), "at least 3 arms"),
        (np.ones((1, 3)), "at least 2 settings"),
        (np.ones(3), "matrix"),
        ([[1.0, math.nan, 2.0], [1.0, 2.0, 3.0]], r"scores\[0, 1\] is nan"),
    ],
)
def test_bad_input_is_named(scores, message):
    with pytest.raises(ValueError, match=message):
        friedman(scores)
