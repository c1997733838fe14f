"""Sequential confirmation: each arm's decision at each look, from the trials of a study.

The study's ``sequential`` section (:mod:`studies.config.sequential`) fixes looks
n_1 < ... < n_K (cumulative seeds per arm) and the seeds they use, in the order of
``spec.seeds``. At look k an arm is judged on the paired differences of the first n_k seeds,
d_i = sign * (arm_i - baseline_i), sign = +1 for a metric to maximize and -1 to minimize, by
``normlib.stats.design.SequentialDesign.decide``: efficacy when the paired t statistic crosses
the look's calibrated boundary, futility when the conditional power under ``min_effect`` is
below ``futility_threshold`` (non-binding), max_seeds at the last look, else continue. An arm
that stopped runs no further seeds; its decision is recomputed the same from the trials at
any later time (the runner and ``normstudy compare`` agree).

Multiple arms (Holm with spending). With m arms each arm's design spends alpha / m
(Bonferroni split of the spending), so an efficacy stop is already a family-wise rejection.
When every arm has stopped, ``normlib.stats.multiplicity.holm_sequential`` Holm-adjusts the arms'
stage-wise p-values (a futility stop has p = 1): rejected where the adjusted p <= alpha.
This is valid because each stage-wise p-value is super-uniform under H0 up to alpha.

Fixed design of the same power: for an arm with a positive sd of differences s, the seeds a
fixed one-sided paired t-test at level alpha / m needs to reach this design's power at
``min_effect`` with sd s (``normlib.stats.planning.expected_seeds``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from normlib.stats import (
    SequentialDecision,
    SequentialDesign,
    expected_seeds,
    holm,
    holm_sequential,
)
from studies.analysis.comparison import Comparison
from studies.config.sequential import SequentialSpec

STOPPED = ("efficacy", "futility", "max_seeds", "incomplete")


def design_for(section: SequentialSpec, n_arms: int) -> SequentialDesign:
    """One arm's design: the section's looks and spending at level alpha / n_arms."""
    return SequentialDesign(
        tuple(section.looks),
        alpha=section.alpha / max(n_arms, 1),
        spending=section.spending,
        min_effect=section.min_effect,
        futility=None if section.futility == "none" else section.futility,
        futility_threshold=section.futility_threshold,
    )


@dataclass
class Look:
    """One arm at one look (look is 1-based)."""

    look: int
    n: int
    mean_diff: float
    sd_diff: float
    statistic: float
    boundary: float
    conditional_power: float | None
    action: str


@dataclass
class ArmSequence:
    """An arm's path through the looks. ``action``: continue, efficacy, futility, max_seeds or
    incomplete (a failed trial left a look without its pairs); ``look``: the last look judged
    (1-based; 0 before the first); ``n``: seeds used."""

    arm: str
    action: str = "continue"
    look: int = 0
    n: int = 0
    history: list[Look] = field(default_factory=list)
    pvalue: float | None = None
    p_holm: float | None = None
    lower_bound: float | None = None
    significant: bool | None = None
    fixed_seeds: int | None = None
    fixed_power: float | None = None

    @property
    def stopped(self) -> bool:
        return self.action in STOPPED

    def reason(self, min_effect: float, threshold: float) -> str:
        """Why the arm stopped (or that it goes on), in words."""
        last = self.history[-1] if self.history else None
        if last is None:
            return "no look yet"
        where = f"look {self.look} ({self.n} seeds)"
        if self.action == "efficacy":
            return f"efficacy at {where}: t = {last.statistic:.2f} >= boundary {last.boundary:.2f}"
        if self.action == "futility":
            return (f"futility at {where}: conditional power {last.conditional_power:.0%} "
                    f"under min_effect {min_effect:g} < {threshold:.0%}")  # fmt: skip
        if self.action == "max_seeds":
            return (f"max seeds at {where}: t = {last.statistic:.2f} < boundary "
                    f"{last.boundary:.2f}")  # fmt: skip
        if self.action == "incomplete":
            return f"incomplete at look {self.look}: failed trials left fewer than its pairs"
        return f"continues after {where}"


@dataclass
class SequentialResult:
    section: SequentialSpec
    seeds: list[int]
    arm_alpha: float
    completed_looks: int
    arms: list[ArmSequence]

    @property
    def looks(self) -> list[int]:
        return list(self.section.looks)

    @property
    def done(self) -> bool:
        return all(arm.stopped for arm in self.arms)

    def arm(self, label: str) -> ArmSequence | None:
        return next((a for a in self.arms if a.arm == label), None)

    def pending(self) -> list[str]:
        return [a.arm for a in self.arms if not a.stopped]

    def seeds_run(self) -> int:
        """Trials of arm x seed this design ran (baseline: as many as the longest arm)."""
        return sum(a.n for a in self.arms) + max((a.n for a in self.arms), default=0)

    def seeds_fixed(self) -> int:
        """Trials a fixed design with looks[-1] seeds per arm would run."""
        return (len(self.arms) + 1) * self.looks[-1]

    def reason(self, arm: ArmSequence) -> str:
        return arm.reason(self.section.min_effect, self.section.futility_threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "design": self.section.model_dump(mode="json"),
            "seeds": self.seeds,
            "arm_alpha": self.arm_alpha,
            "completed_looks": self.completed_looks,
            "done": self.done,
            "trials_run": self.seeds_run(),
            "trials_fixed_design": self.seeds_fixed(),
            "arms": [{**_clean(asdict(a)), "reason": self.reason(a)} for a in self.arms],
        }


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def analyze(comparison: Comparison, completed_looks: int | None = None) -> SequentialResult:
    """Every arm's decisions at the looks its trials reach (see the module docstring).

    ``completed_looks``: looks the runner finished; a look among them without all its pairs
    marks the arm ``incomplete``. None (``normstudy compare``): judge what the trials hold.
    """
    spec = comparison.spec
    section = spec.sequential
    if section is None:
        raise ValueError(f"study {spec.name!r} has no sequential design")
    design = design_for(section, len(comparison.rows))
    sign = 1.0 if comparison.mode == "max" else -1.0
    values: dict[str, dict[int, float]] = {}
    for score in comparison.scores:
        values.setdefault(score.arm, {})[score.seed] = score.value
    base = values.get(comparison.baseline, {})
    limit = len(section.looks) if completed_looks is None else completed_looks
    result = SequentialResult(section, list(spec.seeds), design.alpha, 0, [])
    decisions: list[SequentialDecision | None] = []
    for row in comparison.rows:
        arm, decision = _walk(row.arm, values.get(row.arm, {}), base, spec.seeds, design, sign,
                              limit, completed_looks is not None)  # fmt: skip
        result.arms.append(arm)
        decisions.append(decision)
        if decision is not None and decision.stopped and arm.n:
            _fixed(arm, design, decision)
    result.completed_looks = max((a.look for a in result.arms), default=0)
    if completed_looks is not None:
        result.completed_looks = completed_looks
    if result.done:
        _holm(result, decisions, design)
    return result


def _walk(label: str, arm: dict[int, float], base: dict[int, float], seeds: list[int],
          design: SequentialDesign, sign: float, limit: int, strict: bool,
          ) -> tuple[ArmSequence, SequentialDecision | None]:
    """One arm's looks in order (up to ``limit``) until its design stops it."""
    sequence = ArmSequence(label)
    decision = None
    for k, n in enumerate(design.looks[:limit]):
        needed = seeds[:n]
        if not all(s in arm and s in base for s in needed):
            if strict:
                sequence.action, sequence.look = "incomplete", k + 1
                sequence.pvalue, sequence.significant = 1.0, False
            break
        decision = design.decide([sign * (arm[s] - base[s]) for s in needed], k)
        sequence.history.append(Look(k + 1, n, decision.mean_diff * sign, decision.sd_diff,
                                     decision.statistic, decision.boundary,
                                     decision.conditional_power, decision.action))  # fmt: skip
        sequence.look, sequence.n, sequence.action = k + 1, n, decision.action
        if decision.stopped:
            sequence.pvalue, sequence.lower_bound = decision.pvalue, decision.lower_bound
            break
    return sequence, decision


