"""Does each arm help across settings? The comparison of a study with ``across``, or of several
studies pooled as settings (``normstudy compare A B C``).

Pipeline (beside the one-setting comparison of :mod:`studies.analysis.comparison`)::

    groups: one (label, values, trials, spec) per setting
    compare_settings(groups, metric, select, alpha)    -> SettingsComparison  (this module)
    settings_report.format_settings / to_markdown      -> text
    settings_plots.forest / improvement / cd diagram   -> PNG
    settings_outputs.run_settings_comparison(...)      -> files, MLflow parent run

Within each setting every arm is compared with the baseline exactly as in a one-setting study
(:func:`studies.analysis.comparison.compare`: pairs by seed, one-sided paired t-test); the
p-values of all (arm, setting) tests are then Holm-adjusted together, and an arm *helps* in a
setting where its adjusted p-value is <= alpha. Per arm, over the settings where it has two
pairs or more, :func:`normlib.stats.across_settings` gives the pooled test of record (the
one-sample t-test of the per-setting mean differences; Holm-adjusted over the arms), the
random-effects meta-analysis beside it, the probability of improvement with its stratified
bootstrap interval and, with 5 settings or more, the Wilcoxon test of the mean differences;
with 5 settings or more and 3 arms or more (the baseline included), the Friedman test of the
arms' ranks with Nemenyi's critical difference (Demsar 2006). The math: docs/statistics.md,
"Across settings".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from normlib.stats import AcrossSettings, Friedman, across_settings, friedman, holm
from normlib.stats.improvement import DEFAULT_RESAMPLES
from normlib.stats.ranks import MIN_ARMS
from studies.analysis.comparison import ArmRow, Comparison, compare, metric_mode
from studies.analysis.trials import TrialHistory
from studies.config.space import matches, setting_label, settings
from studies.config.spec import SpecError, StudySpec

RANKS_FROM = 5  # settings; Demsar (2006): Friedman and Wilcoxon over 5 data sets or more
BOOTSTRAP_SEED = 0


@dataclass
class SettingGroup:
    """The trials of one setting: a setting of ``across``, or a whole study pooled."""

    label: str
    values: dict[str, Any]
    trials: list[TrialHistory]
    spec: StudySpec


@dataclass
class ArmAcross:
    """One arm over the settings: its row in each setting, and the pooled result.

    ``pooled_p_holm`` is the pooled p-value Holm-adjusted over the arms; ``across`` is None
    when no setting has two pairs; ``used`` lists the settings that entered the pooling.
    """

    arm: str
    params: dict[str, Any]
    rows: dict[str, ArmRow]
    helps: int
    n_settings: int
    used: list[str]
    across: AcrossSettings | None
    pooled_p_holm: float = math.nan
    verdict: str = ""


@dataclass
class SettingsComparison:
    """Everything the cross-setting comparison found (see the module docstring)."""

    name: str
    kind: str  # "across": one study's settings; "studies": several studies pooled
    metric: str
    scored_metric: str
    select: str
    alpha: float
    mode: str
    alternative: str
    baseline: str
    settings: list[str]
    comparisons: dict[str, Comparison]
    arms: list[ArmAcross]
    friedman: Friedman | None
    friedman_note: str
    rank_labels: list[str]  # the arms of the Friedman test, baseline first
    warnings: list[str] = field(default_factory=list)
    specs: list[StudySpec] = field(default_factory=list)

    def arm(self, label: str) -> ArmAcross | None:
        return next((a for a in self.arms if a.arm == label), None)


def split_by_setting(trials: list[TrialHistory], spec: StudySpec) -> list[SettingGroup]:
    """A study's trials, one group per setting of its ``across`` in spec order (values are
    matched, so a setting 32 finds trials that recorded 32.0); trials of no setting are
    dropped."""
    groups = [SettingGroup(setting_label(values), values, [], spec) for values in settings(spec)]
    for trial in trials:
        for group in groups:
            if all(path in trial.setting_values and matches(trial.setting_values[path], value)
                   and matches(value, trial.setting_values[path])
                   for path, value in group.values.items()):  # fmt: skip
                group.trials.append(trial)
                break
    return groups


def _verdict(summary: ArmAcross, comparison: SettingsComparison) -> str:
    """The arm's one line (``settings_report`` formats the numbers; here only the words)."""
    if summary.across is None or summary.across.pooled is None:
        return "not enough settings to pool"
    return "significant" if summary.pooled_p_holm <= comparison.alpha else "not significant"


def _paired_values(row: ArmRow, comparison: Comparison) -> tuple[list[float], list[float]]:
    """The arm's and the baseline's scores on the row's paired seeds."""
    by_arm: dict[str, dict[int, float]] = {}
    for score in comparison.scores:
        by_arm.setdefault(score.arm, {})[score.seed] = score.value
    arm, base = by_arm.get(row.arm, {}), by_arm.get(comparison.baseline, {})
    return [arm[s] for s in row.paired_seeds], [base[s] for s in row.paired_seeds]


