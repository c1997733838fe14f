"""Paired tests of a method against a baseline over the same seeds (pure numpy/scipy).

On the differences d_i = method_i - baseline_i of n seeds:

    t = mean(d) / (sd(d) / sqrt(n)),  df = n - 1   (Student, 1908; = scipy.stats.ttest_rel)
    d_z = mean(d) / sd(d)                            (effect size of the paired design)

plus the confidence interval of the mean difference, and the Wilcoxon (1945) signed-rank
test on d as a check that needs no normality. Defined cases and the derivations:
docs/statistics.md, "Paired tests".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from normlib.stats._checks import FloatArray, as_sample, check_alternative, check_open_unit


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


def _paired_samples(method: ArrayLike, baseline: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Both samples as float arrays, checked: one-dimensional, finite, equal length >= 2."""
    method_values = as_sample("method", method)
    baseline_values = as_sample("baseline", baseline)
    if method_values.size != baseline_values.size:
        raise ValueError(
            f"method has {method_values.size} values but baseline has {baseline_values.size}; "
            "they must be paired by seed"
        )
    if method_values.size < 2:
        raise ValueError(
            f"need at least 2 pairs of (method, baseline) values (got {method_values.size})"
        )
    return method_values, baseline_values


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
    method: ArrayLike,
    baseline: ArrayLike,
    alternative: str = "greater",
    confidence: float = 0.95,
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
    check_alternative(alternative)
    check_open_unit("confidence", confidence)
    method_values, baseline_values = _paired_samples(method, baseline)
    diffs = method_values - baseline_values
    n = diffs.size
    mean_diff = float(np.mean(diffs))

    if np.all(diffs == diffs[0]):
        sd_diff = 0.0
        statistic = 0.0 if mean_diff == 0.0 else math.copysign(math.inf, mean_diff)
        pvalue = _no_variability_pvalue(mean_diff, alternative)
        effect_size = statistic
    else:
        sd_diff = float(np.std(diffs, ddof=1))
        scipy_result = sps.ttest_rel(method_values, baseline_values, alternative=alternative)
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


def wilcoxon(
    method: ArrayLike, baseline: ArrayLike, alternative: str = "greater"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test on d = method - baseline.

    Same as ``scipy.stats.wilcoxon(method - baseline, alternative=alternative)`` with scipy's
    defaults: zero differences are dropped, the rest ranked by |d|; the statistic is the rank
    sum of the positive differences R+ for one-sided alternatives and min(R+, R-) for
    two-sided. scipy picks the p-value method: exact up to 50 pairs without ties or zeros,
    an exact permutation up to 13 pairs with them, a normal approximation beyond.

    Defined case: all differences zero -> statistic 0, pvalue 1 (no evidence either way).
    Raises ValueError on the same bad input as ``paired_ttest``.
    """
    check_alternative(alternative)
    method_values, baseline_values = _paired_samples(method, baseline)
    diffs = method_values - baseline_values
    if not np.any(diffs):
        return WilcoxonResult(statistic=0.0, pvalue=1.0, n=diffs.size)
    scipy_result = sps.wilcoxon(diffs, alternative=alternative)
    return WilcoxonResult(
        statistic=float(scipy_result.statistic), pvalue=float(scipy_result.pvalue), n=diffs.size
    )