def _fixed(arm: ArmSequence, design: SequentialDesign, decision: SequentialDecision) -> None:
    if not decision.sd_diff > 0 or design.min_effect is None:
        return
    plan = expected_seeds(design, design.min_effect, decision.sd_diff, design.min_effect)
    arm.fixed_seeds, arm.fixed_power = plan.fixed_seeds, plan.reference_power


def _holm(result: SequentialResult, decisions: list[SequentialDecision | None],
          design: SequentialDesign) -> None:
    """Holm across arms once all stopped: holm_sequential, or plain Holm on the stage-wise
    p-values when a failed look left an arm without a decision (p = 1)."""
    alpha = result.section.alpha
    stopped = [d for d in decisions if d is not None and d.stopped]
    if len(stopped) == len(decisions) and decisions and not any(
        a.action == "incomplete" for a in result.arms
    ):
        adjusted, rejected = holm_sequential(stopped, [design] * len(stopped), alpha)
    else:
        adjusted = holm([a.pvalue if a.pvalue is not None else 1.0 for a in result.arms])
        rejected = adjusted <= alpha
    for arm, p, hit in zip(result.arms, adjusted, rejected, strict=True):
        arm.p_holm, arm.significant = float(p), bool(hit)


def apply_verdicts(comparison: Comparison, result: SequentialResult) -> None:
    """The comparison's verdicts become the sequential test's (the fixed-design t-test columns
    ignore the looks), with a warning saying so. Seeds after an arm's last look are not
    missing: a stopped arm never runs them."""
    seeds = comparison.spec.seeds
    for row in comparison.rows:
        arm = result.arm(row.arm)
        if arm is None:
            continue
        used = set(seeds[:arm.n])
        if row.missing_arm or row.missing_baseline:
            prefix = f"{row.arm}: {row.n_pairs} pair(s); "
            comparison.warnings = [w for w in comparison.warnings if not w.startswith(prefix)]
            row.missing_arm = [s for s in row.missing_arm if s in used]
            row.missing_baseline = [s for s in row.missing_baseline if s in used]
        if arm.significant is not None:
            row.verdict = "significant" if arm.significant else "not significant"
        elif not arm.stopped:
            row.verdict = f"running (look {arm.look} of {len(result.looks)})"
    comparison.warnings.append(
        "sequential study: t, p and p (Holm) treat the seeds as a fixed design; the verdict is "
        "the group-sequential test's (stage-wise p, Holm across arms): see the sequential table"
    )
    comparison.sequential = result
