"""Plots of a comparison (matplotlib, Agg backend: no display needed).

* :func:`paired_plot`: per arm, the compared value of every seed for the baseline and the
  arm, joined by a line per seed (green where the arm is better, red where worse), with
  mean +- sd beside each column.
* :func:`curves_plot`: mean +- sd learning curves per arm over epochs (the baseline and
  the best ``CURVES_TOP_K`` arms when there are more).
* :func:`forest_plot`: with more than ``FOREST_ABOVE`` arms, instead of the paired plot:
  each arm's mean difference and one-sided 95% bound, sorted, paged at ``FOREST_PER_PAGE``.
* :func:`value_plot`: for a sweep over one numeric parameter, difference vs value.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from studies.analysis.comparison import ArmRow, Comparison
from studies.analysis.report import (
    CURVES_PLOT,
    FOREST_PLOT,
    PAIRED_PLOT,
    VALUE_PLOT,
    format_p,
    units,
)

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


def curves_plot(comparison: Comparison, path: str | Path, top_k: int | None = None) -> Path:
    """Mean +- sd over the seeds of each arm, per epoch, for the compared metrics and the
    training loss; only the trials the comparison used (failures left out). With more than
    ``top_k`` arms (default ``CURVES_TOP_K``; 0 or less: all) only the baseline and the
    best ``top_k`` arms by mean difference are drawn, and the title says so."""
    used = {score.trial_id for score in comparison.scores}
    trials = [t for t in comparison.trials if t.trial_id in used]
    top_k = CURVES_TOP_K if top_k is None else top_k
    shown = comparison.rows
    if 0 < top_k < len(comparison.rows):
        shown = ranked_rows(comparison)[:top_k]
    arms = [comparison.baseline, *(row.arm for row in shown)]
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
    which = ("per arm" if len(shown) == len(comparison.rows) else
             f"of the baseline and the best {len(shown)} of {len(comparison.rows)} arms "
             "by mean difference")  # fmt: skip
    fig.suptitle(f"{comparison.spec.name}: learning curves {which} (shaded: ± 1 sd)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# Plots that scale to hundreds of arms

FOREST_ABOVE = 12  # more arms than this: the forest plot replaces paired.png
FOREST_PER_PAGE = 70  # arms per forest page: 1.5 + 0.2 in per arm at DPI 120 < 1,900 px
CURVES_TOP_K = 5  # learning curves show the baseline and the best k arms
VALUE_MIN_ARMS = 3  # difference vs value needs this many arms with a difference


def draw_plots(comparison: Comparison, out: Path) -> list[str]:
    """Draw every plot of ``comparison`` into ``out``; their file names, in the report's order:
    the forest pages (more than ``FOREST_ABOVE`` arms) or the paired plot, the value plot
    (a sweep over one number), the learning curves."""
    plots = []
    if len(comparison.rows) > FOREST_ABOVE:  # one panel per arm would not be readable
        plots += [page.name for page in forest_plot(comparison, out / FOREST_PLOT)]
    elif comparison.rows:
        plots.append(paired_plot(comparison, out / PAIRED_PLOT).name)
    if (value := value_plot(comparison, out / VALUE_PLOT)) is not None:
        plots.append(value.name)
    if comparison.scores:
        plots.append(curves_plot(comparison, out / CURVES_PLOT).name)
    return plots


def ranked_rows(comparison: Comparison) -> list:
    """The arms that have a mean difference, best first (largest difference for a metric to
    maximize, smallest for one to minimize; ties by label)."""
    sign = 1.0 if comparison.mode == "max" else -1.0
    rows = [row for row in comparison.rows if math.isfinite(row.mean_diff)]
    return sorted(rows, key=lambda row: (-sign * row.mean_diff, row.arm))


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _bound(row: ArmRow, comparison: Comparison) -> float | None:
    """The finite end of the row's one-sided 95% interval (None with fewer than 2 pairs)."""
    if not row.enough:
        return None
    value = row.ci_low if comparison.alternative == "greater" else row.ci_high
    return value if math.isfinite(value) else None


def _forest_style(row: ArmRow) -> tuple[str, str, str]:
    """(marker, face color, edge color) of an arm: filled green when Holm-significant,
    open grey when tested and not significant, a grey x with fewer than 2 pairs."""
    if not row.enough:
        return "x", TIED, TIED
    if row.verdict == "significant":
        return "o", BETTER, BETTER
    return "o", "white", TIED


