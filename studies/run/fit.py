"""One Ray Tune experiment of a study: build the Tuner, fit it, count how its trials ended.

A study is one experiment in ``<storage>/<name>``; a sequential study is one experiment per
look in ``<storage>/<name>/look-<k>`` (:mod:`studies.run.sequential`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studies.config.space import expected_trials
from studies.config.spec import SpecError, StudySpec
from studies.run.callbacks import KeepResultRows, MLflowTrialCallback
from studies.run.guard import StudyFolderGuard, was_deleted
from studies.run.progress import ProgressCallback
from studies.run.resources import watch_of
from studies.run.tune import (
    param_space,
    results_logger,
    reuse_actors,
    search_algorithm,
    trainable_with_resources,
    trial_scheduler,
)
from studies.store.layout import tracking_uri
from studies.store.results import trial_statuses
from studies.store.tracker import StudyTracker

if TYPE_CHECKING:  # Ray loads when a study starts, not with the CLI
    from ray.tune import Tuner


def callbacks(spec: StudySpec, total: int) -> list:
    """The trials' result.json, MLflow mirroring (the tracker of ``spec``: its parent run, its
    arm labels), progress of ``total`` trials (which stops a study waiting for resources
    longer than ``resources.wait_s``), the study-folder guard and the result rows of
    restarted trials."""
    tracker = StudyTracker(spec, tracking_uri(spec))
    progress = ProgressCallback(total, watch=watch_of(spec))  # waits at most resources.wait_s
    return [results_logger(), MLflowTrialCallback(tracker), progress,
            StudyFolderGuard(), KeepResultRows()]


@dataclass
class StudyOutcome:
    spec: StudySpec
    folder: Path
    counts: dict[str, int]
    tracking_uri: str
    seconds: float

    @property
    def interrupted(self) -> bool:
        """Stopped before every trial ended (Ctrl-C, SIGTERM): ``resume`` continues it."""
        return bool(self.counts.get("unfinished"))


def make_tuner(spec: StudySpec, storage_path: Path, name: str, hooks: list) -> Tuner:
    """A new Tuner for the trials of ``spec`` in the experiment ``storage_path / name``."""
    from ray import tune

    return tune.Tuner(
        trainable_with_resources(spec),
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric.name,
            mode=spec.metric.mode,
            search_alg=search_algorithm(spec),
            scheduler=trial_scheduler(spec),
            num_samples=spec.search.num_samples if spec.search.name == "optuna" else 1,
            max_concurrent_trials=spec.max_concurrent,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            reuse_actors=reuse_actors(),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            failure_config=tune.FailureConfig(max_failures=2),
            # Ray Tune deletes all but each trial's 2 newest checkpoints, and saves the
            # experiment state first, so the state never names a deleted checkpoint (a trial
            # that pruned its own made Ray refuse to restore it after a driver kill).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=hooks,
            verbose=0,
        ),
    )


def study_tuner(spec: StudySpec, folder: Path) -> Tuner:
    """The Tuner of a whole (non-sequential) study in ``folder``."""
    return make_tuner(spec, folder.parent, spec.name, callbacks(spec, expected_trials(spec)))


def fit(tuner: Tuner, spec: StudySpec, folder: Path) -> StudyOutcome:
    """Fit the Tuner; trials are counted from the experiment state Ray Tune saved last, so a
    run stopped by SIGINT / SIGTERM (Ray Tune ends it and saves its state) is ``interrupted``."""
    started = time.time()
    grid = tuner.fit()
    if was_deleted(folder):
        raise SpecError([("storage", f"the study folder {folder} was deleted while the study "
                          "ran; its trials' results are gone (the MLflow runs stay). Start it "
                          f"again with `normstudy run {spec.confirm_of or spec.name} "
                          "--overwrite`")])  # fmt: skip
    diverged = {r.metrics.get("trial_id") for r in grid  # type: ignore[attr-defined]  # iterates by __getitem__
                if (r.metrics or {}).get("diverged")}
    counts: dict[str, int] = {}
    for trial_id, status in trial_statuses(folder).items():
        state = {"TERMINATED": "finished", "ERROR": "errored"}.get(status, "unfinished")
        if state == "finished" and trial_id in diverged:
            state = "diverged"
        counts[state] = counts.get(state, 0) + 1
    return StudyOutcome(spec, folder, counts, tracking_uri(spec), time.time() - started)
