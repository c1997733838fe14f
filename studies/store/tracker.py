"""MLflow tracking: one parent run per study, exactly one child run per trial.

Logging happens on the driver, from a Ray Tune callback, so workers never need to reach the
tracking server. Every write is idempotent:

* the parent run is found by the tags ``normstudy.study`` + ``normstudy.role``;
* a trial's run is found by ``normstudy.trial_id``, so a resumed or retried trial keeps its
  run (Ray's stock MLflowLoggerCallback starts a new one);
* an epoch already logged for a trial (step = epoch) is not logged again.

Child runs carry ``mlflow.parentRunId``, which is how the MLflow UI nests them.

The tracker writes at once and raises when MLflow does not answer; the Ray Tune callback sends
its updates through a :class:`studies.store.backlog.Backlog`, so a tracking server that goes
away never stops a study. Every run records the seed(s) and the versions of the libraries that
produced it; credentials never reach MLflow (:mod:`studies.config.secrets`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.config.load import dump_spec
from studies.config.secrets import mask_config, redact
from studies.config.space import (
    arm_label,
    arm_of,
    flatten,
    has_arms,
    is_baseline,
    resolve_arm,
    setting_label,
    setting_of,
)
from studies.config.spec import TRIAL_SECTIONS, StudySpec
from studies.store.inputs import context_tags
from studies.store.layout import spec_from_pickle, spec_to_pickle, uri_from_env
from studies.store.queries import ROLE, STUDY, TRIAL_ID, search_all, study_filter
from studies.store.sqlite_wal import write_ahead_log

if TYPE_CHECKING:  # mlflow loads on first use (CLI start-up)
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# The MLflow UI opens an experiment of this kind on its runs table (not the GenAI overview).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
STAGE = "normstudy.stage"  # study, or search / confirm in a two-stage study
VERSION_TAG = "normstudy.version."  # + library name
VERSIONED = ("normstudy", "torch", "ray", "mlflow", "optuna")
LOGGED_METRICS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
    "epoch_seconds", "diverged", "alig_step_size", "nfe",
)  # fmt: skip
# A down HTTP server should fail a call in about a second, not after MLflow's default
# 7 retries with exponential backoff (minutes); users may still set their own values.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # an int for MLflow
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # a "View run" line per run, URI and all
}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a trial's numbers (tags on every run)."""
    return dict(_library_versions())


@functools.cache  # reading package metadata takes milliseconds; a study tags every trial run
def _library_versions() -> dict[str, str]:
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


def _params(trial_config: dict[str, Any]) -> list:
    """A trial's MLflow params: its config flattened, credentials masked."""
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in mask_config(flatten(trial_config)).items()]


# MLflow's limits on one log_batch call
BATCH_METRICS, BATCH_PARAMS, BATCH_TAGS, BATCH_ENTRIES = 1000, 100, 100, 1000


@dataclass(frozen=True)
class TrialWrite:
    """What to write into one trial's run: its start, reported epochs, tags, final status.

    Consecutive writes of a trial merge (:meth:`then`) into one, delivered in as few MLflow
    calls as its limits allow (:meth:`StudyTracker.write_trial`): a short trial whose start,
    epochs and end are queued together costs a run, one ``log_batch`` and its status."""

    config: dict[str, Any]
    start: bool = False  # the trial starts or restarts: its run is created or set RUNNING
    results: tuple[tuple[dict[str, Any], int], ...] = ()  # (reported fields, time in ms)
    tags: dict[str, str] = field(default_factory=dict)
    status: str | None = None  # FINISHED / FAILED: the run ends
    started_at: int | None = None  # ms, when it happened: a late delivery keeps the duration
    ended_at: int | None = None

    def merges(self, later: TrialWrite) -> bool:
        """Whether ``later`` can be folded into this write: nothing follows an end, and a
        restart is written on its own."""
        return self.status is None and not later.start

    def then(self, later: TrialWrite) -> TrialWrite:
        return replace(self, results=self.results + later.results, status=later.status,
                       tags={**self.tags, **later.tags}, ended_at=later.ended_at)  # fmt: skip


