"""Plots of a search's answer (matplotlib, Agg backend), drawn from a :class:`SearchAnswer`.

* :func:`history_plot`: the optimization history, each trial's value in the order it was
  proposed, the best so far as a step line, failures marked at the bottom.
* :func:`slice_plot`: one panel per swept parameter, the value of every trial against it
  (log axis for a loguniform domain or a log-spaced grid), coloured by trial number; a
  configuration run on several seeds shows its seeds and their mean ± sd.
* :func:`importance_plot`: the parameters' fANOVA importances as bars.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from studies.analysis.search import (  # noqa: E402
    DIVERGED,
    ERRORED,
    FINISHED,
    SearchAnswer,
    display_scale,
    format_param,
    format_value,
)
from studies.config.space import swept_paths  # noqa: E402
from studies.config.spec import (  # noqa: E402
    LogUniformDomain,
    RandIntDomain,
    StudySpec,
    UniformDomain,
)

DPI = 120
CMAP = "viridis"
BEST, FAILED, MEAN = "#d62728", "#7f7f7f", "black"
RANGES = (UniformDomain, LogUniformDomain, RandIntDomain)
MAX_TICKS = 12  # a grid or choice of at most this many numbers is labelled value by value


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _scale(answer: SearchAnswer) -> float:
    return display_scale(answer.metric)


def _ylabel(answer: SearchAnswer) -> str:
    return f"{answer.metric} (%)" if display_scale(answer.metric) != 1.0 else answer.metric


def _numbered(answer: SearchAnswer) -> list[tuple[int, str]]:
    """(number, trial id) of every trial in proposal order; trials without a number (no
    experiment state) follow in trial id order."""
    known = sorted((n, t) for t, n in answer.numbers.items() if t in answer.states)
    rest = sorted(t for t in answer.states if t not in answer.numbers)
    start = max((n for n, _ in known), default=0)
    return known + [(start + i, t) for i, t in enumerate(rest, 1)]


def _scores(answer: SearchAnswer) -> dict[str, tuple[float, str]]:
    """Trial id -> (value in display units, state) of every ranked trial."""
    scale = _scale(answer)
    return {t.trial_id: (t.value * scale, t.state) for c in answer.ranking for t in c.trials}


def history_plot(answer: SearchAnswer, path: str | Path) -> Path:
    """Draw :func:`history_figure` into ``path`` (PNG)."""
    return _save(history_figure(answer), path)


def history_figure(answer: SearchAnswer) -> Any:
    """x = trial number (proposal order), y = the metric at the trial's last epoch: filled
    dots for trials that ran every epoch, hollow for those stopped early, the best so far of
    the finished ones as a step line, the best trial starred, failures as x at the bottom."""
    scores, numbered = _scores(answer), _numbered(answer)
    sign = 1.0 if answer.mode == "max" else -1.0
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    xs_best, ys_best, best_so_far = [], [], None
    failed_x, failed_kind = [], []
    for number, trial_id in numbered:
        if trial_id in scores:
            value, state = scores[trial_id]
            filled = state == FINISHED
            ax.plot([number], [value], "o", markersize=6, color="#1f77b4",
                    markerfacecolor="#1f77b4" if filled else "white", zorder=3)  # fmt: skip
            if filled and (best_so_far is None or sign * value > sign * best_so_far):
                best_so_far = value
            if best_so_far is not None:
                xs_best.append(number)
                ys_best.append(best_so_far)
        elif answer.states.get(trial_id) in (DIVERGED, ERRORED):
            failed_x.append(number)
            failed_kind.append(answer.states[trial_id])
    if xs_best:
        ax.step(xs_best, ys_best, where="post", color=BEST, linewidth=1.5, zorder=2)
    best = answer.best
    if best is not None:  # its trials starred (one per seed), the best seed's labelled
        where = dict((t, n) for n, t in numbered)
        marks = [(where[t.trial_id], scores[t.trial_id][0]) for t in best.trials]
        ax.plot([x for x, _ in marks], [y for _, y in marks], "*", color=BEST, markersize=16,
                linestyle="none", zorder=4)  # fmt: skip
        x, y = marks[0]
        right = x > (numbered[0][0] + numbered[-1][0]) / 2
        label = (f"best: #{x}, {format_value(best.mean, answer.metric)}" if len(marks) == 1
                 else f"best configuration: mean {format_value(best.mean, answer.metric)} "
                 f"over {len(marks)} seeds")  # fmt: skip
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(-10 if right else 10, -4),
                    ha="right" if right else "left", va="top", fontsize=8, color=BEST)
    if failed_x:  # no value to plot: a mark on the bottom edge at the trial's number
        ax.plot(failed_x, [0.03] * len(failed_x), "x", color=FAILED, markersize=8,
                transform=ax.get_xaxis_transform(), clip_on=False, zorder=3)  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if numbered:
        ax.set_xlim(numbered[0][0] - 0.7, numbered[-1][0] + 0.7)
    ax.set_xlabel("trial number (order proposed)")
    ax.set_ylabel(_ylabel(answer))
    ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], marker="o", color="#1f77b4", linestyle="none", label="ran every epoch"),
        Line2D([], [], marker="o", color="#1f77b4", markerfacecolor="white", linestyle="none",
               label="stopped early (value at its last epoch)"),
        Line2D([], [], color=BEST, label="best so far"),
    ]  # fmt: skip
    if failed_x:
        kinds = "/".join(sorted(set(failed_kind)))
        handles.append(Line2D([], [], marker="x", color=FAILED, linestyle="none",
                              label=f"{kinds} (no value)"))  # fmt: skip
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(f"{answer.spec.name}: optimization history, {answer.metric} at each trial's "
                 "last epoch", fontsize=10)  # fmt: skip
    ax.margins(y=0.08)
    fig.tight_layout()
    return fig


def _numeric(values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                for v in values)  # fmt: skip


def log_axis(spec: StudySpec, path: str, values: list[float]) -> bool:
    """A log x axis: a loguniform domain, or positive values spanning 10x or more whose
    log-gaps are more even than their gaps (a grid like 1e-3, 1e-2, 1e-1)."""
    if isinstance(spec.sweep.get(path), LogUniformDomain):
        return True
    positive = sorted({v for v in values if v > 0})
    if len(positive) < 3 or positive[-1] / positive[0] < 10 or len(positive) < len(set(values)):
        return False
    pairs = list(zip(positive, positive[1:], strict=False))

    def spread(gaps: list[float]) -> float:
        mean = statistics.fmean(gaps)
        return statistics.pstdev(gaps) / mean if mean else math.inf

    return spread([math.log(b / a) for a, b in pairs]) < spread([b - a for a, b in pairs])


def plotted_paths(answer: SearchAnswer) -> list[str]:
    """The swept paths that took more than one value among the ranked trials."""
    paths = []
    for path in swept_paths(answer.spec):
        seen = {format_param(c.values.get(path)) for c in answer.ranking}
        if len(seen) > 1:
            paths.append(path)
    return paths


def slice_plot(answer: SearchAnswer, path: str | Path) -> Path | None:
    """Draw :func:`slice_figure` into ``path`` (PNG); None (nothing written) without one."""
    fig = slice_figure(answer)
    return None if fig is None else _save(fig, path)


def slice_figure(answer: SearchAnswer) -> Any:
    """One panel per swept parameter (:func:`plotted_paths`): every ranked trial's value
    against the parameter, coloured by trial number; with several seeds per configuration,
    the mean ± sd of each configuration beside its seeds. None without a parameter to plot."""
    paths = plotted_paths(answer)
    if not paths or not answer.ranking:
        return None
    scale = _scale(answer)
    seeds = any(len(c.trials) > 1 for c in answer.ranking)
    numbers = [t.number for c in answer.ranking for t in c.trials if t.number is not None]
    vmin, vmax = (min(numbers), max(numbers)) if numbers else (0, 1)
    ncols = min(len(paths), 3)
    nrows = math.ceil(len(paths) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 1.2, 4.0 * nrows + 0.6),
                             sharey=True, squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.flat[len(paths):]:
        ax.set_visible(False)
    points = None
    for ax, swept in zip(axes.flat, paths, strict=False):
        raw: list[Any] = [c.values.get(swept) for c in answer.ranking]
        numeric = _numeric(raw)
        labels = sorted({format_param(v) for v in raw}) if not numeric else []
        log = numeric and log_axis(answer.spec, swept, [float(v) for v in raw])

        def position(value: Any, numeric: bool = numeric, labels: list[str] = labels) -> float:
            return float(value) if numeric else float(labels.index(format_param(value)))

        xs, ys, colors, faces = [], [], [], []
        for config in answer.ranking:
            x = position(config.values.get(swept))
            count = len(config.trials)
            for i, t in enumerate(config.trials):
                jitter = 0.0 if numeric or count == 1 else 0.12 * (i - (count - 1) / 2) / count
                xs.append(x + jitter)
                ys.append(t.value * scale)
                colors.append(t.number if t.number is not None else vmin)
                faces.append(t.state == FINISHED)
            if count > 1:  # the configuration's spread over its seeds
                color = BEST if config is answer.best else MEAN
                ax.errorbar([x], [config.mean * scale], yerr=[config.sd * scale], fmt="D",
                            color=color, markersize=5, capsize=4, zorder=4)  # fmt: skip
        filled = [i for i, f in enumerate(faces) if f]
        hollow = [i for i, f in enumerate(faces) if not f]
        for group, face in ((filled, True), (hollow, False)):
            if not group:
                continue
            kwargs = ({"c": [colors[i] for i in group]} if face else
                      {"facecolors": "none", "edgecolors": plt.get_cmap(CMAP)(
                          [(colors[i] - vmin) / max(vmax - vmin, 1) for i in group])})
            made = ax.scatter([xs[i] for i in group], [ys[i] for i in group], s=30,
                              cmap=CMAP if face else None, vmin=vmin if face else None,
                              vmax=vmax if face else None, zorder=3, **kwargs)  # fmt: skip
            points = made if face else points
        best = answer.best
        if best is not None and not seeds:
            ax.plot([position(best.values.get(swept))], [best.mean * scale], "*", color=BEST,
                    markersize=15, zorder=5, markeredgecolor="white")  # fmt: skip
        if log:
            ax.set_xscale("log")
        domain = answer.spec.sweep.get(swept)
        if isinstance(domain, RANGES):  # the whole range searched, not only where trials fell
            low, high = (float(v) for v in next(iter(domain.model_dump().values())))
            pad = (high / low) ** 0.03 if log else 0.03 * (high - low)
            ax.set_xlim(*((low / pad, high * pad) if log else (low - pad, high + pad)))
        if numeric and not isinstance(answer.spec.sweep.get(swept), RANGES):
            ticks = sorted({float(v) for v in raw})  # a grid or choice: its values
            if len(ticks) <= MAX_TICKS:
                ax.set_xticks(ticks, [format_param(v) for v in ticks], minor=False)
                ax.set_xticks([], minor=True)
        if not numeric:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30 if len(labels) > 3 else 0, ha="right"
                               if len(labels) > 3 else "center", fontsize=8)  # fmt: skip
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel(swept + (" (log scale)" if log else ""))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(_ylabel(answer))
    handles = [Line2D([], [], marker="D" if seeds else "*", color=BEST, markersize=6 if seeds
                      else 12, linestyle="-" if seeds else "none",
                      label="best configuration" + (" (mean ± sd)" if seeds else ""))]
    if any(not t for t in faces):
        handles.append(Line2D([], [], marker="o", color="gray", markerfacecolor="white",
                              linestyle="none", label="stopped early"))  # fmt: skip
    if seeds:
        handles.append(Line2D([], [], marker="D", color=MEAN, label="mean ± sd over seeds"))
    axes.flat[0].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(f"{answer.spec.name}: {answer.metric} at each trial's last epoch vs each "
                 "swept parameter", fontsize=10)  # fmt: skip
    if points is not None and numbers:
        bar = fig.colorbar(points, ax=axes, fraction=0.04, pad=0.02, aspect=30)
        bar.set_label("trial number")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    return fig


def importance_plot(answer: SearchAnswer, path: str | Path) -> Path | None:
    """Horizontal bars of the fANOVA importances, the largest on top; None without any."""
    if not answer.importances:
        return None
    ranked = sorted(answer.importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(ranked)))
    bars = ax.barh([p for p, _ in ranked], [v for _, v in ranked], color="#1f77b4")
    for bar, (_, value) in zip(bars, ranked, strict=True):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.2f}",
                va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(f"importance (share of the variance of {answer.metric})")
    finished = answer.counts.get(FINISHED, 0)
    ax.set_title(f"{answer.spec.name}: hyperparameter importance (fANOVA, {finished} "
                 "finished trials)", fontsize=10)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)

