"""One-sided group-sequential paired design: add seeds until the verdict is decided.

Pure numpy/scipy. The data are the paired differences d_i = method_i - baseline_i of the
seeds run so far; they are looked at after the cumulative seed counts ``looks`` = n_1 < ... <
n_K (e.g. [5, 10, 15, 20]). H0: mean(d) <= 0 against H1: mean(d) > 0, one-sided level alpha.

Canonical model. With known sd, Z_k = mean_k / (sd / sqrt(n_k)) has the canonical joint
distribution of Jennison & Turnbull (2000, ch. 3): S_k = Z_k sqrt(I_k), I_k = n_k, is a
Brownian motion observed at I_1 < ... < I_K, with independent increments
S_k - S_{k-1} ~ N(theta (I_k - I_{k-1}), I_k - I_{k-1}) and theta = mean / sd (d_z).
Probabilities are computed by the Armitage-McPherson-Rowe recursion, integrating the
sub-density of Z_k over the continuation region on the grid of Jennison & Turnbull
(2000, sec. 19.2, r = 32 points per unit, Simpson's rule).

Alpha spending (Lan & DeMets 1983), cumulative one-sided type-I error at information
fraction t = n_k / n_K, alpha one-sided:
    obrien_fleming: alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))   (gsDesign ``sfLDOF``)
    pocock:         alpha(t) = alpha ln(1 + (e - 1) t)             (gsDesign ``sfLDPocock``)
Both give alpha(1) = alpha. The efficacy boundary b_k on the z scale solves
P0(Z_1 < b_1, ..., Z_{k-1} < b_{k-1}, Z_k >= b_k) = alpha(t_k) - alpha(t_{k-1}).

Small-sample correction (the sd is estimated). At look k the paired t statistic
T_k = mean_k / (s_k / sqrt(n_k)) has n_k - 1 degrees of freedom. Matching each z boundary's
nominal p-value, c_k = t.isf(Phi_bar(b_k), n_k - 1) (``t_nominal``), is exact at each look
alone but not jointly: the t statistics of successive looks are less correlated than the z's,
and the overall level comes out 2-10% above alpha with 2-5 seeds at the first look (e.g.
0.053 for Pocock, looks [5, 10, 15, 20], alpha 0.05). So the applied boundaries ``t`` are
calibrated on the exact null distribution of the t process, which does not depend on the sd:
c_1 = t_nominal_1 (exact), and each later c_k is set so that the fraction of 500,000 simulated
normal null studies (fixed seed) first crossing at look k equals the spending increment
alpha(t_k) - alpha(t_{k-1}), never below t_nominal_k. The decision rule is T_k >= c_k, i.e.
z_k >= b'_k on the z-equivalent scale z_k = Phi^-1(F_t(T_k; n_k - 1)), b'_k = ``z_effective``.

Futility (non-binding conditional power). Only when ``futility="conditional_power"``: at an
interim look k < K that did not cross b_k, the arm stops for futility when the conditional
power under the smallest effect worth detecting is below ``futility_threshold`` (default 20%;
with 10% the rule stops too rarely under H0: 4 looks [5, 10, 15, 20], OBF, alpha 0.05 one-sided,
E[seeds | H0] = 76% of the fixed design vs 69% with 20%, at a power cost of under 1 point):
    CP_k = Phi_bar((b'_K sqrt(n_K) - z_k sqrt(n_k) - delta (n_K - n_k)) / sqrt(n_K - n_k)),
    delta = min_effect / s_k
(Jennison & Turnbull 2000, sec. 10.2: probability of crossing b_K at the final look given
Z_k = z_k and drift delta). Non-binding: the efficacy boundaries are computed ignoring
futility, so stopping for futility can only lower the type-I error, and a study may ignore a
futility stop and go on without any loss of alpha.

Adjusted p-value (stage-wise ordering, Jennison & Turnbull 2000, sec. 8.4). Stopping for
efficacy at look k with z equivalent z*, or reaching the last look K (``max_seeds``):
    p = sum_{j<k} P0(cross b'_j first at j) + P0(Z_1 < b'_1, ..., Z_{k-1} < b'_{k-1}, Z_k >= z*)
computed by the recursion in the efficacy-only design (about alpha(t_{k-1}) + P0(reach k,
Z_k >= z*)); it is uniform under H0 there up to the normal approximation of the z-equivalent
process, and it is kept consistent with the decision: <= alpha exactly when efficacy was
declared (clipped to alpha, or just above it for a non-rejection, where the approximation
disagrees). A futility stop gives up the test: p = 1 (valid whatever
would have happened later). The lower confidence bound theta_L at level 1 - alpha solves
P_theta(outcome at least as extreme as observed in the stage-wise order) = alpha (sec. 8.5),
so theta_L >= 0 exactly when p <= alpha; the bound on the mean difference is theta_L * s_k.

Holm across arms. With m arms against one baseline, every arm's design is built at level
alpha / m (a Bonferroni split of the spending), so an efficacy stop is a family-wise
rejection; at the end ``holm_sequential`` applies ``normlib.stats.holm`` to the arms'
stage-wise p-values and rejects where the Holm-adjusted value is <= alpha. This is valid
because each stage-wise p-value satisfies P0(p <= u) <= u for u <= alpha (futility stops have
p = 1), which is all Holm needs; arms that reached the last look without crossing still gain
from Holm's step-down. (Level recycling during the study, Maurer & Bretz 2013, would be more
powerful and is not implemented.)

Expected seeds. ``expected_seeds`` uses the same recursion with known sd (z boundaries and
the futility rule's z boundary a_k with delta = min_effect / sd); ``simulate`` measures the
t-based procedure as it is used, on simulated studies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy import stats as sps

SPENDINGS = ("obrien_fleming", "pocock")
FUTILITY_RULES = (None, "conditional_power")
ACTIONS = ("continue", "efficacy", "futility", "max_seeds")
NOISES = ("normal", "t3")
_GRID_R = 32

__all__ = [
    "ACTIONS",
    "Boundaries",
    "ExpectedSeeds",
    "SPENDINGS",
    "SequentialDecision",
    "SequentialDesign",
    "SimulationResult",
    "boundaries",
    "crossing_probabilities",
    "decide",
    "detectable_effect",
    "expected_seeds",
    "holm_sequential",
    "obrien_fleming",
    "pocock",
    "simulate",
]


# ----------------------------------------------------------------------------- spending


def obrien_fleming(t, alpha: float):
    """Lan-DeMets O'Brien-Fleming-type spending, one-sided alpha:
    alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)), alpha(0) = 0, alpha(1) = alpha."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        spent = 2.0 * sps.norm.sf(sps.norm.isf(alpha / 2.0) / np.sqrt(t))
    return np.where(t > 0, spent, 0.0)


