"""Planning a group-sequential design: expected seeds and the detectable effect.

With known sd and drift theta = effect / sd, the recursion gives P(stop first at look k);

    E[N] = sum_k n_k P(stop at k),   power = sum_k P(cross b'_k first at k)

by the recursion of ``normlib.stats.recursion`` (efficacy boundaries b'_k and, with the
futility rule, a_k for delta = min_effect / sd); the fixed design of the same power is
``normlib.stats.power.seeds_needed``. ``detectable_effect`` solves power(theta) = target for
theta. Results for the default designs: docs/statistics.md, "Planning".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from normlib.stats._checks import FloatArray, check_positive, check_real
from normlib.stats.design import SequentialDesign
from normlib.stats.power import seeds_needed
from normlib.stats.recursion import crossing_probabilities


@dataclass(frozen=True)
class ExpectedSeeds:
    """Expected seeds per arm under an effect (recursion, known sd), and the fixed design.

    stop_probabilities: P(stop at look k); power: P(efficacy); fixed_seeds: seeds of the
    fixed one-sided paired t-test with the same power at ``reference_effect`` (None when
    that power is <= alpha or unreachable); ratio = expected / fixed_seeds.
    """

    effect: float
    expected: float
    power: float
    stop_probabilities: tuple[float, ...]
    efficacy_probabilities: tuple[float, ...]
    reference_effect: float | None
    reference_power: float | None
    fixed_seeds: int | None
    ratio: float | None


def _operating(
    design: SequentialDesign, theta: float, delta_min: float | None
) -> tuple[FloatArray, FloatArray]:
    """Efficacy and futility crossing probabilities per look at drift theta."""
    upper = np.asarray(design.bounds.z_effective)
    if delta_min is not None:
        lower = design.futility_z(delta_min).copy()
    else:
        lower = np.full(len(design.looks), -np.inf)
    lower[-1] = upper[-1]
    return crossing_probabilities(design.looks, upper, lower, theta)


def expected_seeds(
    design: SequentialDesign, effect: float, sd: float, reference_effect: float | None = None
) -> ExpectedSeeds:
    """Expected seeds per arm when the true mean difference is ``effect`` and its sd ``sd``.

    Computed by the recursion with known sd: drift theta = effect / sd, efficacy boundaries
    b_k and, with the futility rule, the z futility boundaries a_k for delta = min_effect/sd.
    E[N] = sum_k n_k P(stop at k). The fixed design for comparison is
    ``seeds_needed(reference_effect / sd, alpha, power)`` where power is this design's power
    at reference_effect (default: effect if > 0, else min_effect).
    """
    effect = check_real("effect", effect)
    sd = check_positive("sd", sd)
    delta_min = None if design.futility is None or design.min_effect is None else (
        design.min_effect / sd
    )
    up, down = _operating(design, effect / sd, delta_min)
    stop = up + down
    expected = float(np.dot(design.looks, stop))
    power = float(up.sum())

    if reference_effect is None:
        reference_effect = effect if effect > 0 else design.min_effect
    fixed: int | None = None
    ratio: float | None = None
    ref_power: float | None = None
    if reference_effect is not None:
        reference_effect = check_positive("reference_effect", reference_effect)
        ref_up, _ = _operating(design, reference_effect / sd, delta_min)
        ref_power = float(min(ref_up.sum(), 1.0 - 1e-12))
        if ref_power > design.alpha:
            fixed = seeds_needed(reference_effect / sd, design.alpha, ref_power)
            ratio = None if fixed is None else expected / fixed
    return ExpectedSeeds(
        effect=effect,
        expected=expected,
        power=power,
        stop_probabilities=tuple(float(p) for p in stop),
        efficacy_probabilities=tuple(float(p) for p in up),
        reference_effect=reference_effect,
        reference_power=ref_power,
        fixed_seeds=fixed,
        ratio=ratio,
    )


def detectable_effect(design: SequentialDesign, power: float = 0.8) -> float:
    """Standardized effect (mean / sd per seed) the efficacy boundaries detect with ``power``.

    Solves P_theta(cross some b_k) = power by the recursion (known sd, futility ignored).
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie strictly between 0 and 1 (got {power!r})")
    if power <= design.alpha:
        raise ValueError(f"power must exceed alpha={design.alpha} (got {power!r})")
    upper = np.asarray(design.bounds.z_effective)

    def excess(theta: float) -> float:
        return float(crossing_probabilities(design.looks, upper, None, theta)[0].sum() - power)

    return float(optimize.brentq(excess, 0.0, 20.0, xtol=1e-10))
