"""Where a study lives: the results directory, its files, and the environment that moves them.

``<storage>/<name>/`` is Ray Tune's experiment directory plus ``study.yaml`` (the spec as
it ran, credentials masked) and the fingerprint of that spec; a two-stage study has its
confirm stage in ``<storage>/<name>-confirm/``. The embedded MLflow store is
``<storage>/mlflow.db``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from studies.config.load import dump_spec, parse_config, read_yaml
from studies.config.secrets import MASK, redact
from studies.config.spec import DEFAULT_STORAGE, SpecError, StudySpec

SPEC_FILE = "study.yaml"
# sha256 of study.yaml as written: an edited study.yaml is refused on resume. (By the
# file's bytes, not StudySpec.fingerprint(), which changes when a new normstudy adds fields.)
FINGERPRINT_FILE = ".study-yaml-sha256"
MLFLOW_DB = "mlflow.db"
STORAGE_ENV = "NORMSTUDY_STORAGE"  # the results directory when neither --storage nor the spec say
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def default_storage() -> str:
    return os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)


def study_dir(spec: StudySpec) -> Path:
    return Path(spec.storage).expanduser().resolve() / spec.name


def default_tracking_uri(storage: str | Path) -> str:
    """The embedded store: SQLite next to the study results."""
    return f"sqlite:///{(Path(storage) / MLFLOW_DB).resolve()}"


def tracking_uri(spec: StudySpec) -> str:
    return spec.tracking.uri or default_tracking_uri(spec.storage)


def find_study(name_or_path: str, storage: str | None = None) -> Path:
    """A study directory from its path, or its name under the results directory."""
    path = Path(name_or_path).expanduser()
    candidates = [path, Path(storage or default_storage()) / name_or_path]
    for candidate in candidates:
        if (candidate / SPEC_FILE).is_file():
            return candidate.resolve()
    raise SpecError([("", f"no study {name_or_path!r} (looked for {SPEC_FILE} in "
                          f"{', '.join(str(c) for c in candidates)})")])  # fmt: skip


def load_study_spec(folder: Path, check: bool = True, data_here: bool = True) -> StudySpec:
    """The spec a study ran with, its storage set to where the study is now (a results
    directory may be moved). ``study.yaml`` holds no credentials: a tracking URI whose password
    was masked is taken from ``MLFLOW_TRACKING_URI`` again. A ``study.yaml`` edited after the
    study started is refused: its trials ran with the spec as it was. ``check=False`` (to read
    what the trials left: compare) only parses it: no check against the registry, the data
    and a model built on the meta device, which costs seconds (torch's compiler is loaded).
    ``data_here=False`` (a cluster run): the dataset files are not looked for here."""
    data = _with_tracking_uri(read_yaml(folder / SPEC_FILE), folder)
    data["storage"] = str(folder.parent)
    if check:
        from studies.trial.validation import parse_spec  # torch: only when the spec is checked

        spec = parse_spec(data, data_here)
    else:
        spec = parse_config(data)
    recorded = folder / FINGERPRINT_FILE
    if recorded.is_file() and recorded.read_text().strip() != _sha256(folder / SPEC_FILE):
        raise SpecError([(SPEC_FILE, f"{folder / SPEC_FILE} was changed after the study started; "
                          "its trials ran with the spec as it was. Restore the file, or run the "
                          "changed spec as a new study: `normstudy run FILE --set name=NEW`")])
    return spec


def write_study_spec(spec: StudySpec, folder: Path) -> None:
    """``study.yaml`` (credentials masked) and its checksum, into a new study."""
    (folder / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    (folder / FINGERPRINT_FILE).write_text(_sha256(folder / SPEC_FILE) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_tracking_uri(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The spec data with the full tracking URI, which ``study.yaml`` stores masked."""
    uri = (data.get("tracking") or {}).get("uri") or ""
    if MASK in uri:
        if not os.environ.get(TRACKING_ENV):
            fix = ("set MLFLOW_TRACKING_URI to the full URI (and keep passwords out of URIs "
                   "with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")
            where = folder / SPEC_FILE
            raise SpecError([("tracking.uri", f"{where} stores {uri} without its password; {fix}")])
        data["tracking"]["uri"] = uri_from_env(uri)
    return data


def spec_to_pickle(spec: StudySpec) -> StudySpec:
    """The spec as Ray Tune's saved state holds it (``tuner.pkl`` is a results file): its
    description and tracking URI redacted (:func:`spec_from_pickle` undoes the URI's)."""
    uri = spec.tracking.uri and redact(spec.tracking.uri)
    return spec.model_copy(update={"description": redact(spec.description),
                                   "tracking": spec.tracking.model_copy(update={"uri": uri})})


def uri_from_env(uri: str) -> str:
    """A tracking URI whose password was masked: ``MLFLOW_TRACKING_URI`` gives it again (a
    resume without it was refused, naming the fix, when ``study.yaml`` was read)."""
    return os.environ.get(TRACKING_ENV, uri) if MASK in uri else uri


def spec_from_pickle(spec: StudySpec) -> StudySpec:
    """The spec of :func:`spec_to_pickle` with its tracking URI whole again."""
    if not spec.tracking.uri or MASK not in spec.tracking.uri:
        return spec
    tracking = spec.tracking.model_copy(update={"uri": uri_from_env(spec.tracking.uri)})
    return spec.model_copy(update={"tracking": tracking})


def study_folders(storage: Path) -> list[Path]:
    """The study directories in a results directory, by name."""
    return sorted(p.parent for p in storage.glob(f"*/{SPEC_FILE}")) if storage.is_dir() else []


def check_storage(storage: str) -> None:
    """SpecError unless the results directory exists or can be created, and takes files."""
    path = Path(storage).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    else:
        try:  # os.access says yes to root everywhere; only a real write tells
            Path(tempfile.mkdtemp(prefix=".normstudy-probe-", dir=existing)).rmdir()
        except OSError as err:
            problem = f"{existing} does not take new files ({err.strerror or err})"
    if problem:
        raise SpecError([("storage", f"results directory {str(path)!r} is not writable: "
                          f"{problem}; pass --storage with a writable folder (or set "
                          "`storage:` in the spec)")])  # fmt: skip
