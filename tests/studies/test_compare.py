"""The comparison stage: trials tables, paired tests against the baseline, outputs, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from normlib.stats import holm
from studies.analysis.comparison import NOT_ENOUGH, compare
from studies.analysis.outputs import run_comparison, write_outputs
from studies.analysis.report import format_table, to_csv
from studies.analysis.trials import TrialHistory, trials_from_mlflow, trials_from_results
from studies.config.load import dump_spec
from studies.config.space import with_values
from studies.config.spec import SpecError
from studies.trial.validation import load_spec

SEEDS = [1, 2, 3, 4, 5, 6]
BASE = [0.90, 0.92, 0.88, 0.91, 0.89, 0.93]
A_NOISE = [0.0010, -0.0008, 0.0005, -0.0003, 0.0007, -0.0011]  # arm A = baseline + 0.01 + noise
B_NOISE = [1e-4, -1e-4, 2e-4, -2e-4, 0.5e-4, -0.5e-4]  # arm B = baseline + tiny noise
ARMS = {0: "enorm.c=0", 1.0: "enorm.c=1.0", 1.2: "enorm.c=1.2"}
DIVERGED = (1.0, 5)  # arm A, seed 5 diverges at its last epoch
MISSING = (1.2, 6)  # arm B never ran seed 6


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    return load_spec("quickstart", overrides=[
        "name=synthetic", f"storage={storage}", "train.epochs=3", f"seeds={SEEDS}",
    ])  # fmt: skip


def final_value(c: float, index: int) -> float:
    if c == 0:
        return BASE[index]
    if c == 1.0:
        return BASE[index] + 0.01 + A_NOISE[index]
    return BASE[index] + B_NOISE[index]


def result_lines(c: float, seed: int, trial_id: str, config: dict) -> list[dict]:
    """Three epochs ending at the arm's final val_acc; the diverged trial ends with NaN."""
    value = final_value(c, SEEDS.index(seed))
    lines = []
    for epoch, offset in ((1, 0.05), (2, 0.02), (3, 0.0)):
        lines.append({
            "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": value - offset,
            "val_loss": 0.5 / epoch, "val_acc": value - offset, "test_loss": 0.6 / epoch,
            "test_acc": value - offset - 0.01, "lr": 0.1, "epoch_seconds": 0.1, "diverged": 0,
            "trial_id": trial_id, "config": config, "done": False,
        })  # fmt: skip
    if (c, seed) == DIVERGED:
        lines[-1] = {**lines[-2], "epoch": 3, "diverged": 1, "train_loss": math.nan,
                     "val_loss": math.nan}  # fmt: skip
    return lines


def synthetic_trials(spec):
    """(trial_id, config, lines) of the synthetic study: 3 arms x 6 seeds minus MISSING."""
    out, index = [], 0
    for c in ARMS:
        config = with_values(spec.trial_config(), {"enorm.c": c})  # as Ray Tune fills it
        for seed in SEEDS:
            if (c, seed) == MISSING:
                continue
            trial_id = f"abcde_{index:05d}"
            index += 1
            full = {**config, "seed": seed}
            out.append((trial_id, full, result_lines(c, seed, trial_id, full)))
    return out


@pytest.fixture(scope="module")
def study(spec):
    """The synthetic study written as a Ray Tune results directory."""
    folder = Path(spec.storage) / spec.name
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(dump_spec(spec))
    for trial_id, config, lines in synthetic_trials(spec):
        trial_dir = folder / f"trial_{trial_id}"
        trial_dir.mkdir()
        (trial_dir / "params.json").write_text(json.dumps(config))
        (trial_dir / "result.json").write_text("".join(json.dumps(row) + "\n" for row in lines))
    return folder


@pytest.fixture(scope="module")
def table(study, spec):
    return trials_from_results(study, spec)


@pytest.fixture(scope="module")
def comparison(table, spec):
    return compare(table, spec)


def paired(arm_c: float, seeds: list[int]) -> tuple[list[float], list[float]]:
    arm = [final_value(arm_c, SEEDS.index(s)) for s in seeds]
    base = [final_value(0, SEEDS.index(s)) for s in seeds]
    return arm, base


