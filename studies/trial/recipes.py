"""Recipes: from a validated trial config to normlib objects.

The config names things (``model.name``, ``optimizer.name``, ``schedule.name``);
this module maps those names to constructors and wires the methods together:
BN-init (BN scale init, input BN, BN-scale lr / c), the optimizer with its
parameter groups, ENorm after optimizer steps, and the per-epoch lr factor.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from normlib.alig import AliG, l2_projection
from normlib.bninit import InputNorm, bn_param_groups
from normlib.enorm import ENorm
from normlib.models import MODELS
from normlib.riemannian import SGDG, AdamG, grassmann_param_groups
from studies.config.datasets import DatasetInfo
from studies.trial.components import arguments, resolve_callable


def model_constructor(name: str) -> Callable[..., Any]:
    """A registered model, else the user's (import path or entry point)."""
    return MODELS.get(name) if name in MODELS else resolve_callable("model", name)


def model_parameters(name: str) -> list[str]:
    """Keyword arguments a model constructor accepts."""
    if name not in MODELS:
        return list(arguments("model", model_constructor(name)).names)
    signature = inspect.signature(MODELS.get(name))
    return [p for p in signature.parameters if p not in ("self", "args", "kwargs")]


def model_kwargs(config: dict[str, Any], info: DatasetInfo) -> dict[str, Any]:
    """The model section's arguments plus the ones derived from the dataset."""
    kwargs = {k: v for k, v in config["model"].items() if k != "name"}
    channels, height, width = info.shape
    derived = {
        "num_classes": info.num_classes,
        "in_channels": channels,
        "in_features": channels * height * width,
        "image_size": height,
    }
    accepted = model_parameters(config["model"]["name"])
    for key, value in derived.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    return kwargs


def build_model(config: dict[str, Any], info: DatasetInfo) -> nn.Module:
    """The network, with BN-init applied when the config has a ``bn`` section.

    BN-init on any architecture: every BatchNorm scale gamma starts at
    ``bn.bn_weight`` and shift at 0; with ``bn.input_norm: bn`` an input BN
    layer (gamma = 0.58 * bn_weight, frozen shift) is prepended and the data is
    fed unnormalized.
    """
    name = config["model"]["name"]
    model = model_constructor(name)(**model_kwargs(config, info))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    bn = config.get("bn")
    if bn is None:
        return model
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.fill_(bn["bn_weight"])
                module.bias.zero_()
    if bn["input_norm"] == "bn":
        model = nn.Sequential(InputNorm(info.shape[0], bn["bn_weight"]), model)
    return model


def normalize_inputs(config: dict[str, Any]) -> bool:
    """Dataset mean/std normalization, unless an input BN layer does the job."""
    bn = config.get("bn")
    if bn is not None and bn["input_norm"] == "bn":
        return False
    return bool(config["dataset"].get("normalize", True))


def build_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    opt = config["optimizer"]
    name = opt["name"]
    if name not in ("sgd", "sgdg", "adamg", "alig"):  # the user's: Optimizer(params, **args)
        kwargs = {k: v for k, v in opt.items() if k != "name"}
        optimizer = resolve_callable("optimizer", name)(model.parameters(), **kwargs)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer {name!r} returned a {type(optimizer).__name__}, not a "
                            "torch.optim.Optimizer")  # fmt: skip
        return optimizer
    if name == "sgd":
        bn = config.get("bn")
        if bn is not None:
            params: Any = bn_param_groups(model, opt["lr"], opt["weight_decay"], bn["c"])
        else:
            params = model.parameters()
        return torch.optim.SGD(
            params,
            lr=opt["lr"],
            momentum=opt["momentum"],
            weight_decay=opt["weight_decay"],
            nesterov=opt["nesterov"],
        )
    if name in ("sgdg", "adamg"):
        groups = grassmann_param_groups(
            model,
            lr=opt["lr"],
            lrg=opt["lrg"],
            momentum=opt["momentum"],
            omega=opt["omega"],
            grad_clip=opt.get("grad_clip"),
            weight_decay=opt["weight_decay"],
            bn_decay=opt["bn_decay"],
            nesterov=opt["nesterov"],
        )
        if name == "sgdg":
            return SGDG(groups, lr=opt["lr"])
        return AdamG(groups, lr=opt["lr"], beta2=opt["beta2"], epsilon=opt["epsilon"])
    if name == "alig":
        params = [p for p in model.parameters() if p.requires_grad]
        projection = None
        if opt.get("max_norm") is not None:

            def projection() -> None:
                l2_projection(params, opt["max_norm"])

        return AliG(
            params,
            max_lr=opt.get("max_lr"),
            momentum=opt["momentum"],
            projection_fn=projection,
            eps=opt["eps"],
            adjusted_momentum=opt["adjusted_momentum"],
        )
    raise ValueError(f"unknown optimizer {name!r}")


