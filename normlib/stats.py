"""Statistics for comparing a method with a baseline over paired seeds.

Pure numpy/scipy; usable without torch or Ray.

For seeds i = 1..n, method and baseline are run on the same seed, and the test works
on the differences d_i = method_i - baseline_i:

    mean_diff = mean(d),   sd_diff = std(d, ddof=1),   se = sd_diff / sqrt(n)
    t = mean_diff / se     (Student t with n - 1 degrees of freedom)
    d_z = mean_diff / sd_diff   (effect size of the paired design)

* ``paired_ttest``: the headline test (the BN-init paper's one-sided paired t-test),
  identical to ``scipy.stats.ttest_rel``, plus the CI of the mean difference and d_z.
* ``wilcoxon``: signed-rank test on the differences, a check that needs no normality.
* ``holm``: Holm-Bonferroni adjusted p-values when several arms face one baseline.
* ``power`` / ``seeds_needed``: how many seeds a paired t-test needs to detect d_z.
* group-sequential confirmation (``normlib.sequential``, re-exported here): ``boundaries``,
  ``SequentialDesign``, ``decide``, ``expected_seeds``, ``detectable_effect``, ``simulate``,
  ``holm_sequential``, the spending functions ``obrien_fleming`` and ``pocock``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALTERNATIVES = ("greater", "less", "two-sided")


@dataclass(frozen=True)
class PairedTTest:
    """Result of ``paired_ttest``; ``statistic`` and ``pvalue`` are named as in scipy."""

    statistic: float
    pvalue: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    effect_size: float
    n: int
    alternative: str
    confidence: float


@dataclass(frozen=True)
class WilcoxonResult:
    """Result of ``wilcoxon``; ``n`` is the number of pairs (zero differences included)."""

    statistic: float
    pvalue: float
    n: int


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(
            f"alternative must be one of 'greater', 'less', 'two-sided' (got {alternative!r})"
        )


def _check_open_unit(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1 (got {value!r})")


def _as_sample(name: str, values) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of numbers") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {array.shape})")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}; every value must be finite")
    return array


def _paired_samples(method, baseline) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as float arrays, checked: one-dimensional, finite, equal length >= 2."""
    method = _as_sample("method", method)
    baseline = _as_sample("baseline", baseline)
    if method.size != baseline.size:
        raise ValueError(
            f"method has {method.size} values but baseline has {baseline.size}; "
            "they must be paired by seed"
        )
    if method.size < 2:
        raise ValueError(f"need at least 2 pairs of (method, baseline) values (got {method.size})")
    return method, baseline


def _no_variability_pvalue(mean_diff: float, alternative: str) -> float:
    """p-value when every difference equals mean_diff (sd = 0).

    mean_diff = 0: no difference and no evidence, p = 1. Otherwise t = +-inf, so p = 0 when
    the sign agrees with the alternative (any sign for two-sided) and p = 1 when it opposes it.
    """
    if mean_diff == 0.0:
        return 1.0
    if alternative == "two-sided":
        return 0.0
    agrees = (mean_diff > 0) == (alternative == "greater")
    return 0.0 if agrees else 1.0


