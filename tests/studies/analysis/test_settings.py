"""The cross-setting comparison on synthetic studies with known truth: per-setting tests and
Holm over all of them, the pooled figures against normlib/scipy on the same numbers, the
report, CSVs, plots, the MLflow parent run, and `normstudy compare A B` pooling studies."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats import across_settings, holm
from studies.analysis.outputs import run_comparison
from studies.analysis.settings import compare_settings, split_by_setting
from studies.analysis.settings_outputs import (
    POOLED_DIR,
    mlflow_key,
    pooled_metrics,
    run_pooled_comparison,
)
from studies.analysis.settings_report import format_settings
from studies.analysis.trials import trials_from_results
from studies.config.load import dump_spec
from studies.config.space import arms, settings, with_values
from studies.config.spec import SpecError
from studies.trial.validation import load_spec

SEEDS = [1, 2, 3, 4, 5]
HELPS, NOTHING = 1.0, 1.2  # c = 1.0 adds 2 pp in every setting; c = 1.2 adds only noise


def value(c: float, setting_index: int, seed: int) -> float:
    """The final val_acc of a trial: a setting level, a seed effect, the arm's effect."""
    rng = np.random.default_rng(1000 * setting_index + seed)
    base = 0.80 + 0.02 * setting_index + rng.normal(0, 0.01)
    if c == HELPS:
        return base + 0.02 + rng.normal(0, 0.003)
    if c == NOTHING:
        return base + rng.normal(0, 0.003)
    return base