def _arm_means(comparison: Comparison) -> dict[str, float]:
    """Each arm's mean score over its finished seeds in one setting."""
    values: dict[str, list[float]] = {}
    for score in comparison.scores:
        values.setdefault(score.arm, []).append(score.value)
    return {arm: statistics.fmean(v) for arm, v in values.items()}


def compare_settings(
    groups: list[SettingGroup],
    name: str,
    kind: str,
    metric: str | None = None,
    select: str = "final",
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
) -> SettingsComparison:
    """Compare every arm with the baseline in every setting, then pool (module docstring)."""
    first = groups[0].spec
    metric = metric or first.metric.name
    comparisons: dict[str, Comparison] = {}
    warnings: list[str] = []
    for group in groups:
        found = compare(group.trials, group.spec, metric, select, alpha)
        comparisons[group.label] = found
        warnings += [f"{group.label}: {w}" for w in found.warnings]
    labels = [group.label for group in groups]
    baselines = {c.baseline for c in comparisons.values()}
    if len(baselines) > 1:
        raise SpecError([("baseline", f"the settings have different baseline arms "
                          f"({'; '.join(sorted(baselines))}); pooling needs the same one")])
    any_comparison = comparisons[labels[0]]

    arm_order: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    for comparison in comparisons.values():
        for row in comparison.rows:
            if row.arm not in arm_order:
                arm_order.append(row.arm)
                params[row.arm] = row.params
    tested = [row for c in comparisons.values() for row in c.rows if row.enough]
    for row, adjusted in zip(tested, holm([row.p for row in tested]), strict=True):
        row.p_holm = float(adjusted)
        row.verdict = "significant" if row.p_holm <= alpha else "not significant"

    summaries = []
    for arm in arm_order:
        rows = {label: row for label in labels for row in comparisons[label].rows
                if row.arm == arm}  # fmt: skip
        used = [label for label, row in rows.items() if row.enough]
        pairs = [_paired_values(rows[label], comparisons[label]) for label in used]
        across = None
        if used:
            across = across_settings([p[0] for p in pairs], [p[1] for p in pairs],
                                     any_comparison.alternative, 1 - alpha, resamples,
                                     BOOTSTRAP_SEED)  # fmt: skip
        helps = sum(row.verdict == "significant" for row in rows.values())
        summaries.append(ArmAcross(arm, params[arm], rows, helps, len(labels), used, across))
        if len(used) < len(labels):
            left = [label for label in labels if label not in used]
            warnings.append(f"{arm}: fewer than 2 pairs in setting(s) {'; '.join(left)}; "
                            "the pooled figures leave them out")  # fmt: skip
    pooled = [(s, s.across.pooled.pvalue) for s in summaries
              if s.across is not None and s.across.pooled is not None]  # fmt: skip
    for (summary, _), adjusted in zip(pooled, holm([p for _, p in pooled]), strict=True):
        summary.pooled_p_holm = float(adjusted)

    result = SettingsComparison(
        name=name, kind=kind, metric=metric, scored_metric=any_comparison.scored_metric,
        select=select, alpha=alpha, mode=metric_mode(metric, first),
        alternative=any_comparison.alternative, baseline=any_comparison.baseline,
        settings=labels, comparisons=comparisons, arms=summaries, friedman=None,
        friedman_note="", rank_labels=[], warnings=warnings,
        specs=list({group.spec.name: group.spec for group in groups}.values()),
    )  # fmt: skip
    for summary in summaries:
        summary.verdict = _verdict(summary, result)
    _ranks(result)
    return result


def _ranks(result: SettingsComparison) -> None:
    """Friedman's test and Nemenyi's CD over the settings where every arm has a score."""
    arms = [result.baseline, *(a.arm for a in result.arms)]
    if len(result.settings) < RANKS_FROM or len(arms) < MIN_ARMS:
        result.friedman_note = (f"the Friedman test and the critical-difference diagram need "
                                f"{RANKS_FROM} settings or more and {MIN_ARMS} arms "
                                f"or more, the baseline included (here {len(result.settings)} "
                                f"and {len(arms)})")  # fmt: skip
        return
    rows, kept = [], []
    for label in result.settings:
        means = _arm_means(result.comparisons[label])
        if all(arm in means for arm in arms):
            rows.append([means[arm] for arm in arms])
            kept.append(label)
    if len(rows) < RANKS_FROM:
        result.friedman_note = (f"only {len(rows)} setting(s) have a score for every arm; the "
                                f"Friedman test needs {RANKS_FROM}")  # fmt: skip
        return
    result.friedman = friedman(rows, higher_is_better=result.mode == "max", alpha=result.alpha)
    result.rank_labels = arms
    if len(kept) < len(result.settings):
        result.friedman_note = f"ranked over the {len(kept)} settings where every arm finished"
