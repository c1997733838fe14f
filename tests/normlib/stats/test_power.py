"""normlib.stats.power: the power formula, the known seed counts, bad arguments."""

import math

import pytest
from scipy import stats as sps

from normlib.stats.power import power, seeds_needed

ALTERNATIVES = ("greater", "less", "two-sided")


def test_seeds_needed_known_value():
    assert seeds_needed(0.5) == 27
    assert power(27, 0.5) >= 0.8 > power(26, 0.5)


def test_power_formula_and_null():
    n, d = 12, 0.7
    critical = sps.t.ppf(0.95, n - 1)
    expected = 1 - sps.nct.cdf(critical, n - 1, d * math.sqrt(n))
    assert power(n, d) == pytest.approx(expected, abs=1e-12)
    assert power(n, -d, alternative="less") == pytest.approx(expected, abs=1e-12)
    two_sided_critical = sps.t.ppf(0.975, n - 1)
    expected_two_sided = (
        1
        - sps.nct.cdf(two_sided_critical, n - 1, d * math.sqrt(n))
        + sps.nct.cdf(-two_sided_critical, n - 1, d * math.sqrt(n))
    )
    assert power(n, d, alternative="two-sided") == pytest.approx(expected_two_sided, abs=1e-12)
    for alternative in ALTERNATIVES:
        assert power(n, 0.0, alpha=0.05, alternative=alternative) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("effect_size", "alternative", "alpha", "target"),
    [
        (0.8, "greater", 0.05, 0.8),
        (0.3, "greater", 0.01, 0.9),
        (-0.6, "less", 0.05, 0.8),
        (0.5, "two-sided", 0.05, 0.8),
        (-1.5, "two-sided", 0.05, 0.95),
    ],
)
def test_seeds_needed_is_smallest_n(effect_size, alternative, alpha, target):
    n = seeds_needed(effect_size, alpha=alpha, power=target, alternative=alternative)
    by_scan = next(
        k for k in range(2, 10_000) if power(k, effect_size, alpha, alternative) >= target
    )
    assert n == by_scan


def test_seeds_needed_two_sided_known_value():
    # d_z = 0.5, alpha 0.05 two-sided, power 0.8: the usual table value is 34.
    assert seeds_needed(0.5, alternative="two-sided") == 34


def test_seeds_needed_returns_none_beyond_max_n():
    assert seeds_needed(0.1, max_n=50) is None
    assert seeds_needed(0.5, max_n=27) == 27
    assert seeds_needed(0.5, max_n=26) is None


def test_power_stays_finite_for_large_n():
    # scipy's nct.cdf returns NaN far in the lower tail; the power must not.
    for n in (3000, 5000, 10_000):
        assert power(n, 0.5, alternative="two-sided") == 1.0
        assert 0.0 <= power(n, 0.5, alternative="less") < 1e-12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"effect_size": 0.0}, r"effect_size must be > 0.*other way"),
        ({"effect_size": -0.5}, r"effect_size must be > 0.*other way"),
        ({"effect_size": 0.5, "alternative": "less"}, r"effect_size must be < 0"),
        ({"effect_size": 0.0, "alternative": "two-sided"}, r"effect_size must be nonzero"),
        ({"effect_size": math.nan}, r"effect_size must be finite"),
        ({"effect_size": 0.5, "alpha": 0.0}, r"alpha"),
        ({"effect_size": 0.5, "alpha": 1.0}, r"alpha"),
        ({"effect_size": 0.5, "power": 1.0}, r"power"),
        ({"effect_size": 0.5, "power": 0.0}, r"power"),
        ({"effect_size": 0.5, "alternative": "up"}, r"'greater', 'less', 'two-sided'"),
        ({"effect_size": 0.5, "max_n": 1}, r"max_n"),
    ],
)
def test_seeds_needed_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        seeds_needed(**kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 0.5), r"n must be an integer >= 2"),
        ((2.5, 0.5), r"n must be an integer >= 2"),
        ((10, math.inf), r"effect_size must be finite"),
        ((10, 0.5, 1.2), r"alpha"),
        ((10, 0.5, 0.05, "sideways"), r"alternative"),
    ],
)
def test_power_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        power(*args)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_power_equals_scipys_distributions_bit_for_bit(alternative):
    """power() calls the ufuncs behind scipy.stats' t.ppf and nct.sf: the same numbers."""
    for n in (2, 3, 5, 10, 27, 100, 1000, 10_000):
        for effect_size in (0.01, 0.2, 0.5, 1.0, 3.0, -0.5, -2.0, 40.0):
            for alpha in (0.01, 0.05, 0.2):
                df, nc = n - 1, effect_size * math.sqrt(n)
                if alternative == "two-sided":
                    q = sps.t.ppf(1 - alpha / 2, df)
                    expected = min(1.0, sps.nct.sf(q, df, nc) + sps.nct.sf(q, df, -nc))
                else:
                    sign = 1.0 if alternative == "greater" else -1.0
                    expected = sps.nct.sf(sps.t.ppf(1 - alpha, df), df, sign * nc)
                assert power(n, effect_size, alpha, alternative) == float(expected), (
                    n, effect_size, alpha)
