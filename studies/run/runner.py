"""Runner: a validated StudySpec -> a Ray Tune Tuner -> results + MLflow runs.

The study directory ``<storage>/<name>`` is Ray Tune's experiment directory (trial
results, checkpoints, experiment state for resume) plus ``study.yaml``
(:mod:`studies.store.layout`), which is how ``normstudy resume NAME`` knows the study
without its original file. A two-stage study runs its confirm stage in
``<storage>/<name>-confirm`` when the search stage ends (:mod:`studies.run.stages`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from studies.config.space import arm_label, confirm_name, expected_trials
from studies.config.spec import SpecError, StudySpec
from studies.run.callbacks import MLflowTrialCallback
from studies.run.progress import ProgressCallback
from studies.run.stages import confirm_spec
from studies.run.tune import (
    connect_ray,
    param_space,
    prepare_env,
    reuse_actors,
    search_algorithm,
    trainable_with_resources,
    trial_scheduler,
)
from studies.store.layout import (
    FINGERPRINT_FILE,
    SPEC_FILE,
    find_study,
    load_study_spec,
    study_dir,
    tracking_uri,
    write_study_spec,
)
from studies.store.mlflow import StudyTracker
from studies.store.results import trial_statuses


def callbacks(spec: StudySpec, total: int) -> list:
    tracker = StudyTracker(spec, tracking_uri(spec))
    return [MLflowTrialCallback(tracker), ProgressCallback(total)]


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


def run_study(spec: StudySpec, address: str | None = None, overwrite: bool = False) -> StudyOutcome:
    """Run a study to the end (or until interrupted; then ``resume`` continues it).

    A two-stage spec runs its search stage, then its confirm stage (:mod:`studies.run.stages`);
    the outcome is the last stage's.
    """
    folders = [study_dir(spec)]
    if spec.confirm is not None:
        folders.append(folders[0].parent / confirm_name(spec))
    existing = [folder for folder in folders if folder.exists()]
    if existing and not overwrite:
        raise SpecError([("name", f"study {spec.name!r} already exists in {existing[0]}; resume "
                                  f"it with `normstudy resume {spec.name}`, or pass --overwrite, "
                                  "or choose another name with --set name=...")])  # fmt: skip
    for folder in existing:
        stage = spec.model_copy(update={"name": folder.name, "tracking": spec.tracking.model_copy(
            update={"experiment": spec.experiment_name})})  # fmt: skip
        StudyTracker(stage, tracking_uri(spec)).forget_study()
        shutil.rmtree(folder)
    prepare_env()
    connect_ray(address, spec.code)
    outcome = _start(spec, folders[0])
    return _next_stage(outcome, address)


def _start(spec: StudySpec, folder: Path) -> StudyOutcome:
    """Write ``study.yaml`` into a new study directory and fit a new Tuner."""
    from ray import tune

    folder.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"storage": str(folder.parent)})  # resumable from any cwd
    write_study_spec(spec, folder)
    total = expected_trials(spec)
    tuner = tune.Tuner(
        trainable_with_resources(spec),
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric.name,
            mode=spec.metric.mode,
            search_alg=search_algorithm(spec),
            scheduler=trial_scheduler(spec),
            num_samples=1 if spec.search.name == "grid" else spec.search.num_samples,
            max_concurrent_trials=spec.max_concurrent,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            reuse_actors=reuse_actors(),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(folder.parent),
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks(spec, total),
            verbose=0,
        ),
    )
    return _fit(tuner, spec, folder)


def resume_study(name_or_path: str, address: str | None = None, retry_errored: bool = False,
                 storage: str | None = None) -> StudyOutcome:  # fmt: skip
    """Continue an interrupted study from its experiment state and checkpoints, then run
    the stages that have not started yet (the confirm stage of a two-stage study)."""
    folder = find_study(name_or_path, storage)
    spec = load_study_spec(folder)
    prepare_env()
    connect_ray(address, spec.code)
    outcome = _resume(spec, folder, retry_errored)
    return _next_stage(outcome, address, retry_errored)


def _resume(spec: StudySpec, folder: Path, retry_errored: bool) -> StudyOutcome:
    from ray import tune

    if not tune.Tuner.can_restore(str(folder)):
        # Killed before Ray Tune saved any state: start over, dropping the half-made runs.
        StudyTracker(spec, tracking_uri(spec)).forget_study()
        for child in folder.iterdir():
            if child.name not in (SPEC_FILE, FINGERPRINT_FILE):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return _start(spec, folder)
    tuner = tune.Tuner.restore(
        str(folder),
        trainable=trainable_with_resources(spec),
        resume_unfinished=True,
        resume_errored=retry_errored,
    )
    return _fit(tuner, spec, folder)


def _next_stage(outcome: StudyOutcome, address: str | None, retry_errored: bool = False):
    """After a search stage: start (or resume) its confirm stage."""
    spec = outcome.spec
    if spec.confirm is None or outcome.interrupted:
        return outcome
    folder = outcome.folder.parent / confirm_name(spec)
    if (folder / SPEC_FILE).is_file():
        print(f"[normstudy] resuming the confirm stage {folder.name!r}")
        return _resume(load_study_spec(folder), folder, retry_errored)
    try:
        confirm, scores = confirm_spec(spec, outcome.folder)
    except ValueError as err:
        print(f"[normstudy] {err}")
        return outcome
    metric = spec.metric.name
    print(f"[normstudy] search stage chose (by {metric}):")
    for values, score in zip(confirm.arms[1:], scores, strict=True):
        print(f"[normstudy]   {arm_label(values)}  ({metric} {score:.4g})")
    print(f"[normstudy] confirm stage {confirm.name!r}: {expected_trials(confirm)} trials "
          f"(chosen arms + baseline x seeds {confirm.seeds}), judged on "
          f"{confirm.metric.name}")  # fmt: skip
    return _start(confirm, folder)


def _fit(tuner, spec: StudySpec, folder: Path) -> StudyOutcome:
    """Fit the Tuner; trials are counted from the experiment state Ray Tune saved last, so a
    run stopped by SIGINT / SIGTERM (Ray Tune ends it and saves its state) is ``interrupted``."""
    started = time.time()
    grid = tuner.fit()
    diverged = {r.metrics.get("trial_id") for r in grid if (r.metrics or {}).get("diverged")}
    counts: dict[str, int] = {}
    for trial_id, status in trial_statuses(folder).items():
        state = {"TERMINATED": "finished", "ERROR": "errored"}.get(status, "unfinished")
        if state == "finished" and trial_id in diverged:
            state = "diverged"
        counts[state] = counts.get(state, 0) + 1
    return StudyOutcome(spec, folder, counts, tracking_uri(spec), time.time() - started)
