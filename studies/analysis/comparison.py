"""The comparison stage: does each arm of a study beat the baseline, seed for seed?

Pipeline (the modules of :mod:`studies.analysis`)::

    trials.load_trials(folder, spec, source)         -> list[TrialHistory]
    comparison.compare(trials, spec, metric, ...)    -> Comparison   (this module)
    report.format_table / to_csv / to_markdown       -> text
    plots.paired_plot / curves_plot                  -> PNG
    outputs.run_comparison(study, ...)               -> comparison/ files, logged to MLflow

Every non-baseline arm is paired with the baseline arm by seed (only seeds where both
trials finished count) and tested with the one-sided paired t-test of
``normlib.stats.paired_ttest``: alternative "greater" (arm > baseline) for a metric to
maximize, "less" for one to minimize. The p-values of all arms are Holm-adjusted together;
the verdict is "significant" when the adjusted p-value is <= alpha. A Wilcoxon signed-rank
p-value, the effect size d_z and the number of seeds a paired t-test needs for 80% power at
the observed d_z come with every row. Diverged and incomplete trials are failures: they are
listed in ``Comparison.excluded`` and the test runs on the remaining pairs with a warning.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from normlib import stats
from studies.analysis.trials import TrialHistory
from studies.config.space import (
    arm_label,
    arms,
    has_arms,
    is_baseline,
    is_finite,
    with_values,
)
from studies.config.spec import METRICS, SpecError, StudySpec

SELECTIONS = ("final", "best_val")
TARGET_POWER = 0.8
NOT_ENOUGH = "not enough pairs"


@dataclass
class Score:
    """The number a trial contributes: ``value`` of ``metric`` at ``epoch``."""

    trial_id: str
    arm: str
    seed: int
    value: float
    epoch: int


@dataclass
class Excluded:
    trial_id: str
    arm: str
    seed: int | None
    reason: str


@dataclass
class ArmRow:
    """One arm against the baseline. Statistics are NaN (and ``seeds_needed`` None) when
    fewer than 2 pairs exist; then ``verdict`` is "not enough pairs"."""

    arm: str
    params: dict[str, Any]
    n_pairs: int
    paired_seeds: list[int]
    missing_arm: list[int]
    missing_baseline: list[int]
    arm_mean: float
    arm_sd: float
    baseline_mean: float
    baseline_sd: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    p_holm: float
    d_z: float
    wilcoxon_p: float
    seeds_needed: int | None
    verdict: str
    note: str = ""

    @property
    def enough(self) -> bool:
        return self.n_pairs >= 2


@dataclass
class Comparison:
    """Everything the comparison found; ``rows`` has one :class:`ArmRow` per non-baseline
    arm, ``scores`` the value of every usable trial, ``excluded`` the failures."""

    spec: StudySpec
    metric: str
    scored_metric: str
    select: str
    alpha: float
    mode: str
    alternative: str
    baseline: str
    baseline_params: dict[str, Any]
    rows: list[ArmRow]
    scores: list[Score]
    excluded: list[Excluded]
    warnings: list[str]
    trials: list[TrialHistory]
    sequential: Any = None  # a SequentialResult (studies.analysis.sequential) if the study has one

    @property
    def n_tests(self) -> int:
        return sum(row.enough for row in self.rows)


def metric_mode(metric: str, spec: StudySpec) -> str:
    """The study's mode for its own metric; otherwise min for a loss, max for an accuracy."""
    if metric == spec.metric.name:
        return spec.metric.mode
    return "min" if metric.endswith("_loss") else "max"


def check_options(metric: str, select: str, alpha: float) -> None:
    """SpecError naming each bad option (CLI exit code 2)."""
    problems = []
    if metric not in METRICS:
        problems.append(("--metric", f"unknown metric {metric!r}; valid: {', '.join(METRICS)}"))
    if select not in SELECTIONS:
        problems.append(("--select", f"unknown selection {select!r}; valid: final, best_val"))
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        problems.append(("--alpha", f"must lie strictly between 0 and 1 (got {alpha!r})"))
    if problems:
        raise SpecError(problems)


def _score(trial: TrialHistory, metric: str, select: str) -> tuple[float, int] | str:
    """(value, epoch) of a trial, or the reason it has none."""
    kind = "loss" if metric.endswith("_loss") else "acc"
    if select == "final":
        history = trial.history.get(metric, {})
        if not history or max(history) != trial.last_epoch:
            return f"no {metric} at its last epoch {trial.last_epoch}"
        epoch = max(history)
        return history[epoch], epoch
    selector, scored = f"val_{kind}", f"test_{kind}"
    history = trial.history.get(selector, {})
    if not history:
        return f"no {selector} values"
    sign = 1.0 if kind == "acc" else -1.0
    epoch = max(history, key=lambda e: (sign * history[e], -e))  # earliest best epoch
    value = trial.history.get(scored, {}).get(epoch)
    if value is None:
        return f"no {scored} at its best-{selector} epoch {epoch}"
    return value, epoch


