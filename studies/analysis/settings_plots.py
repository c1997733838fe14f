"""Plots of a cross-setting comparison (matplotlib, Agg backend).

* :func:`forest_plot`: one arm, one row per setting (mean difference with its two-sided
  (1 - 2 alpha) interval, whose lower end is the one-sided bound the test uses), then the
  pooled estimates: the one-sample t over the settings (the test of record) and the
  random-effects (HKSJ) estimate, as diamonds.
* :func:`improvement_plot`: every arm's probability of improvement with its bootstrap interval,
  and each setting's own P_s.
* :func:`cd_diagram`: the critical-difference diagram of Demsar (2006): the arms' average ranks
  on an axis, the Nemenyi critical difference as a bar, arms that it does not tell apart joined.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from studies.analysis.report import format_p, units  # noqa: E402
from studies.analysis.settings import ArmAcross, SettingsComparison  # noqa: E402

BETTER, WORSE, NEUTRAL, POOLED, RANDOM = "#2ca02c", "#d62728", "#7f7f7f", "#1f3b73", "#8c6bb1"
DPI = 120


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def slug(label: str, index: int) -> str:
    """A file-name-safe form of an arm label, numbered: ``2-enorm.c-1.2``."""
    return f"{index}-{re.sub(r'[^A-Za-z0-9._-]+', '-', label).strip('-')[:40]}"


def _half_width(estimate: float, low: float, high: float) -> float:
    """The half width of the two-sided interval whose one end is the one-sided bound."""
    return estimate - low if high == float("inf") else high - estimate


def forest_plot(comparison: SettingsComparison, summary: ArmAcross, path: str | Path) -> Path:
    """One arm across the settings, with the pooled estimates (module docstring)."""
    c = comparison
    u = units(c.scored_metric)
    higher = c.mode == "max"
    labels, rows = [], []
    for label in c.settings:
        row = summary.rows.get(label)
        if row is not None and row.enough:
            labels.append(label)
            rows.append(row)
    across = summary.across
    pooled_rows = []
    if across is not None and across.pooled is not None:
        p = across.pooled
        pooled_rows.append(("pooled: t over settings", p.mean_diff,
                            _half_width(p.mean_diff, p.ci_low, p.ci_high), POOLED,
                            f"{p.mean_diff * u.scale:+.2f}, p (Holm) "
                            f"{format_p(summary.pooled_p_holm)}"))  # fmt: skip
    if across is not None and across.meta is not None:
        meta = across.meta
        pooled_rows.append(("random effects (HKSJ)", meta.random,
                            _half_width(meta.random, meta.ci_low, meta.ci_high), RANDOM,
                            f"{meta.random * u.scale:+.2f}, I^2 {meta.i2:.0%}"))  # fmt: skip
    n, m = len(rows), len(pooled_rows)
    pooled_y = [float(m - j) for j in range(m)]
    setting_y = [m + 1.0 + (n - 1 - i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(10.5, 1.7 + 0.42 * (n + m + 1)))
    for y, row in zip(setting_y, rows, strict=True):
        half = _half_width(row.mean_diff, row.ci_low, row.ci_high) * u.scale
        mean = row.mean_diff * u.scale
        good = (row.mean_diff > 0) == higher
        color = NEUTRAL if row.verdict != "significant" else BETTER if good else WORSE
        ax.plot([mean - half, mean + half], [y, y], color=color, linewidth=2, zorder=2)
        filled = row.verdict == "significant"
        ax.scatter([mean], [y], s=30 + 12 * row.n_pairs, marker="s", zorder=3,
                   facecolor=color if filled else "white", edgecolor=color, linewidth=1.5)
        ax.annotate(f"{mean:+.2f}  n={row.n_pairs}, p (Holm) {format_p(row.p_holm)}",
                    (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    for y, (_name, estimate, half, color, text) in zip(pooled_y, pooled_rows, strict=True):
        e, h = estimate * u.scale, half * u.scale
        ax.add_patch(Polygon([(e - h, y), (e, y + 0.25), (e + h, y), (e, y - 0.25)],
                             closed=True, facecolor=color, edgecolor=color, alpha=0.85))
        ax.annotate(text, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    if m:
        ax.axhline(m + 0.5, color="black", linewidth=0.6, alpha=0.4)
    ticks = [_wrap(label, 32) for label in labels]
    ax.axvline(0, color="black", linewidth=1, linestyle="--", zorder=1)
    ax.set_yticks([*setting_y, *pooled_y])
    ax.set_yticklabels([*ticks, *(r[0] for r in pooled_rows)], fontsize=8.5)
    ax.set_ylim(0.4, m + n + 0.6)
    ax.relim()
    ax.autoscale_view(scaley=False)
    low, high = ax.get_xlim()
    span = max(abs(low), abs(high))
    ax.set_xlim(-span * 1.05, span * 1.05)  # 0 (the baseline) in the middle
    better = "right" if higher else "left"
    ax.set_xlabel(f"{c.scored_metric} difference, arm - baseline{',' if u.diff else ''}"
                  f"{u.diff} ({better} is better)")  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    level = round(100 * (1 - 2 * c.alpha))
    ax.set_title(_wrap(f"{c.name}: {summary.arm} vs baseline {c.baseline}, per setting and "
                       f"pooled; bars: {level}% intervals (their inner end is the one-sided "
                       f"{1 - c.alpha:.0%} bound of the test); filled: Holm-significant", 95),
                 fontsize=9.5)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def improvement_plot(comparison: SettingsComparison, path: str | Path) -> Path | None:
    """P(arm beats baseline) per arm, with its 95% bootstrap interval and the settings' P_s."""
    c = comparison
    arms = [a for a in c.arms if a.across is not None]
    if not arms:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.7 * len(arms)))
    for y, summary in zip(range(len(arms), 0, -1), arms, strict=True):
        assert summary.across is not None
        imp = summary.across.improvement
        color = BETTER if imp.ci_low > 0.5 else WORSE if imp.ci_high < 0.5 else POOLED
        ax.plot([imp.ci_low, imp.ci_high], [y, y], color=color, linewidth=6, alpha=0.35,
                solid_capstyle="butt")  # fmt: skip
        ax.scatter([imp.probability], [y], color=color, s=60, zorder=3)
        count = len(imp.per_setting)
        for i, value in enumerate(imp.per_setting):
            dy = 0.22 * ((i - (count - 1) / 2) / max(count - 1, 1))
            ax.scatter([value], [y - 0.3 + dy * 0.4], color="black", s=60, marker="|",
                       linewidths=1.2, zorder=2)  # fmt: skip
        ax.annotate(f"{imp.probability:.2f} [{imp.ci_low:.2f}, {imp.ci_high:.2f}]",
                    (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.axvline(0.5, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(list(range(len(arms), 0, -1)))
    ax.set_yticklabels([_wrap(a.arm) for a in arms], fontsize=8.5)
    ax.set_ylim(0.3, len(arms) + 0.7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"P(a run of the arm beats a run of the baseline {c.baseline}), "
                  "averaged over settings")  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=POOLED, marker="o", linewidth=6, alpha=0.6,
                      label="P(improvement), 95% stratified bootstrap interval"),
               Line2D([], [], color="black", marker="|", linestyle="none",
                      label="one setting's P_s")]  # fmt: skip
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
              fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle(_wrap(f"{c.name}: probability of improvement over {len(c.settings)} "
                       "settings (0.5: no difference)", 90), fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _cliques(ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last) of the rank-sorted arms that span less than ``cd``."""
    found: list[tuple[int, int]] = []
    for first in range(len(ranks)):
        last = first
        while last + 1 < len(ranks) and ranks[last + 1] - ranks[first] < cd:
            last += 1
        if last > first and not any(a <= first and last <= b for a, b in found):
            found.append((first, last))
    return found


def cd_diagram(comparison: SettingsComparison, path: str | Path) -> Path | None:
    """Demsar's critical-difference diagram; None when the Friedman test does not apply."""
    c = comparison
    f = c.friedman
    if f is None:
        return None
    order = sorted(zip(f.mean_ranks, c.rank_labels, strict=True))
    ranks = [rank for rank, _ in order]
    k = len(order)
    left = (k + 1) // 2
    fig, ax = plt.subplots(figsize=(9, 1.9 + 0.4 * left))
    ax.set_xlim(0.5, k + 0.5)
    top = 1.0
    ax.set_ylim(top - 0.65 - 0.42 * (left - 1), top + 0.8)
    ax.hlines(top, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, top, top + 0.08, color="black", linewidth=1)
        ax.text(r, top + 0.14, str(r), ha="center", va="bottom", fontsize=9)
    cd = f.critical_difference
    ax.hlines(top + 0.5, 1, 1 + cd, color="black", linewidth=2)
    ax.vlines([1, 1 + cd], top + 0.44, top + 0.56, color="black", linewidth=2)
    ax.text(1 + cd / 2, top + 0.58, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (rank, label) in enumerate(order):
        on_left = i < left
        depth = i if on_left else k - 1 - i
        y = top - 0.35 - 0.42 * depth
        x_text = 0.55 if on_left else k + 0.45
        ax.plot([rank, rank, x_text], [top, y, y], color="black", linewidth=0.9)
        base = " (baseline)" if label == c.baseline else ""
        text = f"{label}{base}  {rank:.2f}" if on_left else f"{rank:.2f}  {label}{base}"
        ax.text(x_text, y + 0.05, text, ha="left" if on_left else "right", va="bottom",
                fontsize=8.5)  # fmt: skip
    for j, (first, last) in enumerate(_cliques(ranks, cd)):
        y = top - 0.12 - 0.09 * j
        ax.hlines(y, ranks[first] - 0.03, ranks[last] + 0.03, color=POOLED, linewidth=4)
    ax.axis("off")
    ax.set_title(_wrap(f"{c.name}: average ranks over {f.n_settings} settings (1 = best); "
                       f"Friedman p {format_p(f.pvalue)}; arms joined by a bar are not told "
                       f"apart (Nemenyi, alpha {f.alpha:g})", 100), fontsize=9.5)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
