"""The tracker's lookups do not grow with the study (issue 19): a resumed tracker learns every
trial's last epoch from one paged search (no per-run metric history), and a failed write makes
it read that one trial's run again, not every run."""

from __future__ import annotations

import pytest

from studies.config.load import parse_config
from studies.store.backlog import Backlog
from studies.store.tracker import StudyTracker


@pytest.fixture
def spec(tmp_path):
    return parse_config({
        "name": "scaletracker",
        "dataset": {"name": "digits"},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 3},
        "sweep": {"optimizer.lr": {"grid": [0.1, 0.2]}},
        "seeds": [1, 2],
        "baseline": {"optimizer.lr": 0.1},
        "storage": str(tmp_path),
    })  # fmt: skip


def config(seed: int) -> dict:
    return {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": seed}


class Counting:
    """Counts the client calls of a tracker; ``get_metric_history`` is refused."""

    def __init__(self, client):
        self.client, self.calls = client, []

    def __getattr__(self, name):
        self.calls.append(name)
        if name == "get_metric_history":
            raise AssertionError("per-run metric history read")
        return getattr(self.client, name)


def test_resume_reads_last_epochs_without_metric_histories(spec, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = StudyTracker(spec, uri)
    for trial, (seed, epochs) in enumerate([(1, 3), (2, 2), (3, 0)]):
        first.trial_run(f"t{trial}", config(seed))
        for epoch in range(1, epochs + 1):
            first.log_epoch(f"t{trial}", config(seed), {"epoch": epoch, "val_acc": 0.5})

    again = StudyTracker(spec, uri)
    counting = Counting(again.client)
    again._client = counting
    again.start_study()
    assert again._last_epoch == {"t0": 3, "t1": 2, "t2": 0}
    assert counting.calls.count("search_runs") == 2  # the parent, then the trial runs

    again.log_epoch("t1", config(2), {"epoch": 2, "val_acc": 0.9})  # delivered before: skipped
    again.log_epoch("t1", config(2), {"epoch": 3, "val_acc": 0.9})
    history = first.client.get_metric_history(again.known_run("t1"), "epoch")
    assert sorted(m.step for m in history) == [1, 2, 3]


def test_a_failed_write_rereads_only_its_trial(spec, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(spec, uri)
    tracker.start_study()
    backlog = Backlog(tracker)
    for trial in range(3):
        backlog.submit(tracker.trial_run, f"t{trial}", config(trial + 1))
    counting = Counting(tracker.client)
    tracker._client = counting

    landed = tracker.log_epoch  # the write lands, but its answer is lost

    def lost_answer(*args):
        landed(*args)
        raise ConnectionError("answer lost")

    backlog.submit(lost_answer, "t1", config(2), {"epoch": 1, "val_acc": 0.5}, 1000)
    assert backlog.queue and tracker._doubt == {"t1"} and not tracker._stale
    tracker._last_epoch["t1"] = 0  # as if the tracker had not seen the write land
    before = counting.calls.count("search_runs")
    backlog.queue.clear()
    backlog.down_since = None
    backlog.submit(tracker.log_epoch, "t1", config(2), {"epoch": 1, "val_acc": 0.5}, 1000)
    assert counting.calls.count("search_runs") == before + 1  # one trial's run, not all
    assert not backlog.queue and not tracker._doubt
    history = tracker._client.client.get_metric_history(tracker.known_run("t1"), "val_acc")
    assert [m.step for m in history] == [1]  # not logged twice
    assert backlog.delivered >= 4 and backlog.seconds > 0
