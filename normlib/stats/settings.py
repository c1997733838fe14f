"""Does an arm beat the baseline across settings? Per-setting paired tests and the pooled
verdict (pure numpy/scipy).

Settings s = 1..K (datasets x models, or studies pooled); in setting s the arm and the
baseline ran on the same n_s seeds: d_si = arm_si - baseline_si, mean dbar_s, sd sd_s,
v_s = sd_s^2 / n_s. ``across_settings`` computes, for one arm:

* per setting, the one-sided paired t-test (``paired_ttest``; Holm over all (arm, setting)
  tests is the caller's, with ``holm``, since it spans the arms);
* pooled, **the test of record**: the one-sample t-test of the K per-setting means dbar_s
  (equal weights, K - 1 df). Under the mixed model d_si = mu + u_s + e_si, u_s ~ N(0, tau^2)
  between settings, the dbar_s are independent with mean mu whatever tau^2; with equal n_s
  and a common within-setting variance they are also identically normal and the test is
  exact, and with unequal variances it stays conservative at the usual levels (Efron 1969:
  the t-test under symmetric, not identically distributed errors). A t-test over all (s, i)
  pairs would treat the settings' own effects u_s as noise shared by nothing and reject too
  often when tau^2 > 0;
* beside it: the random-effects meta-analysis (``meta_analysis``: DerSimonian-Laird tau^2,
  I^2, HKSJ interval; the fixed effect), whose inverse-variance weights trust a setting whose
  few seeds agreed by chance, which is why it is not the test of record;
* the probability of improvement with its stratified bootstrap interval
  (``improvement_interval``);
* with K >= 5 settings, the Wilcoxon signed-rank test of the dbar_s (Demsar 2006).

Derivations and the simulation of the pooled test's type-I error: docs/statistics.md,
"Across settings".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from normlib.stats._checks import check_integer, check_open_unit
from normlib.stats.improvement import (
    DEFAULT_RESAMPLES,
    DIRECTIONS,
    Improvement,
    improvement_interval,
)
from normlib.stats.meta import MetaAnalysis, meta_analysis
from normlib.stats.paired import PairedTTest, WilcoxonResult, paired_ttest, wilcoxon

WILCOXON_FROM = 5  # settings; Demsar (2006) uses the signed-rank test from about 5 data sets


@dataclass(frozen=True)
class AcrossSettings:
    """One arm against the baseline over K settings (see ``across_settings``).

    ``pooled`` (K >= 2), ``meta`` (K >= 2 and every v_s > 0; else ``meta_note`` says why) and
    ``wilcoxon`` (K >= ``WILCOXON_FROM``) are None where they do not apply.
    """

    n_settings: int
    per_setting: tuple[PairedTTest, ...]
    pooled: PairedTTest | None
    meta: MetaAnalysis | None
    meta_note: str
    improvement: Improvement
    wilcoxon: WilcoxonResult | None
    alternative: str
    confidence: float

    @property
    def means(self) -> tuple[float, ...]:
        """dbar_s, the mean difference of each setting."""
        return tuple(test.mean_diff for test in self.per_setting)

    @property
    def variances(self) -> tuple[float, ...]:
        """v_s = sd_s^2 / n_s, the variance of each setting's mean difference."""
        return tuple(test.sd_diff**2 / test.n for test in self.per_setting)


def across_settings(
    arm: Sequence[ArrayLike],
    baseline: Sequence[ArrayLike],
    alternative: str = "greater",
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    wilcoxon_from: int = WILCOXON_FROM,
) -> AcrossSettings:
    """The per-setting and pooled comparison of one arm with the baseline.

    ``arm[s]`` and ``baseline[s]`` are setting s's scores, paired by seed (equal lengths, at
    least 2 pairs). ``alternative`` is "greater" (higher is better) or "less". The pooled
    t-test is ``paired_ttest(dbar, zeros)``: the one-sample t-test of the K means, with its
    one-sided bound at ``confidence``. Raises ValueError on unpaired or non-finite input.
    """
    if alternative not in DIRECTIONS:
        raise ValueError(f"alternative must be 'greater' or 'less' (got {alternative!r})")
    check_open_unit("confidence", confidence)
    wilcoxon_from = check_integer("wilcoxon_from", wilcoxon_from, 2)
    if len(arm) != len(baseline):
        raise ValueError(f"arm has {len(arm)} settings but baseline has {len(baseline)}")
    if not arm:
        raise ValueError("need at least one setting")
    tests = []
    for s, (x, y) in enumerate(zip(arm, baseline, strict=True)):
        try:
            tests.append(paired_ttest(x, y, alternative=alternative, confidence=confidence))
        except ValueError as error:
            raise ValueError(f"setting {s}: {error}") from None
    k = len(tests)
    means = np.array([test.mean_diff for test in tests])
    zeros = np.zeros(k)
    pooled = paired_ttest(means, zeros, alternative, confidence) if k >= 2 else None
    meta, note = None, ""
    if k < 2:
        note = "one setting: nothing to pool"
    else:
        flat = [s for s, test in enumerate(tests) if test.sd_diff == 0]
        if flat:
            note = (f"setting {flat[0]} has identical differences on every seed (variance 0): "
                    "inverse-variance weights are undefined")  # fmt: skip
        else:
            variances = [test.sd_diff**2 / test.n for test in tests]
            meta = meta_analysis(means, variances, alternative, confidence)
    test = wilcoxon(means, zeros, alternative) if k >= wilcoxon_from else None
    return AcrossSettings(
        n_settings=k, per_setting=tuple(tests), pooled=pooled, meta=meta, meta_note=note,
        improvement=improvement_interval(arm, baseline, alternative, confidence, resamples, seed),
        wilcoxon=test, alternative=alternative, confidence=confidence,
    )  # fmt: skip
