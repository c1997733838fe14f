"""Plots that scale: a 200-arm comparison gives PNGs a person can read.

The comparisons are synthetic (TrialHistory rows with known values, no training): a sweep of
``optimizer.lr`` over 201 log-spaced values (one is the baseline) x 4 seeds, whose mean
difference from the baseline is a bump around lr = 0.03.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from studies.analysis import plots
from studies.analysis.comparison import compare
from studies.analysis.outputs import write_outputs
from studies.analysis.report import FOREST_PLOT, VALUE_PLOT
from studies.analysis.trials import TrialHistory
from studies.config.space import arm_label
from studies.trial.validation import load_spec

SEEDS = [1, 2, 3, 4]
N_ARMS = 200
LRS = [float(f"{lr:.4g}") for lr in np.geomspace(1e-4, 1.0, N_ARMS + 1)]
BASE_LR = LRS[N_ARMS // 2]  # 0.01


def effect(lr: float) -> float:
    """The true accuracy difference of an lr arm from the baseline: a bump at lr = 0.03."""
    return 0.04 * math.exp(-((math.log10(lr) + 1.5) ** 2) / 0.3) - 0.01


def history(value: float) -> dict[str, dict[int, float]]:
    return {
        "val_acc": {1: value - 0.05, 2: value - 0.02, 3: value},
        "test_acc": {1: value - 0.06, 2: value - 0.03, 3: value - 0.01},
        "train_loss": {1: 1.0, 2: 0.6, 3: 0.4 - value / 10},
        "val_loss": {1: 1.1, 2: 0.7, 3: 0.5 - value / 10},
    }


def synthetic(spec, values_of_arms: list[dict], base: dict, effect_of) -> list[TrialHistory]:
    """Trials of every arm on every seed: baseline value per seed + effect + small noise."""
    rng = np.random.default_rng(0)
    trials = []
    for arm in values_of_arms:
        for seed in SEEDS:
            value = 0.9 + 0.01 * seed
            if arm != base:
                value += effect_of(arm) + float(rng.normal(0, 0.002))
            trials.append(TrialHistory(
                trial_id=f"t{len(trials):05d}", arm=arm_label(arm), arm_values=arm, seed=seed,
                baseline=arm == base, status="finished", history=history(value),
            ))  # fmt: skip
    return trials


@pytest.fixture(scope="module")
def lr_comparison(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    spec = load_spec("quickstart", overrides=[
        "name=lr-sweep", f"storage={storage}", "train.epochs=3", f"seeds={SEEDS}",
        f"sweep={{optimizer.lr: {{grid: {LRS}}}}}", f"baseline={{optimizer.lr: {BASE_LR}}}",
    ])  # fmt: skip
    arms = [{"optimizer.lr": lr} for lr in LRS]
    trials = synthetic(spec, arms, {"optimizer.lr": BASE_LR}, lambda a: effect(a["optimizer.lr"]))
    return compare(trials, spec)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots draw, kept open (plt.close is a no-op while the test runs)."""
    kept, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def test_200_arms_give_paged_forest_plots_under_2000_px(lr_comparison, tmp_path):
    c = lr_comparison
    assert len(c.rows) == N_ARMS and any(row.verdict == "significant" for row in c.rows)
    files = write_outputs(c, tmp_path)
    names = sorted(path.name for path in files)
    pages = [n for n in names if n.startswith("forest-")]
    assert len(pages) == math.ceil(N_ARMS / plots.FOREST_PER_PAGE) and "paired.png" not in names
    assert {"learning_curves.png", VALUE_PLOT} <= set(names)
    report = (tmp_path / "comparison" / "report.md").read_text()
    for name in names:
        if name.endswith(".png"):
            width, height = Image.open(tmp_path / "comparison" / name).size
            assert height < 2000 and width < 2000, (name, width, height)
            assert f"![{name}]({name})" in report
    assert not (tmp_path / "comparison" / FOREST_PLOT).exists()


