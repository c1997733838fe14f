"""normlib.stats.multiplicity: Holm for fixed arms (textbook values, an independent loop) and
for sequential arms."""

import math

import numpy as np
import pytest

from normlib.stats.design import SequentialDesign
from normlib.stats.multiplicity import holm, holm_sequential

LOOKS = (5, 10, 15, 20)


def test_holm_textbook_example():
    # Sorted: 0.005, 0.01, 0.03, 0.04 with m = 4 multipliers 4, 3, 2, 1:
    #   4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, 1 * 0.04 = 0.04;
    # running maximum 0.02, 0.03, 0.06, 0.06, put back in input order.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)


def holm_by_loop(pvalues):
    """Step-down Holm written as a plain loop, independently of normlib."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda index: pvalues[index])
    adjusted = [0.0] * m
    running_max = 0.0
    for rank, index in enumerate(order):
        running_max = max(running_max, (m - rank) * pvalues[index])
        adjusted[index] = min(1.0, running_max)
    return adjusted


@pytest.mark.parametrize("seed", range(20))
def test_holm_matches_loop_and_is_monotone(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 15))
    pvalues = rng.uniform(0, 1, m) ** 3  # skewed towards small p-values
    if m > 2:
        pvalues[1] = pvalues[0]  # a tie
    adjusted = holm(pvalues)
    np.testing.assert_allclose(adjusted, holm_by_loop(list(pvalues)), rtol=0, atol=1e-15)
    assert np.all((adjusted >= 0) & (adjusted <= 1))
    assert np.all(adjusted >= pvalues)
    in_sorted_order = adjusted[np.argsort(pvalues, kind="stable")]
    assert np.all(np.diff(in_sorted_order) >= 0)


def test_holm_edge_cases():
    assert holm([]).shape == (0,)
    np.testing.assert_array_equal(holm([0.2]), [0.2])
    np.testing.assert_array_equal(holm([0.0, 1.0]), [0.0, 1.0])
    np.testing.assert_array_equal(holm([0.6, 0.9]), [1.0, 1.0])


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5])
def test_holm_rejects_invalid_pvalues(bad):
    with pytest.raises(ValueError, match=r"pvalues\[1\]"):
        holm([0.01, bad, 0.2])


def test_holm_sequential():
    rng = np.random.default_rng(3)
    designs = [SequentialDesign(LOOKS, 0.05 / 3, "obrien_fleming") for _ in range(3)]
    decisions = []
    for effect in (2.0, 0.0, -1.0):
        d = rng.normal(effect, 1.0, 20)
        for n in LOOKS:
            r = designs[0].decide(d[:n])
            if r.stopped:
                break
        decisions.append(r)
    adjusted, rejected = holm_sequential(decisions, designs, 0.05)
    assert rejected.tolist() == [True, False, False]
    assert np.allclose(adjusted, holm([r.pvalue for r in decisions]))
    with pytest.raises(ValueError, match="alpha / m"):
        holm_sequential(decisions, [SequentialDesign(LOOKS, 0.05)] * 3, 0.05)
