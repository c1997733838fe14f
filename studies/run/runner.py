"""Runner: a validated StudySpec -> a Ray Tune Tuner -> results + MLflow runs.

The study directory ``<storage>/<name>`` is Ray Tune's experiment directory (trial
results, checkpoints, experiment state for resume) plus ``study.yaml``
(:mod:`studies.store.layout`), which is how ``normstudy resume NAME`` knows the study
without its original file. A two-stage study runs its confirm stage in
``<storage>/<name>-confirm`` when the search stage ends (:mod:`studies.run.stages`).
A study with a ``sequential`` design runs look by look (:mod:`studies.run.sequential`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studies.config.space import arm_label, confirm_name, expected_trials
from studies.config.spec import SpecError, StudySpec
from studies.run.fit import StudyOutcome, callbacks, fit, study_tuner
from studies.run.resources import (
    check_cluster,
    cluster_hosts,
    data_root_warnings,
    preflight,
    remote_run,
)
from studies.run.sequential import resume_looks, run_looks
from studies.run.stages import confirm_spec
from studies.run.tune import connect_ray, has_saved_state, prepare_env, restore_tuner
from studies.store.layout import (
    FINGERPRINT_FILE,
    SPEC_FILE,
    find_study,
    load_study_spec,
    study_dir,
    tracking_uri,
    write_study_spec,
)
from studies.store.tracker import StudyTracker

__all__ = ["StudyOutcome", "callbacks", "resume_study", "run_study"]


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
    prepare_env()
    _connect(spec, address)  # a trial no node can ever hold: exit 2, nothing replaced
    for folder in existing:
        stage = spec.model_copy(update={"name": folder.name, "tracking": spec.tracking.model_copy(
            update={"experiment": spec.experiment_name})})  # fmt: skip
        StudyTracker(stage, tracking_uri(spec)).forget_study()
        shutil.rmtree(folder)
    outcome = _start(spec, folders[0])
    return _next_stage(outcome, address)


def _start(spec: StudySpec, folder: Path) -> StudyOutcome:
    """Write ``study.yaml`` into a new study directory and fit a new Tuner (or, for a
    sequential study, the Tuner of each look)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"storage": str(folder.parent)})  # resumable from any cwd
    write_study_spec(spec, folder)
    if spec.sequential is not None:
        return run_looks(spec, folder)
    return fit(study_tuner(spec, folder), spec, folder)


def resume_study(name_or_path: str, address: str | None = None, retry_errored: bool = False,
                 storage: str | None = None) -> StudyOutcome:  # fmt: skip
    """Continue an interrupted study from its experiment state and checkpoints, then run
    the stages that have not started yet (the confirm stage of a two-stage study)."""
    folder = find_study(name_or_path, storage)
    spec = load_study_spec(folder, data_here=not remote_run(address))
    preflight(spec, address)  # this machine can hold a trial; downloads, once
    prepare_env()
    _connect(spec, address)
    outcome = _resume(spec, folder, retry_errored)
    return _next_stage(outcome, address, retry_errored)


def _connect(spec: StudySpec, address: str | None) -> None:
    """Start or join Ray; SpecError (exit 2) if no node can ever hold a trial; the waiting
    line if none can now; a warning per data root the cluster's other hosts may not see."""
    local = not remote_run(address)
    connect_ray(address, spec.code)
    check_cluster(spec, local)
    if not local:
        for warning in data_root_warnings(spec, cluster_hosts()):
            print(f"[normstudy] warning: {warning}", flush=True)


def _resume(spec: StudySpec, folder: Path, retry_errored: bool) -> StudyOutcome:
    if spec.sequential is not None:
        return resume_looks(spec, folder, retry_errored)
    if not has_saved_state(folder):
        # Killed before Ray Tune saved any state: start over, dropping the half-made runs.
        StudyTracker(spec, tracking_uri(spec)).forget_study()
        for child in folder.iterdir():
            if child.name not in (SPEC_FILE, FINGERPRINT_FILE):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return _start(spec, folder)
    return fit(restore_tuner(folder, spec, retry_errored), spec, folder)


def _next_stage(outcome: StudyOutcome, address: str | None,
                retry_errored: bool = False) -> StudyOutcome:
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

