"""System metrics of each trial (issue 27, ``tracking.system_metrics``): MLflow's own
sampler (:class:`mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor`: CPU and
memory through psutil, disk, network, and NVIDIA GPU utilization and memory where
``nvidia-ml-py`` is installed) writes ``system/...`` metrics into the trial's run every
``SAMPLE_S`` seconds while the trial runs, so the run's System metrics tab charts them.

Where it samples: on the driver, one sampler thread per running trial. MLflow's monitors
measure the whole machine (``psutil.cpu_percent()``, the GPUs' counters), not a process, so on
a single machine, which is where trials share a GPU, the driver's samples are the trial's; and
the driver is where every MLflow write happens (workers never reach the tracking server, and
importing MLflow in each trial's worker would cost seconds per trial). On a multi-node Ray
cluster the driver's machine is not the trials', so nothing is sampled there and the runs say
so (tag ``normstudy.system_metrics``).
"""

from __future__ import annotations

import logging
from typing import Any

from studies.store.tracker import StudyTracker

SAMPLE_S = 2.0  # seconds between samples (MLflow's default is 10): short trials get some
TAG = "normstudy.system_metrics"


class SystemMetrics:
    """Starts and stops one MLflow sampler per running trial (called from the backlog's
    thread, in order with the trial's writes, so its run exists)."""

    def __init__(self, tracker: StudyTracker, enabled: bool):
        self.tracker, self.enabled = tracker, enabled
        self.monitors: dict[str, Any] = {}
        self._single: bool | None = None

    def single_machine(self) -> bool:
        """Whether every Ray node is this machine (the driver's samples are the trials')."""
        if self._single is None:
            import ray

            try:
                alive = [n for n in ray.nodes() if n.get("Alive")]
            except Exception:  # noqa: BLE001 - no Ray here (tests): this machine
                alive = []
            self._single = len(alive) <= 1
        return self._single

    def start(self, trial_id: str) -> None:
        """Start sampling into the trial's run (once per trial start)."""
        run_id = self.tracker.known_run(trial_id)
        if not self.enabled or run_id is None or trial_id in self.monitors:
            return
        if not self.single_machine():
            self.tracker.client.set_tag(run_id, TAG, "not sampled: the trials run on other "
                                                     "machines than the driver")  # fmt: skip
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        monitor = SystemMetricsMonitor(run_id, sampling_interval=SAMPLE_S, resume_logging=True,
                                       tracking_uri=self.tracker.uri)  # fmt: skip
        monitor.start()
        self.monitors[trial_id] = monitor

    def stop(self, trial_id: str) -> None:
        """Stop the trial's sampler and write its last samples."""
        monitor = self.monitors.pop(trial_id, None)
        if monitor is None:
            return
        monitor.finish()  # joins MLflow's thread, which drops what it sampled since it last wrote
        if any(values for m in monitor.monitors for values in m._metrics.values()):
            monitor.publish_metrics(monitor.aggregate_metrics())  # a trial shorter than SAMPLE_S
            monitor.mlflow_logger.flush()

    def stop_all(self) -> None:
        for trial_id in list(self.monitors):
            self.stop(trial_id)