def _failure(trial: TrialHistory, epochs: int) -> str | None:
    if trial.status == "diverged":
        flags = trial.history.get("diverged", {})
        epoch = min(e for e, value in flags.items() if value >= 0.5)
        return f"diverged at epoch {epoch}"
    if trial.status == "incomplete":
        return (f"incomplete: {trial.last_epoch} of {epochs} epochs "
                "(errored, stopped early or still running)")  # fmt: skip
    if trial.seed is None:
        return "no seed recorded"
    return None


def _arm_key(values: Any) -> Any:
    """A hashable key that two arms' values share exactly when they match both ways
    (:func:`studies.config.space.matches`): numbers as floats (a grid value 0 finds trials
    that recorded 0.0), mappings as sorted items, lists item by item."""
    if isinstance(values, dict):
        return ("map", tuple(sorted((key, _arm_key(value)) for key, value in values.items())))
    if isinstance(values, (list, tuple)):
        return ("list", tuple(_arm_key(value) for value in values))
    if isinstance(values, (int, float)):
        return float(values)
    return values


def _arm_order(spec: StudySpec, trials: list[TrialHistory]) -> tuple[list[str], dict[str, dict]]:
    """Arm labels in spec order for grid sweeps (then any others by first trial id), and the
    values of arms the spec lists but no trial has yet. Spec arms are matched by value
    (:func:`_arm_key`), through one index of the trials: a 2,000-arm study of 10,000 trials
    is not 2,000 scans of them."""
    first_label: dict[Any, str] = {}
    for trial in trials:
        first_label.setdefault(_arm_key(trial.arm_values), trial.arm)
    order: dict[str, None] = {}  # insertion-ordered, with constant-time membership
    without_trials: dict[str, dict[str, Any]] = {}
    if is_finite(spec) and has_arms(spec):
        for wanted in arms(spec):
            label = first_label.get(_arm_key(wanted))
            if label is None:
                label = arm_label(wanted)
                without_trials[label] = wanted
            order.setdefault(label)
    for trial in trials:
        order.setdefault(trial.arm)
    return list(order), without_trials


def _spec_baseline_label(spec: StudySpec) -> str:
    """The baseline arm's label from the spec alone (when no baseline trial exists yet)."""
    if is_finite(spec) and has_arms(spec):
        for values in arms(spec):
            if is_baseline(with_values(spec.trial_config(), values), spec):
                return arm_label(values)
    return "baseline"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) >= 2 else math.nan
    return mean, sd


