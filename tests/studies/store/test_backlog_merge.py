"""A trial's queued MLflow writes are delivered merged (issue 19): few calls per trial, within
MLflow's log_batch limits, every epoch once, nothing lost when a merged write fails."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import Metric, Param, RunTag

from studies.config.load import parse_config
from studies.store.backlog import Backlog
from studies.store.tracker import (
    BATCH_ENTRIES,
    BATCH_METRICS,
    BATCH_PARAMS,
    BATCH_TAGS,
    StudyTracker,
    TrialWrite,
    batches,
)


@pytest.fixture
def spec(tmp_path):
    return parse_config({
        "name": "merging", "dataset": {"name": "digits"},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 5},
        "seeds": [1, 2, 3], "storage": str(tmp_path),
    })  # fmt: skip


def config(seed: int) -> dict:
    return {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": seed}


class Calls:
    """Counts a client's calls by name; ``fail`` names calls that land but lose their answer
    once each."""

    def __init__(self, client, fail=()):
        self.client, self.calls, self.fail = client, [], list(fail)

    def __getattr__(self, name):
        self.calls.append(name)
        method = getattr(self.client, name)
        if name not in self.fail:
            return method

        def landed_but_lost(*args, **kwargs):
            self.fail.remove(name)
            method(*args, **kwargs)
            raise ConnectionError("answer lost")

        return landed_but_lost


@pytest.mark.parametrize("epochs, params, tags", [(0, 0, 0), (3, 40, 2), (250, 150, 130)])
def test_batches_stay_within_mlflow_limits_and_never_split_an_epoch(epochs, params, tags):
    groups = [(e, [Metric(f"m{i}", 0.0, 0, e) for i in range(12)]) for e in range(1, epochs + 1)]
    ps = [Param(f"p{i}", "v") for i in range(params)]
    ts = [RunTag(f"t{i}", "v") for i in range(tags)]
    calls = batches(groups, ps, ts)
    for last, metrics, p, t in calls:
        assert len(metrics) <= BATCH_METRICS and len(p) <= BATCH_PARAMS and len(t) <= BATCH_TAGS
        assert len(metrics) + len(p) + len(t) <= BATCH_ENTRIES
        steps = sorted({m.step for m in metrics})
        assert all(sum(m.step == s for m in metrics) == 12 for s in steps)  # whole epochs
        assert last == (steps[-1] if steps else None)
    assert [m for c in calls for m in c[1]] == [m for _, g in groups for m in g]
    assert [p for c in calls for p in c[2]] == ps and [t for c in calls for t in c[3]] == ts
    fewest = max(-(-epochs * 12 // BATCH_METRICS), -(-params // BATCH_PARAMS),
                 -(-tags // BATCH_TAGS))  # fmt: skip
    assert fewest <= len(calls) <= fewest + 1


def queue_trials(backlog: Backlog, trials: int, epochs: int) -> None:
    """Start, epochs and end of ``trials`` trials, interleaved, all queued before delivery."""
    for t in range(trials):
        backlog.submit_write(f"t{t}", TrialWrite(config(t + 1), start=True))
    for epoch in range(1, epochs + 1):
        for t in range(trials):
            result = {"epoch": epoch, "val_acc": 0.5, "train_loss": 1.0 / epoch}
            backlog.submit_write(f"t{t}", TrialWrite(config(t + 1), results=((result, 1000),)))
    for t in range(trials):
        backlog.submit_write(f"t{t}", TrialWrite(config(t + 1), tags={"stopped_early": "x"},
                                                 status="FINISHED"))  # fmt: skip


def held(backlog: Backlog) -> None:
    """Hold deliveries (as while the delivery thread is busy) until a forced flush."""
    backlog.down_since, backlog._next_try = time.monotonic(), time.monotonic() + 3600


def test_queued_writes_of_a_trial_cost_a_run_one_batch_and_its_end(spec, tmp_path):
    tracker = StudyTracker(spec, f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.start_study()
    counting = Calls(tracker.client)
    tracker._client = counting
    backlog = Backlog(tracker)
    held(backlog)
    queue_trials(backlog, trials=3, epochs=5)
    assert len(backlog.queue) == 3 * 7
    assert backlog.flush(force=True) and not backlog.queue
    assert counting.calls.count("create_run") == 3
    assert counting.calls.count("log_batch") == 3  # params + 5 epochs + tags, per trial
    assert counting.calls.count("set_terminated") == 3
    assert backlog.delivered == 3 * 7
    client = counting.client
    for t in range(3):
        run = client.get_run(tracker.known_run(f"t{t}"))
        assert run.info.status == "FINISHED" and run.data.tags["stopped_early"] == "x"
        assert run.data.params["seed"] == str(t + 1)
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]


def test_a_merged_write_that_fails_is_retried_whole_without_duplicates(spec, tmp_path):
    tracker = StudyTracker(spec, f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.start_study()
    counting = Calls(tracker.client, fail=["create_run", "log_batch"])
    tracker._client = counting
    backlog = Backlog(tracker)
    held(backlog)
    queue_trials(backlog, trials=2, epochs=4)
    for _ in range(4):  # each failure keeps the merged updates queued
        if backlog.flush(force=True):
            break
    assert not backlog.queue and not counting.fail
    client = counting.client
    runs = client.search_runs([tracker.experiment_id], "tags.`normstudy.role` = 'trial'")
    assert len(runs) == 2  # the run whose creation lost its answer was found, not made again
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["seed"]
        for key in ("epoch", "val_acc"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == [1, 2, 3, 4], (key, steps)  # every epoch once


def test_a_restart_and_other_updates_of_the_trial_end_a_merge(spec, tmp_path):
    tracker = StudyTracker(spec, f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.start_study()
    backlog = Backlog(tracker)
    held(backlog)
    first = ({"epoch": 1, "val_acc": 0.1}, 1000)
    backlog.submit_write("t0", TrialWrite(config(1), start=True))
    backlog.submit_write("t0", TrialWrite(config(1), results=(first,)))
    backlog.submit(tracker.mark_retry, "t0", config(1), 1)  # not a write: the merge stops
    backlog.submit_write("t0", TrialWrite(config(1), start=True))  # a restart: on its own
    head, merged = backlog._merged_head()
    assert len(merged) == 1 and head.write.results == (first,)
    assert backlog.flush(force=True)
    run = tracker.client.get_run(tracker.known_run("t0"))
    assert run.data.tags["retries"] == "1" and run.info.status == "RUNNING"