def test_results_table(table):
    assert len(table) == 17
    by_status = {}
    for trial in table:
        by_status.setdefault(trial.status, []).append(trial)
    assert set(by_status) == {"finished", "diverged"}
    (diverged,) = by_status["diverged"]
    assert (diverged.arm, diverged.seed) == ("enorm.c=1.0", 5)
    assert 3 not in diverged.history["val_loss"]  # NaN values are dropped
    baseline = [t for t in table if t.baseline]
    assert {t.arm for t in baseline} == {"enorm.c=0"} and len(baseline) == 6
    first = table[0]
    assert first.arm_values == {"enorm.c": 0}
    assert first.history["val_acc"] == pytest.approx({1: 0.85, 2: 0.88, 3: 0.90})


def test_known_truth(comparison):
    rows = {row.arm: row for row in comparison.rows}
    assert list(rows) == ["enorm.c=1.0", "enorm.c=1.2"]
    a, b = rows["enorm.c=1.0"], rows["enorm.c=1.2"]
    assert comparison.alternative == "greater" and comparison.baseline == "enorm.c=0"

    # arm A: seed 5 diverged, so 5 pairs; p equals scipy's paired t-test on the same numbers
    assert a.paired_seeds == [1, 2, 3, 4, 6] and a.n_pairs == 5
    arm, base = paired(1.0, a.paired_seeds)
    expected = sps.ttest_rel(arm, base, alternative="greater")
    assert a.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert a.t == pytest.approx(expected.statistic, rel=1e-12)
    diffs = np.subtract(arm, base)
    assert a.mean_diff == pytest.approx(diffs.mean())
    assert a.d_z == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert a.arm_mean == pytest.approx(np.mean(arm))
    assert a.arm_sd == pytest.approx(np.std(arm, ddof=1))
    assert a.wilcoxon_p == pytest.approx(sps.wilcoxon(diffs, alternative="greater").pvalue)
    assert a.ci_low > 0 and a.ci_high == math.inf

    # arm B: identical up to tiny noise; seed 6 missing, so 5 pairs
    assert b.paired_seeds == [1, 2, 3, 4, 5] and b.missing_arm == [6] and b.missing_baseline == []
    arm_b, base_b = paired(1.2, b.paired_seeds)
    assert b.p == pytest.approx(sps.ttest_rel(arm_b, base_b, alternative="greater").pvalue)

    # Holm over both arms decides the verdicts
    assert [a.p_holm, b.p_holm] == pytest.approx(list(holm([a.p, b.p])), rel=1e-12)
    assert a.p_holm < 0.001 and a.verdict == "significant"
    assert b.p_holm > 0.05 and b.verdict == "not significant"
    assert a.seeds_needed == 2  # a huge effect: the minimum
    assert a.missing_arm == [5]


def test_failures_and_missing_seeds_are_reported(comparison, table):
    (excluded,) = comparison.excluded
    diverged = next(t for t in table if t.status == "diverged")
    assert excluded.trial_id == diverged.trial_id
    assert excluded.reason == "diverged at epoch 3"
    assert any("excluded" in w for w in comparison.warnings)
    assert any("enorm.c=1.2" in w and "arm lacks seed(s) 6" in w for w in comparison.warnings)
    assert any("enorm.c=1.0" in w and "arm lacks seed(s) 5" in w for w in comparison.warnings)
    assert all(score.trial_id != diverged.trial_id for score in comparison.scores)


