"""A one-sided group-sequential paired design, and its decision at each look.

H0: mean(d) <= 0 against H1: mean(d) > 0 on the paired differences d of the seeds so far,
looked at after n_1 < ... < n_K seeds. At look k, with T_k the paired t statistic and
z_k = Phi^-1(F_t(T_k; n_k - 1)) its z equivalent:

* efficacy when T_k >= c_k (``normlib.stats.boundaries``);
* futility (optional, non-binding) when the conditional power under delta = min_effect / s_k,
  CP_k = Phi_bar((b'_K sqrt(n_K) - z_k sqrt(n_k) - delta (n_K - n_k)) / sqrt(n_K - n_k)),
  is below ``futility_threshold`` (Jennison & Turnbull 2000, sec. 10.2);
* on stopping, the stage-wise ordering p-value (J&T sec. 8.4)
  p = sum_{j<k} P0(cross b'_j first at j) + P0(Z_1 < b'_1, ..., Z_{k-1} < b'_{k-1}, Z_k >= z_k)
  and the lower confidence bound theta_L s_k with P_theta_L(at least as extreme) = alpha
  (J&T sec. 8.5).

Derivations, the default threshold and its tuning: docs/statistics.md, "Decisions".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from scipy import stats as sps

from normlib.stats._checks import FloatArray, check_alpha, check_looks, check_positive
from normlib.stats.boundaries import Boundaries, boundaries, t_to_z
from normlib.stats.recursion import Walk
from normlib.stats.spending import check_spending

FUTILITY_RULES = (None, "conditional_power")
ACTIONS = ("continue", "efficacy", "futility", "max_seeds")


@dataclass(frozen=True)
class SequentialDesign:
    """A one-sided group-sequential paired design (see the module docstring).

    ``min_effect`` is the smallest mean difference worth detecting, in the metric's units;
    it is required by ``futility="conditional_power"`` (stop when the conditional power under
    min_effect falls below ``futility_threshold``) and used for power statements.
    """

    looks: tuple[int, ...]
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    min_effect: float | None = None
    futility: str | None = None
    futility_threshold: float = 0.2
    bounds: Boundaries = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", check_looks(self.looks))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        check_spending(self.spending)
        if self.futility not in FUTILITY_RULES:
            raise ValueError(
                f"futility must be one of None, 'conditional_power' (got {self.futility!r})"
            )
        if self.min_effect is not None:
            object.__setattr__(self, "min_effect", check_positive("min_effect", self.min_effect))
        elif self.futility is not None:
            raise ValueError(
                "min_effect (the smallest difference worth detecting, > 0) is required by "
                f"futility={self.futility!r}"
            )
        threshold = self.futility_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
            0.0 < threshold < 1.0
        ):
            raise ValueError(
                f"futility_threshold must lie strictly between 0 and 1 (got {threshold!r})"
            )
        object.__setattr__(self, "bounds", boundaries(self.looks, self.alpha, self.spending))

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    def look_of(self, n: int) -> int:
        """Index of the look at ``n`` seeds; ValueError if n is not one of the looks."""
        if n not in self.looks:
            raise ValueError(f"{n} differences is not a look; looks are {list(self.looks)}")
        return self.looks.index(n)

    def conditional_power(
        self, z: float | FloatArray, n: float | FloatArray, delta: float | FloatArray
    ) -> float | FloatArray:
        """CP of crossing b_K at the last look from Z = z at n seeds, drift delta (per seed)."""
        n_max = self.looks[-1]
        b_max = self.bounds.z_effective[-1]
        rest = n_max - np.asarray(n, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            arg = (b_max * math.sqrt(n_max) - z * np.sqrt(n) - delta * rest) / np.sqrt(rest)
        power: float | FloatArray = sps.norm.sf(arg)
        return power

    def futility_z(self, delta: float) -> FloatArray:
        """z futility boundaries a_k of the CP rule for a known drift delta (-inf if no rule).

        CP_k(z) < gamma  <=>  z < a_k = (b_K sqrt(n_K) - delta (n_K - n_k)
        - z_{1-gamma} sqrt(n_K - n_k)) / sqrt(n_k); capped at b_k; the last look has none.
        """
        a = np.full(len(self.looks), -np.inf)
        if self.futility is None:
            return a
        n = np.asarray(self.looks[:-1], dtype=float)
        rest = self.looks[-1] - n
        q = sps.norm.isf(self.futility_threshold)
        a[:-1] = (self.bounds.z_effective[-1] * math.sqrt(self.looks[-1]) - delta * rest
                  - q * np.sqrt(rest)) / np.sqrt(n)
        capped: FloatArray = np.minimum(a, np.asarray(self.bounds.z_effective))
        return capped

    def stagewise_pvalue(self, look_index: int, z: float) -> float:
        """alpha(t_{k-1}) + P0(reach look k, Z_k >= z) in the efficacy-only design."""
        return self._stagewise(look_index, z, 0.0)

    def _stagewise(self, k: int, z: float, theta: float) -> float:
        walk = Walk(np.asarray(self.looks, dtype=float), theta)
        total = 0.0
        for j in range(k):
            total += walk.upper(j, self.bounds.z_effective[j])
            walk.advance(j, -np.inf, self.bounds.z_effective[j])
        return float(min(1.0, max(0.0, total + walk.upper(k, z))))

    def lower_bound_theta(self, look_index: int, z: float) -> float:
        """theta_L with P_theta(stage-wise at least as extreme as (k, z)) = alpha."""
        if z == np.inf:
            z = 40.0
        target = self.alpha
        n_k = self.looks[look_index]
        centre = z / math.sqrt(n_k)
        width = 10.0 / math.sqrt(self.looks[0])

        def excess(theta: float) -> float:
            return self._stagewise(look_index, z, theta) - target

        low, high = centre - width, centre + width
        while excess(low) > 0:
            low -= width
        while excess(high) < 0:
            high += width
        return float(optimize.brentq(excess, low, high, xtol=1e-9))

    def decide(self, differences: ArrayLike, look_index: int | None = None) -> SequentialDecision:
        """Decision at a look from the paired differences of all seeds so far (see ``decide``)."""
        return decide(differences, self, look_index)


@dataclass(frozen=True)
class SequentialDecision:
    """What to do at a look.

    action: "continue", "efficacy" (H0 rejected), "futility" (gave up, non-binding) or
    "max_seeds" (last look reached without crossing). statistic: paired t; z: its z
    equivalent; boundary / z_boundary: the efficacy boundary at this look on both scales.
    conditional_power: CP under min_effect (None without a futility rule or at the last
    look). pvalue and lower_bound (one-sided, level 1 - alpha, for the mean difference):
    stage-wise ordering, set once the arm stopped (None while continuing).
    """

    action: str
    look_index: int
    n: int
    statistic: float
    z: float
    boundary: float
    z_boundary: float
    mean_diff: float
    sd_diff: float
    conditional_power: float | None
    pvalue: float | None
    lower_bound: float | None

    @property
    def stopped(self) -> bool:
        return self.action != "continue"

    @property
    def rejected(self) -> bool:
        return self.action == "efficacy"


def _look_index(design: SequentialDesign, n: int, look_index: int | None) -> int:
    """The look at n differences: ``look_index`` if given (checked against n), else found."""
    if look_index is None:
        return design.look_of(n)
    if isinstance(look_index, bool) or not isinstance(look_index, int | np.integer) or not (
        0 <= look_index < len(design.looks)
    ):
        raise ValueError(
            f"look_index must be an integer in 0..{len(design.looks) - 1} (got {look_index!r})"
        )
    k = int(look_index)
    if n != design.looks[k]:
        raise ValueError(f"look {k} is at {design.looks[k]} seeds but {n} differences were given")
    return k


def decide(
    differences: ArrayLike,
    design: SequentialDesign | Sequence[int],
    look_index: int | None = None,
    alpha: float = 0.05,
    spending: str = "obrien_fleming",
    min_effect: float | None = None,
    futility: str | None = None,
) -> SequentialDecision:
    """Decision at a look from the paired differences (method - baseline) of all seeds so far.

    ``design`` is a SequentialDesign, or the looks (then alpha, spending, min_effect and
    futility build one). ``look_index`` defaults to the look at len(differences); if given,
    len(differences) must equal looks[look_index]. Efficacy when T_k >= c_k; otherwise, at an
    interim look with the futility rule, futility when CP_k < futility_threshold; at the last
    look max_seeds; else continue. All differences equal (sd 0): T = +inf, 0 or -inf by the
    sign of the mean, CP = 1 for a positive mean and 0 otherwise, the bound is the mean.
    """
    if not isinstance(design, SequentialDesign):
        design = SequentialDesign(tuple(design), alpha, spending, min_effect, futility)
    try:
        diffs = np.asarray(differences, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError("differences must be a sequence of numbers") from error
    if diffs.ndim != 1:
        raise ValueError(f"differences must be one-dimensional (got shape {diffs.shape})")
    bad = np.flatnonzero(~np.isfinite(diffs))
    if bad.size:
        raise ValueError(f"differences[{bad[0]}] is {diffs[bad[0]]}; every value must be finite")
    n = diffs.size
    k = _look_index(design, n, look_index)
    last = k == len(design.looks) - 1
    mean = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1)) if np.any(diffs != diffs[0]) else 0.0
    df = n - 1
    if sd == 0.0:
        statistic = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        statistic = mean / (sd / math.sqrt(n))
    z = float(t_to_z(statistic, df))
    b_z = design.bounds.z_effective[k]
    b_t = design.bounds.t[k]

    cp = None
    if design.futility == "conditional_power" and not last and design.min_effect is not None:
        if sd == 0.0:
            cp = 1.0 if mean > 0 else 0.0
        else:
            cp = float(design.conditional_power(z, n, design.min_effect / sd))

    if z >= b_z:
        action = "efficacy"
    elif last:
        action = "max_seeds"
    elif cp is not None and cp < design.futility_threshold:
        action = "futility"
    else:
        action = "continue"

    pvalue: float | None = None
    lower: float | None = None
    if action == "futility":
        pvalue, lower = 1.0, -math.inf
    elif action != "continue":
        pvalue = design.stagewise_pvalue(k, z)
        if action == "efficacy":
            pvalue = min(pvalue, design.alpha)
        else:
            pvalue = max(pvalue, float(np.nextafter(design.alpha, 1.0)))
        if sd == 0.0:
            lower = mean
        else:
            theta = design.lower_bound_theta(k, z)
            lower = theta * sd
            lower = max(lower, 0.0) if action == "efficacy" else min(lower, 0.0)
    return SequentialDecision(
        action=action,
        look_index=k,
        n=n,
        statistic=float(statistic),
        z=z,
        boundary=b_t,
        z_boundary=b_z,
        mean_diff=mean,
        sd_diff=sd,
        conditional_power=cp,
        pvalue=pvalue,
        lower_bound=lower,
    )
