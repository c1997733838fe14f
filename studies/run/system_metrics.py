"""System metrics of each trial (issue 27, ``tracking.system_metrics``): CPU and memory
(psutil), disk, and NVIDIA or AMD GPU utilization and memory where their libraries are
installed, measured by MLflow's own monitors (:mod:`mlflow.system_metrics.metrics`) and written
as ``system/...`` metrics into the run of every trial running at the time, every ``SAMPLE_S``
seconds (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it), so each run's System
metrics tab charts them.

Where it samples: on the driver, one sampler thread for the whole study. The monitors measure
the whole machine (``psutil.cpu_percent()``, the GPUs' counters), not a process, so on a single
machine, which is where trials share a GPU, one reading is every running trial's; and the
driver is where every MLflow write happens (workers never reach the tracking server, and
importing MLflow in each trial's worker would cost seconds per trial). One reading per interval
written to each running trial's run replaces MLflow's ``SystemMetricsMonitor`` per run (its
own thread, reading, client and ``get_run`` per trial and interval: about 1 s of the driver's
CPU over a quickstart on a loaded 2-core machine, py-spy).
On a multi-node Ray cluster the driver's machine is not the trials', so nothing is sampled
there and the runs say so (tag ``normstudy.system_metrics``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from studies.store.tracker import StudyTracker

SAMPLE_S = 2.0  # seconds between samples (MLflow's default is 10): short trials get some
TAG = "normstudy.system_metrics"
PREFIX = "system/"
CPU = "cpu_utilization_percentage"  # MLflow's name, in every sample
log = logging.getLogger(__name__)


@dataclass
class Sampled:
    """A running trial's run and the step of its next sample."""

    run_id: str
    step: int
    samples: int = 0


def machine_monitors() -> list[Any]:
    """MLflow's monitors of this machine: CPU and memory, disk, and a GPU monitor where the
    NVIDIA (``nvidia-ml-py``) or AMD library finds a GPU. The network monitor is left out: on
    one machine it measures nothing of a study."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor

    monitors: list[Any] = [CPUMonitor(), DiskMonitor()]
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor

    for kind in (GPUMonitor, ROCMMonitor):
        try:
            monitors.append(kind())
            break
        except Exception:  # noqa: BLE001 - no such GPU or library: no GPU metrics
            continue
    return monitors


def next_step(client: Any, run_id: str) -> int:
    """The step after the run's last CPU sample (0 for a new run; a restarted trial or a
    resumed study goes on from there)."""
    steps = [m.step for m in client.get_metric_history(run_id, f"{PREFIX}{CPU}")]
    return max(steps) + 1 if steps else 0


class SystemMetrics:
    """The study's sampler: started and stopped per trial from the backlog's thread (in order
    with the trial's writes, so its run exists); one thread samples for all of them."""

    def __init__(self, tracker: StudyTracker, enabled: bool):
        self.tracker, self.enabled = tracker, enabled
        self.running: dict[str, Sampled] = {}
        self._single: bool | None = None
        self._lock = threading.Lock()  # the running trials and the monitors
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitors: list[Any] | None = None

    @property
    def interval(self) -> float:
        """Seconds between samples."""
        from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL

        return MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or SAMPLE_S

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
        """Sample into the trial's run from now on (once per trial start)."""
        run_id = self.tracker.known_run(trial_id)
        if not self.enabled or run_id is None or trial_id in self.running:
            return
        if not self.single_machine():
            self.tracker.client.set_tag(run_id, TAG, "not sampled: the trials run on other "
                                                     "machines than the driver")  # fmt: skip
            return
        step = next_step(self.tracker.client, run_id)
        with self._lock:
            if self._monitors is None:
                self._monitors = machine_monitors()
                self._sample()  # starts psutil's CPU window: the first sample has a value
            self.running[trial_id] = Sampled(run_id, step)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="normstudy-system-metrics",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self, trial_id: str) -> None:
        """Sample no more into the trial's run; a trial that ended before its first sample gets
        one now (over its whole run)."""
        with self._lock:
            sampled = self.running.pop(trial_id, None)
            metrics = self._sample() if sampled is not None and not sampled.samples else None
        if sampled is not None and metrics:
            self._publish(sampled, metrics, int(time.time() * 1000))

    def stop_all(self) -> None:
        """Stop every trial's sampling and the thread (at the study's end)."""
        for trial_id in list(self.running):
            self.stop(trial_id)
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=60)  # its last write; a server away keeps it no longer
            self._thread = None

    def _sample(self) -> dict[str, float]:
        """One reading of the machine (called with the lock held)."""
        metrics: dict[str, float] = {}
        for monitor in self._monitors or []:
            try:
                monitor.collect_metrics()
                metrics.update(monitor.aggregate_metrics())
            except Exception as err:  # noqa: BLE001 - a monitor that fails gives nothing
                log.debug("system metrics: %s failed: %s", type(monitor).__name__, err)
            finally:
                monitor.clear_metrics()
        return metrics

    def _loop(self) -> None:
        """Every interval: one reading, written to each running trial's run."""
        while not self._stopped.wait(self.interval):
            with self._lock:
                targets = list(self.running.values())
                metrics = self._sample() if targets else {}
                for sampled in targets:
                    sampled.samples += 1
            stamp = int(time.time() * 1000)
            for sampled in targets:
                self._publish(sampled, metrics, stamp)

    def _publish(self, sampled: Sampled, metrics: dict[str, float], stamp: int) -> None:
        """Write one reading into a run (a failed write loses that reading only)."""
        from mlflow.entities import Metric

        step, sampled.step = sampled.step, sampled.step + 1
        batch = [Metric(PREFIX + key, float(value), stamp, step) for key, value in metrics.items()]
        try:
            self.tracker.client.log_batch(sampled.run_id, metrics=batch)
        except Exception as err:  # noqa: BLE001 - the study goes on; the next reading may land
            log.debug("system metrics of run %s not written: %s", sampled.run_id, err)
