"""Runner: a validated StudySpec -> a Ray Tune Tuner -> results + MLflow runs.

The study directory ``<storage>/<name>`` is Ray Tune's experiment directory
(trial results, checkpoints, experiment state for resume); the runner also
writes ``study.yaml`` there, which is how ``normstudy resume NAME`` knows the
study without its original file. A two-stage study has a second directory,
``<storage>/<name>-confirm``, for its confirm stage (see :mod:`studies.stages`).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies.secrets import MASK
from studies.space import FINITE, arm_label, domain_values, explicit_arms, set_path, with_values
from studies.spec import (
    GridDomain,
    LogUniformDomain,
    RandIntDomain,
    SpecError,
    StudySpec,
    UniformDomain,
    dump_spec,
    parse_spec,
    read_yaml,
)
from studies.stages import confirm_name, confirm_spec
from studies.tracking import MLflowTrialCallback, StudyTracker, tracking_uri

SPEC_FILE = "study.yaml"
FINGERPRINT_FILE = ".spec-fingerprint"  # of the spec the trials ran with (StudySpec.fingerprint)


def study_dir(spec: StudySpec) -> Path:
    return Path(spec.storage).expanduser().resolve() / spec.name


def find_study(name_or_path: str, storage: str | None = None) -> Path:
    """A study directory from its path, or its name under the results directory."""
    path = Path(name_or_path).expanduser()
    candidates = [
        path,
        Path(storage or os.environ.get("NORMSTUDY_STORAGE", "./normstudy-results")) / name_or_path,
    ]
    for candidate in candidates:
        if (candidate / SPEC_FILE).is_file():
            return candidate.resolve()
    raise SpecError([("", f"no study {name_or_path!r} (looked for {SPEC_FILE} in "
                          f"{', '.join(str(c) for c in candidates)})")])  # fmt: skip


def load_study_spec(folder: Path) -> StudySpec:
    """The spec a study ran with. ``study.yaml`` holds no credentials: a tracking URI whose
    password was masked is taken from ``MLFLOW_TRACKING_URI`` again."""
    data = read_yaml(folder / SPEC_FILE)
    spec = parse_spec(_with_tracking_uri(data, folder))
    recorded = folder / FINGERPRINT_FILE
    if recorded.is_file() and recorded.read_text().strip() != spec.fingerprint():
        raise SpecError([(SPEC_FILE, f"{folder / SPEC_FILE} was changed after the study started; "
                          "its trials ran with the spec as it was. Restore the file, or run the "
                          "changed spec as a new study: `normstudy run FILE --set name=NEW`")])
    return spec


def _with_tracking_uri(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The spec data with the full tracking URI, which ``study.yaml`` stores masked."""
    uri = (data.get("tracking") or {}).get("uri") or ""
    if MASK in uri:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            fix = ("set MLFLOW_TRACKING_URI to the full URI (and keep passwords out of URIs "
                   "with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")
            where = folder / SPEC_FILE
            raise SpecError([("tracking.uri", f"{where} stores {uri} without its password; {fix}")])
        data["tracking"]["uri"] = os.environ["MLFLOW_TRACKING_URI"]
    return data


def tune_domain(domain, search: str):
    """A spec sweep domain as a Ray Tune domain."""
    from ray import tune

    if isinstance(domain, GridDomain) and search != "optuna":
        return tune.grid_search(domain_values(domain))
    if isinstance(domain, FINITE):
        values = domain_values(domain)
        return tune.grid_search(values) if search == "grid" else tune.choice(values)
    if isinstance(domain, UniformDomain):
        return tune.uniform(*domain.uniform)
    if isinstance(domain, LogUniformDomain):
        return tune.loguniform(*domain.loguniform)
    if isinstance(domain, RandIntDomain):
        low, high = domain.randint
        return tune.randint(low, high + 1)  # spec ranges are inclusive
    raise TypeError(domain)


def param_space(spec: StudySpec) -> dict[str, Any]:
    """The trial config with Ray Tune domains at the swept paths and the seeds.

    Grid and random search cross every arm with every seed. Optuna proposes
    configurations one at a time and cannot take a grid, so each proposal runs
    with the first seed (a search stage selects on validation; a confirm run
    repeats the chosen arms on all seeds).
    """
    from ray import tune

    space = with_values(spec.trial_config(), {})
    for path, domain in spec.sweep.items():
        set_path(space, path, tune_domain(domain, spec.search.name))
    if spec.arms:  # applied by resolve_arm in the trial
        space["arm"] = tune.grid_search(explicit_arms(spec))
    space["seed"] = spec.seeds[0] if spec.search.name == "optuna" else tune.grid_search(spec.seeds)
    return space


def search_algorithm(spec: StudySpec):
    if spec.search.name != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=spec.seeds[0]))


def trial_scheduler(spec: StudySpec):
    if spec.scheduler.name == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        max_t=spec.train.epochs,
        grace_period=min(spec.scheduler.grace_period, spec.train.epochs),
        reduction_factor=spec.scheduler.reduction_factor,
    )


def expected_trials(spec: StudySpec) -> int:
    """Trials the study will run: arms x grid x seeds (grid search), arms x grid x samples x
    seeds (random search), proposals (Optuna)."""
    if spec.search.name == "optuna":
        return spec.search.num_samples
    grid = max(1, len(spec.arms))
    for domain in spec.sweep.values():
        if isinstance(domain, GridDomain) or spec.search.name == "grid":
            grid *= len(domain_values(domain))
    samples = 1 if spec.search.name == "grid" else spec.search.num_samples
    return grid * samples * len(spec.seeds)


def connect_ray(address: str | None) -> None:
    """Join a cluster (``--address`` or RAY_ADDRESS), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, runtime_env=runtime_env, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    # Ray's core replaces the SIGTERM handler with one that aborts the process; a SIGTERM
    # (a process manager, `timeout`) stops the study like Ctrl-C instead: Ray Tune saves its
    # state and ends the trials, and `normstudy resume` continues.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))


def reuse_actors() -> bool:
    """Reuse trial actors (default; trials start in ~0.2 s instead of ~2 s). Set
    ``NORMSTUDY_REUSE_ACTORS=0`` to give every trial a fresh actor, which spreads short trials
    over the nodes of a cluster as soon as each node's actor is up."""
    return os.environ.get("NORMSTUDY_REUSE_ACTORS", "1") != "0"


def trainable_with_resources(spec: StudySpec):
    from ray import tune

    from studies.trainable import tune_trainable

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    if spec.resources.memory_gb is not None:
        resources["memory"] = int(spec.resources.memory_gb * 2**30)
    return tune.with_resources(tune_trainable, resources)


def callbacks(spec: StudySpec, total: int) -> list:
    from studies.progress import ProgressCallback

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


def _prepare_env() -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def run_study(spec: StudySpec, address: str | None = None, overwrite: bool = False) -> StudyOutcome:
    """Run a study to the end (or until interrupted; then ``resume`` continues it).

    A two-stage spec runs its search stage, then its confirm stage (:mod:`studies.stages`);
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
    _prepare_env()
    connect_ray(address)
    outcome = _start(spec, folders[0])
    return _next_stage(outcome, address)


def _start(spec: StudySpec, folder: Path) -> StudyOutcome:
    """Write ``study.yaml`` into a new study directory and fit a new Tuner."""
    from ray import tune

    folder.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"storage": str(folder.parent)})  # resumable from any cwd
    (folder / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")  # no credentials
    (folder / FINGERPRINT_FILE).write_text(spec.fingerprint() + "\n")  # resume checks it
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
    _prepare_env()
    connect_ray(address)
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
    from studies.sync import trial_statuses

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
