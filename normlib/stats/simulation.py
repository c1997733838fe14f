"""Operating characteristics of the t-based sequential procedure, by simulation.

Each simulated study draws differences d_i = effect + sd e_i, e_i standard normal or
Student t(3) / sqrt(3) (unit variance, heavy tails), and applies at every look exactly the
rule of ``normlib.stats.design.decide``: T_k >= c_k -> efficacy; else CP_k < threshold ->
futility (with the rule); the last look -> max_seeds. The rejection rate has Monte Carlo
standard error sqrt(p (1 - p) / n_studies). Results: docs/statistics.md, "Simulation".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normlib.stats._checks import check_positive, check_real
from normlib.stats.boundaries import t_to_z
from normlib.stats.design import SequentialDesign

NOISES = ("normal", "t3")


@dataclass(frozen=True)
class SimulationResult:
    """Operating characteristics of the t-based procedure over ``n_studies`` simulated studies.

    rejection_rate (efficacy), its Monte Carlo standard error, mean_seeds (per arm), the
    fraction of studies ending with each action, and the fraction stopping at each look.
    """

    n_studies: int
    effect: float
    noise: str
    rejection_rate: float
    mc_se: float
    mean_seeds: float
    mean_seeds_se: float
    actions: dict[str, float]
    stop_fractions: tuple[float, ...]


def simulate(
    design: SequentialDesign,
    effect: float,
    sd: float = 1.0,
    n_studies: int = 20_000,
    noise: str = "normal",
    seed: int = 0,
    chunk: int = 50_000,
) -> SimulationResult:
    """Run ``n_studies`` simulated studies of ``design`` (vectorized numpy, seeded).

    Differences are effect + sd * e with e standard normal (``noise="normal"``) or Student t
    with 3 df scaled to unit variance (``"t3"``, heavy-tailed). Each study applies exactly the
    rule of ``decide`` at every look: T_k >= c_k -> efficacy; else CP_k < threshold ->
    futility (with the rule); the last look -> max_seeds.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {', '.join(NOISES)} (got {noise!r})")
    effect = check_real("effect", effect)
    sd = check_positive("sd", sd)
    if isinstance(n_studies, bool) or not isinstance(n_studies, int) or n_studies < 1:
        raise ValueError(f"n_studies must be an integer >= 1 (got {n_studies!r})")
    rng = np.random.default_rng(seed)
    looks = np.asarray(design.looks)
    K = looks.size
    counts = np.zeros((K, 3))  # per look: efficacy, futility, max_seeds
    seeds_sum = seeds_sq = 0.0
    done = 0
    while done < n_studies:
        size = min(chunk, n_studies - done)
        if noise == "normal":
            e = rng.standard_normal((size, looks[-1]))
        else:
            e = rng.standard_t(3, (size, looks[-1])) / math.sqrt(3.0)
        x = effect + sd * e
        s1 = np.cumsum(x, axis=1)[:, looks - 1]
        s2 = np.cumsum(x * x, axis=1)[:, looks - 1]
        mean = s1 / looks
        var = np.maximum((s2 - looks * mean * mean) / (looks - 1), 0.0)
        sdev = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = mean / (sdev / np.sqrt(looks))
        stat = np.where(sdev > 0, stat, np.sign(mean) * np.inf)
        stat = np.nan_to_num(stat, nan=0.0)
        active = np.ones(size, dtype=bool)
        stop_n = np.zeros(size)
        for k in range(K):
            eff = active & (stat[:, k] >= design.bounds.t[k])
            counts[k, 0] += eff.sum()
            stop_n[eff] = looks[k]
            active &= ~eff
            if k == K - 1:
                counts[k, 2] += active.sum()
                stop_n[active] = looks[k]
                break
            if design.futility == "conditional_power" and design.min_effect is not None:
                z = t_to_z(stat[:, k], looks[k] - 1)
                with np.errstate(divide="ignore"):
                    delta = np.where(sdev[:, k] > 0, design.min_effect / sdev[:, k], np.inf)
                cp = design.conditional_power(z, looks[k], delta)
                cp = np.where(sdev[:, k] > 0, cp, (mean[:, k] > 0).astype(float))
                fut = active & (cp < design.futility_threshold)
                counts[k, 1] += fut.sum()
                stop_n[fut] = looks[k]
                active &= ~fut
        seeds_sum += stop_n.sum()
        seeds_sq += (stop_n * stop_n).sum()
        done += size
    rate = counts[:, 0].sum() / n_studies
    mean_seeds = seeds_sum / n_studies
    var_seeds = max(seeds_sq / n_studies - mean_seeds**2, 0.0)
    return SimulationResult(
        n_studies=n_studies,
        effect=effect,
        noise=noise,
        rejection_rate=float(rate),
        mc_se=float(math.sqrt(max(rate * (1 - rate), 1e-300) / n_studies)),
        mean_seeds=float(mean_seeds),
        mean_seeds_se=float(math.sqrt(var_seeds / n_studies)),
        actions={
            "efficacy": float(counts[:, 0].sum() / n_studies),
            "futility": float(counts[:, 1].sum() / n_studies),
            "max_seeds": float(counts[:, 2].sum() / n_studies),
        },
        stop_fractions=tuple(float(c) for c in counts.sum(axis=1) / n_studies),
    )
