"""Study specs: the pydantic models of the YAML a researcher writes.

A spec has two parts. The *trial config* (dataset, model, optimizer, enorm,
bn, schedule, train) is what one training run needs; every trial receives a
copy with the sweep values and its seed filled in. The *study* part (sweep,
seeds, baseline, metric, search, scheduler, resources, tracking, storage)
says how to run and judge many trials.

Every problem is reported as ``field.path: message`` so the user can find the
line to fix; :class:`SpecError` carries all of them at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from studies.config.components import is_user_name, user_name_hint
from studies.config.datasets import DATASETS, dataset_info
from studies.config.sequential import SequentialSpec, fill_seeds

DEFAULT_STORAGE = "./normstudy-results"
TRIAL_SECTIONS = ("dataset", "model", "optimizer", "enorm", "bn", "schedule", "train", "method")
METRICS = (
    "val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss",
)  # fmt: skip


class SpecError(ValueError):
    """A spec that cannot run; ``problems`` holds ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  {path}: {message}" if path else f"  {message}" for path, message in problems]
        super().__init__("invalid study spec:\n" + "\n".join(lines))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle a spec saved by an older normstudy (Ray Tune's experiment state holds
        one): fields added since then take their defaults."""
        super().__setstate__(state)
        for name, field in type(self).model_fields.items():
            if name not in self.__dict__:
                self.__dict__[name] = field.get_default(call_default_factory=True)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Momentum = Annotated[float, Field(ge=0, lt=1)]


class DatasetSpec(Strict):
    name: str = "digits"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    root: str | None = None
    download: bool = False
    augment: bool | None = None
    normalize: bool = True
    train_size: int | None = Field(None, ge=10)
    test_size: int | None = Field(None, ge=10)
    extra: bool = Field(False, description="svhn only: add the 531k `extra` images to train")
    loader: Literal["device", "torch"] = Field(
        "device", description="device: splits on the trial's device; torch: a DataLoader"
    )
    num_workers: int = Field(2, ge=0, description="DataLoader processes (loader: torch)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        try:
            dataset_info(name)
        except ValueError as err:
            raise ValueError(f"{err}; or {user_name_hint('dataset')}") from None
        return name

    @field_validator("extra")
    @classmethod
    def _extra_is_svhn(cls, extra: bool, info) -> bool:
        name = info.data.get("name")
        if extra and name is not None and name != "svhn":
            raise ValueError(f"dataset.extra: true is valid only for svhn, not {name!r}")
        return extra


class UserDatasetSpec(DatasetSpec):
    """A dataset of the user's own loader (import path or entry point): the fields above,
    plus the loader's keyword arguments (:mod:`studies.build.user_data`)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return name

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _section_name(value: Any, default: str | None = None) -> Any:
    return value.get("name", default) if isinstance(value, dict) else getattr(value, "name", None)


def _dataset_kind(value: Any) -> str:
    name = _section_name(value, "digits")
    return "user" if name not in DATASETS and is_user_name("dataset", name) else "builtin"


AnyDatasetSpec = Annotated[
    Annotated[DatasetSpec, Tag("builtin")] | Annotated[UserDatasetSpec, Tag("user")],
    Discriminator(_dataset_kind),
]


