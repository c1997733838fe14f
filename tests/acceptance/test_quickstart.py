"""The quickstart as the README gives it: run, then compare, sync, list, validate."""

from __future__ import annotations

import csv
import io
from collections import Counter

import pytest
from file_scan import files_holding
from user_shell import ARMS, SECRET, TRIALS, assert_accounted, study_runs

from studies.config.load import read_yaml
from studies.trial.validation import parse_spec

pytestmark = pytest.mark.acceptance



def test_run_prints_the_comparison_and_writes_every_output(quickstart):
    user, ran = quickstart
    assert ran.code == 0, ran.text
    assert "done in" in ran.out and f"{TRIALS} finished" in ran.out
    for arm in ARMS[1:]:
        assert arm in ran.out and "not enough pairs" not in ran.out
    assert "warning" not in ran.text.lower().replace("pythonwarnings", "")
    comparison = user.results / "quickstart" / "comparison"
    for name in ("report.md", "comparison.csv", "paired.png", "learning_curves.png"):
        assert (comparison / name).stat().st_size > 100, name
    rows = list(csv.DictReader(io.StringIO((comparison / "comparison.csv").read_text())))
    assert [row["n_pairs"] for row in rows] == ["5", "5"]


def test_mlflow_holds_one_parent_and_one_finished_run_per_trial(quickstart):
    user, ran = quickstart
    parent, children = assert_accounted(user)
    _, experiment, _, _ = study_runs(user)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert f"#/experiments/{experiment.experiment_id}/runs" in ran.out
    arms = Counter(r.data.tags["arm"] for r in children)
    assert arms == {arm: 5 for arm in ARMS}
    assert {r.info.run_name for r in children} == {
        f"{arm} seed={seed}" for arm in ARMS for seed in range(1, 6)
    }
    for run in children:
        assert run.data.metrics["epoch"] == 10 and 0.5 < run.data.metrics["val_acc"] <= 1


def test_study_yaml_loads_and_validates_back(quickstart):
    user, _ = quickstart
    spec = parse_spec(read_yaml(user.results / "quickstart" / "study.yaml"))
    assert spec.name == "quickstart" and spec.seeds == [1, 2, 3, 4, 5]
    assert spec.storage == str(user.results)  # the real path, nothing masked in it


def test_the_credential_is_in_no_file_and_no_mlflow_record(quickstart):
    user, _ = quickstart
    files = [p for p in user.results.rglob("*") if p.is_file()]
    assert len(files) > TRIALS * 3
    assert not files_holding(user.results, [SECRET])
    client, _, parents, children = study_runs(user)
    for run in [*parents, *children]:
        records = [*run.data.params.values(), *run.data.tags.values()]
        assert not [value for value in records if SECRET in value]
    texts = [client.download_artifacts(parents[0].info.run_id, "study.yaml")]
    assert SECRET not in open(texts[0], encoding="utf-8").read()


def test_compare_from_mlflow_gives_the_numbers_of_the_results_directory(quickstart):
    user, _ = quickstart
    tables = {}
    for source in ("results", "mlflow"):
        ran = user.run("compare", "quickstart", "--select", "best_val", "--source", source)
        assert ran.code == 0, ran.text
        csv_text = (user.results / "quickstart" / "comparison" / "comparison.csv").read_text()
        tables[source] = list(csv.DictReader(io.StringIO(csv_text)))
        assert "test_acc" in ran.out  # best_val compares the test metric
    assert tables["results"] == tables["mlflow"]
    assert [row["n_pairs"] for row in tables["mlflow"]] == ["5", "5"]


def test_sync_after_a_clean_run_adds_nothing(quickstart):
    user, _ = quickstart
    ran = user.run("sync", "quickstart")
    assert ran.code == 0, ran.text
    assert f"{TRIALS} trial(s): 0 run(s) created, 0 epoch(s) uploaded, 0 status(es) set" in ran.out
    assert_accounted(user)


def test_list_shows_the_catalog_and_the_finished_study(quickstart):
    user, _ = quickstart
    ran = user.run("list")
    assert ran.code == 0, ran.text
    assert "quickstart" in ran.out and "odenet4-norms-cifar10" in ran.out
    line = next(line for line in ran.out.splitlines()[::-1] if "quickstart" in line)
    assert f"{TRIALS} finished" in line
