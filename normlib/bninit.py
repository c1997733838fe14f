"""BN-init: small BatchNorm scales and a reduced scale learning rate (Davis & Frank, ECCV 2022).

Batch normalization computes y = gamma * (x - mean) / sqrt(var + eps) + beta.
The learned gamma and beta stay close to their initial values during
training, so the normalized activations keep the magnitude gamma gives them.
The method starts gamma at ``bn_weight`` < 1 (0.1 is a good first try)
instead of 1, and trains the scales with the learning rate lr / c (c = 100
in the paper), with no weight decay on any 1-D parameter.

* ``ScaleBatchNorm1d`` / ``ScaleBatchNorm2d``: BatchNorm with gamma = bn_weight,
  beta = 0 at construction and after ``reset_parameters()``.
* ``InputNorm``: a BatchNorm2d in front of the network that replaces dataset
  mean/std normalization: gamma = 0.58 * bn_weight, beta frozen at 0.
* ``bn_param_groups``: optimizer parameter groups, decided by module type.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "INPUT_NORM_GAIN",
    "InputNorm",
    "ScaleBatchNorm1d",
    "ScaleBatchNorm2d",
    "bn_param_groups",
]

INPUT_NORM_GAIN = 0.58
"""The input BN's gamma is ``INPUT_NORM_GAIN * bn_weight`` (the reference's constant)."""


def _check_bn_weight(bn_weight: float) -> float:
    if not bn_weight > 0:
        raise ValueError(
            f"bn_weight must be > 0 (the initial BatchNorm scale gamma), got {bn_weight!r}"
        )
    return float(bn_weight)


class _ScaleInit(_BatchNorm):
    """Mixin: after the usual BatchNorm reset, set gamma to ``self.bn_weight``."""

    bn_weight: float

    def reset_parameters(self) -> None:
        super().reset_parameters()  # running stats reset, gamma 1, beta 0
        if self.affine:
            with torch.no_grad():
                self.weight.fill_(self.bn_weight)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[no-untyped-call]  # torch's, unannotated
        return f"{base}, bn_weight={self.bn_weight}"


class ScaleBatchNorm1d(_ScaleInit, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose scale gamma starts at ``bn_weight`` (> 0) and shift at 0."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        bn_weight: float = 1.0,
    ):
        # Set before the base __init__, which calls reset_parameters().
        self.bn_weight = _check_bn_weight(bn_weight)
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)


class ScaleBatchNorm2d(_ScaleInit, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose scale gamma starts at ``bn_weight`` (> 0) and shift at 0.

    Usable as a torchvision ``norm_layer``:
    ``resnet18(norm_layer=functools.partial(ScaleBatchNorm2d, bn_weight=0.1))``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        bn_weight: float = 1.0,
    ):
        self.bn_weight = _check_bn_weight(bn_weight)
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)


class InputNorm(ScaleBatchNorm2d):
    """Input normalization by a BatchNorm2d: gamma = 0.58 * bn_weight, beta = 0 and frozen.

    Put in front of the network in place of normalizing the images with
    precomputed dataset statistics. The scale is trained; the shift is not
    (``bias.requires_grad`` is False, so ``bn_param_groups`` skips it).
    """

    def __init__(self, in_channels: int, bn_weight: float = 1.0):
        super().__init__(in_channels, bn_weight=INPUT_NORM_GAIN * _check_bn_weight(bn_weight))
        self.bias.requires_grad_(False)


def bn_param_groups(
    model: nn.Module, lr: float, weight_decay: float = 1e-4, c: float = 1.0
) -> list[dict]:
    """Split ``model``'s trainable parameters into optimizer groups by module type.

    ========== ============================================ ============ =======
    name       parameters                                   weight_decay lr
    ========== ============================================ ============ =======
    bn_scale   ``weight`` of every ``_BatchNorm`` module    0            lr / c
               (BatchNorm1d/2d/3d, SyncBatchNorm, Scale*)
    no_decay   every other parameter with at most one       0            lr
               dimension: biases, BN shifts, GroupNorm and
               LayerNorm affine parameters
    decay      everything else (conv and linear weights)    weight_decay lr
    ========== ============================================ ============ =======

    Only BatchNorm scales get lr / c: the paper's analysis is about BN.
    Parameters with ``requires_grad=False`` are skipped, a parameter shared
    by several modules is listed once, and empty groups are omitted. The
    result goes to any ``torch.optim`` optimizer; the "name" key is for logs.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not c >= 1:
        raise ValueError(f"c must be >= 1 (BN scales get lr / c), got {c!r}")

    groups: dict[str, dict[str, Any]] = {
        "bn_scale": {"params": [], "lr": lr / c, "weight_decay": 0.0},
        "no_decay": {"params": [], "lr": lr, "weight_decay": 0.0},
        "decay": {"params": [], "lr": lr, "weight_decay": weight_decay},
    }
    seen: set[int] = set()
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, _BatchNorm) and param_name == "weight":
                kind = "bn_scale"
            elif param.dim() <= 1:
                kind = "no_decay"
            else:
                kind = "decay"
            groups[kind]["params"].append(param)
    return [{"name": name, **group} for name, group in groups.items() if group["params"]]
