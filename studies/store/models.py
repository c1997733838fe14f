"""Trained networks as MLflow models (issue 27, ``tracking.log_model``).

Every finished trial checkpoints its last epoch (:mod:`studies.trial.trainable`), so its final
weights are the ``model`` of its newest ``checkpoint_*/state.pt``. The driver rebuilds the
network from the trial's config, loads those weights and logs it to the trial's run as an
MLflow PyTorch model, with a signature and an input example (a batch of one input as the
trial's batches feed it: normalized like the trial's data, see :mod:`studies.trial.batches`).

``best`` (the default) logs the best finished trial of each arm by the study's metric at its
last epoch and registers it in the Model Registry under the study's name, with the arm as
alias, so ``mlflow.pytorch.load_model("models:/<study>@<alias>")`` gives it back; ``all``
also logs every other finished trial (not registered); ``none`` logs nothing. A 100-trial
WRN-28-10 study logs 146 MB per model: ``all`` would store 15 GB, ``best`` one per arm.

Logging is idempotent: a run whose model is logged carries the tag ``normstudy.model_id``,
so a resumed study or a second call logs nothing twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studies.config.components import code_modules
from studies.config.secrets import redact
from studies.config.space import arm_label, arm_of, has_arms, resolve_arm
from studies.config.spec import TRIAL_SECTIONS, StudySpec
from studies.store.results import FINISHED, experiment_dirs, trial_records

if TYPE_CHECKING:  # mlflow loads on first use (CLI start-up)
    from mlflow import MlflowClient
    from torch import nn

MODEL_TAG = "normstudy.model_id"
MODEL_NAME = "model"
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


@dataclass
class Candidate:
    """A finished trial whose final weights can be logged."""

    trial_id: str
    config: dict[str, Any]
    arm: str
    score: float  # the study metric at the last epoch
    checkpoint: Path


def alias_of(arm: str) -> str:
    """A registry alias for an arm label (``[\\w-]`` only; ``enorm.c=1.0`` -> ``enorm_c-1_0``;
    ``v<digits>`` is reserved by MLflow)."""
    alias = re.sub(r"[^\w-]", "_", redact(arm).replace("=", "-")).strip("_") or "arm"
    return f"arm_{alias}" if re.fullmatch(r"[vV]\d+", alias) else alias


def registry_name(spec: StudySpec) -> str:
    """The registered model of a study: its name (the search stage's for a confirm stage)."""
    return spec.confirm_of or spec.name


def last_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest ``checkpoint_*`` folder, if any."""
    found = [(int(m.group(1)), p) for p in trial_dir.glob("checkpoint_*")
             if p.is_dir() and (m := _CHECKPOINT.match(p.name))]  # fmt: skip
    return max(found)[1] if found else None


def candidates(spec: StudySpec, folder: Path) -> list[Candidate]:
    """The study's finished (not diverged) trials with a checkpoint of their last epoch."""
    dirs = {p.name: p for d in experiment_dirs(folder) for p in d.glob("trial_*") if p.is_dir()}
    found = []
    for record in trial_records(folder):
        trial_dir = dirs.get(f"trial_{record.trial_id}")
        checkpoint = last_checkpoint(trial_dir) if trial_dir is not None else None
        if checkpoint is None or record.outcome(spec.train.epochs) != FINISHED:
            continue
        config = resolve_arm(record.config)
        trial_config = {k: config[k] for k in (*TRIAL_SECTIONS, "seed") if k in config}
        arm = arm_label(arm_of(trial_config, spec)) if has_arms(spec) else "default"
        value = record.rows[record.last_epoch].get(spec.metric.name)
        score = float(value) if isinstance(value, (int, float)) else math.nan
        found.append(Candidate(record.trial_id, trial_config, arm, score, checkpoint))
    return found


def best_per_arm(spec: StudySpec, found: list[Candidate]) -> dict[str, Candidate]:
    """Each arm's best trial by the study metric (ties: the lower seed)."""
    sign = 1.0 if spec.metric.mode == "max" else -1.0
    best: dict[str, Candidate] = {}
    for cand in sorted(found, key=lambda c: int(c.config.get("seed", 0))):
        if math.isnan(cand.score):
            continue
        if cand.arm not in best or sign * cand.score > sign * best[cand.arm].score:
            best[cand.arm] = cand
    return best


def final_model(config: dict[str, Any], checkpoint: Path) -> nn.Module:
    """The trial's network with the weights of ``checkpoint``, on the CPU, in eval mode."""
    from studies.config.trial import TrialConfig
    from studies.trial.data import DATASET_SOURCES
    from studies.trial.recipes import build_model

    cfg = TrialConfig.model_validate({k: config[k] for k in TRIAL_SECTIONS if k in config})
    cfg_data = cfg.model_dump(mode="json")
    name = cfg_data["dataset"]["name"]
    if name in DATASET_SOURCES:
        info = DATASET_SOURCES.get(name).info
    else:  # the user's loader: its images say the shape
        from studies.trial.user_data import load_user_data

        info = load_user_data(cfg_data["dataset"])[0]
    with torch.random.fork_rng(devices=[]):  # the driver's RNG stays as it was
        model = build_model(cfg_data, info)
    # state.pt of studies.trial.checkpoints (not imported: it holds the trial's Ray session)
    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def input_example(model: nn.Module, config: dict[str, Any]) -> Any:
    """One input of the shape the trial fed its network (zeros, float32, as NumPy)."""
    from studies.trial.data import DATASET_SOURCES

    name = (config.get("dataset") or {}).get("name", "digits")  # the section's default
    shape = DATASET_SOURCES.get(name).info.shape if name in DATASET_SOURCES else None
    if shape is None:
        first = next(p for p in model.parameters() if p.dim() > 1)
        return torch.zeros(1, first.shape[1]).numpy()
    return torch.zeros(1, *shape).numpy()


def log_model(client: MlflowClient, uri: str, run_id: str, cand: Candidate,
              code: str | None = None) -> str:  # fmt: skip
    """Log the candidate's final network to its run; the logged model's id (also tagged on
    the run). The logged model belongs to the run's experiment, so its files go where that
    experiment keeps artifacts (the study's store, or the server's), not into the working
    directory's ``mlruns``. Requirements are given, not inferred (inference imports the
    model in a subprocess: seconds per model); ``code``'s packages and modules (what the
    workers get: no ``.git``, no data) travel with it, so the user's own layers load."""
    import mlflow
    import mlflow.pytorch

    run = client.get_run(run_id)
    done = run.data.tags.get(MODEL_TAG)
    if done:
        return done
    model = final_model(cand.config, cand.checkpoint)
    tags = {"normstudy.arm": redact(cand.arm), "normstudy.trial_id": cand.trial_id}
    logged = client.create_logged_model(run.info.experiment_id, name=MODEL_NAME,
                                        source_run_id=run_id, tags=tags,
                                        params=dict(run.data.params))  # fmt: skip
    shipped = [str(path) for path in code_modules(code)] if code else []
    mlflow.set_tracking_uri(uri)
    with installed_pins(), quiet("mlflow.pytorch"):  # its warning on every pickled model
        info = mlflow.pytorch.log_model(
            model, name=MODEL_NAME, run_id=run_id, model_id=logged.model_id,
            input_example=input_example(model, cand.config), pip_requirements=requirements(),
            code_paths=shipped or None,
            serialization_format="pickle",  # the nn.Module itself (eval(), state_dict())
        )  # fmt: skip
    client.set_tag(run_id, MODEL_TAG, info.model_id)
    return info.model_id


def requirements() -> list[str]:
    """The model's pip requirements: the installed torch and MLflow, pinned."""
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` while the block runs. MLflow warns at every model saved
    with pickle: ours are the study's own networks (``eval()``, ``state_dict()`` on load), so
    the warning, once per model in the study's output, says nothing the README does not."""
    found = logging.getLogger(logger)
    level = found.level
    found.setLevel(logging.ERROR)
    try:
        yield
    finally:
        found.setLevel(level)


@contextlib.contextmanager
def installed_pins() -> Iterator[None]:
    """Let MLflow check :func:`requirements` without scanning every installed package.

    Before it saves a model, MLflow warns where a requirement differs from what is installed;
    to do so it first maps every installed distribution to its modules (importlib's
    ``packages_distributions``, which reads the file list of each of the ~180 packages of a
    torch + Ray environment: 0.6-1 s of CPU, most of the cost of logging a small model). Our
    requirements are the installed versions themselves, looked up by their names, so a map of
    just these names gives the same answer. The map is MLflow's private cache: set only while
    MLflow has not built it, and cleared after, so any other use in the process builds the
    full one; an MLflow without that cache just takes its usual way."""
    from mlflow.utils import requirements_utils as reqs

    names = ("_MODULES_TO_PACKAGES", "_PACKAGES_TO_MODULES")
    if any(getattr(reqs, name, 0) is not None for name in names):  # built already, or renamed
        yield
        return
    pins: Any = {"torch": ["torch"], "mlflow": ["mlflow"]}  # MLflow types its cache as None
    reqs._MODULES_TO_PACKAGES = pins
    try:
        yield
    finally:
        reqs._MODULES_TO_PACKAGES = reqs._PACKAGES_TO_MODULES = None


def register_best(client: MlflowClient, spec: StudySpec, run_id: str, model_id: str,
                  arm: str) -> str:  # fmt: skip
    """Register the logged model under the study's name (one version per run) and point the
    arm's alias at it; the version."""
    from mlflow.exceptions import MlflowException

    name = registry_name(spec)
    try:
        client.create_registered_model(name, description=redact(spec.description)[:5000])
    except MlflowException as err:
        if "ALREADY_EXISTS" not in str(err.error_code):
            raise
    same = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if same:
        version = same[0].version
    else:
        version = client.create_model_version(name, f"models:/{model_id}", run_id=run_id,
                                              model_id=model_id).version  # fmt: skip
    client.set_registered_model_alias(name, alias_of(arm), version)
    return str(version)


def log_study_models(client: MlflowClient, uri: str, spec: StudySpec, folder: Path,
                     runs: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """Log the models ``spec.tracking.log_model`` asks for; register each arm's best.
    ``runs``: trial id -> run id. Returns alias -> registered version."""
    mode = spec.tracking.log_model
    if mode == "none":
        return {}
    found = candidates(spec, folder)
    best = best_per_arm(spec, found)
    chosen = found if mode == "all" else list(best.values())
    ids = {c.trial_id: log_model(client, uri, runs[c.trial_id], c, spec.code)
           for c in chosen if c.trial_id in runs}  # fmt: skip
    return {alias_of(arm): register_best(client, spec, runs[c.trial_id], ids[c.trial_id], arm)
            for arm, c in best.items() if c.trial_id in ids}  # fmt: skip
