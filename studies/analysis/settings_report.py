"""A cross-setting comparison as text: the terminal report, ``report.md``, ``settings.csv``
(one row per arm and setting) and ``pooled.csv`` (one row per arm)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from typing import Any

from studies.analysis.comparison import ArmRow
from studies.analysis.report import format_diff, format_p, units
from studies.analysis.settings import ArmAcross, SettingsComparison
from studies.config.load import dump_spec


def _digits(metric: str) -> int:
    return 2 if metric.endswith("_acc") else 4


def _signed(value: float, metric: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value * units(metric).scale:+.{_digits(metric)}f}"


def format_estimate(estimate: float, low: float, high: float, metric: str,
                    unit: str = "") -> str:  # fmt: skip
    """``+0.52 [>= -0.10]`` (a one-sided bound) or ``+0.52 [-0.10, +1.14]``; ``unit`` follows
    the estimate."""
    if math.isinf(high):
        bound = f">= {_signed(low, metric)}"
    elif math.isinf(low):
        bound = f"<= {_signed(high, metric)}"
    else:
        bound = f"{_signed(low, metric)}, {_signed(high, metric)}"
    return f"{_signed(estimate, metric)}{unit} [{bound}]"


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def verdict_line(summary: ArmAcross, comparison: SettingsComparison) -> str:
    """``ARM: helps in k of K settings; pooled difference d [bound], p (Holm) p: verdict;
    P(improvement) P [low, high]; heterogeneity I^2 x%``."""
    c = comparison
    u = units(c.scored_metric)
    parts = [f"helps in {summary.helps} of {summary.n_settings} settings"]
    across = summary.across
    if across is None or across.pooled is None:
        parts.append("pooled difference: - (fewer than 2 settings with 2 pairs)")
    else:
        pooled = across.pooled
        estimate = format_estimate(pooled.mean_diff, pooled.ci_low, pooled.ci_high,
                                   c.scored_metric, u.diff)  # fmt: skip
        parts.append(f"pooled difference {estimate}, p (Holm) "
                     f"{format_p(summary.pooled_p_holm)}: {summary.verdict}")  # fmt: skip
    if across is not None:
        imp = across.improvement
        parts.append(f"P(improvement) {imp.probability:.2f} [{imp.ci_low:.2f}, "
                     f"{imp.ci_high:.2f}]")  # fmt: skip
        if across.meta is not None:
            parts.append(f"heterogeneity I^2 {_percent(across.meta.i2)}")
        elif across.pooled is not None:
            flat = [label for label, test in zip(summary.used, across.per_setting, strict=True)
                    if test.sd_diff == 0]  # fmt: skip
            why = (f"every seed gave the same difference in {flat[0]}" if flat
                   else across.meta_note)  # fmt: skip
            parts.append(f"heterogeneity: - ({why})")
    return f"{summary.arm}: " + "; ".join(parts)


def describe(comparison: SettingsComparison) -> str:
    """One sentence saying what was tested and how it was pooled."""
    c = comparison
    direction = "higher" if c.mode == "max" else "lower"
    what = (f"{c.metric} at the final epoch" if c.select == "final" else
            f"{c.scored_metric} at each trial's best-validation epoch")  # fmt: skip
    u = units(c.scored_metric)
    shown = f"; differences in{u.diff}" if u.diff else ""
    where = "settings" if c.kind == "across" else "studies pooled as settings"
    tests = sum(row.enough for a in c.arms for row in a.rows.values())
    pooled = sum(a.across is not None and a.across.pooled is not None for a in c.arms)
    return (f"{c.name}: {what} ({direction} is better{shown}), each arm vs baseline "
            f"{c.baseline} paired by seed within each of {len(c.settings)} {where}; "
            f"one-sided paired t-tests Holm-adjusted over {tests} (arm, setting) tests; pooled "
            f"by the one-sample t-test of the per-setting mean differences (K - 1 df), "
            f"Holm-adjusted over {pooled} arm(s); alpha {c.alpha:g}")


def _setting_cells(label: str, row: ArmRow, metric: str) -> list[str]:
    return [label, row.arm, str(row.n_pairs), format_diff(row, metric), format_p(row.p),
            format_p(row.p_holm), row.verdict]  # fmt: skip


SETTING_HEADER = ["setting", "arm", "n", "diff [95% CI]", "p", "p (Holm)", "verdict"]
POOLED_HEADER = ["arm", "K", "helps", "pooled diff [95% CI]", "p", "p (Holm)",
                 "random effects (HKSJ)", "fixed effect", "tau^2", "I^2",
                 "P(improvement) [95% CI]", "Wilcoxon p"]  # fmt: skip


def _pooled_cells(summary: ArmAcross, metric: str) -> list[str]:
    across = summary.across
    cells = [summary.arm, str(len(summary.used)), f"{summary.helps} of {summary.n_settings}"]
    if across is None:
        return cells + ["-"] * (len(POOLED_HEADER) - len(cells))
    pooled, meta, imp = across.pooled, across.meta, across.improvement
    if pooled is None:
        cells += ["-", "-", "-"]
    else:
        cells += [format_estimate(pooled.mean_diff, pooled.ci_low, pooled.ci_high, metric),
                  format_p(pooled.pvalue), format_p(summary.pooled_p_holm)]  # fmt: skip
    if meta is None:
        cells += ["-", "-", "-", "-"]
    else:
        scale = units(metric).scale
        cells += [format_estimate(meta.random, meta.ci_low, meta.ci_high, metric),
                  format_estimate(meta.fixed, meta.fixed_low, meta.fixed_high, metric),
                  f"{meta.tau2 * scale**2:.3g}", _percent(meta.i2)]  # fmt: skip
    cells.append(f"{imp.probability:.2f} [{imp.ci_low:.2f}, {imp.ci_high:.2f}]")
    cells.append(format_p(across.wilcoxon.pvalue) if across.wilcoxon is not None else "-")
    return cells


def _aligned(header: list[str], body: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(cells) for cells in body)]


def setting_rows(comparison: SettingsComparison) -> list[list[str]]:
    """One line per (setting, arm) in setting order."""
    metric = comparison.scored_metric
    return [_setting_cells(label, row, metric) for label in comparison.settings
            for row in comparison.comparisons[label].rows]  # fmt: skip


def friedman_text(comparison: SettingsComparison) -> str:
    """The Friedman test, the arms' average ranks and Nemenyi's CD, or why they do not apply."""
    f = comparison.friedman
    if f is None:
        return f"Ranks: {comparison.friedman_note}."
    ranks = ", ".join(f"{arm} {rank:.2f}" for arm, rank in
                      sorted(zip(comparison.rank_labels, f.mean_ranks, strict=True),
                             key=lambda item: item[1]))  # fmt: skip
    note = f" ({comparison.friedman_note})" if comparison.friedman_note else ""
    return (f"Ranks over {f.n_settings} settings (1 = best){note}: {ranks}; Friedman chi^2 "
            f"{f.statistic:.2f}, p {format_p(f.pvalue)}; Nemenyi critical difference "
            f"{f.critical_difference:.2f} at alpha {f.alpha:g} (arms whose average ranks differ "
            "by less are not told apart)")


def format_settings(comparison: SettingsComparison) -> str:
    """The terminal report: per-setting rows, pooled rows, one verdict line per arm."""
    c = comparison
    metric = c.scored_metric
    out = [describe(c), "", "Per setting:"]
    out += _aligned(SETTING_HEADER, setting_rows(c), {2, 4, 5})
    out += ["", "Pooled over settings:"]
    out += _aligned(POOLED_HEADER, [_pooled_cells(a, metric) for a in c.arms], {1, 4, 5, 8, 9})
    out += ["", "Verdict:"] + [f"  {verdict_line(a, c)}" for a in c.arms]
    if not c.arms:
        out.append("  (no arm besides the baseline)")
    out += ["", friedman_text(c)]
    out += [f"warning: {warning}" for warning in c.warnings]
    return "\n".join(out)


def _md_table(header: list[str], rows: Iterable[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def matrix_table(comparison: SettingsComparison) -> str:
    """Settings x arms: the mean difference of each cell, ``*`` where Holm-significant."""
    c = comparison
    header = ["setting", *(a.arm for a in c.arms)]
    rows = []
    for label in c.settings:
        cells = [label]
        for summary in c.arms:
            row = summary.rows.get(label)
            if row is None or math.isnan(row.mean_diff):
                cells.append("-")
                continue
            star = "*" if row.verdict == "significant" else ""
            cells.append(f"{_signed(row.mean_diff, c.scored_metric)}{star} (n={row.n_pairs})")
        rows.append(cells)
    pooled = ["**pooled (t over settings)**"]
    improvement = ["**P(improvement)**"]
    helps = ["**helps in**"]
    for summary in c.arms:
        across = summary.across
        if across is not None and across.pooled is not None:
            star = "*" if summary.verdict == "significant" else ""
            pooled.append(f"{_signed(across.pooled.mean_diff, c.scored_metric)}{star}")
        else:
            pooled.append("-")
        improvement.append(f"{across.improvement.probability:.2f}" if across else "-")
        helps.append(f"{summary.helps} of {summary.n_settings}")
    return _md_table(header, [*rows, pooled, improvement, helps])


HOW_TO_READ = """\
- **Per setting**, each arm is tested against the baseline exactly as in a one-setting study:
  paired by seed, one-sided paired t-test. The p-values of every (arm, setting) test are
  Holm-adjusted together; **helps in k of K** counts the settings where the adjusted p-value is
  <= alpha (`*` in the table).
