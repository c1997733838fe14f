"""Ray Tune callback that mirrors every trial into MLflow.

Updates go through a :class:`studies.store.backlog.Backlog`, so nothing here raises and a
tracking server that goes away never stops a study. When the study ends the backlog is
drained, and the runs are reconciled with the results directory
(:func:`studies.run.sync.reconcile`), so no epoch is missing and no run is left RUNNING.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from studies.run.sync import reconcile
from studies.run.system_metrics import SystemMetrics
from studies.store.backlog import Backlog, first_line, retry_seconds, say
from studies.store.inputs import log_dataset
from studies.store.models import log_study_models, registry_name
from studies.store.results import RESULT_FILE
from studies.store.tracker import LOGGED_METRICS, StudyTracker, TrialWrite

SHOWN_MODELS = 6  # registered models named at the end of a study; the rest are counted


class MLflowTrialCallback(Callback):
    """Ray Tune callback that mirrors every trial into MLflow through a StudyTracker.

    Nothing here raises: an update MLflow does not take waits in the tracker's backlog.
    """

    def __init__(self, tracker: StudyTracker):
        self.tracker = tracker
        self.backlog = Backlog(tracker, background=True)  # deliveries never block the driver
        self.started = time.perf_counter()
        self.system = SystemMetrics(tracker, tracker.spec.tracking.system_metrics)

    def __getstate__(self) -> dict:  # pickled into Ray Tune's experiment state
        return {"tracker": self.tracker}

    def __setstate__(self, state: dict) -> None:
        MLflowTrialCallback.__init__(self, state["tracker"])

    def setup(self, stop: Any = None, num_samples: int | None = None,
              total_num_samples: int | None = None, **info: Any) -> None:
        self.started = time.perf_counter()
        self.backlog.submit(self.tracker.start_study)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.backlog.flush()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        write = TrialWrite(trial.config, start=True, started_at=int(time.time() * 1000))
        self.backlog.submit_write(trial.trial_id, write)
        self.backlog.submit(self.system.start, trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        fields = {k: result[k] for k in ("epoch", *LOGGED_METRICS) if k in result}
        stamp = int(time.time() * 1000)  # fixed now, so a replay writes the same point
        tags = {}
        if result.get("checkpoint_warning"):  # a damaged checkpoint was skipped
            say(f"trial {trial.trial_id}: {result['checkpoint_warning']}")
            tags = {"checkpoint_warning": str(result["checkpoint_warning"])[:5000]}
        write = TrialWrite(trial.config, results=((fields, stamp),), tags=tags)
        self.backlog.submit_write(trial.trial_id, write)
        if isinstance(result.get("dataset_input"), str):  # first epoch of a (re)start
            self.backlog.submit(log_dataset, self.tracker, trial.trial_id, trial.config,
                                json.loads(result["dataset_input"]))  # fmt: skip

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self.backlog.submit(self.tracker.mark_retry, trial.trial_id, trial.config,
                            trial.num_failures)  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        result = trial.last_result or {}
        tags = {"diverged": "true"} if result.get("diverged") else {}
        epochs = self.tracker.spec.train.epochs
        if not result.get("diverged") and int(result.get("epoch", 0)) < epochs:
            tags["stopped_early"] = "true"  # ASHA
        write = TrialWrite(trial.config, tags=tags, status="FINISHED",
                           ended_at=int(time.time() * 1000))  # fmt: skip
        self.backlog.submit(self.system.stop, trial.trial_id)
        self.backlog.submit_write(trial.trial_id, write)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        tags = {"error_file": str(getattr(trial, "error_file", "") or "")}
        self.backlog.submit(self.system.stop, trial.trial_id)
        self.backlog.submit_write(trial.trial_id, TrialWrite(
            trial.config, tags=tags, status="FAILED", ended_at=int(time.time() * 1000)))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        finished = all(t.status == "TERMINATED" for t in trials)
        errored = any(t.status == "ERROR" for t in trials)
        status = "FINISHED" if finished else "FAILED" if errored else "KILLED"
        self.backlog.submit(self.system.stop_all)
        self.backlog.submit(self.tracker.end_study, status)
        seconds = retry_seconds()
        queuing = self.backlog.submit_seconds  # the driver's time in the study's updates
        drain_started = time.perf_counter()
        drained = self.backlog.drain(seconds)
        self.backlog.close()
        waited = time.perf_counter() - drain_started  # for the updates still queued at the end
        study = time.perf_counter() - self.started
        say(f"MLflow tracking: {self.backlog.delivered} update(s) delivered in "
            f"{self.backlog.seconds:.1f}s on a background thread; the driver spent "
            f"{queuing:.2f}s on them during the study, {queuing / max(study, 1e-9):.2%} of "
            f"its {study:.0f}s, and waited {waited:.1f}s for the last ones at its end")
        if not drained:
            say(self.backlog.undelivered_warning(seconds))
            return
        folder = self.tracker.study_folder()
        if folder is None:
            return
        statuses = {t.trial_id: t.status for t in trials}
        try:  # what a killed driver or a lost update left behind
            reconcile(self.tracker, folder, statuses)
        except Exception as err:
            say(f"warning: could not check the MLflow runs against the results "
                f"({type(err).__name__}: {first_line(err)}); run `normstudy sync "
                f"{self.tracker.spec.name}` to retry")  # fmt: skip
        self._log_models(folder)

    def _log_models(self, folder: Path) -> None:
        """The trials' models as ``tracking.log_model`` asks (:mod:`studies.store.models`);
        a failure only warns: the study and its checkpoints are safe."""
        spec = self.tracker.spec
        try:
            runs = {tid: run.info.run_id for tid, run in self.tracker.trial_runs().items()}
            aliases = log_study_models(self.tracker.client, self.tracker.uri, spec, folder, runs)
        except Exception as err:
            say(f"warning: could not log the trials' models to MLflow ({type(err).__name__}: "
                f"{first_line(err)})")  # fmt: skip
            return
        if aliases:
            name = registry_name(spec)
            shown = ", ".join(f"models:/{name}@{alias}" for alias in list(aliases)[:SHOWN_MODELS])
            more = len(aliases) - SHOWN_MODELS  # a 200-arm study: one alias per arm
            say(f"MLflow models: {shown}" + (f" and {more} more (an alias per arm; the Model "
                                             "Registry lists them)" if more > 0 else ""))


class KeepResultRows(Callback):
    """Keep the epochs a failed trial reported before Ray Tune restarts it.

    On a restart from a checkpoint Ray Tune replaces the trial's ``result.json`` with the
    copy in the results directory, which holds the rows up to the last experiment-state
    save only: the epochs reported since then would vanish from the record. The driver's
    current file is copied there first.
    """

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        from pyarrow import fs

        storage = trial.storage
        if trial.local_path is None or storage is None:  # Ray gives a started trial both
            return
        local = Path(trial.local_path) / RESULT_FILE
        remote = f"{storage.trial_fs_path}/{RESULT_FILE}"
        if not local.is_file() or Path(remote).resolve() == local.resolve():
            return
        try:
            fs.copy_files(str(local), remote,
                          destination_filesystem=storage.storage_filesystem)  # fmt: skip
        except Exception as err:  # the rows stay in MLflow; the record may miss some
            say(f"warning: could not save the result rows of trial {trial.trial_id} before "
                f"its restart ({type(err).__name__}: {first_line(err)})")  # fmt: skip
