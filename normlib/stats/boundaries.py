"""Group-sequential efficacy boundaries on the z and the paired-t scale, one-sided alpha.

z scale (known sd): b_k solves, by the recursion of ``normlib.stats.recursion``,

    P0(Z_1 < b_1, ..., Z_{k-1} < b_{k-1}, Z_k >= b_k) = alpha(t_k) - alpha(t_{k-1})

for a Lan-DeMets spending function alpha(t) (Jennison & Turnbull 2000, ch. 7).

t scale (sd estimated, df_k = n_k - 1): c_1 = t.isf(Phi_bar(b_1), df_1), exact at one look;
each later c_k is calibrated on simulated null paired-t processes so that the first
crossings at look k spend alpha(t_k) - alpha(t_{k-1}), never below the nominal
t.isf(Phi_bar(b_k), df_k). ``z_effective`` b'_k = Phi^-1(F_t(c_k; df_k)) is c_k on the z scale.
Why the calibration is needed and how it is done: docs/statistics.md, "Boundaries".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from scipy import stats as sps

from normlib.stats._checks import FloatArray, check_alpha, check_looks
from normlib.stats.recursion import Walk
from normlib.stats.spending import SPENDING_FUNCTIONS, check_spending

_CALIBRATION_STUDIES = 500_000
_CALIBRATION_SEED = 20_250_601
_CALIBRATION_MIN_CROSSINGS = 200


@dataclass(frozen=True)
class Boundaries:
    """Efficacy boundaries per look.

    ``z``: the canonical (known-sd) boundaries b_k, as in the published tables.
    ``t_nominal``: t.isf(Phi_bar(b_k), df_k), same nominal p-value (``nominal_p``).
    ``t``: the boundaries ``decide`` applies to the paired t statistic: calibrated on the
    exact null t process (``_calibrated_t``), >= t_nominal. ``z_effective``: their z
    equivalents, used for p-values, bounds, conditional power and planning.
    ``information`` t_k = n_k / n_K, ``cumulative_alpha`` alpha(t_k), ``df`` n_k - 1.
    """

    looks: tuple[int, ...]
    alpha: float
    spending: str
    information: tuple[float, ...]
    cumulative_alpha: tuple[float, ...]
    z: tuple[float, ...]
    nominal_p: tuple[float, ...]
    t_nominal: tuple[float, ...]
    t: tuple[float, ...]
    z_effective: tuple[float, ...]
    df: tuple[int, ...]


def t_to_z(statistic: ArrayLike, df: ArrayLike) -> FloatArray:
    """z with the same one-sided p-value: Phi^-1(F_t(T; df))."""
    z: FloatArray = sps.norm.isf(sps.t.sf(statistic, df))
    return z


def _efficacy_z(info: FloatArray, cumulative: FloatArray) -> FloatArray:
    """z boundaries spending ``cumulative`` alpha under theta = 0, efficacy only."""
    walk = Walk(info, 0.0)
    bounds = np.empty(info.size)
    spent_before = 0.0
    for k in range(info.size):
        target = float(cumulative[k] - spent_before)
        if target <= 1e-300:
            bounds[k] = np.inf
        elif k == 0:
            bounds[k] = float(sps.norm.isf(target))
        else:
            def excess(b: float, k: int = k, target: float = target) -> float:
                return walk.upper(k, b) - target

            low, high = -10.0, 40.0
            if excess(low) < 0:  # the whole remaining mass is less than the increment
                bounds[k] = -np.inf
            else:
                bounds[k] = optimize.brentq(excess, low, high, xtol=1e-10, rtol=1e-12)
        spent_before = float(cumulative[k])
        if k < info.size - 1:
            walk.advance(k, -np.inf, bounds[k])
    return bounds


def boundaries(
    looks: ArrayLike, alpha: float = 0.025, spending: str = "obrien_fleming"
) -> Boundaries:
    """Lan-DeMets efficacy boundaries for cumulative seed counts ``looks``, one-sided alpha.

    z boundaries by the exact recursion (module docstring); t boundaries with the same
    nominal p-value at n_k - 1 degrees of freedom. Raises ValueError for looks that are not
    strictly increasing integers, fewer than 2 looks, a first look below 2 seeds, alpha
    outside (0, 1) or an unknown spending name.
    """
    checked = check_looks(looks)
    alpha = check_alpha(alpha)
    spending = check_spending(spending)
    info = np.asarray(checked, dtype=float)
    fraction = info / info[-1]
    cumulative = np.asarray(SPENDING_FUNCTIONS[spending](fraction, alpha), dtype=float)
    cumulative[-1] = alpha
    z = _efficacy_z(info, cumulative)
    nominal = sps.norm.sf(z)
    df = np.asarray(checked) - 1
    t_nominal = sps.t.isf(nominal, df)
    t = np.asarray(_calibrated_t(checked, tuple(cumulative), tuple(t_nominal)))
    return Boundaries(
        looks=checked,
        alpha=alpha,
        spending=spending,
        information=tuple(float(f) for f in fraction),
        cumulative_alpha=tuple(float(c) for c in cumulative),
        z=tuple(float(b) for b in z),
        nominal_p=tuple(float(p) for p in nominal),
        t_nominal=tuple(float(c) for c in t_nominal),
        t=tuple(float(c) for c in t),
        z_effective=tuple(float(b) for b in t_to_z(t, df)),
        df=tuple(int(d) for d in df),
    )


def _null_t_process(looks: tuple[int, ...], n_studies: int, seed: int) -> FloatArray:
    """Paired t statistics at ``looks`` of ``n_studies`` simulated null studies (normal)."""
    rng = np.random.default_rng(seed)
    idx = np.asarray(looks) - 1
    n = np.asarray(looks, dtype=float)
    out = np.empty((n_studies, len(looks)))
    step = max(1, 4_000_000 // looks[-1])
    for start in range(0, n_studies, step):
        x = rng.standard_normal((min(step, n_studies - start), looks[-1]))
        s1 = np.cumsum(x, axis=1)[:, idx]
        s2 = np.cumsum(x * x, axis=1)[:, idx]
        mean = s1 / n
        var = np.maximum((s2 - n * mean * mean) / (n - 1), 1e-300)
        out[start:start + x.shape[0]] = mean / np.sqrt(var / n)
    return out


@functools.lru_cache(maxsize=64)
def _calibrated_t(
    looks: tuple[int, ...], cumulative: tuple[float, ...], t_nominal: tuple[float, ...]
) -> tuple[float, ...]:
    """t boundaries with the spending's increments under the exact null t process.

    Look 1 is exact: c_1 = t_nominal_1. At a later look, c_k is the empirical quantile, over
    500,000 simulated normal null studies (fixed seed; the null t process does not depend on
    the sd), for which the fraction of studies first crossing at look k equals the increment
    alpha(t_k) - alpha(t_{k-1}); never below the nominal boundary, and the nominal one when
    the increment is too small to estimate (fewer than 200 expected crossings).
    """
    stats = _null_t_process(looks, _CALIBRATION_STUDIES, _CALIBRATION_SEED)
    alive = np.ones(stats.shape[0], dtype=bool)
    bounds = []
    previous = 0.0
    for k, (cum, nominal) in enumerate(zip(cumulative, t_nominal, strict=True)):
        crossings = int(round((cum - previous) * stats.shape[0]))
        previous = cum
        c = nominal
        values = stats[alive, k]
        if k > 0 and crossings >= _CALIBRATION_MIN_CROSSINGS and crossings < values.size:
            c = max(nominal, float(np.partition(values, values.size - crossings)[
                values.size - crossings]))
        bounds.append(float(c))
        alive &= stats[:, k] < c
    return tuple(bounds)
