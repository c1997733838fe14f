"""Models logged to a real `mlflow server` whose artifacts travel over HTTP (issue 27).

A tiny study (2 arms x 2 seeds, 2 epochs on digits) runs through the installed `normstudy run
--tracking-uri http://...` against a server started with ``--serve-artifacts``: the driver
writes no artifact file itself, the server keeps them. Each arm's best trial is registered
under the study's name with the arm as alias, and ``models:/<study>@<alias>``, downloaded over
HTTP, gives back a network that reproduces its trial's test accuracy exactly.
"""

from __future__ import annotations

import json

import pytest
from file_scan import files_holding
from reliability_kit import MlflowServer, driver_env, mlflow_runs, run_cli, tiny_spec, write_spec

from studies.store.models import MODEL_TAG, alias_of

pytestmark = pytest.mark.integration

STUDY = "httpmodels"
PASSWORD = "hunter2222-http"


@pytest.fixture
def server(tmp_path):
    """A real MLflow server serving artifacts over HTTP, stopped at teardown."""
    root = tmp_path / "server"
    root.mkdir()
    server = MlflowServer(root, serve_artifacts=True)
    server.start()
    yield server
    server.stop()


def test_best_models_go_over_http_and_reproduce_their_trials_test_accuracy(tmp_path, server):
    import mlflow
    import mlflow.pytorch

    from studies.trial.trainable import build_trial, evaluate

    storage, cwd = tmp_path / "results", tmp_path / "cwd"
    cwd.mkdir()
    spec_file = write_spec(tmp_path, tiny_spec(STUDY, train__epochs=2))
    # A URI with a password (the server takes no login and ignores it): it reaches no file
    # and no output, not even MLflow's own "View run ... at <uri>" lines.
    with_password = server.uri.replace("http://", f"http://alice:{PASSWORD}@")
    done = run_cli(["run", str(spec_file), "--storage", str(storage),
                    "--tracking-uri", with_password], env=driver_env(), cwd=cwd)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert PASSWORD not in done.stdout + done.stderr and "View run" not in done.stdout
    assert "MLflow:  http://alice:***@127.0.0.1:" in done.stdout
    assert not files_holding(storage, [PASSWORD])
    aliases = [alias_of("enorm.c=0"), alias_of("enorm.c=1.2")]
    assert f"models:/{STUDY}@{aliases[0]}, models:/{STUDY}@{aliases[1]}" in done.stdout
    assert not list(cwd.iterdir()), "the driver wrote into its working directory"
    assert not (storage / "mlartifacts").exists()  # a server's study: its artifacts are there

    client, _, children = mlflow_runs(server.uri, STUDY)
    assert client.get_experiment_by_name(STUDY).artifact_location.startswith("mlflow-artifacts:")
    logged = [r for r in children if MODEL_TAG in r.data.tags]
    assert len(logged) == 2 and len(children) == 4  # log_model: best, one per arm
    served = list((server.root / "artifacts").rglob("MLmodel"))
    assert len(served) == 2, served

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.uri)
    try:
        for run in logged:
            arm = run.data.tags["arm"]
            model_id = run.data.tags[MODEL_TAG]
            found = client.get_logged_model(model_id)
            assert found.experiment_id == run.info.experiment_id
            assert found.artifact_location.startswith("mlflow-artifacts:")
            version = client.get_model_version_by_alias(STUDY, alias_of(arm))
            assert version.run_id == run.info.run_id and version.source == f"models:/{model_id}"
            same_arm = [r for r in children if r.data.tags["arm"] == arm]
            assert run.data.metrics["val_acc"] == max(r.data.metrics["val_acc"] for r in same_arm)

            model = mlflow.pytorch.load_model(f"models:/{STUDY}@{alias_of(arm)}")
            trial_dir = storage / STUDY / f"trial_{run.data.tags['normstudy.trial_id']}"
            trial = build_trial(json.loads((trial_dir / "params.json").read_text()), "cpu")
            trial.step.model = trial.step.forward = model
            _, accuracy = evaluate(trial.step, trial.batches, "test")
            assert accuracy == run.data.metrics["test_acc"], arm
            assert 0.1 < accuracy <= 1.0
    finally:
        mlflow.set_tracking_uri(previous)
