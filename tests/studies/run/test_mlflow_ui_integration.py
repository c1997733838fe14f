"""Real Ray Tune + MLflow (SQLite): what the MLflow UI shows of a study (issue 27). The parent
run summarizes the result, trial runs carry dataset, source, user, system metrics and models,
the best model per arm is registered and reproduces its trial's test accuracy exactly, and a
resume with nothing to do leaves every run's times as they were."""

from __future__ import annotations

import json

import pytest

from studies.run.runner import resume_study, run_study
from studies.store.inputs import SOURCE, USER, user_name
from studies.store.models import MODEL_TAG, alias_of
from studies.trial.validation import load_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray_local):
    import os

    tmp = tmp_path_factory.mktemp("ui")
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.2"  # samples in a short trial
    spec = load_spec("quickstart", [
        f"storage={tmp}", "name=uistudy", "train.epochs=2", "train.steps_per_epoch=4",
        "sweep={enorm.c: {grid: [0, 1.0]}}", "seeds=[1, 2]",
    ])  # fmt: skip
    outcome = run_study(spec)
    from studies.analysis.outputs import run_comparison

    run_comparison(outcome.folder)
    os.environ.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    return tmp, outcome


def test_runs_show_dataset_source_user_system_metrics(study, study_runs):
    tmp, outcome = study
    assert outcome.counts == {"finished": 4}
    client, parents, children = study_runs(tmp, "uistudy")
    assert parents[0].data.tags[USER] == user_name()
    for run in children:
        assert run.data.tags[SOURCE] == parents[0].data.tags[SOURCE]
        assert run.data.tags[USER] == user_name()
        (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
        assert dataset.name == "digits" and len(dataset.digest) == 20
        assert json.loads(dataset.profile)["num_rows"] == 1797
        system = [k for k in run.data.metrics if k.startswith("system/")]
        assert "system/cpu_utilization_percentage" in system, run.data.metrics
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in children}) == 1


def test_parent_summary(study, study_runs):
    tmp, _ = study
    _, parents, _ = study_runs(tmp, "uistudy")
    metrics, tags = parents[0].data.metrics, parents[0].data.tags
    assert {"enorm.c_1.0/mean_diff", "enorm.c_1.0/p_holm", "arms_significant"} <= set(metrics)
    assert tags["verdict/enorm.c_1.0"] in ("significant", "not significant")


def test_registered_best_model_reproduces_test_accuracy(study, study_runs):
    import mlflow
    import mlflow.pytorch

    from studies.trial.trainable import build_trial, evaluate

    tmp, outcome = study
    client, _, children = study_runs(tmp, "uistudy")
    logged = [r for r in children if MODEL_TAG in r.data.tags]
    assert len(logged) == 2  # log_model: best, one per arm
    mlflow.set_tracking_uri(outcome.tracking_uri)
    for run in logged:
        found = client.get_logged_model(run.data.tags[MODEL_TAG])  # in the study's experiment,
        assert found.experiment_id == run.info.experiment_id  # its files in the study's store
        assert found.artifact_location.startswith((tmp / "mlartifacts" / "uistudy").as_uri())
        alias = alias_of(run.data.tags["arm"])
        version = client.get_model_version_by_alias("uistudy", alias)
        assert version.run_id == run.info.run_id
        arm_runs = [r for r in children if r.data.tags["arm"] == run.data.tags["arm"]]
        assert run.data.metrics["val_acc"] == max(r.data.metrics["val_acc"] for r in arm_runs)
        model = mlflow.pytorch.load_model(f"models:/uistudy@{alias}")
        config = json.loads((outcome.folder / f"trial_{run.data.tags['normstudy.trial_id']}"
                             / "params.json").read_text())  # fmt: skip
        trial = build_trial(config, "cpu")
        trial.step.model = trial.step.forward = model
        _, acc = evaluate(trial.step, trial.batches, "test")
        assert acc == run.data.metrics["test_acc"]


def test_resume_with_nothing_to_do_keeps_every_runs_times(study, study_runs):
    tmp, outcome = study
    client, parents, children = study_runs(tmp, "uistudy")
    before = {r.info.run_id: (r.info.status, r.info.start_time, r.info.end_time)
              for r in parents + children}  # fmt: skip
    resume_study(str(outcome.folder))
    _, parents, children = study_runs(tmp, "uistudy")
    after = {r.info.run_id: (r.info.status, r.info.start_time, r.info.end_time)
             for r in parents + children}  # fmt: skip
    assert after == before
    versions = client.search_model_versions("name = 'uistudy'")
    assert len(versions) == 2  # nothing registered twice