def write_study(spec, values) -> Path:
    """A Ray Tune results directory: one trial per (arm, setting, seed), 2 epochs each."""
    folder = Path(spec.storage) / spec.name
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(dump_spec(spec))
    index = 0
    for c in (arm["enorm.c"] for arm in arms(spec)):
        for s, setting in enumerate(settings(spec)):
            config = with_values(spec.trial_config(), {"enorm.c": c, **setting})
            for seed in SEEDS:
                trial_id = f"abcde_{index:05d}"
                index += 1
                final = values(c, s, seed)
                full = {**config, "seed": seed}
                rows = [{"epoch": e, "val_acc": final - 0.01 * (2 - e), "trial_id": trial_id,
                         "val_loss": 0.5, "test_acc": final, "test_loss": 0.5, "diverged": 0}
                        for e in (1, 2)]  # fmt: skip
                trial_dir = folder / f"trial_{trial_id}"
                trial_dir.mkdir()
                (trial_dir / "params.json").write_text(json.dumps(full))
                (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def across_spec(storage):
    return load_spec("quickstart-across", overrides=[
        f"storage={storage}", "train.epochs=2", f"seeds={SEEDS}"])  # fmt: skip


@pytest.fixture(scope="module")
def across_study(across_spec):
    return write_study(across_spec, value)


@pytest.fixture(scope="module")
def comparison(across_study, across_spec):
    groups = split_by_setting(trials_from_results(across_study, across_spec), across_spec)
    return compare_settings(groups, across_spec.name, "across", resamples=500)


def scores(c: float, s: int) -> list[float]:
    return [value(c, s, seed) for seed in SEEDS]


def test_trials_split_by_setting_in_spec_order(across_spec, across_study):
    groups = split_by_setting(trials_from_results(across_study, across_spec), across_spec)
    assert [g.label for g in groups] == [
        f"model.width={w} model.n_layers={n}" for w in (32, 64) for n in (4, 8, 12)]
    assert [len(g.trials) for g in groups] == [3 * len(SEEDS)] * 6
    assert all(t.setting == g.label for g in groups for t in g.trials)


def test_per_setting_tests_and_holm_over_every_arm_and_setting(comparison):
    assert comparison.settings[0] == "model.width=32 model.n_layers=4"
    pvalues, rows = [], []
    for s, label in enumerate(comparison.settings):
        for c in (HELPS, NOTHING):
            row = next(r for r in comparison.comparisons[label].rows if r.arm == f"enorm.c={c}")
            reference = sps.ttest_rel(scores(c, s), scores(0, s), alternative="greater")
            assert abs(row.p - reference.pvalue) <= 1e-12 and row.n_pairs == len(SEEDS)
            pvalues.append(row.p)
            rows.append(row)
    for row, adjusted in zip(rows, holm(pvalues), strict=True):  # one family of 12 tests
        assert abs(row.p_holm - adjusted) <= 1e-12
    helps = comparison.arm("enorm.c=1.0")
    assert helps.helps == 6 and helps.n_settings == 6
    assert comparison.arm("enorm.c=1.2").helps == 0


def test_pooled_figures_equal_normlib_on_the_same_numbers(comparison):
    for c in (HELPS, NOTHING):
        summary = comparison.arm(f"enorm.c={c}")
        expected = across_settings([scores(c, s) for s in range(6)],
                                   [scores(0, s) for s in range(6)], resamples=500)  # fmt: skip
        assert summary.across.pooled == expected.pooled
        assert summary.across.meta == expected.meta
        assert summary.across.improvement == expected.improvement
        assert summary.across.wilcoxon == expected.wilcoxon  # 6 settings: Wilcoxon applies
        means = [np.mean(np.subtract(scores(c, s), scores(0, s))) for s in range(6)]
        assert abs(summary.across.pooled.pvalue - sps.ttest_1samp(
            means, 0, alternative="greater").pvalue) <= 1e-12
    pooled = [comparison.arm(f"enorm.c={c}").across.pooled.pvalue for c in (HELPS, NOTHING)]
    adjusted = holm(pooled)
    assert comparison.arm("enorm.c=1.0").pooled_p_holm == adjusted[0]
    assert comparison.arm("enorm.c=1.0").verdict == "significant"
    assert comparison.arm("enorm.c=1.2").verdict == "not significant"


def test_friedman_over_the_arms_means(comparison):
    matrix = [[np.mean(scores(c, s)) for c in (0, HELPS, NOTHING)] for s in range(6)]
    reference = sps.friedmanchisquare(*np.array(matrix).T)
    assert comparison.friedman is not None and comparison.rank_labels[0] == "enorm.c=0"
    assert abs(comparison.friedman.statistic - reference.statistic) <= 1e-10
    assert comparison.friedman.mean_ranks[1] == 1.0  # c = 1.0 ranks first in every setting


def test_terminal_report_prints_setting_rows_and_verdicts(comparison):
    text = format_settings(comparison)
    for label in comparison.settings:
        assert text.count(f"{label} ") >= 2  # one row per arm
    line = next(x for x in text.splitlines() if x.strip().startswith("enorm.c=1.0: helps"))
    summary = comparison.arm("enorm.c=1.0").across
    imp = summary.improvement
    assert (f"helps in 6 of 6 settings; pooled difference {100 * summary.pooled.mean_diff:+.2f} "
            f"pp [>= {100 * summary.pooled.ci_low:+.2f}], p (Holm) ") in line
    assert (f": significant; P(improvement) {imp.probability:.2f} [{imp.ci_low:.2f}, "
            f"{imp.ci_high:.2f}]; heterogeneity I^2 {summary.meta.i2:.0%}") in line
    assert "enorm.c=1.2: helps in 0 of 6 settings" in text
    assert "Friedman chi^2" in text and "Nemenyi critical difference" in text


def test_outputs_files_and_mlflow_parent_run(across_study, across_spec):
    from mlflow import MlflowClient

    from studies.store.layout import tracking_uri
    from studies.store.tracker import StudyTracker

    uri = tracking_uri(across_spec)
    StudyTracker(across_spec, uri).start_study(running=False)
    result = run_comparison(across_study)
    out = across_study / "comparison"
    assert result.report == out / "report.md" and result.run_id is not None
    names = {path.name for path in result.files}
    assert {"report.md", "settings.csv", "pooled.csv", "improvement.png",
            "critical_difference.png", "forest-1-enorm.c-1.0.png",
            "forest-2-enorm.c-1.2.png"} == names  # fmt: skip
    for name in names - {"report.md", "settings.csv", "pooled.csv"}:
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 600, name
    report = (out / "report.md").read_text()
    assert "## Settings x arms" in report and "+2." in report and "*" in report
    rows = list(csv.DictReader(io.StringIO((out / "settings.csv").read_text())))
    assert len(rows) == 12 and {r["verdict"] for r in rows if r["arm"] == "enorm.c=1.0"} == {
        "significant"}
    pooled = list(csv.DictReader(io.StringIO((out / "pooled.csv").read_text())))
    assert [r["arm"] for r in pooled] == ["enorm.c=1.0", "enorm.c=1.2"]
    run = MlflowClient(tracking_uri=uri).get_run(result.run_id)
    key = mlflow_key("enorm.c=1.0")
    assert key == "enorm.c_1.0"
    assert run.data.metrics[f"across.{key}.helps"] == 6
    expected = pooled_metrics(result.comparison)
    assert run.data.metrics[f"across.{key}.pooled_diff"] == pytest.approx(
        expected[f"across.{key}.pooled_diff"], abs=1e-12)
    assert run.data.tags[f"normstudy.across.{key}"].startswith(
        "enorm.c=1.0: helps in 6 of 6 settings")


def plain_study(storage, name, shift, **overrides):
    """A one-setting study from the quickstart, arms c in {0, 1.0, 1.2}."""
    sets = [f"storage={storage}", f"name={name}", "train.epochs=2", f"seeds={SEEDS}"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    spec = load_spec("quickstart", overrides=sets)
    return spec, write_study(spec, lambda c, s, seed: value(c, s + shift, seed))


def test_compare_pools_studies_as_settings(storage, capsys):
    from studies.cli import main

    plain_study(storage, "pool-a", 0)
    plain_study(storage, "pool-b", 3)
    assert main(["compare", "pool-a", "pool-b", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pool-a +enorm.c=1.0 +5 ", out, re.M)
    assert re.search(r"^pool-b +enorm.c=1.0 +5 ", out, re.M)
    assert "enorm.c=1.0: helps in 2 of 2 settings" in out
    report = storage / POOLED_DIR / "pool-a+pool-b" / "report.md"
    assert report.is_file() and f"report: {report}" in out
    result = run_pooled_comparison(["pool-a", "pool-b"], storage=str(storage))
    assert result.comparison.settings == ["pool-a", "pool-b"]
    helps = result.comparison.arm("enorm.c=1.0").across
    expected = across_settings([scores(HELPS, 0), scores(HELPS, 3)],
                               [scores(0, 0), scores(0, 3)])  # fmt: skip
    assert helps.pooled == expected.pooled and helps.pooled.n == 2


def test_compare_refuses_studies_that_differ_naming_what(storage, capsys):
    from studies.cli import main

    plain_study(storage, "pool-c", 0, **{"sweep.enorm.c": "{grid: [0, 1.0]}"})
    plain_study(storage, "pool-d", 1, **{"metric.name": "val_loss", "metric.mode": "min"})
    for pair, field, words in [
        (["pool-c", "pool-c"], "study", "'pool-c' is named twice"),
        (["pool-a", "pool-c"], "study", "'pool-c' lacks arm(s) enorm.c=1.2"),
        (["pool-a", "pool-d"], "metric", "'pool-a' compares val_acc but 'pool-d' compares "
                                         "val_loss"),
        (["pool-a", "nowhere"], "study", "no study 'nowhere'"),
    ]:  # fmt: skip
        assert main(["compare", *pair, "--storage", str(storage)]) == 2, pair
        err = capsys.readouterr().err
        assert err.count("\n") == 2 and f"  {field}: " in err and words in err, err
    with pytest.raises(SpecError):
        run_pooled_comparison(["pool-a", "pool-b"], storage=str(storage), source="bogus")
