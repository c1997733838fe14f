"""The tracker as Ray Tune's saved state (tuner.pkl, a results file) holds it: no password of
the tracking URI, no secret of the description; unpickled for a resume, the URI is whole again
from MLFLOW_TRACKING_URI, as study.yaml's is."""

from __future__ import annotations

import pickle

from studies.store.tracker import StudyTracker
from studies.trial.validation import load_spec

PASSWORD = "hunter2222-tuner"
URI = f"http://alice:{PASSWORD}@127.0.0.1:9/"


def tracker(tmp_path) -> StudyTracker:
    spec = load_spec("quickstart", [f"storage={tmp_path}", f"tracking.uri={URI}",
                                    f"description=token {PASSWORD} here"])  # fmt: skip
    return StudyTracker(spec, URI)


def test_the_pickle_holds_no_password_and_resume_gets_it_from_the_environment(
        tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)  # as a user keeps it out of URIs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    pickled = pickle.dumps(tracker(tmp_path))
    assert PASSWORD.encode() not in pickled and b"alice:***@127.0.0.1" in pickled
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    restored = pickle.loads(pickled)
    assert restored.uri == URI and restored.spec.tracking.uri == URI
    assert PASSWORD not in restored.spec.description


def test_a_uri_without_a_password_is_kept_as_it_is(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec("quickstart", [f"storage={tmp_path}"])
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    restored = pickle.loads(pickle.dumps(StudyTracker(spec, uri)))
    assert restored.uri == uri and restored.spec.tracking.uri == spec.tracking.uri
