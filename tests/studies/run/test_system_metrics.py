"""The study's system-metrics sampler writes the machine's CPU and memory into each running
trial's run while it runs, one reading for all of them, and is off with
``tracking.system_metrics: false`` (issue 27)."""

from __future__ import annotations

import threading

import pytest

from studies.config.load import parse_config
from studies.run.system_metrics import SystemMetrics
from studies.store.tracker import StudyTracker

CONFIG = {"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 1}


def tracker_of(tmp_path, enabled: bool) -> StudyTracker:
    spec = parse_config({
        "name": "sysmetrics", "dataset": {"name": "digits"},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
        "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1},
        "seeds": [1], "storage": str(tmp_path),
        "tracking": {"system_metrics": enabled},
    })  # fmt: skip
    return StudyTracker(spec, f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.parametrize("enabled", [True, False])
def test_samples_reach_the_trial_run(tmp_path, monkeypatch, enabled):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    tracker = tracker_of(tmp_path, enabled)
    run_id = tracker.trial_run("t0", CONFIG)
    system = SystemMetrics(tracker, tracker.spec.tracking.system_metrics)
    system._single = True  # this machine (no Ray here)
    system.start("t0")
    if enabled:  # deterministic: wait until three samples were written (deadline: minutes)
        written = threading.Event()
        publish = system._publish
        count = [0]

        def counting(*args):
            publish(*args)
            count[0] += 1
            if count[0] >= 3:
                written.set()

        system._publish = counting
        assert written.wait(300)
    system.stop("t0")
    metrics = tracker.client.get_run(run_id).data.metrics
    names = {k for k in metrics if k.startswith("system/")}
    if enabled:
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/system_memory_usage_percentage"} <= names  # fmt: skip
        history = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert len(history) >= 3 and all(0 <= m.value <= 100 for m in history)
        assert sorted(m.step for m in history) == list(range(len(history)))
        assert not any(k.startswith("system/network") for k in names)
    else:
        assert names == set() and system.running == {}
    system.stop_all()


def test_one_sampler_serves_every_running_trial_and_a_short_trial_gets_a_sample(tmp_path):
    tracker = tracker_of(tmp_path, True)
    runs = [tracker.trial_run(f"t{i}", {**CONFIG, "seed": i + 1}) for i in range(2)]
    system = SystemMetrics(tracker, True)
    system._single = True
    system.start("t0")
    system.start("t1")
    thread = system._thread
    assert thread is not None and thread.is_alive() and len(system.running) == 2
    system.stop("t0")  # before the first interval: one sample over its whole run
    system.stop_all()
    assert not thread.is_alive()
    for run_id in runs:
        history = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert [m.step for m in history] == [0]


def test_a_restarted_trial_goes_on_after_its_last_sample(tmp_path):
    tracker = tracker_of(tmp_path, True)
    run_id = tracker.trial_run("t0", CONFIG)
    for _ in range(2):  # a trial run, then its restart (a resumed study, a retried trial)
        system = SystemMetrics(tracker, True)
        system._single = True
        system.start("t0")
        system.stop_all()
    history = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert sorted(m.step for m in history) == [0, 1]
