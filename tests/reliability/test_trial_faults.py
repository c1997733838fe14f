"""Promises 2 and 3: a trial process that dies, and trials that raise.

2. The worker process of a running trial is SIGKILLed (the pid Ray reports
   in the trial's results) in the middle of an epoch: Ray Tune restarts the
   trial from its last checkpoint, the epoch counter continues, the study
   finishes, and MLflow holds each epoch once.
3. Trials that raise (``train.fail_at_epoch``) are marked errored after the
   configured retries while the others finish; ``resume --retry-errored``
   reruns exactly those trials and leaves the finished ones alone.
"""

from __future__ import annotations

import os
import signal

import pytest
from reliability_kit import (
    EPOCHS,
    assert_tracked_once,
    mlflow_runs,
    result_rows,
    sqlite_uri,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.integration


def _load(tmp_path, spec: dict):
    from studies.trial.validation import load_spec

    return load_spec(write_spec(tmp_path, spec), [f"storage={tmp_path / 'results'}"])


def test_worker_sigkill_mid_epoch_restarts_from_checkpoint(tmp_path, ray_session, monkeypatch):
    from studies.run.callbacks import MLflowTrialCallback
    from studies.run.runner import run_study

    # One trial with epochs long enough (a whole pass over digits, a wider net) to be hit
    # inside one.
    spec = _load(tmp_path, tiny_spec(
        "workerkill", sweep={}, seeds=[3], baseline=None, model__width=256, model__n_layers=4,
        train__epochs=4, train__steps_per_epoch=None, train__batch_size=16,
    ))  # fmt: skip
    folder = tmp_path / "results" / "workerkill"
    killed: dict = {}

    # The kill comes from the driver itself, at the end of the step in which Ray Tune took in
    # epoch 2's checkpoint (a save that follows the epoch's result): the worker is in epoch 3
    # then. Watching the results directory instead lags behind by the experiment-state saves;
    # under load that lag once exceeded an epoch.
    on_step_end = MLflowTrialCallback.on_step_end
    epoch_2: dict = {}

    def note_epoch_2_saved(self, iteration, trials, trial, **info):
        if trial.last_result.get("epoch") == 2:
            epoch_2.setdefault("pid", trial.last_result["pid"])

    def kill_after_epoch_2(self, iteration, trials, **info):
        on_step_end(self, iteration, trials, **info)
        if epoch_2 and not killed:
            os.kill(epoch_2["pid"], signal.SIGKILL)
            killed.update(pid=epoch_2["pid"], after_epoch=2)

    monkeypatch.setattr(MLflowTrialCallback, "on_trial_save", note_epoch_2_saved, raising=False)
    monkeypatch.setattr(MLflowTrialCallback, "on_step_end", kill_after_epoch_2)
    outcome = run_study(spec)
    assert killed, "the worker was never killed"
    assert outcome.counts == {"finished": 1}

    (lines,) = result_rows(folder).values()
    epochs = [row["epoch"] for row in lines]
    assert epochs == [1, 2, 3, 4], epochs  # continued after epoch 2, nothing repeated
    restarted = [row for row in lines if row["pid"] != killed["pid"]]
    assert restarted and restarted[0]["epoch"] == 3  # a new process took over at epoch 3
    assert restarted[0]["restored_from_epoch"] == 2
    assert restarted[0]["iterations_since_restore"] == 1

    logged = assert_tracked_once(sqlite_uri(tmp_path / "results"), "workerkill", 1, epochs=4)
    (per_metric,) = logged.values()
    assert per_metric["val_acc"] == {row["epoch"]: row["val_acc"] for row in lines}
    _, _, (run,) = mlflow_runs(sqlite_uri(tmp_path / "results"), "workerkill")
    assert run.data.tags["retries"] == "1"


def _contents(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _failures(trial_dir) -> int:
    error = trial_dir / "error.txt"
    text = error.read_text() if error.is_file() else ""
    return text.count("InjectedFault: train.fail_at_epoch=2: injected failure")


def test_raising_trials_error_after_retries_and_retry_errored_reruns_only_them(
    tmp_path, ray_session
):
    from studies.run.runner import resume_study, run_study

    spec = _load(tmp_path, tiny_spec(
        "raising", sweep={"train.fail_at_epoch": {"grid": [None, 2]}}, baseline=None,
    ))  # fmt: skip
    folder = tmp_path / "results" / "raising"
    outcome = run_study(spec)
    assert outcome.counts == {"finished": 2, "errored": 2}

    rows = result_rows(folder)
    bad = {name for name in rows if (folder / name / "error.txt").is_file()}
    good = set(rows) - bad
    assert len(bad) == 2 and len(good) == 2
    for name in bad:  # epoch 1 once; the raise at epoch 2, 1 try + 2 retries from epoch 1
        assert [r["epoch"] for r in rows[name]] == [1]
        assert _failures(folder / name) == 3
        assert "fail_at_epoch=2: injected failure" in (folder / name / "error.txt").read_text()
    for name in good:
        assert [r["epoch"] for r in rows[name]] == list(range(1, EPOCHS + 1))

    uri = sqlite_uri(tmp_path / "results")
    _, parents, runs = mlflow_runs(uri, "raising")
    status = {r.data.tags["normstudy.trial_id"]: r.info.status for r in runs}
    assert len(runs) == 4 and parents[0].info.status == "FAILED"
    assert {status[n.removeprefix("trial_")] for n in bad} == {"FAILED"}
    assert {status[n.removeprefix("trial_")] for n in good} == {"FINISHED"}

    finished_files = {n: _contents(folder / n) for n in good}
    outcome = resume_study("raising", storage=str(tmp_path / "results"), retry_errored=True)
    assert outcome.counts == {"finished": 2, "errored": 2}
    for name in bad:  # rerun from the epoch-1 checkpoint: one new attempt (Ray Tune keeps
        assert _failures(folder / name) == 4  # the trial's failure count across a resume)
        assert [r["epoch"] for r in result_rows(folder)[name]] == [1]
    for name in good:  # not rerun: every file as it was (Ray Tune may rewrite the same bytes)
        assert _contents(folder / name) == finished_files[name]
    _, parents, runs = mlflow_runs(uri, "raising")
    assert len(runs) == 4 and len(parents) == 1  # the rerun reused the runs
    assert {r.data.tags["normstudy.trial_id"] for r in runs} == {n[6:] for n in rows}
    assert "RUNNING" not in {r.info.status for r in runs}