def _forest_marks(ax: Axes, rows: list[ArmRow], comparison: Comparison, scale: float) -> None:
    """Row y = i: a segment from the arm's one-sided bound (marked |) to its mean difference
    (marked by ``_forest_style``), drawn as one collection per kind of mark, not one line
    per arm: a page of 70 arms costs a few artists."""
    styles = [_forest_style(row) for row in rows]
    bounded = [(y, bound * scale, row.mean_diff * scale, edge)
               for y, (row, (_, _, edge)) in enumerate(zip(rows, styles, strict=True))
               if (bound := _bound(row, comparison)) is not None]  # fmt: skip
    if bounded:
        ys, bounds, means, edges = zip(*bounded, strict=True)
        ax.hlines(ys, bounds, means, colors=edges, linewidth=1.4, zorder=2)
        ax.scatter(bounds, ys, marker="|", s=64, c=edges, linewidths=1.0, zorder=2)
    for marker in dict.fromkeys(style[0] for style in styles):
        picked = [(y, row.mean_diff * scale, face, edge)
                  for y, (row, (m, face, edge)) in enumerate(zip(rows, styles, strict=True))
                  if m == marker]  # fmt: skip
        ys, xs, faces, edges = zip(*picked, strict=True)
        if marker == "x":  # an unfilled marker takes its color from the face
            ax.scatter(xs, ys, marker=marker, s=30, c=edges, linewidths=1.0, zorder=3)
        else:
            ax.scatter(xs, ys, marker=marker, s=30, facecolors=faces, edgecolors=edges,
                       linewidths=1.0, zorder=3)  # fmt: skip


def forest_plot(comparison: Comparison, path: str | Path,
                per_page: int = FOREST_PER_PAGE) -> list[Path]:  # fmt: skip
    """Each arm's mean difference from the baseline with its one-sided 95% bound, best arm on
    top, Holm-significant arms filled, a line at 0 (the baseline). More than ``per_page``
    arms are split evenly over pages ``<stem>-1.png``, ``<stem>-2.png``, ... (one shared x
    axis); otherwise one file at ``path``. Returns the files written."""
    u = units(comparison.scored_metric)
    rows = ranked_rows(comparison)
    path = Path(path)
    for old in path.parent.glob(f"{path.stem}-*{path.suffix}"):  # pages of an earlier run
        old.unlink()
    pages = max(1, math.ceil(len(rows) / per_page))
    size = math.ceil(len(rows) / pages) if rows else 0
    values = [row.mean_diff * u.scale for row in rows]
    values += [b * u.scale for row in rows if (b := _bound(row, comparison)) is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    pad = 0.06 * (high - low or 1.0)
    untested = len(comparison.rows) - len(rows)
    files = []
    for page in range(pages):
        chunk = rows[page * size : (page + 1) * size]
        fig, ax = plt.subplots(figsize=(10.5, 1.9 + 0.2 * max(len(chunk), 3)))
        _forest_marks(ax, chunk, comparison, u.scale)
        for y, row in enumerate(chunk):
            ax.text(1.01, y, f"n {row.n_pairs}  p {format_p(row.p_holm)}", fontsize=7,
                    va="center", transform=ax.get_yaxis_transform())  # fmt: skip
        ax.axvline(0.0, color=BASELINE_COLOR, linewidth=1.0, zorder=1)
        ax.set_yticks(range(len(chunk)))
        ax.set_yticklabels([_short(row.arm) for row in chunk], fontsize=7.5)
        ax.set_ylim(len(chunk) - 0.5, -0.5)  # best arm on top
        ax.set_xlim(low - pad, high + pad)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"{u.name.split(' (')[0]}: arm − baseline {comparison.baseline}"
                      f"{' (' + u.diff.strip() + ')' if u.diff else ''}")  # fmt: skip
        first, last = page * size + 1, page * size + len(chunk)
        where = f", arms {first}–{last} of {len(rows)}" if pages > 1 else ""
        skipped = f"; {untested} arm(s) without a pair not shown" if untested else ""
        ax.set_title(_wrap(f"{comparison.spec.name}: mean difference from the baseline "
                           f"{_selection_text(comparison)}, best first{where}{skipped}", 100),
                     fontsize=10)  # fmt: skip
        ax.text(1.01, 1.0, "pairs, p (Holm)", fontsize=7, va="bottom",
                transform=ax.transAxes)  # fmt: skip
        handles = [
            Line2D([], [], marker="o", color=BETTER, linestyle="none",
                   label=f"significant (Holm, alpha {comparison.alpha:g})"),
            Line2D([], [], marker="o", markerfacecolor="white", color=TIED, linestyle="none",
                   label="not significant"),
            Line2D([], [], marker="|", color=TIED, markersize=8,
                   label="one-sided 95% bound"),
            Line2D([], [], marker="x", color=TIED, linestyle="none", label="fewer than 2 pairs"),
            Line2D([], [], color=BASELINE_COLOR, label="baseline (0)"),
        ]  # fmt: skip
        fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7.5, frameon=False)
        fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
        target = path if pages == 1 else path.with_name(f"{path.stem}-{page + 1}{path.suffix}")
        fig.savefig(target, dpi=DPI)
        plt.close(fig)
        files.append(target)
    return files


