"""normlib.stats.design: the decision at each look, its p-value and bound, bad input."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats.design import SequentialDesign, decide

LOOKS = (5, 10, 15, 20)


def test_bad_design_input():
    with pytest.raises(ValueError, match="min_effect"):
        SequentialDesign(LOOKS, futility="conditional_power")
    with pytest.raises(ValueError, match="futility must be one of"):
        SequentialDesign(LOOKS, min_effect=1.0, futility="bayes")
    design = SequentialDesign(LOOKS)
    with pytest.raises(ValueError, match="7 differences is not a look"):
        design.decide(np.ones(7))
    with pytest.raises(ValueError, match="look 1 is at 10 seeds"):
        design.decide(np.ones(5), look_index=1)


def test_decisions_are_consistent():
    rng = np.random.default_rng(5)
    design = SequentialDesign(LOOKS, 0.05, "obrien_fleming", min_effect=0.5,
                              futility="conditional_power", futility_threshold=0.2)
    seen = set()
    for _ in range(60):
        d = rng.normal(rng.choice([-0.5, 0.0, 0.6, 1.5]), 1.0, 20)
        for k, n in enumerate(LOOKS):
            r = decide(d[:n], design)
            seen.add(r.action)
            stat = sps.ttest_1samp(d[:n], 0.0, alternative="greater")
            assert r.statistic == pytest.approx(stat.statistic)
            assert (r.action == "efficacy") == (r.statistic >= design.bounds.t[k])
            if r.action == "continue":
                assert r.pvalue is None and r.lower_bound is None
                continue
            assert (r.pvalue <= design.alpha) == (r.action == "efficacy")
            assert (r.lower_bound >= 0) == (r.action == "efficacy")
            if r.action == "futility":
                assert r.pvalue == 1.0 and r.conditional_power < 0.2
            break
    assert seen == {"continue", "efficacy", "futility", "max_seeds"}
    # the functional form builds the same design
    r = decide(np.full(5, 2.0) + np.arange(5) * 1e-3, LOOKS, alpha=0.05)
    assert r.action == "efficacy" and r.n == 5


def test_stagewise_pvalue_and_bound_reduce_to_fixed_test():
    """Efficacy at the first look: p = P0(Z_1 >= z*), the bound is the normal-theory bound."""
    design = SequentialDesign((10, 20), 0.05, "pocock")
    rng = np.random.default_rng(2)
    d = rng.normal(1.5, 1.0, 10)
    r = design.decide(d)
    assert r.action == "efficacy"
    assert r.pvalue == pytest.approx(sps.norm.sf(r.z), rel=1e-6)
    z_alpha = sps.norm.isf(0.05)
    assert r.lower_bound == pytest.approx((r.z - z_alpha) / math.sqrt(10) * r.sd_diff, rel=1e-4)
