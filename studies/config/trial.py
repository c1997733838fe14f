"""The trial config: what one training run needs (the first part of a study spec).

Each section is a strict pydantic model (unknown fields are errors); ``model``,
``optimizer``, ``dataset`` and ``method`` may name user code (:mod:`studies.config.components`),
whose arguments are checked against its signature when the spec is loaded
(:mod:`studies.trial.validation`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from studies.config.components import is_user_name, user_name_hint
from studies.config.datasets import DATASET_INFO, dataset_info

TRIAL_SECTIONS = ("dataset", "model", "optimizer", "enorm", "bn", "schedule", "train", "method")


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
    def _extra_is_svhn(cls, extra: bool, info: ValidationInfo) -> bool:
        name = info.data.get("name")
        if extra and name is not None and name != "svhn":
            raise ValueError(f"dataset.extra: true is valid only for svhn, not {name!r}")
        return extra


class UserDatasetSpec(DatasetSpec):
    """A dataset of the user's own loader (import path or entry point): the fields above,
    plus the loader's keyword arguments (:mod:`studies.trial.user_data`)."""

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
    return "user" if name not in DATASET_INFO and is_user_name("dataset", name) else "builtin"


AnyDatasetSpec = Annotated[
    Annotated[DatasetSpec, Tag("builtin")] | Annotated[UserDatasetSpec, Tag("user")],
    Discriminator(_dataset_kind),
]


class ModelSpec(BaseModel):
    """A registry name plus the constructor's keyword arguments (both checked against the
    model registry when the spec is loaded: :mod:`studies.trial.validation`)."""

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
    def _nesterov(self) -> Self:
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
    def _milestones(self) -> Self:
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
    checkpoint_every_s: float = Field(
        10.0, ge=0, description="an epoch ends with a checkpoint once this many seconds have "
        "passed since the trial's last one (0: every epoch); the last epoch always does",
    )
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
    def _compatible(self) -> Self:
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