def paired_ttest(
    method, baseline, alternative: str = "greater", confidence: float = 0.95
) -> PairedTTest:
    """Paired t-test of method against baseline, seed by seed.

    ``statistic`` and ``pvalue`` are those of ``scipy.stats.ttest_rel(method, baseline,
    alternative=alternative)``: t = mean_diff / (sd_diff / sqrt(n)), df = n - 1. The
    alternative "greater" (default) asks whether the method is better when higher is better.

    Confidence interval of the mean difference, with q = t.ppf(., n - 1) and se = sd/sqrt(n):
    "greater": [mean - q(confidence) se, +inf); "less": (-inf, mean + q(confidence) se];
    "two-sided": mean -+ q((1 + confidence) / 2) se. The one-sided bound excludes 0 exactly
    when pvalue < 1 - confidence. effect_size is d_z = mean_diff / sd_diff.

    Defined cases (never NaN): if all differences are identical (sd_diff = 0), a zero
    difference gives statistic 0, pvalue 1, effect_size 0; a nonzero one gives statistic
    and effect_size +-inf, pvalue 0 if its sign agrees with the alternative (either sign for
    two-sided) and 1 if it opposes it; the interval collapses to the mean.

    Raises ValueError for unequal lengths (naming both), fewer than 2 pairs, a NaN or
    infinite value (naming its index), an unknown alternative, or confidence outside (0, 1).
    """
    _check_alternative(alternative)
    _check_open_unit("confidence", confidence)
    method, baseline = _paired_samples(method, baseline)
    diffs = method - baseline
    n = diffs.size
    mean_diff = float(np.mean(diffs))

    if np.all(diffs == diffs[0]):
        sd_diff = 0.0
        statistic = 0.0 if mean_diff == 0.0 else math.copysign(math.inf, mean_diff)
        pvalue = _no_variability_pvalue(mean_diff, alternative)
        effect_size = statistic
    else:
        sd_diff = float(np.std(diffs, ddof=1))
        scipy_result = sps.ttest_rel(method, baseline, alternative=alternative)
        statistic = float(scipy_result.statistic)
        pvalue = float(scipy_result.pvalue)
        effect_size = mean_diff / sd_diff

    standard_error = sd_diff / math.sqrt(n)
    if alternative == "two-sided":
        half_width = float(sps.t.ppf((1.0 + confidence) / 2.0, n - 1)) * standard_error
        ci_low, ci_high = mean_diff - half_width, mean_diff + half_width
    else:
        margin = float(sps.t.ppf(confidence, n - 1)) * standard_error
        if alternative == "greater":
            ci_low, ci_high = mean_diff - margin, math.inf
        else:
            ci_low, ci_high = -math.inf, mean_diff + margin

    return PairedTTest(
        statistic=statistic,
        pvalue=pvalue,
        mean_diff=mean_diff,
        sd_diff=sd_diff,
        ci_low=ci_low,
        ci_high=ci_high,
        effect_size=effect_size,
        n=n,
        alternative=alternative,
        confidence=confidence,
    )


