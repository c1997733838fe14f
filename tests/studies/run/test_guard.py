"""The study-folder guard: it trips on a deleted study.yaml even when Ray Tune has already
recreated a stub experiment folder, and never on a study that is still there."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from studies.run import guard


@pytest.fixture
def sigints(monkeypatch):
    sent = []
    monkeypatch.setattr(guard.os, "kill", lambda pid, sig: sent.append(sig))
    return sent


def step(hook, experiment):
    hook.on_step_end(1, [SimpleNamespace(remote_experiment_path=str(experiment))])


def study(tmp_path, name="s"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "study.yaml").write_text("name: s\n")
    return folder


def test_a_present_study_and_a_present_sequential_look_do_not_trip(tmp_path, sigints):
    folder = study(tmp_path)
    look = folder / "look-1"
    look.mkdir()
    for experiment in (folder, look):
        hook = guard.StudyFolderGuard()
        step(hook, experiment)
        assert not hook.tripped
    assert sigints == []


@pytest.mark.parametrize("stub", [False, True], ids=["gone", "stub-recreated"])
def test_a_deleted_study_trips_once_even_behind_a_recreated_stub(tmp_path, sigints, stub):
    folder = study(tmp_path, f"s-{stub}")
    (folder / "study.yaml").unlink()
    if not stub:
        folder.rmdir()
    else:
        (folder / "trial_1").mkdir()  # what Ray Tune makes when a trial reports
    hook = guard.StudyFolderGuard()
    step(hook, folder)
    step(hook, folder)
    assert hook.tripped and sigints == [signal.SIGINT]
    assert guard.was_deleted(folder)


def test_a_deleted_sequential_study_trips_from_its_look(tmp_path, sigints):
    folder = study(tmp_path, "seq")
    look = folder / "look-2"
    look.mkdir()
    (folder / "study.yaml").unlink()
    hook = guard.StudyFolderGuard()
    step(hook, look)
    assert hook.tripped and sigints == [signal.SIGINT]


def test_a_remote_study_is_never_checked(tmp_path, sigints):
    hook = guard.StudyFolderGuard()
    hook.on_step_end(1, [SimpleNamespace(remote_experiment_path="s3://bucket/study")])
    assert not hook.tripped and sigints == []
