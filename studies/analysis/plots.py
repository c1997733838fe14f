"""Plots of a comparison (matplotlib, Agg backend: no display needed).

* :func:`paired_plot`: per arm, the compared value of every seed for the baseline and the
  arm, joined by a line per seed (green where the arm is better, red where worse), with
  mean +- sd beside each column.
* :func:`curves_plot`: mean +- sd learning curves per arm over epochs.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from studies.analysis.comparison import Comparison
from studies.analysis.report import format_p, units

BETTER, WORSE, TIED = "#2ca02c", "#d62728", "#7f7f7f"
BASELINE_COLOR = "black"
DPI = 120


def _wrap(text: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _selection_text(comparison: Comparison) -> str:
    if comparison.select == "final":
        return "at the final epoch"
    return f"at each trial's best-{comparison.scored_metric.replace('test', 'val')} epoch"


def paired_plot(comparison: Comparison, path: str | Path) -> Path:
    """One panel per arm: baseline (left) and arm (right) values joined by seed."""
    u = units(comparison.scored_metric)
    rows = comparison.rows
    by_arm: dict[str, dict[int, float]] = {}
    for score in comparison.scores:
        by_arm.setdefault(score.arm, {})[score.seed] = score.value * u.scale
    base = by_arm.get(comparison.baseline, {})
    higher = comparison.mode == "max"

    ncols = min(len(rows), 3)
    nrows = math.ceil(len(rows) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 4.4 * nrows + 0.9),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows, strict=False):
        arm = by_arm.get(row.arm, {})
        count = len(row.paired_seeds)
        for index, seed in enumerate(row.paired_seeds):
            b, a = base[seed], arm[seed]
            color = TIED if a == b else BETTER if (a > b) == higher else WORSE
            # A small horizontal offset per seed keeps identical pairs apart.
            dx = 0.06 * (index - (count - 1) / 2) / max(count - 1, 1)
            ax.plot([dx, 1 + dx], [b, a], color=color, alpha=0.8, linewidth=1.5, zorder=2)
            ax.scatter([dx, 1 + dx], [b, a], color=color, s=22, zorder=3)
        for x, values in ((-0.18, [base[s] for s in row.paired_seeds]),
                          (1.18, [arm[s] for s in row.paired_seeds])):  # fmt: skip
            if values:
                mean = sum(values) / len(values)
                sd = _sd(values)
                ax.errorbar([x], [mean], yerr=[sd], fmt="D", color="black", markersize=6,
                            capsize=4, zorder=4)  # fmt: skip
        if row.enough:
            diff = row.mean_diff * u.scale
            title = (f"{row.arm}\nmean diff {diff:+.2f}{u.diff}, p (Holm) "
                     f"{format_p(row.p_holm)}\n{row.verdict} (n = {row.n_pairs})")  # fmt: skip
        else:
            title = f"{row.arm}\nnot enough pairs (n = {row.n_pairs})"
            ax.text(0.5, 0.5, "not enough pairs", transform=ax.transAxes, ha="center",
                    color=TIED)  # fmt: skip
        stop = _stop_text(comparison, row.arm)
        if stop:
            title = f"{title}\n{stop}"
        ax.set_title(title, fontsize=9.5)
        ax.set_xticks([0, 1])
        ax.set_xticklabels([_wrap(f"baseline {comparison.baseline}", 20), _wrap(row.arm, 20)],
                           fontsize=8.5)  # fmt: skip
        ax.set_xlim(-0.45, 1.45)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(u.name)
    handles = [
        Line2D([], [], color=BETTER, marker="o", label="one seed: arm better"),
        Line2D([], [], color=WORSE, marker="o", label="one seed: arm worse"),
        Line2D([], [], color=TIED, marker="o", label="one seed: tie"),
        Line2D([], [], color="black", marker="D", linestyle="none", label="mean ± sd"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.suptitle(_wrap(f"{comparison.spec.name}: {comparison.scored_metric} "
                       f"{_selection_text(comparison)}, arm vs baseline paired by seed", 90),
                 fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _stop_text(comparison: Comparison, arm: str) -> str:
    """Where a sequential study stopped the arm, e.g. ``stopped at look 1 (3 seeds):
    futility``; empty for other studies."""
    result = getattr(comparison, "sequential", None)
    found = result.arm(arm) if result is not None else None
    if found is None or not found.history:
        return ""
    why = found.action.replace("_", " ")
    if not found.stopped:
        return f"running after look {found.look} ({found.n} seeds)"
    return f"stopped at look {found.look} ({found.n} seeds): {why}"


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _panels(comparison: Comparison) -> list[str]:
    kind = "loss" if comparison.metric.endswith("_loss") else "acc"
    wanted = [comparison.metric, comparison.scored_metric, f"val_{kind}", f"test_{kind}"]
    panels = list(dict.fromkeys(wanted))[:2]
    return [*panels, "train_loss"] if "train_loss" not in panels else panels


def curves_plot(comparison: Comparison, path: str | Path) -> Path:
    """Mean +- sd over the seeds of each arm, per epoch, for the compared metrics and the
    training loss; only the trials the comparison used (failures left out)."""
    used = {score.trial_id for score in comparison.scores}
    trials = [t for t in comparison.trials if t.trial_id in used]
    arms = [comparison.baseline, *(row.arm for row in comparison.rows)]
    panels = _panels(comparison)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], panels, strict=True):
        u = units(metric)
        low, high = math.inf, -math.inf
        for index, arm in enumerate(arms):
            histories = [t.history.get(metric, {}) for t in trials if t.arm == arm]
            epochs = sorted({e for h in histories for e in h})
            if not epochs:
                continue
            values = [[h[e] * u.scale for h in histories if e in h] for e in epochs]
            means = [sum(v) / len(v) for v in values]
            sds = [_sd(v) for v in values]
            is_base = arm == comparison.baseline
            color = BASELINE_COLOR if is_base else colors[(index - 1) % len(colors)]
            label = f"{arm} (baseline)" if is_base else arm
            stop = _stop_text(comparison, arm)
            label = f"{label}, {stop}" if stop else label
            style = "--" if is_base else "-"
            ax.plot(epochs, means, color=color, marker="o", markersize=3.5, linestyle=style,
                    label=_wrap(f"{label}, n = {len(histories)}", 45))  # fmt: skip
            lower = [m - s for m, s in zip(means, sds, strict=True)]
            upper = [m + s for m, s in zip(means, sds, strict=True)]
            ax.fill_between(epochs, lower, upper, color=color, alpha=0.15, linewidth=0)
            low, high = min(low, *means), max(high, *means)
        if metric.endswith("_loss") and low > 0 and high / low > 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(u.name)
        ax.set_title(u.name.split(" (")[0].capitalize() + " per epoch (mean ± sd over seeds)",
                     fontsize=10)  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{comparison.spec.name}: learning curves per arm (shaded: ± 1 sd)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