def test_forest_order_is_the_sorted_mean_differences(lr_comparison, tmp_path, figures):
    c = lr_comparison
    plots.forest_plot(c, tmp_path / FOREST_PLOT)
    shown = [tick.get_text() for fig in figures for tick in fig.axes[0].get_yticklabels()]
    expected = sorted(c.rows, key=lambda row: row.mean_diff, reverse=True)  # val_acc: max
    assert shown == [row.arm for row in expected]
    # each page's top arm is drawn at the top (y axis inverted)
    low, high = figures[0].axes[0].get_ylim()
    assert low > high


def test_few_arms_keep_the_paired_plot(lr_comparison):
    assert plots.FOREST_ABOVE == 12  # the threshold: more than 12 arms


def test_difference_vs_value_on_log_axis_for_log_spaced_grid(lr_comparison, tmp_path, figures):
    path = plots.value_plot(lr_comparison, tmp_path / VALUE_PLOT)
    assert path is not None and path.is_file()
    (ax,) = figures[-1].axes
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("optimizer.lr")
    assert Image.open(path).size[1] < 2000


def small_spec(tmp_path, sweep: str, baseline: str):
    return load_spec("quickstart", overrides=[
        "name=small", f"storage={tmp_path}", "train.epochs=3", f"seeds={SEEDS}",
        f"sweep={sweep}", f"baseline={baseline}",
    ])  # fmt: skip


def test_difference_vs_value_linear_for_a_linear_grid(tmp_path, figures):
    cs = [0, 0.5, 1.0, 1.5, 2.0]
    spec = small_spec(tmp_path, f"{{enorm.c: {{grid: {cs}}}}}", "{enorm.c: 0}")
    trials = synthetic(spec, [{"enorm.c": c} for c in cs], {"enorm.c": 0},
                       lambda a: 0.01 * a["enorm.c"])  # fmt: skip
    c = compare(trials, spec)
    assert plots.swept_number(c) == "enorm.c"
    assert plots.value_plot(c, tmp_path / VALUE_PLOT) is not None
    assert figures[-1].axes[0].get_xscale() == "linear"
    names = {p.name for p in write_outputs(c, tmp_path)}
    assert {"paired.png", VALUE_PLOT} <= names and not any("forest" in n for n in names)


def test_no_difference_vs_value_for_two_swept_parameters(tmp_path):
    sweep = "{enorm.c: {grid: [0, 1.0, 1.2]}, optimizer.lr: {grid: [0.01, 0.1]}}"
    spec = small_spec(tmp_path, sweep, "{enorm.c: 0, optimizer.lr: 0.1}")
    arms = [{"enorm.c": c, "optimizer.lr": lr} for c in (0, 1.0, 1.2) for lr in (0.01, 0.1)]
    base = {"enorm.c": 0, "optimizer.lr": 0.1}
    c = compare(synthetic(spec, arms, base, lambda a: 0.01 * a["enorm.c"]), spec)
    assert len(c.rows) == 5 and plots.swept_number(c) is None
    assert plots.value_plot(c, tmp_path / VALUE_PLOT) is None
    names = {p.name for p in write_outputs(c, tmp_path)}
    assert VALUE_PLOT not in names and not (tmp_path / "comparison" / VALUE_PLOT).exists()


def test_no_difference_vs_value_for_a_non_numeric_sweep(tmp_path):
    names = ["linear", "constant", "cosine"]
    spec = small_spec(tmp_path, f"{{schedule.name: {{grid: {names}}}}}", "{schedule.name: linear}")
    arms = [{"schedule.name": name} for name in names]
    c = compare(synthetic(spec, arms, arms[0], lambda a: 0.0), spec)
    assert plots.swept_number(c) is None


def test_learning_curves_show_the_best_k_arms_and_the_baseline(lr_comparison, tmp_path, figures):
    c = lr_comparison
    plots.curves_plot(c, tmp_path / "curves.png")
    (fig,) = figures
    best = [row.arm for row in sorted(c.rows, key=lambda r: r.mean_diff, reverse=True)]
    k = plots.CURVES_TOP_K
    for ax in fig.axes:
        _, labels = ax.get_legend_handles_labels()
        assert len(labels) == k + 1
        assert labels[0].startswith(f"{c.baseline} (baseline)")
        assert [label.split(",")[0] for label in labels[1:]] == best[:k]
    assert f"best {k} of {N_ARMS} arms" in fig._suptitle.get_text()
