"""Promise 4: the MLflow tracking server goes away in the middle of a study.

A real `mlflow server` on 127.0.0.1 is stopped after the first reported
epoch. Training goes on; the driver keeps every update. Either the server
comes back and the backlog is delivered, or the study ends after a bounded
retry with a warning that names `normstudy sync`, which then uploads
everything from the Ray Tune results. Both ways MLflow ends with exactly one
run per trial, each epoch once, none RUNNING, and nothing crashes the study.
"""

from __future__ import annotations

import threading
import time

import pytest
from reliability_kit import (
    EPOCHS,
    MlflowServer,
    assert_tracked_once,
    result_rows,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _rows(folder) -> int:
    return sum(len(v) for v in result_rows(folder).values()) if folder.exists() else 0


def _outage(server, folder, restart_after_rows: int | None, events: dict) -> threading.Thread:
    """Stop the server after the first reported epoch; restart it once ``restart_after_rows``
    more epochs were reported while it was down, or after 30 s (never, if None)."""

    def run():
        deadline = time.time() + 300
        while _rows(folder) < 1 and time.time() < deadline:
            time.sleep(0.02)
        events["stopped_at_rows"] = _rows(folder)
        server.stop()
        if restart_after_rows is None:
            return
        down_until = time.time() + 30  # or until the study is over
        while _rows(folder) < events["stopped_at_rows"] + restart_after_rows:
            if time.time() > down_until:
                break
            time.sleep(0.05)
        events["rows_while_down"] = _rows(folder) - events["stopped_at_rows"]
        server.start()
        events["restarted"] = True

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _check_mlflow_matches_results(uri, folder, name):
    logged = assert_tracked_once(uri, name, 4)
    for trial, lines in result_rows(folder).items():
        assert [r["epoch"] for r in lines] == list(range(1, EPOCHS + 1))
        got = logged[trial.removeprefix("trial_")]
        assert got["val_acc"] == {r["epoch"]: r["val_acc"] for r in lines}
        assert got["train_loss"] == {r["epoch"]: r["train_loss"] for r in lines}


def test_server_back_mid_study_gets_the_backlog(server, tmp_path, ray_session, capsys,
                                                monkeypatch):  # fmt: skip
    from studies.run.runner import run_study
    from studies.trial.validation import load_spec

    monkeypatch.setenv("NORMSTUDY_MLFLOW_RETRY_S", "240")  # the server restarts in time
    spec = load_spec(write_spec(tmp_path, tiny_spec("outage1", max_concurrent=1)),
                     [f"storage={tmp_path / 'results'}", f"tracking.uri={server.uri}"])  # fmt: skip
    folder = tmp_path / "results" / "outage1"
    events: dict = {}
    thread = _outage(server, folder, restart_after_rows=2, events=events)
    outcome = run_study(spec)
    thread.join(60)
    err = capsys.readouterr().err
    assert outcome.counts == {"finished": 4}
    assert events.get("restarted") and events["rows_while_down"] >= 2  # training went on
    assert "did not take an update" in err and "reachable again" in err, err[-3000:]
    assert "Traceback" not in err
    _check_mlflow_matches_results(server.uri, folder, "outage1")


def test_server_gone_past_the_retry_bound_then_sync(server, tmp_path, ray_session, capsys,
                                                    monkeypatch):  # fmt: skip
    from studies.cli import main
    from studies.run.runner import run_study
    from studies.trial.validation import load_spec

    if server.proc is None:
        server.start()
    monkeypatch.setenv("NORMSTUDY_MLFLOW_RETRY_S", "2")
    spec = load_spec(write_spec(tmp_path, tiny_spec("outage2", max_concurrent=1)),
                     [f"storage={tmp_path / 'results'}", f"tracking.uri={server.uri}"])  # fmt: skip
    folder = tmp_path / "results" / "outage2"
    events: dict = {}
    thread = _outage(server, folder, restart_after_rows=None, events=events)
    outcome = run_study(spec)  # ends although MLflow stays away
    thread.join(60)
    err = capsys.readouterr().err
    assert outcome.counts == {"finished": 4}
    assert "still unreachable after retrying for 2s" in err, err[-3000:]
    assert "normstudy sync outage2" in err and "Nothing is lost" in err

    assert main(["sync", "outage2", "--storage", str(tmp_path / "results"),
                 "--tracking-uri", server.uri]) == 1  # fmt: skip (still down: a clear no)
    assert "is the MLflow server up?" in capsys.readouterr().err

    server.start()
    assert main(["sync", "outage2", "--storage", str(tmp_path / "results"),
                 "--tracking-uri", server.uri]) == 0  # fmt: skip
    first = capsys.readouterr().out
    assert "epoch(s) uploaded" in first and " 0 epoch(s) uploaded" not in first, first
    _check_mlflow_matches_results(server.uri, folder, "outage2")
    assert main(["sync", "outage2", "--storage", str(tmp_path / "results"),
                 "--tracking-uri", server.uri]) == 0  # fmt: skip
    again = capsys.readouterr().out
    assert "0 run(s) created, 0 epoch(s) uploaded, 0 status(es) set" in again, again
    _check_mlflow_matches_results(server.uri, folder, "outage2")  # still exactly once
