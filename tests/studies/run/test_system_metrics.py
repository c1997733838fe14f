"""MLflow's system-metrics sampler writes a trial's CPU and memory into its run while the trial
runs, and is off with ``tracking.system_metrics: false`` (issue 27)."""

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
    if enabled:  # deterministic: wait until three samples were taken (deadline: minutes)
        monitor = system.monitors["t0"]
        taken = threading.Event()
        collect = monitor.collect_metrics
        count = [0]

        def counting():
            count[0] += 1
            if count[0] >= 3:
                taken.set()
            return collect()

        monitor.collect_metrics = counting
        assert taken.wait(300)
    system.stop("t0")
    metrics = tracker.client.get_run(run_id).data.metrics
    names = {k for k in metrics if k.startswith("system/")}
    if enabled:
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/system_memory_usage_percentage"} <= names  # fmt: skip
        history = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert len(history) >= 1 and all(0 <= m.value <= 100 for m in history)
    else:
        assert names == set() and system.monitors == {}