def swept_number(comparison: Comparison) -> str | None:
    """The path of a sweep over one numeric parameter: every arm (the baseline too) sets
    exactly that path, to a number. None otherwise."""
    assignments = [comparison.baseline_params, *(row.params for row in comparison.rows)]
    paths = {tuple(values) for values in assignments}
    if len(paths) != 1 or len(next(iter(paths))) != 1:
        return None
    (path,) = next(iter(paths))
    numeric = all(isinstance(v[path], int | float) and not isinstance(v[path], bool)
                  for v in assignments)  # fmt: skip
    return path if numeric else None


def _spread(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return _sd(values) / mean if mean else math.inf


def log_spaced(comparison: Comparison, path: str, values: list[float]) -> bool:
    """A log x axis: a loguniform domain, or positive values spanning 10x or more whose
    log-gaps are more even than their gaps (a grid like 1e-3, 1e-2, 1e-1)."""
    from studies.config.spec import LogUniformDomain

    if isinstance(comparison.spec.sweep.get(path), LogUniformDomain):
        return True
    positive = sorted({v for v in values if v > 0})
    if len(positive) < 3 or positive[-1] / positive[0] < 10:
        return False
    pairs = list(zip(positive, positive[1:], strict=False))
    return _spread([math.log(b / a) for a, b in pairs]) < _spread([b - a for a, b in pairs])


def value_plot(comparison: Comparison, path: str | Path) -> Path | None:
    """Difference vs value for a sweep over one numeric parameter (:func:`swept_number`):
    x = the swept value, y = the arm's mean difference from the baseline with its one-sided
    95% bound, Holm-significant values filled; None (nothing written) for other studies or
    fewer than ``VALUE_MIN_ARMS`` arms with a difference."""
    swept = swept_number(comparison)
    rows = [row for row in comparison.rows if math.isfinite(row.mean_diff)]
    if swept is None or len(rows) < VALUE_MIN_ARMS:
        return None
    u = units(comparison.scored_metric)
    base_value = comparison.baseline_params[swept]
    rows.sort(key=lambda row: row.params[swept])
    xs = [row.params[swept] for row in rows]
    log = log_spaced(comparison, swept, [*xs, base_value])
    if log:
        rows = [row for row in rows if row.params[swept] > 0]
        xs = [row.params[swept] for row in rows]
    size = 6.0 if len(rows) <= 60 else 4.5  # smaller markers keep hundreds of values apart
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    ax.plot(xs, [row.mean_diff * u.scale for row in rows], color=TIED, linewidth=1.0,
            alpha=0.7, zorder=1)  # fmt: skip
    for x, row in zip(xs, rows, strict=True):
        y = row.mean_diff * u.scale
        bound = _bound(row, comparison)
        marker, face, edge = _forest_style(row)
        if bound is not None:
            ax.plot([x, x], [bound * u.scale, y], color=edge, linewidth=1.3, zorder=2)
            ax.plot([x], [bound * u.scale], marker="_", markersize=1.5 * size, color=edge,
                    zorder=2)  # fmt: skip
        ax.plot([x], [y], marker=marker, markersize=size, markerfacecolor=face,
                markeredgecolor=edge, linestyle="none", zorder=3)  # fmt: skip
    ax.axhline(0.0, color=BASELINE_COLOR, linewidth=1.0, linestyle="--", zorder=1)
    if not log or base_value > 0:
        ax.plot([base_value], [0.0], marker="D", color=BASELINE_COLOR, linestyle="none",
                zorder=4)  # fmt: skip
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(swept + (" (log scale)" if log else ""))
    ax.set_ylabel(f"{u.name.split(' (')[0]}: arm − baseline"
                  f"{' (' + u.diff.strip() + ')' if u.diff else ''}")  # fmt: skip
    ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], marker="o", color=BETTER, linestyle="none",
               label=f"significant (Holm, alpha {comparison.alpha:g})"),
        Line2D([], [], marker="o", markerfacecolor="white", color=TIED, linestyle="none",
               label="not significant"),
        Line2D([], [], marker="_", color=TIED, markersize=9, label="one-sided 95% bound"),
        Line2D([], [], marker="D", color=BASELINE_COLOR, linestyle="--",
               label=f"baseline {swept} = {base_value:g}"),
    ]  # fmt: skip
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(_wrap(f"{comparison.spec.name}: mean difference from the baseline vs "
                       f"{swept}, {comparison.scored_metric} {_selection_text(comparison)}",
                       90), fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