def wilcoxon(method, baseline, alternative: str = "greater") -> WilcoxonResult:
    """Wilcoxon signed-rank test on d = method - baseline.

    Same as ``scipy.stats.wilcoxon(method - baseline, alternative=alternative)`` with scipy's
    defaults: zero differences are dropped, the rest ranked by |d|; the statistic is the rank
    sum of the positive differences R+ for one-sided alternatives and min(R+, R-) for
    two-sided. scipy picks the p-value method: exact up to 50 pairs without ties or zeros,
    an exact permutation up to 13 pairs with them, a normal approximation beyond.

    Defined case: all differences zero -> statistic 0, pvalue 1 (no evidence either way).
    Raises ValueError on the same bad input as ``paired_ttest``.
    """
    _check_alternative(alternative)
    method, baseline = _paired_samples(method, baseline)
    diffs = method - baseline
    if not np.any(diffs):
        return WilcoxonResult(statistic=0.0, pvalue=1.0, n=diffs.size)
    scipy_result = sps.wilcoxon(diffs, alternative=alternative)
    return WilcoxonResult(
        statistic=float(scipy_result.statistic), pvalue=float(scipy_result.pvalue), n=diffs.size
    )


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, returned in the input order.

    With p_(1) <= ... <= p_(m) sorted ascending,
        adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)),
    so the adjusted values never decrease along the sorted order and stay in [0, 1].
    Rejecting where adj <= alpha controls the family-wise error rate at alpha.
    Empty input gives an empty array; a NaN or a value outside [0, 1] raises ValueError.
    """
    try:
        values = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError("pvalues must be a sequence of numbers") from error
    if values.ndim != 1:
        raise ValueError(f"pvalues must be one-dimensional (got shape {values.shape})")
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        raise ValueError(f"pvalues[{bad[0]}] is {values[bad[0]]}; p-values must lie in [0, 1]")

    m = values.size
    order = np.argsort(values, kind="stable")
    multipliers = m - np.arange(m)
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, multipliers * values[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def _check_integer(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite (got {value!r})")


def _ttest_power(n: int, effect_size: float, alpha: float, alternative: str) -> float:
    """Unchecked power; lower tails use P(T < -q | nc) = P(T > q | -nc), since scipy's
    nct.cdf returns NaN far in the lower tail where nct.sf stays finite."""
    df = n - 1
    noncentrality = effect_size * math.sqrt(n)
    if alternative == "two-sided":
        critical = sps.t.ppf(1.0 - alpha / 2.0, df)
        upper = sps.nct.sf(critical, df, noncentrality)
        lower = sps.nct.sf(critical, df, -noncentrality)
        return float(min(1.0, upper + lower))
    critical = sps.t.ppf(1.0 - alpha, df)
    sign = 1.0 if alternative == "greater" else -1.0
    return float(sps.nct.sf(critical, df, sign * noncentrality))


def power(n: int, effect_size: float, alpha: float = 0.05, alternative: str = "greater") -> float:
    """Power of a paired t-test with n pairs at level alpha when the true d_z is effect_size.

    With df = n - 1 and noncentrality nc = effect_size * sqrt(n) (scipy.stats.nct):
    "greater":   1 - nct.cdf(t.ppf(1 - alpha, df), df, nc)
    "less":      nct.cdf(-t.ppf(1 - alpha, df), df, nc)
    "two-sided": with q = t.ppf(1 - alpha / 2, df), 1 - nct.cdf(q, df, nc) + nct.cdf(-q, df, nc)
    At effect_size = 0 this is alpha. Raises ValueError unless n is an integer >= 2, alpha
    lies in (0, 1) and effect_size is finite.
    """
    _check_alternative(alternative)
    _check_open_unit("alpha", alpha)
    _check_finite("effect_size", effect_size)
    return _ttest_power(_check_integer("n", n, 2), effect_size, alpha, alternative)


def seeds_needed(
    effect_size: float,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "greater",
    max_n: int = 10_000,
) -> int | None:
    """Smallest number of seeds n >= 2 whose paired t-test reaches ``power`` at d_z = effect_size.

    Power as in ``power(n, effect_size, alpha, alternative)``; it grows with n, so the smallest
    n is found by bisection on [2, max_n]. Returns None if even max_n seeds do not suffice.
    Example: d_z = 0.5, alpha = 0.05 one-sided, power 0.8 -> 27.

    effect_size must point the way the alternative does: > 0 for "greater", < 0 for "less",
    nonzero for "two-sided"; otherwise ValueError. alpha and power must lie in (0, 1).
    """
    _check_alternative(alternative)
    _check_open_unit("alpha", alpha)
    _check_open_unit("power", power)
    _check_finite("effect_size", effect_size)
    max_n = _check_integer("max_n", max_n, 2)
    if alternative == "greater" and effect_size <= 0:
        raise ValueError(
            f"effect_size must be > 0 for alternative='greater' (got {effect_size}); the effect "
            "points the other way: swap method and baseline or use alternative='less'"
        )
    if alternative == "less" and effect_size >= 0:
        raise ValueError(
            f"effect_size must be < 0 for alternative='less' (got {effect_size}); the effect "
            "points the other way: swap method and baseline or use alternative='greater'"
        )
    if alternative == "two-sided" and effect_size == 0:
        raise ValueError("effect_size must be nonzero: no number of seeds detects a zero effect")

    if _ttest_power(max_n, effect_size, alpha, alternative) < power:
        return None
    low, high = 2, max_n
    while low < high:
        middle = (low + high) // 2
        if _ttest_power(middle, effect_size, alpha, alternative) >= power:
            high = middle
        else:
            low = middle + 1
    return low


from normlib.sequential import *  # noqa: E402, F403  (re-export; see normlib.sequential)