def test_table_csv_and_report(comparison, study):
    text = format_table(comparison)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("arm "))
    rows = [line for line in lines if line.startswith("enorm.c=")]
    column = header.index("verdict")
    assert all(row[column:].strip() in ("significant", "not significant") for row in rows)
    assert "+0.99 [>= +0.90]" in rows[0]  # arm A: mean diff and bound in percentage points
    assert "warning:" in text

    csv_lines = to_csv(comparison).splitlines()
    columns = csv_lines[0].split(",")
    assert columns[:3] == ["arm", "enorm.c", "n_pairs"]
    first = dict(zip(columns, csv_lines[1].split(","), strict=True))
    assert float(first["p"]) == comparison.rows[0].p
    assert float(first["p_holm"]) == comparison.rows[0].p_holm
    assert first["verdict"] == "significant" and first["paired_seeds"] == "1 2 3 4 6"

    files = write_outputs(comparison, study)
    names = sorted(p.name for p in files)
    assert names == ["comparison.csv", "learning_curves.png", "paired.png", "report.md"]
    assert all(p.stat().st_size > 0 for p in files)
    report = (study / "comparison" / "report.md").read_text()
    for needed in ("## Results", "## Excluded trials", "diverged at epoch 3", "## Study spec",
                   "## How to read this", "Seeds needed", "![paired.png](paired.png)",
                   "name: synthetic"):  # fmt: skip
        assert needed in report


def make_trial(trial_id, c, seed, val_acc, test_acc, val_loss=None, test_loss=None, epochs=3):
    history = {"val_acc": dict(enumerate(val_acc, 1)), "test_acc": dict(enumerate(test_acc, 1))}
    if val_loss:
        history["val_loss"] = dict(enumerate(val_loss, 1))
        history["test_loss"] = dict(enumerate(test_loss, 1))
    history["diverged"] = dict.fromkeys(range(1, len(val_acc) + 1), 0.0)
    done = len(val_acc) >= epochs
    return TrialHistory(trial_id, ARMS[c], {"enorm.c": c}, seed, c == 0,
                 "finished" if done else "incomplete", history)  # fmt: skip


def test_best_val_picks_test_metric_at_best_val_epoch(spec):
    # val_acc peaks before the end, so best_val differs from final; ties go to the earlier epoch
    trials = [
        make_trial("t0", 0, 1, [0.80, 0.90, 0.85], [0.70, 0.81, 0.83]),
        make_trial("t1", 0, 2, [0.82, 0.86, 0.86], [0.72, 0.76, 0.90]),
        make_trial("t2", 0, 3, [0.88, 0.84, 0.87], [0.79, 0.74, 0.77]),
        make_trial("t3", 1.0, 1, [0.80, 0.95, 0.90], [0.70, 0.88, 0.84]),
        make_trial("t4", 1.0, 2, [0.82, 0.91, 0.93], [0.72, 0.80, 0.89]),
        make_trial("t5", 1.0, 3, [0.90, 0.89, 0.80], [0.84, 0.79, 0.70]),
    ]
    result = compare(trials, spec, select="best_val")
    assert result.scored_metric == "test_acc"
    chosen = {s.trial_id: (s.epoch, s.value) for s in result.scores}
    assert chosen == {"t0": (2, 0.81), "t1": (2, 0.76), "t2": (1, 0.79),
                      "t3": (2, 0.88), "t4": (3, 0.89), "t5": (1, 0.84)}  # fmt: skip
    (row, _) = result.rows  # arm 1.2 has no trials: a "not enough pairs" row
    expected = sps.ttest_rel([0.88, 0.89, 0.84], [0.81, 0.76, 0.79], alternative="greater")
    assert row.p == pytest.approx(expected.pvalue)
    assert row.arm_mean == pytest.approx(np.mean([0.88, 0.89, 0.84]))

    final = compare(trials, spec, select="final")
    assert {s.trial_id: s.value for s in final.scores}["t0"] == 0.85  # final val_acc
    assert final.scored_metric == "val_acc"


