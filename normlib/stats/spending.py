"""Lan-DeMets alpha spending functions, one-sided level alpha (Lan & DeMets 1983).

Cumulative type-I error spent by information fraction t = n_k / n_K:

    obrien_fleming: alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))   (gsDesign ``sfLDOF``)
    pocock:         alpha(t) = alpha ln(1 + (e - 1) t)             (gsDesign ``sfLDPocock``)

both with alpha(0) = 0 and alpha(1) = alpha. Which to choose: docs/statistics.md, "Alpha
spending".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from normlib.stats._checks import FloatArray

SPENDINGS = ("obrien_fleming", "pocock")


def obrien_fleming(t: ArrayLike, alpha: float) -> FloatArray:
    """Lan-DeMets O'Brien-Fleming-type spending, one-sided alpha:
    alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)), alpha(0) = 0, alpha(1) = alpha."""
    fraction = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        spent = 2.0 * sps.norm.sf(sps.norm.isf(alpha / 2.0) / np.sqrt(fraction))
    return np.where(fraction > 0, spent, 0.0)


def pocock(t: ArrayLike, alpha: float) -> FloatArray:
    """Lan-DeMets Pocock-type spending: alpha(t) = alpha ln(1 + (e - 1) t)."""
    return alpha * np.log1p((math.e - 1.0) * np.asarray(t, dtype=float))


SPENDING_FUNCTIONS: dict[str, Callable[[ArrayLike, float], FloatArray]] = {
    "obrien_fleming": obrien_fleming,
    "pocock": pocock,
}


def check_spending(spending: str) -> str:
    """``spending`` if it names a spending function, else ValueError."""
    if spending not in SPENDINGS:
        raise ValueError(f"spending must be one of {', '.join(SPENDINGS)} (got {spending!r})")
    return spending
