"""Dataset inputs, source, user and git tags of a study's runs (issue 27)."""

from __future__ import annotations

import json
import subprocess

import pytest

from studies.config.load import parse_config
from studies.store.inputs import (
    GIT_COMMIT,
    GIT_DIRTY,
    SOURCE,
    SOURCE_ENV,
    USER,
    context_tags,
    git_state,
    log_dataset,
    user_name,
)
from studies.store.tracker import StudyTracker

PROFILE = {"name": "digits", "digest": "0123456789abcdef0123", "train": 1455, "val": 162,
           "test": 180, "source": "sklearn.datasets.load_digits"}  # fmt: skip


def make_spec(tmp_path, **more):
    return parse_config({
        "name": "inputs", "dataset": {"name": "digits"},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1},
        "sweep": {"optimizer.lr": {"grid": [0.1, 0.2]}}, "seeds": [1, 2],
        "baseline": {"optimizer.lr": 0.1}, "storage": str(tmp_path), **more,
    })  # fmt: skip


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_git_commit_and_dirty_flag(tmp_path):
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("X = 1\n")
    git(code, "init", "-q")
    git(code, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(code, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    git(code, "remote", "add", "origin", "https://alice:hunter2@example.com/r.git")
    head = subprocess.run(["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    clean = git_state(str(code / "pkg"))  # a folder inside the repository
    assert clean[GIT_COMMIT] == head and clean[GIT_DIRTY] == "false"
    assert "hunter2" not in clean["mlflow.source.git.repoURL"]
    (code / "pkg" / "__init__.py").write_text("X = 2\n")
    git_state.cache_clear()
    assert git_state(str(code))[GIT_DIRTY] == "true"
    git_state.cache_clear()
    assert git_state(str(tmp_path)) == {}


def test_context_tags_source_user(tmp_path, monkeypatch):
    spec = make_spec(tmp_path)
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    tags = context_tags(spec)
    assert tags[SOURCE] == str(tmp_path.absolute() / "inputs" / "study.yaml")
    assert tags[USER] == user_name() != "unknown"
    assert GIT_COMMIT not in tags  # no code folder
    monkeypatch.setenv(SOURCE_ENV, "/home/u/study.yaml")
    assert context_tags(spec)[SOURCE] == "/home/u/study.yaml"
    # a resumed study keeps its parent's source
    assert context_tags(spec, {SOURCE: "/first.yaml", "other": "x"})[SOURCE] == "/first.yaml"


def test_runs_carry_context_and_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, str(tmp_path / "study.yaml"))
    tracker = StudyTracker(make_spec(tmp_path), f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 1}
    run_id = tracker.trial_run("t0", config)
    log_dataset(tracker, "t0", config, PROFILE)
    log_dataset(tracker, "t0", config, PROFILE)  # a restart reports it again
    run = tracker.client.get_run(run_id)
    assert run.data.tags[SOURCE] == str(tmp_path / "study.yaml")
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags[USER] == user_name()
    parent = tracker.client.get_run(tracker.start_study())
    assert parent.data.tags[SOURCE] == str(tmp_path / "study.yaml")
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert (dataset.name, dataset.digest) == ("digits", PROFILE["digest"])
    assert json.loads(dataset.profile) == {"num_rows": 1797, "train": 1455, "val": 162,
                                           "test": 180}  # fmt: skip
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": "training"}


@pytest.mark.parametrize("change", ["dataset.val_fraction=0.2", "dataset.split_seed=1",
                                    "dataset.train_size=500"])
def test_digest_changes_with_the_data(change):
    from studies.trial.data import load_splits
    from studies.trial.fingerprint import dataset_profile
    from studies.trial.validation import load_spec

    def profile(*overrides):
        spec = load_spec("quickstart", list(overrides))
        options = spec.trial_config()["dataset"]
        return dataset_profile(options, load_splits(options))

    base = profile()
    assert base == profile()  # the same data: the same digest
    assert (base["name"], base["train"] + base["val"] + base["test"]) == ("digits", 1797)
    assert profile(change)["digest"] != base["digest"]
