"""normlib.stats.recursion: the crossing probabilities reproduce published constants."""

import numpy as np
import pytest
from scipy import optimize

from normlib.stats.recursion import crossing_probabilities

# Classical constant-shape boundaries, Jennison & Turnbull (2000), "Group Sequential Methods
# with Applications to Clinical Trials", Table 2.1 (Pocock C_P) and Table 2.3 (O'Brien &
# Fleming C_B), two-sided alpha = 0.05 (= one-sided 0.025 to the digits shown).
JT_POCOCK = {2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
JT_OBF = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_recursion_reproduces_jennison_turnbull_constants(k):
    looks = list(range(2, 2 * k + 1, 2))

    def level(c, shape):
        return crossing_probabilities(looks, c * shape)[0].sum() - 0.025

    flat = np.ones(k)
    obf = np.sqrt(k / np.arange(1, k + 1))
    assert optimize.brentq(level, 1, 4, args=(flat,)) == pytest.approx(JT_POCOCK[k], abs=6e-4)
    assert optimize.brentq(level, 1, 4, args=(obf,)) == pytest.approx(JT_OBF[k], abs=6e-4)
