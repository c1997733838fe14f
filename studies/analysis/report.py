"""A comparison as text: the terminal table, ``comparison.csv`` and ``report.md``."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from studies.analysis.comparison import TARGET_POWER, ArmRow, Comparison, Score, missing_text
from studies.config.load import dump_spec
from studies.config.space import swept_paths

PAIRED_PLOT, CURVES_PLOT = "paired.png", "learning_curves.png"  # the plots the report shows
FOREST_PLOT, VALUE_PLOT = "forest.png", "difference_vs_value.png"  # forest: maybe forest-<i>.png


@dataclass(frozen=True)
class Units:
    scale: float
    value: str  # suffix of a value ("%")
    diff: str  # suffix of a difference ("pp")
    name: str  # axis label name


def units(metric: str) -> Units:
    split, kind = metric.split("_", 1)
    split = {"val": "validation", "test": "test", "train": "training"}.get(split, split)
    if kind == "acc":
        return Units(100.0, "%", " pp", f"{split} accuracy (%)")
    return Units(1.0, "", "", f"{split} loss (cross-entropy)")


def _num(value: float, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _digits(metric: str) -> int:
    return 2 if metric.endswith("_acc") else 4


def format_mean_sd(mean: float, sd: float, metric: str) -> str:
    u = units(metric)
    if math.isnan(mean):
        return "-"
    d = _digits(metric)
    return f"{_num(mean * u.scale, d)} ± {_num(sd * u.scale, d)}"


def format_diff(row: ArmRow, metric: str) -> str:
    u = units(metric)
    d = _digits(metric)
    diff = _num(row.mean_diff * u.scale, d, sign=True) if not math.isnan(row.mean_diff) else "-"
    if not row.enough:
        return diff
    if math.isinf(row.ci_high):
        bound = f">= {_num(row.ci_low * u.scale, d, sign=True)}"
    elif math.isinf(row.ci_low):
        bound = f"<= {_num(row.ci_high * u.scale, d, sign=True)}"
    else:
        low = _num(row.ci_low * u.scale, d, sign=True)
        bound = f"{low}, {_num(row.ci_high * u.scale, d, sign=True)}"
    return f"{diff} [{bound}]"


def _header(comparison: Comparison) -> list[str]:
    metric = comparison.scored_metric
    return ["arm", "n", f"arm {metric}", f"baseline {metric}", "diff [95% CI]", "t", "p",
            "p (Holm)", "d_z", "Wilcoxon p", f"seeds for {TARGET_POWER:.0%} power",
            "verdict"]  # fmt: skip


def _cells(row: ArmRow, comparison: Comparison) -> list[str]:
    metric = comparison.scored_metric
    if row.seeds_needed is not None:
        needed = str(row.seeds_needed)
    elif row.enough and row.note.startswith("the effect is too small"):
        needed = "> 10000"
    else:
        needed = "-"
    return [row.arm, str(row.n_pairs), format_mean_sd(row.arm_mean, row.arm_sd, metric),
            format_mean_sd(row.baseline_mean, row.baseline_sd, metric),
            format_diff(row, metric), _num(row.t), format_p(row.p), format_p(row.p_holm),
            _num(row.d_z), format_p(row.wilcoxon_p), needed, row.verdict]  # fmt: skip


def describe(comparison: Comparison) -> str:
    """One sentence saying what was tested."""
    c = comparison
    direction = "higher" if c.mode == "max" else "lower"
    what = (f"{c.metric} at the final epoch" if c.select == "final" else
            f"{c.scored_metric} at each trial's best-{c.scored_metric.replace('test', 'val')} "
            "epoch")  # fmt: skip
    u = units(c.scored_metric)
    shown = f"; values in {u.value.strip()}, differences in{u.diff}" if u.value else ""
    return (f"{c.spec.name}: {what} ({direction} is better{shown}), each arm vs baseline "
            f"{c.baseline} paired by seed; one-sided paired t-test (alternative "
            f"'{c.alternative}'), Holm-adjusted over {c.n_tests} arm(s), alpha {c.alpha:g}")


def format_table(comparison: Comparison) -> str:
    """Plain-text table for the terminal, columns aligned."""
    header = _header(comparison)
    body = [_cells(row, comparison) for row in comparison.rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = set(range(1, len(header) - 1)) - {2, 3, 4}

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return "  ".join(parts).rstrip()

    out = [describe(comparison), "", line(header), line(["-" * w for w in widths])]
    out += [line(cells) for cells in body]
    if not body:
        out.append("(no arm besides the baseline)")
    for warning in comparison.warnings:
        out.append(f"warning: {warning}")
    return "\n".join(out)


CSV_COLUMNS = (
    "arm", "n_pairs", "arm_mean", "arm_sd", "baseline_mean", "baseline_sd", "mean_diff",
    "sd_diff", "ci_low", "ci_high", "t", "p", "p_holm", "d_z", "wilcoxon_p", "seeds_needed",
    "verdict", "paired_seeds", "missing_arm_seeds", "missing_baseline_seeds", "note",
)  # fmt: skip


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def to_csv(comparison: Comparison) -> str:
    """One row per arm: the parameters (one column per swept path), every statistic in the
    metric's own units (accuracies as fractions), and the settings of the comparison."""
    paths = swept_paths(comparison.spec)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arm", *paths, *CSV_COLUMNS[1:], "metric", "select", "alternative",
                     "alpha", "baseline"])  # fmt: skip
    for row in comparison.rows:
        values = {name: getattr(row, name, None) for name in CSV_COLUMNS}
        values.update(paired_seeds=row.paired_seeds, missing_arm_seeds=row.missing_arm,
                      missing_baseline_seeds=row.missing_baseline)  # fmt: skip
        writer.writerow(
            [row.arm, *(_csv_value(row.params.get(p)) for p in paths),
             *(_csv_value(values[name]) for name in CSV_COLUMNS[1:]),
             comparison.scored_metric, comparison.select, comparison.alternative,
             repr(comparison.alpha), comparison.baseline]
        )  # fmt: skip
    return buffer.getvalue()