- **Pooled** is the test of record: the one-sample t-test of the K per-setting mean
  differences (K - 1 degrees of freedom), Holm-adjusted over the arms. It asks whether the arm
  helps on average over settings like these, and stays valid when the settings differ
  (heterogeneity); with K = 2 it has 1 degree of freedom and its bound is wide.
- **Random effects (HKSJ)** and **fixed effect** are the inverse-variance meta-analysis of the
  same means (DerSimonian-Laird tau^2, Hartung-Knapp-Sidik-Jonkman interval). With 3-5 seeds
  per setting the variances are noisy and a setting whose seeds agreed by chance gets a large
  weight: read them as a check, not as the verdict. **tau^2** is the between-setting variance
  of the effect (in squared units of the differences), **I^2** the share of the spread of the
  means that is heterogeneity rather than seed noise.
- **P(improvement)** is the chance that a run of the arm beats a run of the baseline in the same
  setting (ties count one half), averaged over the settings (Agarwal et al. 2021), with a 95%
  stratified bootstrap interval (seeds resampled within each setting). 0.5 means no difference.
- With 5 settings or more, **Wilcoxon p** tests the signed ranks of the per-setting means, and
  with 3 arms or more (the baseline included) the Friedman test and the critical-difference
  diagram compare the arms' average ranks (Demsar 2006)."""


