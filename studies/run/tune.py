"""Ray Tune wiring of a study: its param space, search algorithm, scheduler, resources, and
the Ray runtime the driver joins or starts."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.config.components import code_modules
from studies.config.space import FINITE, domain_values, explicit_arms, set_path, with_values
from studies.config.spec import (
    GridDomain,
    LogUniformDomain,
    RandIntDomain,
    StudySpec,
    SweepDomain,
    UniformDomain,
)
from studies.run.legacy import alias_renamed_modules

if TYPE_CHECKING:  # Ray loads when a study starts, not with the CLI
    from ray.tune import Callback, Tuner
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher


def tune_domain(domain: SweepDomain, search: str) -> Any:
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

    Grid and random search cross every arm with every seed: a random search draws its
    configurations in the driver (:func:`random_samples`) and runs each on every seed, so a
    configuration's spread over seeds is seen and its seeds are paired with every other's.
    Optuna proposes configurations one at a time and cannot take a grid, so each proposal runs
    with the first seed (a search stage selects on validation; a confirm run repeats the
    chosen arms on all seeds).
    """
    from ray import tune

    space = with_values(spec.trial_config(), {})
    samples = random_samples(spec)
    for path, domain in spec.sweep.items():
        if not any(path in sample for sample in samples):
            set_path(space, path, tune_domain(domain, spec.search.name))
    for path, values in spec.across.items():  # every arm in every setting (grid search only)
        set_path(space, path, tune.grid_search(list(values)))
    arms = [{**arm, **sample} for sample in samples or [{}]
            for arm in explicit_arms(spec) or [{}]]  # fmt: skip
    if arms != [{}]:  # applied by resolve_arm in the trial
        space["arm"] = tune.grid_search(arms)
    space["seed"] = spec.seeds[0] if spec.search.name == "optuna" else tune.grid_search(spec.seeds)
    return space


def random_samples(spec: StudySpec) -> list[dict[str, Any]]:
    """The ``search.num_samples`` configurations of a random search, at its sampled paths
    (every sweep path but a grid, which is crossed with them): drawn in the driver by a
    generator seeded with the study's first seed, so the same spec gives the same samples.
    Uniform ``U(a, b)``; log-uniform ``exp(U(log a, log b))``; randint uniform on ``a..b``
    (both ends included); choice uniform over its values. Empty for other searches."""
    import math

    import numpy as np

    sampled = {path: domain for path, domain in spec.sweep.items()
               if not isinstance(domain, GridDomain)}  # fmt: skip
    if spec.search.name != "random" or not sampled:
        return []
    rng = np.random.default_rng(spec.seeds[0])

    def draw(domain: SweepDomain) -> Any:
        if isinstance(domain, UniformDomain):
            return float(rng.uniform(*domain.uniform))
        if isinstance(domain, LogUniformDomain):
            low, high = (math.log(end) for end in domain.loguniform)
            return float(math.exp(rng.uniform(low, high)))
        if isinstance(domain, RandIntDomain):
            return int(rng.integers(domain.randint[0], domain.randint[1] + 1))
        values = domain_values(domain)
        return values[int(rng.integers(len(values)))]

    return [{path: draw(domain) for path, domain in sampled.items()}
            for _ in range(spec.search.num_samples)]  # fmt: skip


def search_algorithm(spec: StudySpec) -> Searcher | None:
    """Optuna's TPE seeded with the study's first seed, or None (Ray's own search)."""
    if spec.search.name != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=spec.seeds[0]))


def trial_scheduler(spec: StudySpec) -> TrialScheduler:
    """FIFO, or ASHA as the spec configures it: Ray Tune's, choosing the next trial without
    walking the ended ones (:mod:`studies.run.schedulers`)."""
    from studies.run.schedulers import AshaScheduler, FifoScheduler

    if spec.scheduler.name == "fifo":
        return FifoScheduler()
    return AshaScheduler(
        time_attr="epoch",
        max_t=spec.train.epochs,
        grace_period=min(spec.scheduler.grace_period, spec.train.epochs),
        reduction_factor=spec.scheduler.reduction_factor,
    )


