"""What the MLflow UI's Dataset, Source, User and Version columns show (issue 27).

* Each trial's run gets its dataset as an MLflow input (name, digest, source, split sizes in
  the profile), from the profile the trial reports with its first epoch
  (:mod:`studies.trial.fingerprint`): the Dataset column and the Datasets filter work.
* Every run carries the study file as its source (``mlflow.source.name``, type LOCAL), the
  user's name (``mlflow.user``) and, where the spec's ``code`` folder is inside a git
  repository, that repository's commit (``mlflow.source.git.commit``) and whether its work
  tree differs from the commit (``normstudy.git_dirty``).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from studies.config.secrets import redact
from studies.config.spec import StudySpec

if TYPE_CHECKING:  # mlflow loads on first use (CLI start-up)
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput

SOURCE_ENV = "NORMSTUDY_STUDY_FILE"  # the study file `normstudy run` read (set by the CLI)
SOURCE, SOURCE_TYPE, USER = "mlflow.source.name", "mlflow.source.type", "mlflow.user"
GIT_COMMIT, GIT_REPO, GIT_DIRTY = "mlflow.source.git.commit", "mlflow.source.git.repoURL", \
    "normstudy.git_dirty"  # fmt: skip
CONTEXT_KEYS = (SOURCE, SOURCE_TYPE, USER, GIT_COMMIT, GIT_REPO, GIT_DIRTY)


def user_name() -> str:
    """The login name of the user running the study (``unknown`` if the system cannot say)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry, no LOGNAME: say so, do not fail
        return "unknown"


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder ARGS``'s output, None where git is missing or the folder is no repo."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache  # one look per code folder and process: every trial run carries it
def git_state(folder: str) -> dict[str, str]:
    """Commit, remote (credentials redacted) and dirty flag of the git work tree holding
    ``folder``; empty if it is not in one."""
    path = Path(folder).expanduser()
    commit = _git(path, "rev-parse", "HEAD")
    if not commit:
        return {}
    state = {GIT_COMMIT: commit, GIT_DIRTY: str(bool(_git(path, "status", "--porcelain"))).lower()}
    remote = _git(path, "config", "--get", "remote.origin.url")
    if remote:
        state[GIT_REPO] = redact(remote)
    return state


def context_tags(spec: StudySpec, known: dict[str, str] | None = None) -> dict[str, str]:
    """The source, user and git tags of a study's runs. ``known``: the tags of an existing
    parent run (a resume keeps its source); else the study file the CLI read, else the
    study's ``study.yaml``."""
    known = {k: v for k, v in (known or {}).items() if k in CONTEXT_KEYS}
    source = known.get(SOURCE) or os.environ.get(SOURCE_ENV)
    if not source:
        source = str(Path(spec.storage).expanduser().absolute() / spec.name / "study.yaml")
    tags = {SOURCE: redact(source), SOURCE_TYPE: "LOCAL", USER: known.get(USER) or user_name()}
    if spec.code:
        tags.update(git_state(spec.code))
    return tags


def dataset_input(profile: dict[str, Any]) -> DatasetInput:
    """The MLflow dataset input of a trial's data profile (context: training)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = str(profile.get("source", ""))
    kind = "local" if source.startswith("/") else "code"
    sizes = {split: profile.get(split) for split in ("train", "val", "test")}
    dataset = Dataset(
        name=str(profile["name"]), digest=str(profile["digest"]), source_type=kind,
        source=json.dumps({"uri": redact(source)}),
        profile=json.dumps({"num_rows": sum(int(v or 0) for v in sizes.values()), **sizes}),
    )  # fmt: skip
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


class Runs(Protocol):
    """What :func:`log_dataset` needs of a :class:`studies.store.tracker.StudyTracker`."""

    @property
    def client(self) -> MlflowClient: ...

    def run_id(self, trial_id: str, config: dict[str, Any]) -> str: ...


def log_dataset(tracker: Runs, trial_id: str, config: dict[str, Any],
                profile: dict[str, Any]) -> None:  # fmt: skip
    """Log a trial's dataset to its run (MLflow keeps one link per dataset and context)."""
    run_id = tracker.run_id(trial_id, config)
    tracker.client.log_inputs(run_id, datasets=[dataset_input(profile)])
