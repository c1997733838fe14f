"""Meta-analysis of per-setting mean differences: fixed effect, DerSimonian-Laird random
effects and the Hartung-Knapp-Sidik-Jonkman (HKSJ) interval (pure numpy/scipy).

Setting s = 1..K contributes its mean difference y_s (arm - baseline, averaged over its seeds)
and the variance of that mean v_s = sd_s^2 / n_s. With w_s = 1 / v_s:

    fixed effect     mu_FE = sum w y / sum w,          se_FE = 1 / sqrt(sum w)
    heterogeneity    Q = sum w (y - mu_FE)^2 (chi^2 with K - 1 df under homogeneity)
                     tau^2 = max(0, (Q - (K - 1)) / (sum w - sum w^2 / sum w))   (DL 1986)
                     I^2 = max(0, (Q - (K - 1)) / Q)                  (Higgins & Thompson 2002)
    random effects   w*_s = 1 / (v_s + tau^2),  mu_RE = sum w* y / sum w*,  se = 1/sqrt(sum w*)
    HKSJ             q = sum w* (y - mu_RE)^2 / (K - 1),
                     se_HKSJ = sqrt(max(1, q) / sum w*),  t = mu_RE / se_HKSJ  with K - 1 df
                     (Hartung & Knapp 2001; Sidik & Jonkman 2002; the max(1, q) truncation of
                     Roever, Knapp & Friede 2015 keeps it from being narrower than the
                     classical random-effects interval)

Sources and the caution about noisy v_s from few seeds: docs/statistics.md, "Across settings".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from normlib.stats._checks import as_sample, check_alternative, check_open_unit


@dataclass(frozen=True)
class MetaAnalysis:
    """Result of ``meta_analysis``. Intervals follow ``alternative`` at ``confidence``: a
    one-sided bound (the other end infinite) or a two-sided interval; p-values likewise."""

    k: int
    fixed: float
    fixed_se: float
    fixed_pvalue: float
    fixed_low: float
    fixed_high: float
    q: float
    q_pvalue: float
    tau2: float
    i2: float
    random: float
    random_se: float
    hksj_scale: float
    hksj_se: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    weights: tuple[float, ...]
    alternative: str
    confidence: float


def _pvalue(statistic: float, alternative: str, distribution: Any) -> float:
    """p-value of ``statistic`` under ``distribution``, a frozen scipy distribution."""
    if alternative == "greater":
        return float(distribution.sf(statistic))
    if alternative == "less":
        return float(distribution.cdf(statistic))
    return float(min(1.0, 2.0 * distribution.sf(abs(statistic))))


def _interval(estimate: float, se: float, alternative: str, confidence: float,
              distribution: Any) -> tuple[float, float]:  # fmt: skip
    """One-sided bound or two-sided interval of ``estimate`` +- quantile * se."""
    if alternative == "two-sided":
        half = float(distribution.ppf((1.0 + confidence) / 2.0)) * se
        return estimate - half, estimate + half
    margin = float(distribution.ppf(confidence)) * se
    if alternative == "greater":
        return estimate - margin, math.inf
    return -math.inf, estimate + margin


def _statistic(estimate: float, se: float) -> float:
    if se > 0:
        return estimate / se
    return 0.0 if estimate == 0 else math.copysign(math.inf, estimate)


def meta_analysis(
    means: ArrayLike,
    variances: ArrayLike,
    alternative: str = "greater",
    confidence: float = 0.95,
) -> MetaAnalysis:
    """Fixed-effect and DerSimonian-Laird random-effects pooling of ``means`` (one per
    setting) with the variances of those means, and the HKSJ test and interval.

    Formulas: the module docstring. ``fixed_*``: the fixed-effect estimate with its z-test and
    normal interval. ``random``, ``random_se``: the DL estimate and its classical standard
    error. ``statistic``, ``pvalue``, ``ci_*``: HKSJ, t with K - 1 degrees of freedom, on
    ``hksj_se`` (the truncated scale max(1, hksj_scale)). ``weights``: the random-effects
    weights w*_s normalized to sum 1.

    Equal to statsmodels' ``combine_effects(means, variances, method_re="dl", use_t=True)``
    where its DL tau^2 is >= 0 and its HKSJ scale >= 1 (statsmodels truncates neither).

    Raises ValueError for fewer than 2 settings, unequal lengths, a non-finite value, a
    variance <= 0 (its weight would be infinite), an unknown alternative or a confidence
    outside (0, 1).
    """
    check_alternative(alternative)
    check_open_unit("confidence", confidence)
    y = as_sample("means", means)
    v = as_sample("variances", variances)
    if y.size != v.size:
        raise ValueError(f"means has {y.size} values but variances has {v.size}")
    if y.size < 2:
        raise ValueError(f"a meta-analysis needs at least 2 settings (got {y.size})")
    bad = np.flatnonzero(v <= 0)
    if bad.size:
        raise ValueError(f"variances[{bad[0]}] is {v[bad[0]]}; inverse-variance weights need "
                         "every variance > 0")  # fmt: skip
    k = y.size
    df = k - 1

    w = 1.0 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    fixed_se = float(1.0 / math.sqrt(np.sum(w)))
    normal = sps.norm()
    fixed_z = _statistic(fixed, fixed_se)
    fixed_low, fixed_high = _interval(fixed, fixed_se, alternative, confidence, normal)

    q = float(np.sum(w * (y - fixed) ** 2))
    c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - df) / c) if c > 0 else 0.0
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0

    w_star = 1.0 / (v + tau2)
    random = float(np.sum(w_star * y) / np.sum(w_star))
    random_se = float(1.0 / math.sqrt(np.sum(w_star)))
    hksj_scale = float(np.sum(w_star * (y - random) ** 2) / df)
    hksj_se = math.sqrt(max(1.0, hksj_scale)) * random_se
    student = sps.t(df)
    statistic = _statistic(random, hksj_se)
    ci_low, ci_high = _interval(random, hksj_se, alternative, confidence, student)

    return MetaAnalysis(
        k=k, fixed=fixed, fixed_se=fixed_se, fixed_pvalue=_pvalue(fixed_z, alternative, normal),
        fixed_low=fixed_low, fixed_high=fixed_high, q=q,
        q_pvalue=float(sps.chi2.sf(q, df)), tau2=tau2, i2=i2, random=random,
        random_se=random_se, hksj_scale=hksj_scale, hksj_se=hksj_se, statistic=statistic,
        pvalue=_pvalue(statistic, alternative, student), ci_low=ci_low, ci_high=ci_high,
        weights=tuple(float(x) for x in w_star / np.sum(w_star)), alternative=alternative,
        confidence=confidence,
    )  # fmt: skip