def _md_table(header: list[str], rows: Iterable[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def _paired_values_table(comparison: Comparison) -> str:
    u = units(comparison.scored_metric)
    d = _digits(comparison.scored_metric)
    by_arm: dict[str, dict[int, Score]] = {}
    for scored in comparison.scores:
        by_arm.setdefault(scored.arm, {})[scored.seed] = scored
    arms = [comparison.baseline, *(row.arm for row in comparison.rows)]
    seeds = sorted({s.seed for s in comparison.scores})
    show_epoch = comparison.select == "best_val"
    rows = []
    for seed in seeds:
        cells = [str(seed)]
        for arm in arms:
            score = by_arm.get(arm, {}).get(seed)
            if score is None:
                cells.append("-")
            else:
                text = _num(score.value * u.scale, d)
                cells.append(f"{text} (epoch {score.epoch})" if show_epoch else text)
        rows.append(cells)
    header = ["seed", f"{comparison.baseline} (baseline)", *arms[1:]]
    return _md_table(header, rows)


HOW_TO_READ = """\
- Each row tests one arm against the baseline on the **same seeds** (same initialization
  and data order): d = arm - baseline per seed. **n** is the number of seeds where both
  trials finished; seeds missing on either side are listed and do not count. The arm and
  baseline columns give mean ± sd over those n paired seeds.
- **diff [95% CI]** is the mean of d with a one-sided 95% confidence bound (`>= x` when
  higher is better, `<= x` when lower is better). Accuracies are shown in percent and their
  differences in percentage points (pp); `comparison.csv` holds the raw values (fractions).
- **p** is the one-sided paired t-test (`scipy.stats.ttest_rel`), the test of the BN-init
  paper. With several arms, one of them can look good by luck, so the verdict uses
  **p (Holm)**, the Holm-Bonferroni adjusted p-value over all arms: **significant** means
  p (Holm) <= alpha. "Not significant" is not evidence of no effect: it may only mean too
  few seeds.
- **d_z** = mean(d) / sd(d) is the effect size of the paired design (0.2 small, 0.5 medium,
  0.8 large). **Wilcoxon p** is the signed-rank test on the same pairs, a check that does not
  assume normal differences; with n pairs its one-sided p cannot go below 1/2^n (0.031 for
  5 pairs), so with few seeds it is rarely below alpha.
- Diverged or unfinished trials are failures: they are listed below and left out. If a method
  diverges more often than the baseline, that is a result too, even when its finished
  trials look good."""


def _seeds_note(comparison: Comparison) -> str:
    n_seeds = len(comparison.spec.seeds)
    lines = [f"**Seeds needed** is the number of paired seeds a one-sided paired t-test needs "
             f"to detect the observed d_z with {TARGET_POWER:.0%} power at alpha "
             f"{comparison.alpha:g} (noncentral t; before any Holm correction). "
             f"This study ran {n_seeds} seed(s).", ""]  # fmt: skip
    for row in comparison.rows:
        if row.seeds_needed is None:
            reason = row.note or "not enough pairs"
            lines.append(f"- {row.arm}: - ({reason})")
        elif row.seeds_needed > row.n_pairs:
            lines.append(f"- {row.arm}: {row.seeds_needed} seeds; the study has {row.n_pairs} "
                         "pairs, so a real effect of this size would often be missed "
                         "(underpowered).")  # fmt: skip
        else:
            lines.append(f"- {row.arm}: {row.seeds_needed} seeds; the study's {row.n_pairs} "
                         "pairs are enough for this effect size.")  # fmt: skip
    lines += ["", "The observed d_z from few seeds is itself noisy; treat this as a rough guide."]
    return "\n".join(lines)


def to_markdown(comparison: Comparison, plots: Iterable[str] = (),
                sections: Iterable[str] = ()) -> str:  # fmt: skip
    """report.md; ``sections`` (markdown, e.g. a sequential study's) follow the results."""
    c = comparison
    out = [f"# Comparison: {c.spec.name}", "", describe(c) + ".", ""]
    significant = [row.arm for row in c.rows if row.verdict == "significant"]
    if significant:
        out.append(f"**Significant after Holm correction:** {', '.join(significant)}.")
    else:
        out.append("**No arm beats the baseline significantly after Holm correction.**")
    out += ["", "## Results", "",
            _md_table(_header(c), [_cells(row, c) for row in c.rows]) if c.rows
            else "No arm besides the baseline.", ""]  # fmt: skip
    if c.warnings:
        out += ["**Warnings**", ""] + [f"- {w}" for w in c.warnings] + [""]
    out += list(sections)
    for name in plots:
        out += [f"![{name}]({name})", ""]
    out += ["## How to read this", "", HOW_TO_READ, "", _seeds_note(c), ""]
    out += ["## Values per seed", "", _paired_values_table(c), ""]
    out += ["## Excluded trials", ""]
    if c.excluded:
        rows = [[e.trial_id, e.arm, str(e.seed), e.reason] for e in c.excluded]
        out.append(_md_table(["trial", "arm", "seed", "reason"], rows))
    else:
        out.append("None: every trial finished.")
    missing = [f"- {row.arm}: {missing_text(row)}" for row in c.rows
               if row.missing_arm or row.missing_baseline]  # fmt: skip
    if missing:
        out += ["", "Seeds without a pair (not counted):", "", *missing]
    out += ["", "## Study spec", "", "```yaml", dump_spec(c.spec).rstrip(), "```", ""]
    return "\n".join(out)
