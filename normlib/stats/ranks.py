"""Ranks of k arms over K settings: the Friedman test and the Nemenyi critical difference
(Demsar 2006, "Statistical comparisons of classifiers over multiple data sets", JMLR 7).
Pure numpy/scipy.

``scores`` is a (K settings x k arms) matrix, e.g. each arm's mean over seeds per setting.
Within each setting the arms are ranked, 1 for the best (ties get the mean of the ranks they
span); R_j is arm j's average rank over the settings.

    Friedman (1937):  chi^2_F = 12 K / (k (k + 1)) [sum_j R_j^2 - k (k + 1)^2 / 4],
                      divided by the tie correction 1 - sum_ties (t^3 - t) / (K k (k^2 - 1))
                      (as ``scipy.stats.friedmanchisquare``), chi^2 with k - 1 df;
    Nemenyi (1963):   two arms differ when their average ranks differ by at least
                      CD = q_alpha sqrt(k (k + 1) / (6 K)),
                      q_alpha = studentized range quantile(1 - alpha; k, inf) / sqrt(2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from normlib.stats._checks import FloatArray, check_alpha, check_integer

MIN_ARMS = 3  # Friedman's chi^2 (and scipy's) needs 3 or more arms


@dataclass(frozen=True)
class Friedman:
    """Result of ``friedman``: the statistic and p-value, the average ranks (1 = best) in the
    input's arm order, and the Nemenyi critical difference at ``alpha``."""

    statistic: float
    pvalue: float
    mean_ranks: tuple[float, ...]
    n_settings: int
    n_arms: int
    critical_difference: float
    alpha: float


def _matrix(scores: ArrayLike) -> FloatArray:
    try:
        matrix = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError("scores must be a (settings x arms) matrix of numbers") from error
    if matrix.ndim != 2:
        raise ValueError(f"scores must be a (settings x arms) matrix (got shape {matrix.shape})")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        s, a = bad[0]
        raise ValueError(f"scores[{s}, {a}] is {matrix[s, a]}; every score must be finite")
    return matrix


def setting_ranks(scores: ArrayLike, higher_is_better: bool = True) -> FloatArray:
    """Each arm's rank within each setting (row), 1 for the best; ties share their mean rank."""
    matrix = _matrix(scores)
    signed = -matrix if higher_is_better else matrix
    return np.apply_along_axis(sps.rankdata, 1, signed).astype(float)


def nemenyi_cd(n_arms: int, n_settings: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks, CD = q_alpha sqrt(k (k + 1) / (6 K))
    with q_alpha = ``scipy.stats.studentized_range.ppf(1 - alpha, k, inf)`` / sqrt(2)
    (Demsar 2006, eq. 5 and Table 5a: q_0.05 = 2.343 for k = 3)."""
    k = check_integer("n_arms", n_arms, 2)
    n = check_integer("n_settings", n_settings, 1)
    alpha = check_alpha(alpha)
    q = float(sps.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def friedman(scores: ArrayLike, higher_is_better: bool = True, alpha: float = 0.05) -> Friedman:
    """Friedman's test that all arms rank alike over the settings, with the average ranks and
    Nemenyi's critical difference (module docstring).

    ``statistic`` and ``pvalue`` equal ``scipy.stats.friedmanchisquare(*scores.T)``. Defined
    case: if every setting ties all arms, the statistic is 0 and the p-value 1 (scipy divides
    by zero). Raises ValueError for fewer than 2 settings or 3 arms, or a non-finite score.
    """
    matrix = _matrix(scores)
    alpha = check_alpha(alpha)
    n, k = matrix.shape
    if k < MIN_ARMS:
        raise ValueError(f"the Friedman test needs at least {MIN_ARMS} arms (got {k})")
    if n < 2:
        raise ValueError(f"the Friedman test needs at least 2 settings (got {n})")
    ranks = setting_ranks(matrix, higher_is_better)
    mean_ranks = ranks.mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(mean_ranks**2) - k * (k + 1) ** 2 / 4.0)
    ties = 0.0
    for row in matrix:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if correction <= 0:  # every setting ties every arm: no evidence of any difference
        statistic, pvalue = 0.0, 1.0
    else:
        statistic = float(chi2 / correction)
        pvalue = float(sps.chi2.sf(statistic, k - 1))
    return Friedman(
        statistic=statistic, pvalue=pvalue, mean_ranks=tuple(float(r) for r in mean_ranks),
        n_settings=n, n_arms=k, critical_difference=nemenyi_cd(k, n, alpha), alpha=alpha,
    )  # fmt: skip