def compare(
    trials: list[TrialHistory],
    spec: StudySpec,
    metric: str | None = None,
    select: str = "final",
    alpha: float = 0.05,
) -> Comparison:
    """Pair every arm with the baseline by seed and test it; see the module docstring."""
    metric = metric or spec.metric.name
    check_options(metric, select, alpha)
    if spec.baseline is None:
        raise SpecError([("baseline", "the study has no baseline, so there is nothing to "
                                      "compare against; add `baseline:` to the spec, or see "
                                      f"its best configuration with `normstudy best "
                                      f"{spec.name}`")])  # fmt: skip
    mode = metric_mode(metric, spec)
    alternative = "greater" if mode == "max" else "less"
    kind = "loss" if metric.endswith("_loss") else "acc"
    scored_metric = metric if select == "final" else f"test_{kind}"
    needed = metric if select == "final" else f"val_{kind}"
    if trials and not any(needed in t.history for t in trials):
        raise SpecError([("--metric", f"no trial of study {spec.name!r} reports {needed!r}")])

    baseline_labels = sorted({t.arm for t in trials if t.baseline})
    if len(baseline_labels) > 1:
        labels = "; ".join(baseline_labels)
        raise SpecError([("baseline", f"matches {len(baseline_labels)} arms ({labels}); "
                                      "it must pick one")])  # fmt: skip
    baseline = baseline_labels[0] if baseline_labels else _spec_baseline_label(spec)

    warnings: list[str] = []
    excluded: list[Excluded] = []
    usable: dict[str, dict[int, Score]] = {}
    params: dict[str, dict[str, Any]] = {}
    seen_seeds: dict[str, set[int]] = {}
    for trial in trials:
        params.setdefault(trial.arm, trial.arm_values)
        if trial.seed is not None:
            seen_seeds.setdefault(trial.arm, set()).add(trial.seed)
        reason = _failure(trial, spec.train.epochs)
        if reason is None:
            scored = _score(trial, metric, select)
            if isinstance(scored, str):
                reason = scored
            elif trial.seed is None:
                reason = "no seed in its config (it pairs with no baseline trial)"
            elif trial.seed in usable.get(trial.arm, {}):
                first = usable[trial.arm][trial.seed].trial_id
                reason = f"duplicate of trial {first} (same arm and seed)"
            else:
                value, epoch = scored
                score = Score(trial.trial_id, trial.arm, trial.seed, value, epoch)
                usable.setdefault(trial.arm, {})[trial.seed] = score
        if reason is not None:
            excluded.append(Excluded(trial.trial_id, trial.arm, trial.seed, reason))
    if excluded:
        warnings.append(f"{len(excluded)} trial(s) excluded as failures (listed in the report); "
                        "the tests use the remaining pairs")  # fmt: skip
    if not baseline_labels:
        warnings.append("no trial of the baseline arm was found; nothing can be paired")

    base_scores = usable.get(baseline, {})
    rows = []
    order, without_trials = _arm_order(spec, trials)
    params.update(without_trials)
    if without_trials and trials:
        warnings.append(f"no trials yet for arm(s) {'; '.join(without_trials)}")
    for arm in order:
        if arm == baseline:
            continue
        arm_scores = usable.get(arm, {})
        expected = set(spec.seeds) | seen_seeds.get(arm, set()) | seen_seeds.get(baseline, set())
        seeds = sorted(set(arm_scores) & set(base_scores))
        row = _row(arm, params.get(arm, {}), seeds, arm_scores, base_scores, expected,
                   alternative, alpha)  # fmt: skip
        if row.missing_arm or row.missing_baseline:
            warnings.append(f"{arm}: {len(seeds)} pair(s); {missing_text(row)}")
        rows.append(row)

    tested = [row for row in rows if row.enough]
    for row, adjusted in zip(tested, stats.holm([row.p for row in tested]), strict=True):
        row.p_holm = float(adjusted)
        row.verdict = "significant" if row.p_holm <= alpha else "not significant"

    return Comparison(
        spec=spec, metric=metric, scored_metric=scored_metric, select=select, alpha=alpha,
        mode=mode, alternative=alternative, baseline=baseline,
        baseline_params=params.get(baseline, {}), rows=rows,
        scores=[s for arm in usable.values() for s in arm.values()],
        excluded=excluded, warnings=warnings, trials=trials,
    )  # fmt: skip


def missing_text(row: ArmRow) -> str:
    parts = []
    if row.missing_arm:
        parts.append(f"arm lacks seed(s) {', '.join(map(str, row.missing_arm))}")
    if row.missing_baseline:
        parts.append(f"baseline lacks seed(s) {', '.join(map(str, row.missing_baseline))}")
    return "; ".join(parts)


def _row(
    arm: str,
    params: dict[str, Any],
    seeds: list[int],
    arm_scores: dict[int, Score],
    base_scores: dict[int, Score],
    expected: set[int],
    alternative: str,
    alpha: float,
) -> ArmRow:
    method = [arm_scores[s].value for s in seeds]
    base = [base_scores[s].value for s in seeds]
    arm_mean, arm_sd = _mean_sd(method)
    base_mean, base_sd = _mean_sd(base)
    nan = math.nan
    row = ArmRow(
        arm=arm, params=params, n_pairs=len(seeds), paired_seeds=seeds,
        missing_arm=sorted(expected - set(arm_scores)),
        missing_baseline=sorted(expected - set(base_scores)),
        arm_mean=arm_mean, arm_sd=arm_sd, baseline_mean=base_mean, baseline_sd=base_sd,
        mean_diff=nan, sd_diff=nan, ci_low=nan, ci_high=nan, t=nan, p=nan, p_holm=nan,
        d_z=nan, wilcoxon_p=nan, seeds_needed=None, verdict=NOT_ENOUGH,
    )  # fmt: skip
    if len(seeds) < 2:
        row.note = f"{len(seeds)} pair(s): a paired test needs at least 2"
        if seeds:
            row.mean_diff = method[0] - base[0]
        return row
    test = stats.paired_ttest(method, base, alternative=alternative)
    row.mean_diff, row.sd_diff = test.mean_diff, test.sd_diff
    row.ci_low, row.ci_high = test.ci_low, test.ci_high
    row.t, row.p, row.d_z = test.statistic, test.pvalue, test.effect_size
    row.wilcoxon_p = stats.wilcoxon(method, base, alternative=alternative).pvalue
    toward = row.d_z > 0 if alternative == "greater" else row.d_z < 0
    if not math.isfinite(row.d_z):
        row.note = "all differences are equal (sd 0): d_z is infinite"
    elif not toward:
        row.note = "the effect points away from the alternative: more seeds would not help"
    else:
        row.seeds_needed = stats.seeds_needed(row.d_z, alpha, TARGET_POWER, alternative)
        if row.seeds_needed is None:
            row.note = "the effect is too small for 10000 seeds"
    return row
