"""MLflow tracking: one parent run per study, exactly one child run per trial.

Logging happens on the driver, from a Ray Tune callback, so workers never
need to reach the tracking server. Every write is idempotent:

* the parent run is found by the tags ``normstudy.study`` + ``normstudy.role``;
* a trial's run is found by ``normstudy.trial_id``, so a resumed or retried
  trial keeps its run (Ray's stock MLflowLoggerCallback starts a new one);
* an epoch already logged for a trial (step = epoch) is not logged again.

Child runs carry ``mlflow.parentRunId``, which is how the MLflow UI nests them.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from studies.space import arm_label, arm_of, flatten, has_arms, is_baseline, resolve_arm
from studies.spec import TRIAL_SECTIONS, StudySpec, dump_spec

log = logging.getLogger(__name__)

ROLE, STUDY, TRIAL_ID = "normstudy.role", "normstudy.study", "normstudy.trial_id"
STAGE = "normstudy.stage"  # study, or search / confirm in a two-stage study
LOGGED_METRICS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
    "epoch_seconds", "diverged", "alig_step_size", "nfe",
)  # fmt: skip


def default_tracking_uri(study_root: Path) -> str:
    """The embedded store: SQLite next to the study results."""
    return f"sqlite:///{(study_root / 'mlflow.db').resolve()}"


def tracking_uri(spec: StudySpec) -> str:
    return spec.tracking.uri or default_tracking_uri(Path(spec.storage))


class StudyTracker:
    """Finds or creates the study's experiment, parent run and trial runs."""

    def __init__(self, spec: StudySpec, uri: str):
        self.spec, self.uri = spec, uri
        self._client = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._runs: dict[str, str] = {}
        self._last_epoch: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:  # pickled into Ray Tune's experiment state
        return {"spec": self.spec, "uri": self.uri}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["uri"])

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def start_study(self) -> str:
        """The parent run (created on first use, set RUNNING again on resume)."""
        if self.parent_id is not None:
            return self.parent_id
        name = self.spec.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if "://" not in self.spec.storage and self.uri.startswith("sqlite:"):
                location = (Path(self.spec.storage) / "mlartifacts" / name).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(name, artifact_location=location)
        else:
            self.experiment_id = experiment.experiment_id
        found = self._search(f"tags.`{ROLE}` = 'study' and tags.`{STUDY}` = '{self.spec.name}'")
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.spec.name,
                tags={
                    ROLE: "study",
                    STUDY: self.spec.name,
                    STAGE: self.spec.stage,
                    "normstudy.spec_hash": self.spec.fingerprint(),
                    "mlflow.note.content": self.spec.description,
                },
            )
            self.parent_id = run.info.run_id
            self.client.log_text(self.parent_id, dump_spec(self.spec), "study.yaml")
        self._load_trial_runs()
        return self.parent_id

    def forget_study(self) -> int:
        """Delete this study's runs (``--overwrite``); returns how many were deleted."""
        experiment = self.client.get_experiment_by_name(self.spec.experiment_name)
        if experiment is None:
            return 0
        self.experiment_id = experiment.experiment_id
        runs = self._search(f"tags.`{STUDY}` = '{self.spec.name}'")
        for run in runs:
            self.client.delete_run(run.info.run_id)
        return len(runs)

    def _search(self, filter_string: str):
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000,
                page_token=token,
            )  # fmt: skip
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _load_trial_runs(self) -> None:
        """Map trial ids to existing runs and the last epoch each one logged."""
        for run in self._search(f"tags.`{ROLE}` = 'trial' and tags.`{STUDY}` = '{self.spec.name}'"):
            trial_id = run.data.tags[TRIAL_ID]
            self._runs[trial_id] = run.info.run_id
            epoch = run.data.metrics.get("epoch")
            history = self.client.get_metric_history(run.info.run_id, "epoch") if epoch else []
            self._last_epoch[trial_id] = int(max((m.value for m in history), default=0))

    def trial_run(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run; created with params and tags the first time only."""
        self.start_study()
        if trial_id in self._runs:
            self.client.update_run(self._runs[trial_id], status="RUNNING")
            return self._runs[trial_id]
        from mlflow.entities import Param

        config = resolve_arm(config)
        trial_config = {k: config[k] for k in (*TRIAL_SECTIONS, "seed") if k in config}
        label = arm_label(arm_of(trial_config, self.spec)) if has_arms(self.spec) else "default"
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{label} seed={config.get('seed')}",
            tags={
                ROLE: "trial",
                STUDY: self.spec.name,
                STAGE: self.spec.stage,
                TRIAL_ID: trial_id,
                "mlflow.parentRunId": self.parent_id,
                "seed": str(config.get("seed")),
                "arm": label,
                "baseline": str(is_baseline(trial_config, self.spec)).lower(),
            },
        )
        params = [Param(k, str(v)[:6000]) for k, v in flatten(trial_config).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[start : start + 100])
        self._runs[trial_id] = run.info.run_id
        self._last_epoch[trial_id] = 0
        return run.info.run_id

    def log_epoch(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id = self.trial_run(trial_id, config)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._last_epoch.get(trial_id, 0):
            return  # already delivered before a restart
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(result[key]), stamp, epoch)
            for key in ("epoch", *LOGGED_METRICS)
            if isinstance(result.get(key), (int, float)) and not math.isnan(float(result[key]))
        ]
        self.client.log_batch(run_id, metrics=metrics)
        self._last_epoch[trial_id] = epoch

    def end_trial(self, trial_id: str, config: dict[str, Any], status: str, **tags: str) -> None:
        run_id = self.trial_run(trial_id, config)
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.update_run(run_id, status=status)

    def end_study(self, status: str) -> None:
        self.start_study()
        self.client.update_run(self.parent_id, status=status)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.start_study()
        self.client.log_artifact(self.parent_id, str(path), folder)


class MLflowTrialCallback(Callback):
    """Ray Tune callback that mirrors every trial into MLflow through a StudyTracker."""

    def __init__(self, tracker: StudyTracker):
        self.tracker = tracker

    def setup(self, **info):
        self.tracker.start_study()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.trial_run(trial.trial_id, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.tracker.log_epoch(trial.trial_id, trial.config, result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        run_id = self.tracker.trial_run(trial.trial_id, trial.config)
        self.tracker.client.set_tag(run_id, "retries", str(trial.num_failures))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        tags = {"diverged": "true"} if result.get("diverged") else {}
        epochs = self.tracker.spec.train.epochs
        if not result.get("diverged") and int(result.get("epoch", 0)) < epochs:
            tags["stopped_early"] = "true"  # ASHA
        self.tracker.end_trial(trial.trial_id, trial.config, "FINISHED", **tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = str(getattr(trial, "error_file", "") or "")
        self.tracker.end_trial(trial.trial_id, trial.config, "FAILED", error_file=error)

    def on_experiment_end(self, trials, **info):
        finished = all(t.status == "TERMINATED" for t in trials)
        errored = any(t.status == "ERROR" for t in trials)
        self.tracker.end_study("FINISHED" if finished else "FAILED" if errored else "KILLED")
