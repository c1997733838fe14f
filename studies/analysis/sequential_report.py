"""A sequential study's decisions as text: the terminal table and the report's section."""

from __future__ import annotations

import math

from studies.analysis.report import _md_table, format_p, units
from studies.analysis.sequential import ArmSequence, SequentialResult

HEADER = ["arm", "stopped", "seeds", "why", "mean diff", "bound", "stage-wise p", "p (Holm)",
          "fixed design", "verdict"]  # fmt: skip

HOW_TO_READ = """\
- The study added seeds in looks of {looks} seeds per arm. After each look every arm still
  running was tested on all its seeds so far against the baseline on the same seeds
  (one-sided paired t-test with group-sequential boundaries, {spending} alpha spending).
  An arm **stops for efficacy** when its t statistic crosses the look's boundary, **for
  futility** when even a true difference of min_effect ({min_effect}) would probably not
  make it cross by the last look (conditional power below {threshold}), and at **max seeds**
  when the last look is reached. Stopped arms ran no more seeds.
- The guarantee: the chance that any arm is declared better when no arm is, over all looks
  and arms, is at most alpha = {alpha} (each arm spends alpha / {m} = {arm_alpha:.4g} across
  its looks, then Holm across arms). Futility stops never add to it.
- **stage-wise p** is the p-value that accounts for the looks (stage-wise ordering; 1 after
  a futility stop) and **bound** the one-sided {confidence:.0%} lower bound on the mean
  difference; **p (Holm)** is Holm-adjusted over the arms: **significant** when <= alpha.
- **fixed design**: seeds per arm a fixed-size paired t-test needs for the same power at
  min_effect, given the arm's observed sd of differences."""


def _cells(result: SequentialResult, arm: ArmSequence, metric: str) -> list[str]:
    u = units(metric)
    last = arm.history[-1] if arm.history else None
    if arm.stopped:
        stopped = f"look {arm.look} of {len(result.looks)}"
    else:
        stopped = f"running (look {arm.look})"
    why = {"efficacy": "efficacy", "futility": "futility", "max_seeds": "max seeds",
           "incomplete": "incomplete"}.get(arm.action, "-")  # fmt: skip
    diff = f"{last.mean_diff * u.scale:+.2f}{u.diff}" if last else "-"
    bound = "-"
    if arm.lower_bound is not None and math.isfinite(arm.lower_bound):
        bound = f">= {arm.lower_bound * u.scale:+.2f}{u.diff}"
    fixed = "-"
    if arm.fixed_seeds and arm.fixed_power is not None:
        fixed = f"{arm.fixed_seeds} seeds ({arm.fixed_power:.0%} power)"
    if arm.significant is None:
        verdict = "running" if not arm.stopped else "-"
    else:
        verdict = "significant" if arm.significant else "not significant"
    return [arm.arm, stopped, str(arm.n), why, diff, bound,
            format_p(arm.pvalue if arm.pvalue is not None else math.nan),
            format_p(arm.p_holm if arm.p_holm is not None else math.nan), fixed,
            verdict]  # fmt: skip


def format_sequential(result: SequentialResult, metric: str) -> str:
    """Terminal text: one line per arm with the look it stopped at and why."""
    s = result.section
    rows = [_cells(result, arm, metric) for arm in result.arms]
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f"sequential confirmation: looks {s.looks}, {s.spending} spending, futility "
           f"{s.futility}, min_effect {s.min_effect:g}, alpha {s.alpha:g} over "
           f"{len(result.arms)} arm(s)", line(HEADER), line(["-" * w for w in widths])]  # fmt: skip
    out += [line(r) for r in rows]
    for arm in result.arms:
        out.append(f"  {arm.arm}: {result.reason(arm)}")
    out.append(f"  ran {result.seeds_run()} of the {result.seeds_fixed()} trials of the fixed "
               f"design with {result.looks[-1]} seeds per arm")  # fmt: skip
    return "\n".join(out)


def markdown_section(result: SequentialResult, metric: str) -> str:
    """``## Sequential confirmation`` of report.md."""
    s = result.section
    rows = [_cells(result, arm, metric) for arm in result.arms]
    reasons = [f"- **{arm.arm}**: {result.reason(arm)}." for arm in result.arms]
    text = HOW_TO_READ.format(
        looks=s.looks, spending=s.spending.replace("_", "-"), min_effect=f"{s.min_effect:g}",
        threshold=f"{s.futility_threshold:.0%}" if s.futility != "none" else "off", alpha=s.alpha,
        m=len(result.arms), arm_alpha=result.arm_alpha, confidence=1 - result.arm_alpha,
    )  # fmt: skip
    per_look = []
    for arm in result.arms:
        for look in arm.history:
            cp = "-" if look.conditional_power is None else f"{look.conditional_power:.0%}"
            per_look.append([arm.arm, str(look.look), str(look.n), f"{look.statistic:.2f}",
                             f"{look.boundary:.2f}", cp, look.action])  # fmt: skip
    return "\n".join([
        "## Sequential confirmation", "",
        f"Looks at {s.looks} seeds per arm; ran {result.seeds_run()} of the "
        f"{result.seeds_fixed()} trials of the fixed design with {s.looks[-1]} seeds per arm.", "",
        _md_table(HEADER, rows), "", *reasons, "",
        "Every look:", "",
        _md_table(["arm", "look", "seeds", "t", "boundary", "conditional power", "decision"],
                  per_look) if per_look else "No look yet.", "",
        text, "",
    ])  # fmt: skip
