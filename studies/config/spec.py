"""Study specs: the pydantic models of the YAML a researcher writes.

A spec has two parts. The *trial config* (:mod:`studies.config.trial`: dataset, model,
optimizer, method, enorm, bn, schedule, train) is what one training run needs; every trial
receives a copy with the sweep values and its seed filled in. The *study* part here
(sweep, seeds, baseline, metric, search, scheduler, resources, tracking, storage) says how
to run and judge many trials.

Every problem is reported as ``field.path: message`` so the user can find the
line to fix; :class:`SpecError` carries all of them at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from studies.config.components import user_name_hint
from studies.config.sequential import SequentialSpec, fill_seeds
from studies.config.trial import (
    OPTIMIZERS,
    TRIAL_SECTIONS,
    NonNegativeFloat,
    PositiveFloat,
    Strict,
    TrialConfig,
)

DEFAULT_STORAGE = "./normstudy-results"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def folder_storage(storage: str) -> str:
    """``storage`` if it names a folder; ValueError for a URI (``s3://...``), which a Path
    would silently take for a relative folder named ``s3:`` on the driver's disk."""
    if _URI.match(storage):
        raise ValueError(
            f"{storage!r} is a URI; studies are kept in a folder (on a cluster, one that every "
            "node mounts at the same path: EFS, NFS, a ReadWriteMany volume); object storage "
            "(s3://, gs://) is not supported yet: give the shared folder's path"
        )
    return storage
METRICS = (
    "val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss",
)  # fmt: skip


class SpecError(ValueError):
    """A spec that cannot run; ``problems`` holds ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  {path}: {message}" if path else f"  {message}" for path, message in problems]
        super().__init__("invalid study spec:\n" + "\n".join(lines))


class CannotStart(SpecError):
    """A valid spec that cannot start here (resources no node has, a download that failed):
    exit 2 like a SpecError, in one line, ``field: message``."""

    def __init__(self, field: str, message: str):
        super().__init__([(field, message)])
        self.args = (f"cannot start the study: {field}: {message}",)


def _at_least_one(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("needs at least one value")
    return values


Values = Annotated[list[Any], AfterValidator(_at_least_one)]


class GridDomain(Strict):
    grid: Values


class ChoiceDomain(Strict):
    choice: Values


class UniformDomain(Strict):
    uniform: tuple[float, float]


class LogUniformDomain(Strict):
    loguniform: tuple[PositiveFloat, PositiveFloat]


class RandIntDomain(Strict):
    randint: tuple[int, int]


SWEEP_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


def _sweep_kind(domain: Any) -> str | None:
    """The one key of a sweep domain (``{grid: [...]}`` -> ``grid``): one mistake, one error."""
    if isinstance(domain, dict) and len(domain) == 1:
        return next(iter(domain))
    return next((k for k in SWEEP_KINDS if isinstance(domain, BaseModel) and hasattr(domain, k)),
                None)  # fmt: skip


SweepDomain = Annotated[
    Annotated[GridDomain, Tag("grid")]
    | Annotated[ChoiceDomain, Tag("choice")]
    | Annotated[UniformDomain, Tag("uniform")]
    | Annotated[LogUniformDomain, Tag("loguniform")]
    | Annotated[RandIntDomain, Tag("randint")],
    Discriminator(_sweep_kind),
]


class MetricSpec(Strict):
    name: Literal[METRICS] = "val_acc"  # type: ignore[valid-type]
    mode: Literal["max", "min"] = "max"


class SearchSpec(Strict):
    name: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1)


class SchedulerSpec(Strict):
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


DEFAULT_WAIT_S = 600.0
RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")  # Ray's own names


class ResourcesSpec(Strict):
    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0
    memory_gb: PositiveFloat | None = Field(
        None, description="memory one trial may use (Ray schedules by it); default: the "
        "driver machine's memory, against which validation checks model and batch sizes",
    )
    custom: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="Ray custom resources per trial, e.g. {a100: 1}: "
        "trials run only on nodes started with them (ray start --resources)",
    )
    wait_s: PositiveFloat = Field(
        DEFAULT_WAIT_S, description="seconds a study waits with no trial running (a cluster "
        "without the resources yet) before it stops like Ctrl-C; resume continues it",
    )

    @field_validator("custom")
    @classmethod
    def _not_builtin(cls, custom: dict[str, float]) -> dict[str, float]:
        for name in custom:
            if name in RAY_RESOURCES or name.lower() in ("cpu", "gpu") or ":" in name:
                raise ValueError(f"{name!r} is not a custom resource; use resources.cpu, "
                                 "resources.gpu or resources.memory_gb")  # fmt: skip
        return custom


class TrackingSpec(Strict):
    uri: str | None = None
    experiment: str | None = None
    log_model: Literal["none", "best", "all"] = Field(
        "best", description="final weights logged as MLflow PyTorch models: none, the best trial "
        "per arm (registered under the study's name, an alias per arm), or every finished trial")
    system_metrics: bool = Field(
        True, description="CPU, memory and GPU use of each trial, sampled into its MLflow run")


def _distinct(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds must be distinct")
    return seeds


Seeds = Annotated[list[int], AfterValidator(_distinct)]


class ConfirmSpec(Strict):
    """Second stage of a two-stage study: the search stage's best arms on paired seeds.

    The ``top_k`` arms by the study metric (validation) at the search's last
    epoch, plus the baseline arm, are re-run on every seed in ``seeds`` and
    judged on ``metric`` (the test split by default).
    """

    top_k: int = Field(1, ge=1)
    seeds: Seeds = Field(min_length=2)
    metric: MetricSpec = Field(default_factory=lambda: MetricSpec(name="test_acc", mode="max"))
    baseline: dict[str, Any] | None = Field(
        None, description="the baseline arm (paths -> values); default: the study's baseline"
    )
    sequential: SequentialSpec | None = Field(
        None, description="run the confirm stage look by look (studies.config.sequential)"
    )

    @model_validator(mode="before")
    @classmethod
    def _sequential_seeds(cls, data: Any) -> Any:
        return fill_seeds(data)



class StudySpec(TrialConfig):
    """A whole study: the trial config plus how to sweep, run and judge it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    arms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="explicit arms (each: paths -> values, several sections at once), "
        "crossed with the sweep and the seeds",
    )
    sweep: dict[str, SweepDomain] = Field(default_factory=dict)
    across: dict[str, Values] = Field(
        default_factory=dict, description="blocking factors (path -> values): each combination "
        "is a setting; every arm runs in every setting on every seed, is compared with the "
        "baseline within each setting, and the settings are pooled (studies.analysis.settings)",
    )
    seeds: Seeds = Field(default_factory=lambda: [0], min_length=1)
    baseline: dict[str, Any] | None = None
    metric: MetricSpec = Field(default_factory=MetricSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent: int | None = Field(None, ge=1)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: str = DEFAULT_STORAGE
    confirm: ConfirmSpec | None = None
    sequential: SequentialSpec | None = Field(
        None, description="add seeds look by look until each arm's verdict is decided "
        "(studies.config.sequential)",
    )
    confirm_of: str | None = Field(
        None, description="set by normstudy: the search study this confirm stage belongs to"
    )
    code: str | None = Field(
        None, description="a folder of the user's Python code: on the import path here, and "
        "its packages and modules shipped to every Ray worker (py_modules)",
    )

    @property
    def stage(self) -> str:
        """``search`` or ``confirm`` for the stages of a two-stage study, else ``study``."""
        if self.confirm is not None:
            return "search"
        return "confirm" if self.confirm_of else "study"

    @model_validator(mode="before")
    @classmethod
    def _sequential_seeds(cls, data: Any) -> Any:
        return fill_seeds(data)

    @field_validator("storage")
    @classmethod
    def _storage_is_a_folder(cls, storage: str) -> str:
        return folder_storage(storage)

    @field_validator("arms")
    @classmethod
    def _arms_are_mappings(cls, arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, arm in enumerate(arms):
            if not arm:
                raise ValueError(f"arm {i} is empty; give the paths it sets, e.g. {{enorm.c: 1.2}}")
        return arms

    @field_validator("sweep", mode="before")
    @classmethod
    def _one_kind_per_path(cls, sweep: Any) -> Any:
        if not isinstance(sweep, dict):
            return sweep
        for path, domain in sweep.items():
            kinds = list(domain) if isinstance(domain, dict) else []
            if len(kinds) != 1 or kinds[0] not in SWEEP_KINDS:
                raise ValueError(
                    f"{path}: give exactly one of {', '.join(SWEEP_KINDS)}, e.g. "
                    f"{{grid: [0, 1.2]}}; got {domain!r}"
                )
        return sweep


    def trial_config(self) -> dict[str, Any]:
        """The base trial config as plain data (sweep values not yet applied)."""
        return self.model_dump(mode="json", include=set(TRIAL_SECTIONS), exclude_none=True)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def fingerprint(self) -> str:
        """Stable hash of everything that determines the trials' results."""
        data = self.model_dump(mode="json", exclude={"description", "storage", "tracking", "code"})
        if data.get("method") is None:  # as before methods existed: old studies still resume
            data.pop("method", None)
        if not data.get("across"):  # as before settings existed
            data.pop("across", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def format_pydantic_errors(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for item in err.errors():
        loc = [str(part) for part in item["loc"]]
        # Drop the discriminator tag pydantic inserts into union paths.
        if loc and loc[0] == "optimizer" and len(loc) > 1 and loc[1] in (*OPTIMIZERS, "user"):
            del loc[1]
        if loc and loc[0] == "dataset" and len(loc) > 1 and loc[1] in ("builtin", "user"):
            del loc[1]
        loc = [part for part in loc if not part.startswith(("function-", "tagged-union"))]
        # A sweep domain's tag precedes its one field of the same name: say it once.
        loc = [part for i, part in enumerate(loc)
               if not (part in SWEEP_KINDS and loc[i + 1 : i + 2] == [part])]  # fmt: skip
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if item["type"] == "union_tag_not_found":
            message = f"needs a name; valid: {', '.join(OPTIMIZERS)}, or {user_name_hint(loc[0])}"
        if item["type"] == "union_tag_invalid":
            message = (f"unknown optimizer; valid: {', '.join(OPTIMIZERS)}, or "
                       f"{user_name_hint('optimizer')}")  # fmt: skip
        path = ".".join(([prefix] if prefix else []) + loc)
        problems.append((path, message))
    # A field reported twice (once per union member) reads better once.
    return list(dict.fromkeys(problems))
