"""MLflow tracking: one parent run per study, exactly one child run per trial.

Logging happens on the driver, from a Ray Tune callback, so workers never
need to reach the tracking server. Every write is idempotent:

* the parent run is found by the tags ``normstudy.study`` + ``normstudy.role``;
* a trial's run is found by ``normstudy.trial_id``, so a resumed or retried
  trial keeps its run (Ray's stock MLflowLoggerCallback starts a new one);
* an epoch already logged for a trial (step = epoch) is not logged again.

Child runs carry ``mlflow.parentRunId``, which is how the MLflow UI nests them.

A tracking server that goes away never stops a study. The callback queues
every update (a *backlog*) and delivers it in order; when the server does
not answer, training goes on, the backlog is retried every few seconds and
delivered once the server is back. When the study ends, the backlog is
retried for a bounded time (``NORMSTUDY_MLFLOW_RETRY_S``, default 120 s);
whatever is still undelivered then is announced with a warning naming
``normstudy sync``, which re-uploads it from the Ray Tune results (they hold
every reported metric). At the end of a study the runs are also reconciled
with those results, so no epoch is missing and no run is left RUNNING.

Every run records the seed(s) and the versions of the libraries that
produced it; credentials never reach MLflow (:mod:`studies.secrets`).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ray.tune import Callback

from studies.secrets import mask_config, redact
from studies.space import arm_label, arm_of, flatten, has_arms, is_baseline, resolve_arm
from studies.spec import TRIAL_SECTIONS, StudySpec, dump_spec

log = logging.getLogger(__name__)

ROLE, STUDY, TRIAL_ID = "normstudy.role", "normstudy.study", "normstudy.trial_id"
# The MLflow UI opens an experiment of this kind on its runs table (not the GenAI overview).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
STAGE = "normstudy.stage"  # study, or search / confirm in a two-stage study
VERSION_TAG = "normstudy.version."  # + library name
VERSIONED = ("normstudy", "torch", "ray", "mlflow", "optuna")
LOGGED_METRICS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
    "epoch_seconds", "diverged", "alig_step_size", "nfe",
)  # fmt: skip
RETRY_ENV = "NORMSTUDY_MLFLOW_RETRY_S"  # how long the end of a study waits for MLflow
DEFAULT_RETRY_S = 120.0
RETRY_INTERVAL_S = 3.0  # while MLflow is down, how often the backlog is retried
# A down HTTP server should fail a call in about a second, not after MLflow's default
# 7 retries with exponential backoff (minutes); users may still set their own values.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # an int for MLflow
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def default_tracking_uri(study_root: Path) -> str:
    """The embedded store: SQLite next to the study results."""
    return f"sqlite:///{(study_root / 'mlflow.db').resolve()}"


def tracking_uri(spec: StudySpec) -> str:
    return spec.tracking.uri or default_tracking_uri(Path(spec.storage))


def runs_page(base_url: str, experiment_id: str) -> str:
    """The MLflow UI page that lists an experiment's runs."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a trial's numbers (tags on every run)."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    versions["python"] = ".".join(map(str, sys.version_info[:3]))
    return versions


def version_tags() -> dict[str, str]:
    return {f"{VERSION_TAG}{name}": value for name, value in library_versions().items()}


def metric_batch(result: dict[str, Any], stamp: int) -> list:
    """The MLflow metrics of one reported epoch (step = epoch; NaN and non-numbers left out)."""
    from mlflow.entities import Metric

    epoch = int(result.get("epoch", 0))
    return [
        Metric(key, float(result[key]), stamp, epoch)
        for key in ("epoch", *LOGGED_METRICS)
        if isinstance(result.get(key), (int, float)) and not math.isnan(float(result[key]))
    ]


