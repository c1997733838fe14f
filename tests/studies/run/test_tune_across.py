"""A study's settings reach Ray Tune as grid dimensions beside the arms and the seeds, and
each trial's MLflow run names its setting."""

from __future__ import annotations

from mlflow import MlflowClient

from studies.config.space import with_values
from studies.run.tune import param_space
from studies.store.tracker import StudyTracker
from studies.trial.validation import load_spec


def test_param_space_crosses_settings_with_arms_and_seeds():
    spec = load_spec("quickstart-across")
    space = param_space(spec)
    assert space["model"]["width"] == {"grid_search": [32, 64]}
    assert space["model"]["n_layers"] == {"grid_search": [4, 8, 12]}
    assert space["enorm"]["c"] == {"grid_search": [0, 1.0, 1.2]}
    assert space["seed"] == {"grid_search": [1, 2, 3, 4]}
    grids = [space["model"]["width"], space["model"]["n_layers"], space["enorm"]["c"],
             space["seed"]]  # fmt: skip
    trials = 1
    for grid in grids:
        trials *= len(grid["grid_search"])
    assert trials == 72


def test_trial_runs_name_their_setting(tmp_path):
    spec = load_spec("quickstart-across", overrides=[f"storage={tmp_path}"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(spec, uri)
    config = {**with_values(spec.trial_config(), {"enorm.c": 1.2, "model.width": 64,
                                                   "model.n_layers": 12}), "seed": 3}  # fmt: skip
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id("t_00001", config))
    assert run.info.run_name == "enorm.c=1.2 [model.width=64 model.n_layers=12] seed=3"
    assert run.data.tags["setting"] == "model.width=64 model.n_layers=12"
    assert run.data.tags["arm"] == "enorm.c=1.2" and run.data.tags["baseline"] == "false"
