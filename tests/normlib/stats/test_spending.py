"""normlib.stats.spending: the Lan-DeMets spending functions at known points."""

import pytest
from scipy import stats as sps

from normlib.stats.spending import obrien_fleming, pocock


def test_spending_functions():
    assert float(obrien_fleming(1.0, 0.025)) == pytest.approx(0.025)
    assert float(pocock(1.0, 0.025)) == pytest.approx(0.025)
    assert float(obrien_fleming(0.0, 0.025)) == 0.0
    assert float(obrien_fleming(0.5, 0.025)) == pytest.approx(
        2 * sps.norm.sf(2.241403 * 2**0.5), rel=1e-5
    )
