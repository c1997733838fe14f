"""Crossing probabilities of the canonical z process: the Armitage-McPherson-Rowe recursion.

At looks with information I_k = n_k (seeds), S_k = Z_k sqrt(I_k) has independent increments
S_k - S_{k-1} ~ N(theta (I_k - I_{k-1}), I_k - I_{k-1}), theta = mean / sd (Jennison &
Turnbull 2000, ch. 3). The sub-density of Z_k on the continuation region (a_k, b_k) is

    f_k(z) = int f_{k-1}(u) sqrt(I_k / D) phi((z sqrt(I_k) - u sqrt(I_{k-1}) - theta D)
             / sqrt(D)) du,     D = I_k - I_{k-1},

integrated by Simpson's rule on the grid of Jennison & Turnbull (2000, sec. 19.2; r = 32
points per unit); Armitage, McPherson & Rowe (1969). See docs/statistics.md, "The recursion".
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from normlib.stats._checks import FloatArray, check_looks, check_real

_GRID_R = 32


def _grid(mean: float, low: float, high: float) -> tuple[FloatArray, FloatArray]:
    """Points and Simpson weights on (low, high) for a density centred at ``mean`` (J&T 19.2)."""
    r = _GRID_R
    i = np.arange(1, 6 * r, dtype=float)
    x = np.where(
        i < r,
        mean - 3.0 - 4.0 * np.log(r / i),
        np.where(i <= 5 * r, mean - 3.0 + 3.0 * (i - r) / (2 * r),
                 mean + 3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1e-300))),
    )
    inside = x[(x > low) & (x < high)]
    points = [inside]
    if low > x[0]:
        points.insert(0, np.array([low]))
    if high < x[-1]:
        points.append(np.array([high]))
    x = np.concatenate(points)
    if x.size < 2:  # continuation region narrower than the grid spacing, or empty
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            return np.zeros(0), np.zeros(0)
        x = np.array([low, high])
    z = np.empty(2 * x.size - 1)
    z[0::2] = x
    z[1::2] = 0.5 * (x[:-1] + x[1:])
    d = np.diff(x)
    w = np.zeros_like(z)
    w[0:-1:2] += d / 6.0
    w[2::2] += d / 6.0
    w[1::2] = 4.0 * d / 6.0
    return z, w


class Walk:
    """Sub-density of Z_k on the continuation region, advanced look by look."""

    def __init__(self, info: ArrayLike, theta: float) -> None:
        self.info = np.asarray(info, dtype=float)
        self.sqrt_info = np.sqrt(self.info)
        self.theta = theta
        self.k = -1  # last look whose density is held
        self.z: FloatArray = np.zeros(0)
        self.h: FloatArray = np.zeros(0)  # Simpson weight x sub-density at the points z

    def _conditional(self, k: int) -> tuple[FloatArray, float]:
        """Mean of S_k given the held Z_{k-1} grid, and the increment's sd."""
        d = self.info[k] - self.info[k - 1]
        return self.z * self.sqrt_info[k - 1] + self.theta * d, math.sqrt(d)

    def upper(self, k: int, b: float) -> float:
        """P(reach look k, Z_k >= b); k must be the next look."""
        if k == 0:
            return float(sps.norm.sf(b - self.theta * self.sqrt_info[0]))
        shift, sd = self._conditional(k)
        return float(self.h @ sps.norm.sf((b * self.sqrt_info[k] - shift) / sd))

    def lower(self, k: int, a: float) -> float:
        """P(reach look k, Z_k < a)."""
        if k == 0:
            return float(sps.norm.cdf(a - self.theta * self.sqrt_info[0]))
        shift, sd = self._conditional(k)
        return float(self.h @ sps.norm.cdf((a * self.sqrt_info[k] - shift) / sd))

    def advance(self, k: int, a: float, b: float) -> None:
        """Hold the sub-density of Z_k on the continuation region (a, b)."""
        mean = self.theta * self.sqrt_info[k]
        z, w = _grid(mean, a, b)
        if k == 0:
            density = sps.norm.pdf(z - mean)
        elif z.size == 0 or self.h.size == 0:
            density = np.zeros(z.size)
        else:
            shift, sd = self._conditional(k)
            kernel = sps.norm.pdf((z[:, None] * self.sqrt_info[k] - shift[None, :]) / sd)
            density = kernel @ self.h * (self.sqrt_info[k] / sd)
        self.z, self.h, self.k = z, w * density, k


def crossing_probabilities(
    looks: ArrayLike,
    upper: ArrayLike,
    lower: ArrayLike | None = None,
    effect: float = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """First-exit probabilities of the canonical z process observed at ``looks``.

    Z_k ~ N(effect sqrt(n_k), 1) with Corr(Z_i, Z_j) = sqrt(n_i / n_j), i <= j; effect is the
    standardized per-seed effect (mean / sd). ``upper`` b_k and ``lower`` a_k (default -inf)
    are z-scale boundaries; the study continues while a_k < Z_k < b_k. Returns two arrays:
    P(stop first at k with Z_k >= b_k) and P(stop first at k with Z_k <= a_k).
    """
    checked = check_looks(looks)
    b = np.asarray(upper, dtype=float)
    a = np.full(len(checked), -np.inf) if lower is None else np.asarray(lower, dtype=float)
    if b.shape != (len(checked),) or a.shape != (len(checked),):
        raise ValueError("upper and lower must have one value per look")
    a = np.minimum(a, b)
    walk = Walk(np.asarray(checked, dtype=float), check_real("effect", effect))
    up = np.zeros(len(checked))
    down = np.zeros(len(checked))
    for k in range(len(checked)):
        up[k] = walk.upper(k, b[k])
        down[k] = walk.lower(k, a[k])
        if k < len(checked) - 1:
            walk.advance(k, a[k], b[k])
    return up, down