class ModelSpec(BaseModel):
    """A registry name plus the constructor's keyword arguments (both checked against the
    model registry when the spec is loaded: :mod:`studies.build.validation`)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SGDSpec(Strict):
    name: Literal["sgd"]
    lr: PositiveFloat
    momentum: Momentum = 0.0
    weight_decay: NonNegativeFloat = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0")
        return self


class GrassmannSpec(Strict):
    """Shared fields of SGD-G and Adam-G (grassmann_param_groups arguments)."""

    lr: PositiveFloat
    lrg: PositiveFloat
    momentum: Momentum = 0.9
    omega: NonNegativeFloat = 0.1
    grad_clip: PositiveFloat | None = 0.1
    weight_decay: NonNegativeFloat = 5e-4
    bn_decay: NonNegativeFloat = 0.0
    nesterov: bool = True


class SGDGSpec(GrassmannSpec):
    name: Literal["sgdg"]


class AdamGSpec(GrassmannSpec):
    name: Literal["adamg"]
    beta2: float = Field(0.99, ge=0, lt=1)
    epsilon: PositiveFloat = 1e-8


class AliGSpec(Strict):
    name: Literal["alig"]
    max_lr: PositiveFloat | None = 0.1
    momentum: Momentum = 0.0
    adjusted_momentum: bool = False
    eps: PositiveFloat = 1e-5
    max_norm: PositiveFloat | None = Field(None, description="radius of the l2-ball constraint")


class UserOptimizerSpec(BaseModel):
    """The user's own optimizer (import path or entry point) and its keyword arguments:
    ``Optimizer(model.parameters(), **arguments)``, checked against its signature."""

    model_config = ConfigDict(extra="allow")
    name: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


OPTIMIZERS = ("sgd", "sgdg", "adamg", "alig")


def _optimizer_kind(value: Any) -> Any:
    name = _section_name(value)
    if name in OPTIMIZERS or name is None:
        return name
    return "user" if is_user_name("optimizer", name) else str(name)


OptimizerSpec = Annotated[
    Annotated[SGDSpec, Tag("sgd")]
    | Annotated[SGDGSpec, Tag("sgdg")]
    | Annotated[AdamGSpec, Tag("adamg")]
    | Annotated[AliGSpec, Tag("alig")]
    | Annotated[UserOptimizerSpec, Tag("user")],
    Discriminator(_optimizer_kind),
]


class MethodSpec(BaseModel):
    """A per-step method of the user's: ``hook = Hook(model, optimizer, **arguments)``, then
    ``hook.step()`` after every ``every``-th optimizer step (as ENorm runs)."""

    model_config = ConfigDict(extra="allow")
    name: str
    every: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _user_code(cls, name: str) -> str:
        if not is_user_name("method", name):
            raise ValueError(f"unknown method {name!r}; give {user_name_hint('method')}")
        return name

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ENormSpec(Strict):
    """ENorm after optimizer steps; c = 0 switches it off (the usual baseline arm)."""

    c: NonNegativeFloat = 1.0
    p: PositiveFloat = 2.0
    sweep: Literal["jacobi", "sequential"] = "jacobi"
    every: int = Field(1, ge=1)
    balance_biases: bool = False
    balance_last: bool = False

    @property
    def enabled(self) -> bool:
        return self.c > 0


class BNSpec(Strict):
    """BN-init: BN scale init, BN-scale learning-rate divisor c, input normalization."""

    bn_weight: PositiveFloat = 1.0
    c: float = Field(1.0, ge=1)
    input_norm: Literal["bn", "dataset"] = "dataset"


class ScheduleSpec(Strict):
    name: Literal["constant", "linear", "cosine", "step"] = "constant"
    milestones: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    factor: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _milestones(self):
        if self.name == "step" and not self.milestones:
            raise ValueError("schedule 'step' needs milestones, e.g. [60, 120, 160]")
        if self.milestones != sorted(set(self.milestones)):
            raise ValueError("milestones must be strictly increasing")
        return self


class TrainSpec(Strict):
    epochs: int = Field(ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on batches per epoch")
    fail_at_epoch: int | None = Field(
        None, ge=1, description="testing aid: raise an error at this epoch (fault injection)"
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast forward/loss; weights and optimizer stay fp32"
    )
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the model (slow first epoch)")


class TrialConfig(Strict):
    """Everything one training run needs."""

    dataset: AnyDatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec
    optimizer: OptimizerSpec
    method: MethodSpec | None = None
    enorm: ENormSpec | None = None
    bn: BNSpec | None = None
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    train: TrainSpec

    @model_validator(mode="after")
    def _compatible(self):
        if self.enorm is not None and self.enorm.enabled and self.optimizer.name != "sgd":
            raise ValueError(
                f"enorm needs optimizer 'sgd' (it rescales SGD momentum buffers), "
                f"got {self.optimizer.name!r}; set enorm.c: 0 or optimizer.name: sgd"
            )
        if self.bn is not None and self.bn.c != 1 and self.optimizer.name != "sgd":
            raise ValueError(
                f"bn.c (BN-scale lr divisor) needs optimizer 'sgd', got {self.optimizer.name!r}"
            )
        for milestone in self.schedule.milestones:
            if milestone > self.train.epochs:
                raise ValueError(
                    f"schedule milestone {milestone} is after the last epoch ({self.train.epochs})"
                )
        return self


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


class ResourcesSpec(Strict):
    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0
    memory_gb: PositiveFloat | None = Field(
        None, description="memory one trial may use (Ray schedules by it); default: the "
        "driver machine's memory, against which validation checks model and batch sizes",
    )


class TrackingSpec(Strict):
    uri: str | None = None
    experiment: str | None = None


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
