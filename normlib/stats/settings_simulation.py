"""The pooled tests across settings, by simulation: type-I error and interval coverage.

Each simulated study draws, for K settings of n seeds, paired differences from the mixed
model d_si = effect + u_s + sd_s e_si with u_s ~ N(0, tau^2) (the settings' own effects) and
e_si standard normal, with unequal within-setting sds sd_s, and applies (vectorized, the same
formulas as ``across_settings``):

* ``pooled_t``: the test of record, the one-sample t-test of the K means dbar_s;
* ``hksj``: the DerSimonian-Laird random-effects estimate with the HKSJ t-test (max(1, q));
* ``dl_z``: the same estimate with its classical normal test (known to be too liberal);
* ``fixed_z``: the fixed-effect z-test (ignores tau^2);
* ``all_pairs_t``: a one-sample t-test of all K n differences, as if settings were seeds.

Rejections are one-sided (alternative "greater") at ``alpha``; each rate has Monte Carlo
standard error sqrt(p (1 - p) / n_studies). Coverage is the fraction of studies whose
interval holds ``effect``: the one-sided bound (``*_bound``) and the two-sided interval at
1 - alpha (``*_interval``) of the pooled t-test and of HKSJ. Results: docs/statistics.md,
"Across settings", and ``bench/across.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from normlib.stats._checks import FloatArray, check_alpha, check_integer, check_real

TESTS = ("pooled_t", "hksj", "dl_z", "fixed_z", "all_pairs_t")
CHUNK = 20_000


@dataclass(frozen=True)
class SettingsSimulation:
    """Rejection rates (with Monte Carlo standard errors) and coverages of ``n_studies``
    simulated studies; keys of ``rejection``: ``TESTS``."""

    n_studies: int
    n_settings: int
    seeds: int
    sds: tuple[float, ...]
    tau: float
    effect: float
    alpha: float
    rejection: dict[str, float]
    mc_se: dict[str, float]
    coverage: dict[str, float]


def _one_sample_t(values: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Row-wise (mean, standard error, t) of ``values`` (studies x observations)."""
    count = values.shape[1]
    mean = values.mean(axis=1)
    se = values.std(axis=1, ddof=1) / math.sqrt(count)
    return mean, se, mean / se


def _hksj(means: FloatArray, variances: FloatArray) -> tuple[FloatArray, ...]:
    """Row-wise DL random-effects estimate, its classical se, the HKSJ se, the fixed effect
    and its se (formulas of ``normlib.stats.meta``)."""
    k = means.shape[1]
    w = 1.0 / variances
    sum_w = w.sum(axis=1)
    fixed = (w * means).sum(axis=1) / sum_w
    q = (w * (means - fixed[:, None]) ** 2).sum(axis=1)
    c = sum_w - (w**2).sum(axis=1) / sum_w
    tau2 = np.maximum(0.0, (q - (k - 1)) / c)
    w_star = 1.0 / (variances + tau2[:, None])
    sum_star = w_star.sum(axis=1)
    random = (w_star * means).sum(axis=1) / sum_star
    scale = (w_star * (means - random[:, None]) ** 2).sum(axis=1) / (k - 1)
    classical = 1.0 / np.sqrt(sum_star)
    return random, classical, np.sqrt(np.maximum(1.0, scale)) * classical, fixed, 1 / np.sqrt(sum_w)


def simulate_settings(
    sds: Sequence[float],
    seeds: int,
    tau: float,
    effect: float = 0.0,
    alpha: float = 0.05,
    n_studies: int = 20_000,
    seed: int = 0,
) -> SettingsSimulation:
    """Simulate ``n_studies`` studies of len(sds) settings with ``seeds`` seeds each (module
    docstring); vectorized numpy, reproducible for a given ``seed``."""
    sd = np.array([check_real("sds", s) for s in sds], dtype=float)
    if sd.size < 2 or np.any(sd <= 0):
        raise ValueError(f"sds must hold at least 2 within-setting sds > 0 (got {list(sds)})")
    seeds = check_integer("seeds", seeds, 2)
    tau = check_real("tau", tau)
    if tau < 0:
        raise ValueError(f"tau must be >= 0 (got {tau})")
    effect = check_real("effect", effect)
    alpha = check_alpha(alpha)
    n_studies = check_integer("n_studies", n_studies, 1)
    k = sd.size
    t_k, t_all = sps.t(k - 1), sps.t(k * seeds - 1)
    one_k, two_k = t_k.ppf(1 - alpha), t_k.ppf(1 - alpha / 2)
    z = sps.norm.ppf(1 - alpha)
    rejected = dict.fromkeys(TESTS, 0)
    covered = dict.fromkeys(("pooled_t_bound", "pooled_t_interval", "hksj_bound",
                             "hksj_interval"), 0)  # fmt: skip
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_studies:
        size = min(CHUNK, n_studies - done)
        u = tau * rng.standard_normal((size, k, 1))
        d = effect + u + sd[None, :, None] * rng.standard_normal((size, k, seeds))
        means = d.mean(axis=2)
        variances = d.var(axis=2, ddof=1) / seeds
        mean, se, t = _one_sample_t(means)
        random, classical, hksj_se, fixed, fixed_se = _hksj(means, variances)
        _, _, t_pairs = _one_sample_t(d.reshape(size, k * seeds))
        rejected["pooled_t"] += int(np.sum(t > one_k))
        rejected["hksj"] += int(np.sum(random / hksj_se > one_k))
        rejected["dl_z"] += int(np.sum(random / classical > z))
        rejected["fixed_z"] += int(np.sum(fixed / fixed_se > z))
        rejected["all_pairs_t"] += int(np.sum(t_pairs > t_all.ppf(1 - alpha)))
        covered["pooled_t_bound"] += int(np.sum(mean - one_k * se <= effect))
        covered["pooled_t_interval"] += int(np.sum(np.abs(mean - effect) <= two_k * se))
        covered["hksj_bound"] += int(np.sum(random - one_k * hksj_se <= effect))
        covered["hksj_interval"] += int(np.sum(np.abs(random - effect) <= two_k * hksj_se))
        done += size
    rates = {name: count / n_studies for name, count in rejected.items()}
    return SettingsSimulation(
        n_studies=n_studies, n_settings=k, seeds=seeds, sds=tuple(float(s) for s in sd),
        tau=tau, effect=effect, alpha=alpha, rejection=rates,
        mc_se={name: math.sqrt(p * (1 - p) / n_studies) for name, p in rates.items()},
        coverage={name: count / n_studies for name, count in covered.items()},
    )  # fmt: skip