def build_enorm(config: dict[str, Any], model: nn.Module,
                optimizer: torch.optim.Optimizer | None) -> ENorm | None:
    """ENorm over the model's layers when the config turns it on (c > 0), else None."""
    enorm = config.get("enorm")
    if enorm is None or enorm["c"] == 0:
        return None
    return ENorm(
        model.named_parameters(),
        optimizer,
        c=enorm["c"],
        p=enorm["p"],
        sweep=enorm["sweep"],
        balance_biases=enorm["balance_biases"],
        balance_last=enorm["balance_last"],
    )


def build_method(config: dict[str, Any], model: nn.Module,
                 optimizer: torch.optim.Optimizer) -> Any:
    """The user's per-step method: ``Hook(model, optimizer, **arguments)``, or None."""
    method = config.get("method")
    if method is None:
        return None
    kwargs = {k: v for k, v in method.items() if k not in ("name", "every")}
    hook = resolve_callable("method", method["name"])(model, optimizer, **kwargs)
    if not callable(getattr(hook, "step", None)):
        raise TypeError(f"method {method['name']!r} returned a {type(hook).__name__} without a "
                        "step() method; the hook's step() runs after optimizer steps")
    return hook


def lr_factor(schedule: dict[str, Any], epochs: int) -> Callable[[int], float]:
    """Multiplier of every group's initial lr at epoch e (0-based), for LambdaLR.

    constant: 1; linear: 1 - e/E (the ENorm paper's decay to 0); cosine:
    (1 + cos(pi e / E)) / 2; step: factor ** (number of milestones <= e).
    """
    name = schedule["name"]
    if name == "constant":
        return lambda e: 1.0
    if name == "linear":
        return lambda e: 1.0 - e / epochs
    if name == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs))
    milestones, factor = schedule["milestones"], schedule["factor"]
    return lambda e: factor ** sum(1 for m in milestones if m <= e)


def build_schedule(config: dict[str, Any], optimizer: torch.optim.Optimizer
                   ) -> torch.optim.lr_scheduler.LRScheduler | AliGMaxLRSchedule:
    """Per-epoch schedule; for ALI-G it scales max_lr (its only step-size knob)."""
    factor = lr_factor(config["schedule"], config["train"]["epochs"])
    if isinstance(optimizer, AliG):
        return AliGMaxLRSchedule(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class AliGMaxLRSchedule:
    """LambdaLR's contract for ALI-G's ``max_lr`` (None stays None)."""

    def __init__(self, optimizer: AliG, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor, self.last_epoch = optimizer, factor, 0
        self.base = [g["max_lr"] for g in optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            if base is not None:
                group["max_lr"] = base * self.factor(self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch, self.base = state["last_epoch"], state["base"]
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            if base is not None:
                group["max_lr"] = base * self.factor(self.last_epoch)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The last group's lr (ALI-G: its max_lr, 0 when None)."""
    group = optimizer.param_groups[-1]
    return float(group["lr"] if "lr" in group else group.get("max_lr") or 0.0)