def test_loss_metric_tests_for_lower(spec):
    losses = {  # (val_loss per epoch, test_loss per epoch)
        ("a", 0, 1): ([0.5, 0.3, 0.4], [0.6, 0.35, 0.5]),
        ("b", 0, 2): ([0.6, 0.4, 0.2], [0.7, 0.45, 0.3]),
        ("c", 0, 3): ([0.5, 0.45, 0.42], [0.55, 0.5, 0.48]),
        ("d", 1.0, 1): ([0.4, 0.2, 0.3], [0.5, 0.25, 0.35]),
        ("e", 1.0, 2): ([0.5, 0.3, 0.1], [0.6, 0.33, 0.2]),
        ("f", 1.0, 3): ([0.3, 0.35, 0.36], [0.4, 0.41, 0.45]),
    }
    trials = [make_trial(tid, c, seed, [0.9] * 3, [0.9] * 3, val, test)
              for (tid, c, seed), (val, test) in losses.items()]  # fmt: skip
    result = compare(trials, spec, metric="val_loss", select="best_val")
    assert (result.mode, result.alternative, result.scored_metric) == ("min", "less", "test_loss")
    chosen = {s.trial_id: (s.epoch, s.value) for s in result.scores}
    assert chosen == {"a": (2, 0.35), "b": (3, 0.3), "c": (3, 0.48),
                      "d": (2, 0.25), "e": (3, 0.2), "f": (1, 0.4)}  # fmt: skip
    row = result.rows[0]
    expected = sps.ttest_rel([0.25, 0.2, 0.4], [0.35, 0.3, 0.48], alternative="less")
    assert row.p == pytest.approx(expected.pvalue)
    assert row.ci_low == -math.inf and row.mean_diff < 0


def test_fewer_than_two_pairs_is_a_row_not_a_crash(spec):
    trials = [
        make_trial("t0", 0, 1, [0.8, 0.9, 0.90], [0.8, 0.9, 0.90]),
        make_trial("t1", 0, 2, [0.8, 0.9, 0.91], [0.8, 0.9, 0.91]),
        make_trial("t2", 1.0, 1, [0.8, 0.9, 0.95], [0.8, 0.9, 0.95]),
        make_trial("t3", 1.0, 2, [0.8, 0.9], [0.8, 0.9]),  # incomplete: 2 of 3 epochs
        make_trial("t4", 1.2, 1, [0.8, 0.9, 0.93], [0.8, 0.9, 0.93]),
        make_trial("t5", 1.2, 2, [0.8, 0.9, 0.92], [0.8, 0.9, 0.92]),
    ]
    result = compare(trials, spec)
    one, two = result.rows
    assert one.n_pairs == 1 and one.verdict == NOT_ENOUGH and math.isnan(one.p)
    assert math.isnan(one.p_holm) and one.seeds_needed is None
    assert one.mean_diff == pytest.approx(0.05)
    assert two.n_pairs == 2 and two.p_holm == two.p  # Holm over the one testable arm
    assert result.excluded[0].reason.startswith("incomplete: 2 of 3 epochs")
    assert NOT_ENOUGH in format_table(result)
    first = next(csv.DictReader(io.StringIO(to_csv(result))))
    assert first["verdict"] == NOT_ENOUGH and first["p"] == "" and first["n_pairs"] == "1"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"metric": "val_acuracy"}, "--metric"),
        ({"select": "best"}, "--select"),
        ({"alpha": 0.0}, "--alpha"),
        ({"alpha": 1.5}, "--alpha"),
    ],
)
def test_bad_options_name_the_option(table, spec, options, field):
    with pytest.raises(SpecError) as error:
        compare(table, spec, **options)
    assert [path for path, _ in error.value.problems] == [field]


def test_unknown_study_and_no_baseline(tmp_path, spec, table):
    with pytest.raises(SpecError) as error:
        run_comparison("no-such-study", storage=str(tmp_path))
    assert error.value.problems[0][0] == "study"
    no_baseline = spec.model_copy(update={"baseline": None})
    with pytest.raises(SpecError) as error:
        compare(table, no_baseline)
    assert error.value.problems[0][0] == "baseline"