class StudyTracker:
    """Finds or creates the study's experiment, parent run and trial runs.

    The methods write to MLflow at once and raise if it fails; :meth:`submit` and
    :meth:`flush` add the backlog that the Ray Tune callback uses.
    """

    def __init__(self, spec: StudySpec, uri: str):
        self.spec, self.uri = spec, uri
        self._client = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._runs: dict[str, str] = {}
        self._last_epoch: dict[str, int] = {}
        self.backlog: collections.deque[tuple[str, tuple]] = collections.deque()
        self.down_since: float | None = None  # monotonic time of the first failed delivery
        self.last_error: str = ""
        self._next_try = 0.0
        self._stale = False  # a call failed: what the server holds must be read again

    def __getstate__(self) -> dict[str, Any]:  # pickled into Ray Tune's experiment state
        return {"spec": self.spec, "uri": self.uri}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["uri"])

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            if self.uri.startswith(("http://", "https://")):
                for name, value in HTTP_DEFAULTS.items():
                    os.environ.setdefault(name, value)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def start_study(self, running: bool = True) -> str:
        """The parent run (created on first use, set RUNNING again on resume unless
        ``running`` is false, as for ``normstudy sync``)."""
        if self.parent_id is not None:
            return self.parent_id
        name = self.spec.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if "://" not in self.spec.storage and self.uri.startswith("sqlite:"):
                location = (Path(self.spec.storage) / "mlartifacts" / name).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                name, artifact_location=location, tags=EXPERIMENT_TAGS
            )
        else:
            self.experiment_id = experiment.experiment_id
            for key, value in EXPERIMENT_TAGS.items():
                if experiment.tags.get(key) != value:  # made by an older normstudy
                    self.client.set_experiment_tag(self.experiment_id, key, value)
        found = self._search(f"tags.`{ROLE}` = 'study' and tags.`{STUDY}` = '{self.spec.name}'")
        if found:
            parent_id = found[0].info.run_id
            if running:
                self.set_status(parent_id, "RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.spec.name,
                tags={
                    ROLE: "study",
                    STUDY: self.spec.name,
                    STAGE: self.spec.stage,
                    "normstudy.spec_hash": self.spec.fingerprint(),
                    "normstudy.seeds": ",".join(map(str, self.spec.seeds)),
                    "mlflow.note.content": redact(self.spec.description),
                    **version_tags(),
                },
            )
            parent_id = run.info.run_id
            self.client.log_text(parent_id, dump_spec(self.spec), "study.yaml")
        self._load_trial_runs()
        self.parent_id = parent_id  # last: a failure above retries the whole lookup
        return parent_id

    def set_status(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """RUNNING, or a final status with its end time (now unless given, in ms), so the UI
        shows every run's duration."""
        if status == "RUNNING":
            self.client.update_run(run_id, status=status)
        else:
            self.client.set_terminated(run_id, status, end_time)

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
        runs, last = {}, {}
        for run in self._search(f"tags.`{ROLE}` = 'trial' and tags.`{STUDY}` = '{self.spec.name}'"):
            trial_id = run.data.tags[TRIAL_ID]
            runs[trial_id] = run.info.run_id
            epoch = run.data.metrics.get("epoch")
            history = self.client.get_metric_history(run.info.run_id, "epoch") if epoch else []
            last[trial_id] = int(max((m.value for m in history), default=0))
        self._runs, self._last_epoch = runs, last

    def logged_epochs(self, run_id: str) -> set[int]:
        """The epochs (steps) a trial run holds."""
        return {int(m.step) for m in self.client.get_metric_history(run_id, "epoch")}

    def run_id(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run, created with params and tags the first time only."""
        self.start_study()
        if self._stale:  # a write may have landed although its answer was lost
            self._load_trial_runs()
            self._stale = False
        if trial_id in self._runs:
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
                "arm": redact(label),
                "baseline": str(is_baseline(trial_config, self.spec)).lower(),
                **version_tags(),
            },
        )
        flat = mask_config(flatten(trial_config))
        params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[start : start + 100])
        self._runs[trial_id] = run.info.run_id
        self._last_epoch[trial_id] = 0
        return run.info.run_id

    def trial_run(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run, set RUNNING (the trial starts or restarts)."""
        known = trial_id in self._runs
        run_id = self.run_id(trial_id, config)
        if known:
            self.set_status(run_id, "RUNNING")
        return run_id

    def log_epoch(self, trial_id: str, config: dict[str, Any], result: dict[str, Any],
                  stamp: int | None = None) -> None:  # fmt: skip
        run_id = self.run_id(trial_id, config)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._last_epoch.get(trial_id, 0):
            return  # already delivered before a restart
        stamp = int(time.time() * 1000) if stamp is None else stamp
        self.client.log_batch(run_id, metrics=metric_batch(result, stamp))
        self._last_epoch[trial_id] = epoch

    def mark_retry(self, trial_id: str, config: dict[str, Any], failures: int) -> None:
        run_id = self.trial_run(trial_id, config)
        self.client.set_tag(run_id, "retries", str(failures))

    def end_trial(self, trial_id: str, config: dict[str, Any], status: str, **tags: str) -> None:
        self.finish_trial(trial_id, config, status, tags)

    def finish_trial(self, trial_id: str, config: dict[str, Any], status: str,
                     tags: dict[str, str]) -> None:  # fmt: skip
        self.tag_trial(trial_id, config, tags)
        self.set_status(self.run_id(trial_id, config), status)

    def tag_trial(self, trial_id: str, config: dict[str, Any], tags: dict[str, str]) -> None:
        run_id = self.run_id(trial_id, config)
        for key, value in tags.items():
            self.client.set_tag(run_id, key, redact(str(value)))

    def end_study(self, status: str) -> None:
        self.start_study()
        self.set_status(self.parent_id, status)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.start_study()
        self.client.log_artifact(self.parent_id, str(path), folder)

    # -- the backlog -----------------------------------------------------------------

    def submit(self, method: str, *args: Any) -> None:
        """Queue one update (a method name and its arguments) and try to deliver."""
        self.backlog.append((method, args))
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Deliver the backlog in order; True when it is empty. While MLflow is down, tries
        at most every few seconds unless ``force``."""
        if not self.backlog:
            return True
        if self.down_since is not None and not force and time.monotonic() < self._next_try:
            return False
        delivered = 0
        while self.backlog:
            method, args = self.backlog[0]
            try:
                getattr(self, method)(*args)
            except Exception as err:  # any failure: keep the update, retry later
                self._failed(err)
                return False
            self.backlog.popleft()
            delivered += 1
        if self.down_since is not None:
            seconds = time.monotonic() - self.down_since
            _say(f"MLflow at {self.uri} is reachable again after {seconds:.0f}s; delivered "
                 f"{delivered} queued update(s)")  # fmt: skip
            self.down_since = None
        return True

    def _failed(self, err: Exception) -> None:
        self._stale = True
        self.last_error = f"{type(err).__name__}: {_first_line(err)}"
        self._next_try = time.monotonic() + RETRY_INTERVAL_S
        if self.down_since is None:
            self.down_since = time.monotonic()
            _say(f"warning: MLflow at {self.uri} did not take an update ({self.last_error}); "
                 "training goes on, updates are kept and retried every "
                 f"{RETRY_INTERVAL_S:.0f}s")  # fmt: skip

    def drain(self, seconds: float) -> bool:
        """Retry the backlog for up to ``seconds``; True when everything was delivered."""
        deadline = time.monotonic() + seconds
        while not self.flush(force=True):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        return True

    def undelivered_warning(self, seconds: float) -> str:
        trials = {args[0] for method, args in self.backlog if method != "end_study" and args}
        return (
            f"warning: MLflow at {self.uri} is still unreachable after retrying for "
            f"{seconds:.0f}s ({self.last_error}); {len(self.backlog)} update(s) of "
            f"{len(trials)} trial(s) were not delivered. Nothing is lost: the results directory "
            "holds every reported metric. Once the server is back, upload them with "
            f"`normstudy sync {self.spec.name} --storage {self.spec.storage}"
            + (f" --tracking-uri {redact(self.uri)}`" if self.spec.tracking.uri else "`")
        )

    def study_folder(self) -> Path | None:
        folder = Path(self.spec.storage) / self.spec.name
        return folder if "://" not in self.spec.storage and folder.is_dir() else None


def retry_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S)))
    except ValueError:
        return DEFAULT_RETRY_S


def _first_line(err: Exception) -> str:
    text = redact(str(err)).strip().splitlines()
    return (text[0] if text else "")[:300]


def _say(message: str) -> None:
    print(f"[normstudy] {message}", file=sys.stderr, flush=True)


class MLflowTrialCallback(Callback):
    """Ray Tune callback that mirrors every trial into MLflow through a StudyTracker.

    Nothing here raises: an update MLflow does not take waits in the tracker's backlog.
    """

    def __init__(self, tracker: StudyTracker):
        self.tracker = tracker

    def setup(self, **info):
        self.tracker.submit("start_study")

    def on_step_end(self, iteration, trials, **info):
        self.tracker.flush()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.submit("trial_run", trial.trial_id, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        fields = {k: result[k] for k in ("epoch", *LOGGED_METRICS) if k in result}
        stamp = int(time.time() * 1000)  # fixed now, so a replay writes the same point
        self.tracker.submit("log_epoch", trial.trial_id, trial.config, fields, stamp)
        if result.get("checkpoint_warning"):  # a damaged checkpoint was skipped
            _say(f"trial {trial.trial_id}: {result['checkpoint_warning']}")
            tags = {"checkpoint_warning": str(result["checkpoint_warning"])[:5000]}
            self.tracker.submit("tag_trial", trial.trial_id, trial.config, tags)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.tracker.submit("mark_retry", trial.trial_id, trial.config, trial.num_failures)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        tags = {"diverged": "true"} if result.get("diverged") else {}
        epochs = self.tracker.spec.train.epochs
        if not result.get("diverged") and int(result.get("epoch", 0)) < epochs:
            tags["stopped_early"] = "true"  # ASHA
        self.tracker.submit("finish_trial", trial.trial_id, trial.config, "FINISHED", tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        tags = {"error_file": str(getattr(trial, "error_file", "") or "")}
        self.tracker.submit("finish_trial", trial.trial_id, trial.config, "FAILED", tags)

    def on_experiment_end(self, trials, **info):
        finished = all(t.status == "TERMINATED" for t in trials)
        errored = any(t.status == "ERROR" for t in trials)
        self.tracker.submit("end_study", "FINISHED" if finished else "FAILED" if errored
                            else "KILLED")  # fmt: skip
        seconds = retry_seconds()
        if not self.tracker.drain(seconds):
            _say(self.tracker.undelivered_warning(seconds))
            return
        folder = self.tracker.study_folder()
        if folder is None:
            return
        from studies.sync import reconcile

        statuses = {t.trial_id: t.status for t in trials}
        try:  # what a killed driver or a lost update left behind
            reconcile(self.tracker, folder, statuses)
        except Exception as err:
            _say(f"warning: could not check the MLflow runs against the results "
                 f"({type(err).__name__}: {_first_line(err)}); run `normstudy sync "
                 f"{self.tracker.spec.name}` to retry")  # fmt: skip
