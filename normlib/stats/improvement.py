"""Probability of improvement over settings and its stratified bootstrap interval (Agarwal,
Schwarzer, Castro, Courville & Bellemare 2021, "Deep reinforcement learning at the edge of the
statistical precipice", NeurIPS; the ``rliable`` library). Pure numpy.

In setting s the arm has scores x_s1..x_sn and the baseline y_s1..y_sm (all seeds, not only
the same-seed pairs):

    P_s = (1 / (n m)) sum_i sum_j S(x_si, y_sj),  S = 1 if x beats y, 1/2 if equal, 0 otherwise
    P   = (1 / K) sum_s P_s

"beats" is ``>`` for alternative "greater" (higher is better) and ``<`` for "less". P_s is the
Mann-Whitney U statistic over n m: the chance that a random run of the arm beats a random run
of the baseline in that setting. The interval is the percentile interval of P over
``resamples`` stratified bootstrap resamples: in each setting the arm's and the baseline's
seeds are resampled with replacement, independently of each other and of the other settings
(rliable's ``StratifiedIndependentBootstrap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from normlib.stats._checks import (
    FloatArray,
    as_sample,
    check_integer,
    check_open_unit,
)

DIRECTIONS = ("greater", "less")
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Improvement:
    """Result of ``improvement_interval``: P, its per-setting terms P_s and its interval."""

    probability: float
    per_setting: tuple[float, ...]
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    alternative: str


def _check_direction(alternative: str) -> None:
    if alternative not in DIRECTIONS:
        raise ValueError(f"alternative must be 'greater' or 'less' (got {alternative!r})")


def _settings(arm: Sequence[ArrayLike], baseline: Sequence[ArrayLike]
              ) -> list[tuple[FloatArray, FloatArray]]:  # fmt: skip
    """The (arm, baseline) scores of every setting, checked: as many settings on both sides,
    at least one, and at least one score per side and setting."""
    if len(arm) != len(baseline):
        raise ValueError(f"arm has {len(arm)} settings but baseline has {len(baseline)}")
    if not arm:
        raise ValueError("need at least one setting")
    pairs = []
    for s, (x, y) in enumerate(zip(arm, baseline, strict=True)):
        x, y = as_sample(f"arm[{s}]", x), as_sample(f"baseline[{s}]", y)
        if not x.size or not y.size:
            side = "arm" if not x.size else "baseline"
            raise ValueError(f"setting {s} has no score for the {side}")
        pairs.append((x, y))
    return pairs


def pair_scores(arm: ArrayLike, baseline: ArrayLike, alternative: str = "greater") -> FloatArray:
    """The matrix S[i, j] = 1 if arm[i] beats baseline[j], 1/2 if equal, 0 otherwise."""
    _check_direction(alternative)
    x, y = as_sample("arm", arm)[:, None], as_sample("baseline", baseline)[None, :]
    beats = x > y if alternative == "greater" else x < y
    return beats.astype(float) + 0.5 * (x == y)


def probability_of_improvement(
    arm: Sequence[ArrayLike], baseline: Sequence[ArrayLike], alternative: str = "greater"
) -> float:
    """P = mean over settings of P_s (module docstring): ``arm[s]`` and ``baseline[s]`` are the
    scores of setting s. Equal to rliable's ``metrics.probability_of_improvement`` on the
    (runs x settings) matrices when every setting has the same number of runs."""
    _check_direction(alternative)
    pairs = _settings(arm, baseline)
    return float(np.mean([pair_scores(x, y, alternative).mean() for x, y in pairs]))


def improvement_interval(
    arm: Sequence[ArrayLike],
    baseline: Sequence[ArrayLike],
    alternative: str = "greater",
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Improvement:
    """P with its stratified bootstrap percentile interval at ``confidence`` (two-sided).

    Each resample b draws, setting by setting in order, the arm's seed indices
    ``rng.integers(0, n, size=n)`` and then the baseline's ``rng.integers(0, m, size=m)``
    (``rng = np.random.default_rng(seed)``; all resamples of a setting are drawn at once as
    (resamples x n) and (resamples x m) arrays), and computes P on the resampled scores; the
    interval is [percentile (1 - confidence) / 2, percentile (1 + confidence) / 2] of the
    resampled P (numpy's linear interpolation). A fixed ``seed`` makes it reproducible.
    """
    _check_direction(alternative)
    check_open_unit("confidence", confidence)
    resamples = check_integer("resamples", resamples, 1)
    seed = check_integer("seed", seed, 0)
    pairs = _settings(arm, baseline)
    rng = np.random.default_rng(seed)
    per_setting, total = [], np.zeros(resamples)
    for x, y in pairs:
        scores = pair_scores(x, y, alternative)
        per_setting.append(float(scores.mean()))
        n, m = scores.shape
        counts_x = _counts(rng.integers(0, n, size=(resamples, n)), n)
        counts_y = _counts(rng.integers(0, m, size=(resamples, m)), m)
        # P_s of a resample: its pairs' mean score = counts_x^T S counts_y / (n m)
        total += np.einsum("bi,ij,bj->b", counts_x, scores, counts_y) / (n * m)
    resampled = total / len(pairs)
    low, high = np.percentile(resampled, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
    return Improvement(
        probability=float(np.mean(per_setting)), per_setting=tuple(per_setting),
        ci_low=float(low), ci_high=float(high), confidence=confidence, resamples=resamples,
        seed=seed, alternative=alternative,
    )  # fmt: skip


def _counts(indices: np.ndarray, size: int) -> FloatArray:
    """How often each of ``size`` items was drawn, per row of ``indices``."""
    rows = indices.shape[0]
    flat = (indices + size * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * size).reshape(rows, size).astype(float)