def test_cli_compare(study, capsys):
    from studies.cli import main

    assert main(["compare", str(study), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "enorm.c=1.0" in out and "significant" in out and "report.md" in out
    assert main(["compare", str(study), "--no-log", "--select", "best_val"]) == 0
    assert "test_acc at each trial's best-val_acc epoch" in capsys.readouterr().out
    assert main(["compare", str(study), "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err
    assert main(["compare", "missing", "--storage", str(study.parent)]) == 2
    assert "no study 'missing'" in capsys.readouterr().err


def test_mlflow_table_equals_results_table(study, spec, table):
    """Log the synthetic trials the way the Ray callback does, then read them back."""
    from mlflow import MlflowClient

    from studies.store.layout import tracking_uri
    from studies.store.tracker import StudyTracker

    uri = tracking_uri(spec.model_copy(update={"storage": str(study.parent)}))
    tracker = StudyTracker(spec, uri)
    tracker.start_study()
    for trial_id, config, lines in synthetic_trials(spec):
        for line in lines:
            tracker.log_epoch(trial_id, config, line)
        tracker.end_trial(trial_id, config, "FINISHED")
    tracker.end_study("FINISHED")

    assert trials_from_mlflow(spec, uri) == table
    from_mlflow = run_comparison(study, source="mlflow")
    from_results = run_comparison(study, source="results")
    assert from_mlflow.comparison.rows == from_results.comparison.rows
    assert from_results.run_id == tracker.parent_id
    client = MlflowClient(tracking_uri=uri)
    names = sorted(a.path for a in client.list_artifacts(tracker.parent_id, "comparison"))
    assert names == ["comparison/comparison.csv", "comparison/learning_curves.png",
                     "comparison/paired.png", "comparison/report.md"]  # fmt: skip
    assert client.get_run(tracker.parent_id).info.status == "FINISHED"  # left alone


# ---------------------------------------------------------------------------
# End to end: a tiny real study on Ray


@pytest.fixture(scope="module")
def ray_study(tmp_path_factory):
    import ray

    from studies.run.runner import run_study

    storage = tmp_path_factory.mktemp("ray-storage")
    spec = load_spec("quickstart", overrides=[
        "name=compare-e2e", f"storage={storage}", "train.epochs=2", "train.steps_per_epoch=3",
        "seeds=[1, 2, 3]", "sweep.enorm.c={grid: [0, 1.2]}", "model.n_layers=2",
        "model.width=16", "resources.cpu=1",
    ])  # fmt: skip
    try:
        yield run_study(spec)
    finally:
        ray.shutdown()


@pytest.mark.integration
def test_end_to_end_results_equal_mlflow(ray_study, capsys):
    from mlflow import MlflowClient

    from studies.cli_report import compare_after_run
    from studies.store.queries import parent_run_id

    outcome = ray_study
    assert outcome.counts == {"finished": 6}
    spec = outcome.spec
    from_results = trials_from_results(outcome.folder, spec)
    assert len(from_results) == 6
    assert trials_from_mlflow(spec, outcome.tracking_uri) == from_results

    compare_after_run(outcome)  # what `normstudy run` does at the end
    out = capsys.readouterr().out
    assert "enorm.c=1.2" in out and "p (Holm)" in out

    via_mlflow = run_comparison(outcome.folder, source="mlflow")
    via_results = run_comparison(outcome.folder, source="results")
    (row,) = via_results.comparison.rows
    assert row.n_pairs == 3
    assert via_mlflow.comparison.rows == via_results.comparison.rows
    for name in ("comparison.csv", "report.md", "paired.png", "learning_curves.png"):
        assert (outcome.folder / "comparison" / name).stat().st_size > 0
    client = MlflowClient(tracking_uri=outcome.tracking_uri)
    parent = parent_run_id(spec, outcome.tracking_uri)
    names = sorted(a.path for a in client.list_artifacts(parent, "comparison"))
    assert names == ["comparison/comparison.csv", "comparison/learning_curves.png",
                     "comparison/paired.png", "comparison/report.md"]  # fmt: skip


def test_compare_after_run_only_warns(spec, tmp_path, capsys):
    from types import SimpleNamespace

    from studies.cli_report import compare_after_run

    compare_after_run(SimpleNamespace(spec=spec, folder=tmp_path / "gone"))  # must not raise
    err = capsys.readouterr().err
    assert "warning: the comparison failed" in err and "normstudy compare" in err