def batches(epochs: list[tuple[int, list]], params: list, tags: list) -> list[tuple]:
    """``log_batch`` calls within MLflow's limits: ``(last epoch or None, metrics, params,
    tags)`` each, in order; an epoch's metrics (``(epoch, metrics)`` in ``epochs``) are never
    split, so a call that landed holds every epoch up to its last."""
    calls: list[tuple[int | None, list, list, list]] = []
    metrics: list = []
    last: int | None = None
    params, tags = list(params), list(tags)
    for epoch, group in epochs:
        room = BATCH_ENTRIES - min(len(params), BATCH_PARAMS) - min(len(tags), BATCH_TAGS)
        if metrics and len(metrics) + len(group) > min(BATCH_METRICS, room):
            calls.append((last, metrics, params[:BATCH_PARAMS], tags[:BATCH_TAGS]))
            params, tags, metrics = params[BATCH_PARAMS:], tags[BATCH_TAGS:], []
        metrics, last = metrics + group, epoch
    while metrics or params or tags:
        calls.append((last if metrics else None, metrics, params[:BATCH_PARAMS],
                      tags[:BATCH_TAGS]))  # fmt: skip
        params, tags, metrics = params[BATCH_PARAMS:], tags[BATCH_TAGS:], []
    return calls


class StudyTracker:
    """Finds or creates the study's experiment, parent run and trial runs; every method
    writes to MLflow at once and raises if it fails."""

    def __init__(self, spec: StudySpec, uri: str):
        self.spec, self.uri = spec, uri
        self._client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._runs: dict[str, str] = {}
        self._last_epoch: dict[str, int] = {}
        self._stale = False  # a study-wide call failed: read every trial run again
        self._doubt: set[str] = set()  # a call for these trials failed: read their runs again
        self._params_due: dict[str, list] = {}  # runs created whose params are not yet in
        # A resumed study's parent that had ended: set RUNNING only once a trial starts, so a
        # resume with nothing to do leaves its start and end as they were (issue 27)
        self._parent_ended: Any = None  # its RunInfo until then
        self._context: dict[str, str] = {}  # source, user, git: known once start_study ran

    def __getstate__(self) -> dict[str, Any]:  # into tuner.pkl, a results file: redacted
        return {"spec": spec_to_pickle(self.spec), "uri": redact(self.uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StudyTracker.__init__(self, spec_from_pickle(state["spec"]), uri_from_env(state["uri"]))

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            if self.uri.startswith(("http://", "https://")):
                for name, value in HTTP_DEFAULTS.items():
                    os.environ.setdefault(name, value)
            if self.uri.startswith("sqlite:"):
                write_ahead_log(self.uri)
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
            if self.uri.startswith("sqlite:"):
                location = (Path(self.spec.storage) / "mlartifacts" / name).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                name, artifact_location=location, tags=EXPERIMENT_TAGS
            )
        else:
            self.experiment_id = experiment.experiment_id
            for key, value in EXPERIMENT_TAGS.items():
                if experiment.tags.get(key) != value:  # made by an older normstudy
                    self.client.set_experiment_tag(self.experiment_id, key, value)
        found = self._search(study_filter(self.spec.name, "study"))
        self._context = context_tags(self.spec, found[0].data.tags if found else None)
        if found:
            parent_id = found[0].info.run_id
            if running and found[0].info.status == "RUNNING":
                pass  # a driver that died left it running: it still is
            elif running:
                self._parent_ended = found[0].info
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
                    **self._context,  # source, user, git (studies.store.inputs)
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
        runs = self._search(study_filter(self.spec.name))
        for run in runs:
            self.client.delete_run(run.info.run_id)
        return len(runs)

    def _search(self, filter_string: str) -> list[Any]:
        """The runs of the study's experiment that match the filter."""
        return search_all(self.client, self.known_experiment_id(), filter_string)

    def known_experiment_id(self) -> str:
        """The study's experiment, once start_study or forget_study has looked it up."""
        if self.experiment_id is None:
            raise RuntimeError("StudyTracker: the experiment is not looked up yet")
        return self.experiment_id

    def trial_runs(self) -> dict[str, Any]:
        """Trial id -> its run (status, end time, latest metrics), in pages of 1,000 runs."""
        return {run.data.tags[TRIAL_ID]: run
                for run in self._search(study_filter(self.spec.name, "trial"))}  # fmt: skip

    def _load_trial_runs(self) -> None:
        """Map trial ids to existing runs and the last epoch each one logged.

        The last epoch is the run's latest ``epoch`` metric (step = value = epoch), which the
        search returns: no per-run metric history, so a resume of N trials costs N / 1,000
        queries, not N. Epochs are logged in order (the backlog delivers in order), so a run
        holds every epoch up to its latest.
        """
        runs, last = {}, {}
        for trial_id, run in self.trial_runs().items():
            runs[trial_id] = run.info.run_id
            last[trial_id] = int(run.data.metrics.get("epoch") or 0)
        self._runs, self._last_epoch = runs, last
        self._doubt.clear()

    def _reload_trial(self, trial_id: str) -> None:
        """Read one trial's run again (one query; a write for it may have landed although its
        answer was lost)."""
        query = f"{study_filter(self.spec.name, 'trial')} and tags.`{TRIAL_ID}` = '{trial_id}'"
        found = self._search(query)
        if found:
            self._runs[trial_id] = found[0].info.run_id
            self._last_epoch[trial_id] = int(found[0].data.metrics.get("epoch") or 0)
        else:
            self._runs.pop(trial_id, None)
            self._last_epoch.pop(trial_id, None)

    def mark_stale(self, trial_id: str | None = None) -> None:
        """A write failed: what the server holds of that trial (None: of every trial) must be
        read again before the next write for it."""
        if trial_id is None:
            self._stale = True
        else:
            self._doubt.add(trial_id)

    def known_run(self, trial_id: str) -> str | None:
        """The trial's run, if MLflow has one (as of the last lookup)."""
        return self._runs.get(trial_id)

    def note_logged(self, trial_id: str, epoch: int) -> None:
        """Epochs up to ``epoch`` of the trial are in MLflow (delivered by ``sync``)."""
        self._last_epoch[trial_id] = max(epoch, self._last_epoch.get(trial_id, 0))

    def logged_epochs(self, run_id: str) -> set[int]:
        """The epochs (steps) a trial run holds."""
        return {int(m.step) for m in self.client.get_metric_history(run_id, "epoch")}

    def run_id(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run, created with params and tags the first time only."""
        run_id, _ = self._run_of(trial_id, config)
        params = self._params_due.get(trial_id)
        if params:
            for start in range(0, len(params), BATCH_PARAMS):
                self.client.log_batch(run_id, params=params[start : start + BATCH_PARAMS])
            del self._params_due[trial_id]
        return run_id

    def _run_of(self, trial_id: str, config: dict[str, Any],
                started_at: int | None = None) -> tuple[str, bool]:
        """The trial's run, and whether it was created now (tags, start ``started_at`` ms or
        now). Its params are then due (``_params_due``) until a ``log_batch`` carried them, and
        again after a failed write of the trial (its run may exist, its params not)."""
        self.start_study()
        doubted = trial_id in self._doubt
        if self._stale:  # a write may have landed although its answer was lost
            self._load_trial_runs()
            self._stale = False
        elif doubted:
            self._reload_trial(trial_id)
            self._doubt.discard(trial_id)
        config = resolve_arm(config)
        trial_config = {k: config[k] for k in (*TRIAL_SECTIONS, "seed") if k in config}
        if trial_id in self._runs:
            if doubted:
                self._params_due.setdefault(trial_id, _params(trial_config))
            return self._runs[trial_id], False
        label = arm_label(arm_of(trial_config, self.spec)) if has_arms(self.spec) else "default"
        setting = setting_label(setting_of(trial_config, self.spec))  # "" without across
        run = self.client.create_run(
            self.known_experiment_id(),
            run_name=f"{label} {f'[{setting}] ' if setting else ''}seed={config.get('seed')}",
            start_time=started_at,
            tags={
                ROLE: "trial",
                STUDY: self.spec.name,
                STAGE: self.spec.stage,
                TRIAL_ID: trial_id,
                "mlflow.parentRunId": self.parent_id,
                "seed": str(config.get("seed")),
                "arm": redact(label),
                "baseline": str(is_baseline(trial_config, self.spec)).lower(),
                **({"setting": redact(setting)} if setting else {}),
                **version_tags(),
                **self._context,
            },
        )
        self._params_due[trial_id] = _params(trial_config)
        self._runs[trial_id] = run.info.run_id
        self._last_epoch[trial_id] = 0
        return run.info.run_id, True

    def write_trial(self, trial_id: str, write: TrialWrite) -> None:
        """Deliver ``write``: the run (created, or set RUNNING on a restart), then the epochs
        not yet logged, the tags and the params still due in as few ``log_batch`` calls as
        MLflow's limits allow, then the final status."""
        from mlflow.entities import RunTag

        run_id, created = self._run_of(trial_id, write.config, write.started_at)
        if write.start and self._parent_ended is not None:  # the resumed study has work
            self.set_status(self._parent_ended.run_id, "RUNNING")
            self._parent_ended = None
        if write.start and not created:
            self.set_status(run_id, "RUNNING")
        last, epochs = self._last_epoch.get(trial_id, 0), []
        for result, stamp in write.results:
            epoch = int(result.get("epoch", 0))
            if epoch > last:  # not delivered before a restart
                epochs.append((epoch, metric_batch(result, stamp)))
                last = epoch
        tags = [RunTag(k, redact(str(v))) for k, v in write.tags.items()]
        for epoch, metrics, params, tags_ in batches(epochs, self._params_due.get(trial_id, []),
                                                     tags):  # fmt: skip
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags_)
            if params:
                self._params_due[trial_id] = self._params_due[trial_id][len(params):]
            if epoch is not None:
                self._last_epoch[trial_id] = epoch
        self._params_due.pop(trial_id, None)
        if write.status is not None:
            self.set_status(run_id, write.status, write.ended_at)

    def trial_run(self, trial_id: str, config: dict[str, Any]) -> str:
        """The trial's run, set RUNNING (the trial starts or restarts)."""
        self.write_trial(trial_id, TrialWrite(config, start=True))
        return self._runs[trial_id]

    def log_epoch(self, trial_id: str, config: dict[str, Any], result: dict[str, Any],
                  stamp: int | None = None) -> None:  # fmt: skip
        stamp = int(time.time() * 1000) if stamp is None else stamp
        self.write_trial(trial_id, TrialWrite(config, results=((result, stamp),)))

    def mark_retry(self, trial_id: str, config: dict[str, Any], failures: int) -> None:
        self.write_trial(trial_id, TrialWrite(config, start=True, tags={"retries": str(failures)}))

    def end_trial(self, trial_id: str, config: dict[str, Any], status: str, **tags: str) -> None:
        self.write_trial(trial_id, TrialWrite(config, tags=tags, status=status))

    def end_study(self, status: str) -> None:
        """End the parent run now; a resumed parent no trial ran under keeps its end time
        (and is left alone if its status is ``status`` already)."""
        parent_id, ended = self.start_study(), self._parent_ended
        if ended is None:
            self.set_status(parent_id, status)
        elif ended.status != status:
            self.set_status(parent_id, status, ended.end_time)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.start_study()
        self.client.log_artifact(self.parent_id, str(path), folder)

    def study_folder(self) -> Path | None:
        folder = Path(self.spec.storage) / self.spec.name
        return folder if folder.is_dir() else None