def pocock(t, alpha: float):
    """Lan-DeMets Pocock-type spending: alpha(t) = alpha ln(1 + (e - 1) t)."""
    return alpha * np.log1p((math.e - 1.0) * np.asarray(t, dtype=float))


_SPENDING_FUNCTIONS = {"obrien_fleming": obrien_fleming, "pocock": pocock}


# ----------------------------------------------------------------------------- validation


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise ValueError(f"alpha must be a number strictly between 0 and 1 (got {alpha!r})")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1 (got {alpha!r})")
    return float(alpha)


def _check_spending(spending) -> str:
    if spending not in SPENDINGS:
        raise ValueError(f"spending must be one of {', '.join(SPENDINGS)} (got {spending!r})")
    return spending


def _check_looks(looks) -> tuple[int, ...]:
    if isinstance(looks, str | bytes) or not isinstance(looks, Sequence | np.ndarray):
        raise ValueError(f"looks must be a list of cumulative seed counts (got {looks!r})")
    values = list(looks)
    if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in values):
        raise ValueError(f"looks must contain integers only (got {values!r})")
    values = [int(n) for n in values]
    if len(values) < 2:
        raise ValueError(f"looks must have at least 2 looks (got {values!r})")
    if values[0] < 2:
        raise ValueError(f"looks[0] must be >= 2 seeds (a t-test needs 2 pairs; got {values!r})")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"looks must be strictly increasing (got {values!r})")
    return tuple(values)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    return float(value)


# ----------------------------------------------------------------------------- recursion


