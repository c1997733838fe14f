"""normlib.stats.boundaries: z boundaries vs published tables and an independent computation,
the t boundaries, bad input."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats.boundaries import boundaries
from normlib.stats.spending import obrien_fleming, pocock

# Lan-DeMets spending boundaries, one-sided alpha = 0.025, K equally spaced looks, z scale.
# O'Brien-Fleming type (gsDesign ``sfLDOF``, test.type = 1; also rpact ``asOF``), the
# values printed by gsDesign for k = 2..5. Pocock type (``sfLDPocock``): the first look is
# closed form, Phi^-1(1 - alpha ln(1 + (e - 1) / K)); the later looks are checked by an
# independent multivariate-normal computation below (test_boundaries_independent_mvn).
LDOF = {
    2: [2.96, 1.97],
    3: [3.71, 2.51, 1.99],
    4: [4.33, 2.96, 2.36, 2.01],
    5: [4.88, 3.36, 2.68, 2.29, 2.03],
}
LDPOCOCK = {
    2: [2.16, 2.20],
    3: [2.28, 2.29, 2.30],
    4: [2.37, 2.37, 2.36, 2.35],
    5: [2.44, 2.43, 2.41, 2.40, 2.39],
}

LOOKS = (5, 10, 15, 20)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_lan_demets_boundaries_match_tables(k):
    looks = [10 * i for i in range(1, k + 1)]
    of = boundaries(looks, 0.025, "obrien_fleming").z
    pk = boundaries(looks, 0.025, "pocock").z
    assert np.round(of, 2).tolist() == LDOF[k]
    assert np.round(pk, 2).tolist() == LDPOCOCK[k]
    first = sps.norm.isf(0.025 * math.log(1 + (math.e - 1) / k))
    assert pk[0] == pytest.approx(first, abs=1e-9)


def test_boundaries_independent_mvn():
    """Spending per look checked with scipy's multivariate normal cdf (Corr = sqrt(t_i/t_j))."""
    looks = [4, 8, 12]
    for spending, fn in (("obrien_fleming", obrien_fleming), ("pocock", pocock)):
        b = np.asarray(boundaries(looks, 0.025, spending).z)
        t = np.asarray(looks) / looks[-1]
        cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
        mvn = sps.multivariate_normal(np.zeros(3), cov, seed=1, abseps=1e-7, releps=1e-7)
        none_crossed = mvn.cdf(b)
        assert 1 - none_crossed == pytest.approx(fn(1.0, 0.025), abs=2e-5)
        two = sps.multivariate_normal(np.zeros(2), cov[:2, :2], seed=1).cdf(b[:2])
        assert 1 - two == pytest.approx(float(fn(t[1], 0.025)), abs=2e-5)


def test_t_boundaries():
    b = boundaries(LOOKS, 0.05, "pocock")
    assert b.df == (4, 9, 14, 19)
    nominal = sps.t.isf(sps.norm.sf(b.z), b.df)
    assert np.allclose(b.t_nominal, nominal)
    assert b.t[0] == pytest.approx(b.t_nominal[0])  # exact at the first look
    assert all(c >= n for c, n in zip(b.t, b.t_nominal, strict=True))
    assert np.allclose(sps.t.sf(b.t, b.df), sps.norm.sf(b.z_effective))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"looks": [5, 5, 10]}, "strictly increasing"),
        ({"looks": [10, 5]}, "strictly increasing"),
        ({"looks": [5]}, "at least 2 looks"),
        ({"looks": [1, 5]}, "looks\\[0\\] must be >= 2"),
        ({"looks": [2.5, 5]}, "integers"),
        ({"looks": [5, 10], "alpha": 0.0}, "alpha must lie strictly between 0 and 1"),
        ({"looks": [5, 10], "alpha": 1.5}, "alpha must lie strictly between 0 and 1"),
        ({"looks": [5, 10], "spending": "haybittle"}, "obrien_fleming, pocock"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        boundaries(**kwargs)