def code_runtime_env(code: str | None) -> dict[str, Any]:
    """A ``code:`` folder's packages and modules as Ray ``py_modules``: on every worker."""
    if code is None:
        return {}
    modules = [str(path) for path in code_modules(code)]
    return {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"]} if modules else {}


def connect_ray(address: str | None, code: str | None = None) -> None:
    """Join a cluster (``--address`` or RAY_ADDRESS), else start a local Ray; the spec's
    ``code`` folder travels to every worker."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"},
                   **code_runtime_env(code)}  # fmt: skip
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


def trainable_with_resources(spec: StudySpec) -> Any:
    """The trial function with the spec's resources per trial attached."""
    from ray import tune

    from studies.trial.trainable import tune_trainable  # torch: imported when a study starts

    resources: dict[str, Any] = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    if spec.resources.memory_gb is not None:
        resources["memory"] = int(spec.resources.memory_gb * 2**30)
    if spec.resources.custom:
        resources["custom_resources"] = dict(spec.resources.custom)
    return tune.with_resources(tune_trainable, resources)


def prepare_env() -> None:
    """Ray Tune settings of the driver (each only a default: the environment wins)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Of Ray Tune's loggers only the JSON one runs (``results_logger``): it writes result.json,
    # the record studies.store.results reads. The TensorBoard and CSV loggers duplicate what
    # MLflow holds and cost the driver ~15 ms per trial (py-spy, issue 19); "0" brings them back.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The experiment state is saved on Ray Tune's own period (TUNE_GLOBAL_CHECKPOINT_S,
    # "auto": at least 10 s) and before it deletes checkpoints beyond
    # CheckpointConfig(num_to_keep=2), at most once per two epochs of a trial: an O(N) cost per
    # save that keeps the state consistent with the checkpoints on disk, so a killed driver
    # loses nothing; it makes very large studies of very short trials slower (issue 19).
    # Ray's warning about frequent saves is about exactly that trade-off: made here on purpose.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A failing trial's traceback goes to its error.txt only; the progress line gives its
    # cause (studies.run.progress). Ray Tune would print each failure's whole traceback, retries
    # included. Its "no trial is running ... the cluster only has" warning gives way to the
    # progress line's "waiting for resources" (studies.run.resources).
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", "1e9")
    os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S_AUTOSCALER", "1e9")
    tune_log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _NoTrialList) for f in tune_log.filters):
        tune_log.addFilter(_NoTrialList())
    # Left at Ray's defaults: TUNE_RESULT_BUFFER_LENGTH (1: every epoch reaches the callbacks
    # at once; ASHA requires 1 anyway) and TUNE_MAX_PENDING_TRIALS_PG ("auto": at least 200
    # pending trials, for a cluster's autoscaler); a py-spy profile of a 1,000-trial study
    # puts queueing and scheduling trials under 1% of the driver.


class _NoTrialList(logging.Filter):
    """Drops Ray Tune's "Trials did not complete: [every trial]": normstudy's report names the
    errored trials with their causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def results_logger() -> Callback:
    """Ray Tune's JSON logger: the trials' ``result.json``."""
    from ray.tune.logger import JsonLoggerCallback

    return JsonLoggerCallback()


def restore_tuner(folder: Path, spec: StudySpec, retry_errored: bool) -> Tuner:
    """The Tuner saved in ``folder``, set to resume its unfinished (and, with
    ``retry_errored``, its errored) trials. A Tuner saved by a normstudy that left Ray's
    automatic loggers on has no JSON logger of its own: it gets one."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    alias_renamed_modules()  # tuner.pkl of a study started before 0.3
    tuner = tune.Tuner.restore(str(folder), trainable=trainable_with_resources(spec),
                               resume_unfinished=True, resume_errored=retry_errored)  # fmt: skip
    internal = getattr(tuner, "_local_tuner", None)  # None with a Ray client (ray://)
    if internal is not None:
        run_config = internal.get_run_config()
        hooks = list(run_config.callbacks or [])
        if not any(isinstance(hook, JsonLoggerCallback) for hook in hooks):
            run_config.callbacks = [*hooks, results_logger()]
    return tuner


def has_saved_state(folder: Path) -> bool:
    """Whether Ray Tune can resume the experiment in ``folder``: its Tuner *and* an experiment
    state were saved (a driver killed between the two leaves only the Tuner)."""
    from ray import tune

    return (folder.is_dir() and tune.Tuner.can_restore(str(folder))
            and any(folder.glob("experiment_state-*.json")))  # fmt: skip
