"""A resume with nothing to do leaves every run's start and end as they were (issue 27): the
parent of a finished study is set RUNNING again only once a trial starts."""

from __future__ import annotations

import pytest

from studies.config.load import parse_config
from studies.store.tracker import StudyTracker


@pytest.fixture
def spec(tmp_path):
    return parse_config({
        "name": "resumetimes",
        "dataset": {"name": "digits"},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1},
        "sweep": {"optimizer.lr": {"grid": [0.1, 0.2]}},
        "seeds": [1, 2],
        "baseline": {"optimizer.lr": 0.1},
        "storage": str(tmp_path),
    })  # fmt: skip


CONFIG = {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 1}


def finished_study(spec, uri: str) -> StudyTracker:
    tracker = StudyTracker(spec, uri)
    tracker.trial_run("t0", CONFIG)
    tracker.log_epoch("t0", CONFIG, {"epoch": 1, "val_acc": 0.5})
    tracker.end_trial("t0", CONFIG, "FINISHED")
    tracker.end_study("FINISHED")
    return tracker


def times(tracker: StudyTracker) -> dict[str, tuple]:
    runs = tracker._search(f"tags.`normstudy.study` = '{tracker.spec.name}'")
    return {r.info.run_id: (r.info.status, r.info.start_time, r.info.end_time) for r in runs}


def test_resume_with_nothing_to_do_keeps_times(spec, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = times(finished_study(spec, uri))
    assert len(before) == 2 and {v[0] for v in before.values()} == {"FINISHED"}
    again = StudyTracker(spec, uri)
    again.start_study()  # as the resumed study's callback does
    again.end_study("FINISHED")
    assert times(again) == before


def test_resume_that_ends_differently_keeps_the_end_time(spec, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = finished_study(spec, uri)
    parent = tracker.start_study()
    before = tracker.client.get_run(parent).info
    again = StudyTracker(spec, uri)
    again.start_study()
    again.end_study("FAILED")
    info = again.client.get_run(parent).info
    assert (info.status, info.start_time, info.end_time) == ("FAILED", before.start_time,
                                                             before.end_time)


def test_resume_that_runs_a_trial_moves_the_parent_end(spec, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = finished_study(spec, uri)
    parent = tracker.start_study()
    end = tracker.client.get_run(parent).info.end_time
    again = StudyTracker(spec, uri)
    again.start_study()
    assert again.client.get_run(parent).info.status == "FINISHED"  # not yet: no trial ran
    other = {"optimizer": {"name": "sgd", "lr": 0.2}, "seed": 1}
    again.trial_run("t1", other)
    assert again.client.get_run(parent).info.status == "RUNNING"
    again.end_trial("t1", other, "FINISHED")
    again.end_study("FINISHED")
    info = again.client.get_run(parent).info
    assert info.status == "FINISHED" and info.end_time >= end