def _grid(mean: float, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights on (low, high) for a density centred at ``mean`` (J&T 19.2)."""
    r = _GRID_R
    i = np.arange(1, 6 * r, dtype=float)
    x = np.where(
        i < r,
        mean - 3.0 - 4.0 * np.log(r / i),
        np.where(i <= 5 * r, mean - 3.0 + 3.0 * (i - r) / (2 * r),
                 mean + 3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1e-300))),
    )
    inside = x[(x > low) & (x < high)]
    points = [inside]
    if low > x[0]:
        points.insert(0, np.array([low]))
    if high < x[-1]:
        points.append(np.array([high]))
    x = np.concatenate(points)
    if x.size < 2:  # continuation region narrower than the grid spacing, or empty
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            return np.zeros(0), np.zeros(0)
        x = np.array([low, high])
    z = np.empty(2 * x.size - 1)
    z[0::2] = x
    z[1::2] = 0.5 * (x[:-1] + x[1:])
    d = np.diff(x)
    w = np.zeros_like(z)
    w[0:-1:2] += d / 6.0
    w[2::2] += d / 6.0
    w[1::2] = 4.0 * d / 6.0
    return z, w


class _Walk:
    """Sub-density of Z_k on the continuation region, advanced look by look."""

    def __init__(self, info: np.ndarray, theta: float):
        self.info = np.asarray(info, dtype=float)
        self.sqrt_info = np.sqrt(self.info)
        self.theta = theta
        self.k = -1  # last look whose density is held
        self.z = np.zeros(0)
        self.h = np.zeros(0)  # Simpson weight x sub-density at the points z

    def _conditional(self, k: int) -> tuple[np.ndarray, float]:
        """Mean of S_k given the held Z_{k-1} grid, and the increment's sd."""
        d = self.info[k] - self.info[k - 1]
        return self.z * self.sqrt_info[k - 1] + self.theta * d, math.sqrt(d)

    def upper(self, k: int, b: float) -> float:
        """P(reach look k, Z_k >= b); k must be the next look."""
        if k == 0:
            return float(sps.norm.sf(b - self.theta * self.sqrt_info[0]))
        shift, sd = self._conditional(k)
        return float(self.h @ sps.norm.sf((b * self.sqrt_info[k] - shift) / sd))

    def lower(self, k: int, a: float) -> float:
        """P(reach look k, Z_k < a)."""
        if k == 0:
            return float(sps.norm.cdf(a - self.theta * self.sqrt_info[0]))
        shift, sd = self._conditional(k)
        return float(self.h @ sps.norm.cdf((a * self.sqrt_info[k] - shift) / sd))

    def advance(self, k: int, a: float, b: float) -> None:
        """Hold the sub-density of Z_k on the continuation region (a, b)."""
        mean = self.theta * self.sqrt_info[k]
        z, w = _grid(mean, a, b)
        if k == 0:
            density = sps.norm.pdf(z - mean)
        elif z.size == 0 or self.h.size == 0:
            density = np.zeros(z.size)
        else:
            shift, sd = self._conditional(k)
            kernel = sps.norm.pdf((z[:, None] * self.sqrt_info[k] - shift[None, :]) / sd)
            density = kernel @ self.h * (self.sqrt_info[k] / sd)
        self.z, self.h, self.k = z, w * density, k


def crossing_probabilities(looks, upper, lower=None, effect: float = 0.0):
    """First-exit probabilities of the canonical z process observed at ``looks``.

    Z_k ~ N(effect sqrt(n_k), 1) with Corr(Z_i, Z_j) = sqrt(n_i / n_j), i <= j; effect is the
    standardized per-seed effect (mean / sd). ``upper`` b_k and ``lower`` a_k (default -inf)
    are z-scale boundaries; the study continues while a_k < Z_k < b_k. Returns two arrays:
    P(stop first at k with Z_k >= b_k) and P(stop first at k with Z_k <= a_k).
    """
    looks = _check_looks(looks)
    upper = np.asarray(upper, dtype=float)
    lower = np.full(len(looks), -np.inf) if lower is None else np.asarray(lower, dtype=float)
    if upper.shape != (len(looks),) or lower.shape != (len(looks),):
        raise ValueError("upper and lower must have one value per look")
    lower = np.minimum(lower, upper)
    walk = _Walk(np.asarray(looks, dtype=float), _check_real("effect", effect))
    up = np.zeros(len(looks))
    down = np.zeros(len(looks))
    for k in range(len(looks)):
        up[k] = walk.upper(k, upper[k])
        down[k] = walk.lower(k, lower[k])
        if k < len(looks) - 1:
            walk.advance(k, lower[k], upper[k])
    return up, down


def _efficacy_z(info: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """z boundaries spending ``cumulative`` alpha under theta = 0, efficacy only."""
    walk = _Walk(info, 0.0)
    bounds = np.empty(info.size)
    spent_before = 0.0
    for k in range(info.size):
        target = float(cumulative[k] - spent_before)
        if target <= 1e-300:
            bounds[k] = np.inf
        elif k == 0:
            bounds[k] = float(sps.norm.isf(target))
        else:
            def excess(b, k=k, target=target):
                return walk.upper(k, b) - target

            low, high = -10.0, 40.0
            if excess(low) < 0:  # the whole remaining mass is less than the increment
                bounds[k] = -np.inf
            else:
                bounds[k] = optimize.brentq(excess, low, high, xtol=1e-10, rtol=1e-12)
        spent_before = float(cumulative[k])
        if k < info.size - 1:
            walk.advance(k, -np.inf, bounds[k])
    return bounds


# ----------------------------------------------------------------------------- boundaries


@dataclass(frozen=True)
class Boundaries:
    """Efficacy boundaries per look.

    ``z``: the canonical (known-sd) boundaries b_k, as in the published tables.
    ``t_nominal``: t.isf(Phi_bar(b_k), df_k), same nominal p-value (``nominal_p``).
    ``t``: the boundaries ``decide`` applies to the paired t statistic: calibrated on the
    exact null t process (``_calibrated_t``), >= t_nominal. ``z_effective``: their z
    equivalents, used for p-values, bounds, conditional power and planning.
    ``information`` t_k = n_k / n_K, ``cumulative_alpha`` alpha(t_k), ``df`` n_k - 1.
    """

    looks: tuple[int, ...]
    alpha: float
    spending: str
    information: tuple[float, ...]
    cumulative_alpha: tuple[float, ...]
    z: tuple[float, ...]
    nominal_p: tuple[float, ...]
    t_nominal: tuple[float, ...]
    t: tuple[float, ...]
    z_effective: tuple[float, ...]
    df: tuple[int, ...]


def boundaries(looks, alpha: float = 0.025, spending: str = "obrien_fleming") -> Boundaries:
    """Lan-DeMets efficacy boundaries for cumulative seed counts ``looks``, one-sided alpha.

    z boundaries by the exact recursion (module docstring); t boundaries with the same
    nominal p-value at n_k - 1 degrees of freedom. Raises ValueError for looks that are not
    strictly increasing integers, fewer than 2 looks, a first look below 2 seeds, alpha
    outside (0, 1) or an unknown spending name.
    """
    looks = _check_looks(looks)
    alpha = _check_alpha(alpha)
    spending = _check_spending(spending)
    info = np.asarray(looks, dtype=float)
    fraction = info / info[-1]
    cumulative = np.asarray(_SPENDING_FUNCTIONS[spending](fraction, alpha), dtype=float)
    cumulative[-1] = alpha
    z = _efficacy_z(info, cumulative)
    nominal = sps.norm.sf(z)
    df = np.asarray(looks) - 1
    t_nominal = sps.t.isf(nominal, df)
    t = np.asarray(_calibrated_t(looks, tuple(cumulative), tuple(t_nominal)))
    return Boundaries(
        looks=looks,
        alpha=alpha,
        spending=spending,
        information=tuple(float(f) for f in fraction),
        cumulative_alpha=tuple(float(c) for c in cumulative),
        z=tuple(float(b) for b in z),
        nominal_p=tuple(float(p) for p in nominal),
        t_nominal=tuple(float(c) for c in t_nominal),
        t=tuple(float(c) for c in t),
        z_effective=tuple(float(b) for b in _t_to_z(t, df)),
        df=tuple(int(d) for d in df),
    )


_CALIBRATION_STUDIES = 500_000
_CALIBRATION_SEED = 20_250_601
_CALIBRATION_MIN_CROSSINGS = 200


def _null_t_process(looks: tuple[int, ...], n_studies: int, seed: int) -> np.ndarray:
    """Paired t statistics at ``looks`` of ``n_studies`` simulated null studies (normal)."""
    rng = np.random.default_rng(seed)
    idx = np.asarray(looks) - 1
    n = np.asarray(looks, dtype=float)
    out = np.empty((n_studies, len(looks)))
    step = max(1, 4_000_000 // looks[-1])
    for start in range(0, n_studies, step):
        x = rng.standard_normal((min(step, n_studies - start), looks[-1]))
        s1 = np.cumsum(x, axis=1)[:, idx]
        s2 = np.cumsum(x * x, axis=1)[:, idx]
        mean = s1 / n
        var = np.maximum((s2 - n * mean * mean) / (n - 1), 1e-300)
        out[start:start + x.shape[0]] = mean / np.sqrt(var / n)
    return out


@functools.lru_cache(maxsize=64)
def _calibrated_t(looks, cumulative, t_nominal) -> tuple[float, ...]:
    """t boundaries with the spending's increments under the exact null t process.

    Look 1 is exact: c_1 = t_nominal_1. At a later look, c_k is the empirical quantile, over
    500,000 simulated normal null studies (fixed seed; the null t process does not depend on
    the sd), for which the fraction of studies first crossing at look k equals the increment
    alpha(t_k) - alpha(t_{k-1}); never below the nominal boundary, and the nominal one when
    the increment is too small to estimate (fewer than 200 expected crossings).
    """
    stats = _null_t_process(looks, _CALIBRATION_STUDIES, _CALIBRATION_SEED)
    alive = np.ones(stats.shape[0], dtype=bool)
    bounds = []
    previous = 0.0
    for k, (cum, nominal) in enumerate(zip(cumulative, t_nominal, strict=True)):
        crossings = int(round((cum - previous) * stats.shape[0]))
        previous = cum
        c = nominal
        values = stats[alive, k]
        if k > 0 and crossings >= _CALIBRATION_MIN_CROSSINGS and crossings < values.size:
            c = max(nominal, float(np.partition(values, values.size - crossings)[
                values.size - crossings]))
        bounds.append(float(c))
        alive &= stats[:, k] < c
    return tuple(bounds)


# ----------------------------------------------------------------------------- design


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

    def __post_init__(self):
        object.__setattr__(self, "looks", _check_looks(self.looks))
        object.__setattr__(self, "alpha", _check_alpha(self.alpha))
        _check_spending(self.spending)
        if self.futility not in FUTILITY_RULES:
            raise ValueError(
                f"futility must be one of None, 'conditional_power' (got {self.futility!r})"
            )
        if self.min_effect is not None:
            object.__setattr__(self, "min_effect", _check_positive("min_effect", self.min_effect))
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

    def conditional_power(self, z, n, delta):
        """CP of crossing b_K at the last look from Z = z at n seeds, drift delta (per seed)."""
        n_max = self.looks[-1]
        b_max = self.bounds.z_effective[-1]
        rest = n_max - np.asarray(n, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            arg = (b_max * math.sqrt(n_max) - z * np.sqrt(n) - delta * rest) / np.sqrt(rest)
        return sps.norm.sf(arg)

    def futility_z(self, delta: float) -> np.ndarray:
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
        return np.minimum(a, np.asarray(self.bounds.z_effective))

    def stagewise_pvalue(self, look_index: int, z: float) -> float:
        """alpha(t_{k-1}) + P0(reach look k, Z_k >= z) in the efficacy-only design."""
        return self._stagewise(look_index, z, 0.0)

    def _stagewise(self, k: int, z: float, theta: float) -> float:
        walk = _Walk(np.asarray(self.looks, dtype=float), theta)
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

        def excess(theta):
            return self._stagewise(look_index, z, theta) - target

        low, high = centre - width, centre + width
        while excess(low) > 0:
            low -= width
        while excess(high) < 0:
            high += width
        return float(optimize.brentq(excess, low, high, xtol=1e-9))

    def decide(self, differences, look_index: int | None = None) -> SequentialDecision:
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


def _t_to_z(statistic, df):
    """z with the same one-sided p-value: Phi^-1(F_t(T; df))."""
    return sps.norm.isf(sps.t.sf(statistic, df))


def decide(
    differences,
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
    if look_index is None:
        k = design.look_of(n)
    else:
        if isinstance(look_index, bool) or not isinstance(look_index, int | np.integer) or not (
            0 <= look_index < len(design.looks)
        ):
            raise ValueError(
                f"look_index must be an integer in 0..{len(design.looks) - 1} (got {look_index!r})"
            )
        k = int(look_index)
        if n != design.looks[k]:
            raise ValueError(
                f"look {k} is at {design.looks[k]} seeds but {n} differences were given"
            )
    last = k == len(design.looks) - 1
    mean = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1)) if np.any(diffs != diffs[0]) else 0.0
    df = n - 1
    if sd == 0.0:
        statistic = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        statistic = mean / (sd / math.sqrt(n))
    z = float(_t_to_z(statistic, df))
    b_z = design.bounds.z_effective[k]
    b_t = design.bounds.t[k]

    cp = None
    if design.futility == "conditional_power" and not last:
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

    pvalue = lower = None
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


# ----------------------------------------------------------------------------- planning


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


def _operating(design: SequentialDesign, theta: float, delta_min: float | None):
    lower = design.futility_z(delta_min) if delta_min is not None else None
    upper = np.asarray(design.bounds.z_effective)
    if lower is not None:
        lower = lower.copy()
        lower[-1] = upper[-1]
    else:
        lower = np.full(len(design.looks), -np.inf)
        lower[-1] = upper[-1]
    up, down = crossing_probabilities(design.looks, upper, lower, theta)
    return up, down


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
    effect = _check_real("effect", effect)
    sd = _check_positive("sd", sd)
    delta_min = None if design.futility is None else design.min_effect / sd
    up, down = _operating(design, effect / sd, delta_min)
    stop = up + down
    expected = float(np.dot(design.looks, stop))
    power = float(up.sum())

    if reference_effect is None:
        reference_effect = effect if effect > 0 else design.min_effect
    fixed = ratio = ref_power = None
    if reference_effect is not None:
        reference_effect = _check_positive("reference_effect", reference_effect)
        ref_up, _ = _operating(design, reference_effect / sd, delta_min)
        ref_power = float(min(ref_up.sum(), 1.0 - 1e-12))
        if ref_power > design.alpha:
            from normlib.stats import seeds_needed  # lazy: normlib.stats re-exports this module

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

    def excess(theta):
        return crossing_probabilities(design.looks, upper, None, theta)[0].sum() - power

    return float(optimize.brentq(excess, 0.0, 20.0, xtol=1e-10))


# ----------------------------------------------------------------------------- simulation


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
    effect = _check_real("effect", effect)
    sd = _check_positive("sd", sd)
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
            if design.futility == "conditional_power":
                z = _t_to_z(stat[:, k], looks[k] - 1)
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


# ----------------------------------------------------------------------------- Holm


def holm_sequential(
    decisions: Sequence[SequentialDecision], designs: Sequence[SequentialDesign], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Holm across m arms: (Holm-adjusted stage-wise p-values, rejected) in the input order.

    Every arm must have stopped, and its design must be at level <= alpha / m (the Bonferroni
    split that makes each efficacy stop a family-wise rejection). Rejected: adjusted <= alpha.
    """
    alpha = _check_alpha(alpha)
    if len(decisions) != len(designs):
        raise ValueError(
            f"decisions ({len(decisions)}) and designs ({len(designs)}) must pair up per arm"
        )
    m = len(decisions)
    for i, (decision, design) in enumerate(zip(decisions, designs, strict=True)):
        if not decision.stopped:
            raise ValueError(f"arm {i} has not stopped yet (action 'continue')")
        if design.alpha > alpha / m * (1 + 1e-9):
            raise ValueError(
                f"arm {i}'s design has alpha={design.alpha}; with {m} arms it must be "
                f"<= alpha / m = {alpha / m}"
            )
    from normlib.stats import holm  # lazy: normlib.stats re-exports this module

    adjusted = holm([d.pvalue for d in decisions])
    return adjusted, adjusted <= alpha