def to_markdown(comparison: SettingsComparison, plots: Iterable[str] = ()) -> str:
    """report.md of a cross-setting comparison."""
    c = comparison
    metric = c.scored_metric
    out = [f"# Across settings: {c.name}", "", describe(c) + ".", "", "## Verdict", ""]
    out += [f"- {verdict_line(a, c)}" for a in c.arms] or ["No arm besides the baseline."]
    unit = f", {units(metric).diff.strip()}" if units(metric).diff else ""
    out += ["", "## Settings x arms", "", f"Mean difference (arm - baseline{unit}) "
            "per setting; `*`: Holm-significant over all (arm, setting) tests.", "",
            matrix_table(c), "", "## Pooled over settings", "",
            _md_table(POOLED_HEADER, [_pooled_cells(a, metric) for a in c.arms]), "",
            friedman_text(c), "", "## Per setting", "",
            _md_table(SETTING_HEADER, setting_rows(c)), ""]  # fmt: skip
    if c.warnings:
        out += ["**Warnings**", ""] + [f"- {w}" for w in c.warnings] + [""]
    for name in plots:
        out += [f"![{name}]({name})", ""]
    out += ["## How to read this", "", HOW_TO_READ, "", "## Excluded trials", ""]
    excluded = [[label, e.trial_id, e.arm, str(e.seed), e.reason] for label in c.settings
                for e in c.comparisons[label].excluded]  # fmt: skip
    out.append(_md_table(["setting", "trial", "arm", "seed", "reason"], excluded) if excluded
               else "None: every trial finished.")  # fmt: skip
    for spec in c.specs:
        out += ["", f"## Study spec: {spec.name}", "", "```yaml", dump_spec(spec).rstrip(), "```"]
    return "\n".join(out) + "\n"


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else
                         repr(v) if isinstance(v, float) else v for v in row])  # fmt: skip
    return buffer.getvalue()


def settings_csv(comparison: SettingsComparison) -> str:
    """One row per (setting, arm), statistics in the metric's own units (fractions)."""
    c = comparison
    rows: list[list[Any]] = [["setting", "arm", "n_pairs", "mean_diff", "sd_diff", "ci_low",
                              "ci_high", "t", "p", "p_holm", "verdict", "metric", "baseline"]]
    for label in c.settings:
        for row in c.comparisons[label].rows:
            rows.append([label, row.arm, row.n_pairs, row.mean_diff, row.sd_diff, row.ci_low,
                         row.ci_high, row.t, row.p, row.p_holm, row.verdict, c.scored_metric,
                         c.baseline])  # fmt: skip
    return _csv(rows)


POOLED_COLUMNS = ["arm", "settings", "helps", "pooled_diff", "pooled_ci_low", "pooled_ci_high",
                  "pooled_p", "pooled_p_holm", "verdict", "random_effect", "hksj_ci_low",
                  "hksj_ci_high", "hksj_p", "fixed_effect", "tau2", "i2", "q", "q_p",
                  "p_improvement", "p_improvement_low", "p_improvement_high", "wilcoxon_p",
                  "metric", "baseline"]  # fmt: skip


def pooled_csv(comparison: SettingsComparison) -> str:
    """One row per arm: the pooled figures, in the metric's own units."""
    c = comparison
    nan = math.nan
    rows: list[list[Any]] = [list(POOLED_COLUMNS)]
    for a in c.arms:
        across = a.across
        pooled = across.pooled if across else None
        meta = across.meta if across else None
        imp = across.improvement if across else None
        wil = across.wilcoxon if across else None
        rows.append([
            a.arm, len(a.used), a.helps,
            *((pooled.mean_diff, pooled.ci_low, pooled.ci_high, pooled.pvalue) if pooled
              else (nan,) * 4), a.pooled_p_holm, a.verdict,
            *((meta.random, meta.ci_low, meta.ci_high, meta.pvalue, meta.fixed, meta.tau2,
               meta.i2, meta.q, meta.q_pvalue) if meta else (nan,) * 9),
            *((imp.probability, imp.ci_low, imp.ci_high) if imp else (nan,) * 3),
            wil.pvalue if wil else nan, c.scored_metric, c.baseline,
        ])  # fmt: skip
    return _csv(rows)
