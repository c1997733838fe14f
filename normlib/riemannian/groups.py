"""The three parameter groups of the Riemannian-BN seed README, chosen by module type."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from normlib.riemannian.manifold import as_rows, unit_rows

__all__ = ["grassmann_param_groups"]

# Affine parameters of these modules go to the "norm_and_bias" group
# (_NormBase covers every BatchNorm, SyncBatchNorm and InstanceNorm).
NORM_LAYERS = (_NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()  # torch >= 2.4
)


def _is_grassmann_weight(module: nn.Module, param: torch.Tensor) -> bool:
    """A (non-transposed) convolution weight with out_channels < fan_in.

    fan_in = in_channels / groups * prod(kernel_size) = one row's size. A
    transposed convolution's first dimension is its input, not its output
    units, so it stays Euclidean; so do Linear layers.
    """
    return (
        isinstance(module, _ConvNd)
        and not module.transposed
        and param is module.weight
        and param.shape[0] < param[0].numel()
    )


def grassmann_param_groups(
    model: nn.Module,
    lr: float,
    lrg: float,
    momentum: float = 0.9,
    omega: float = 0.1,
    grad_clip: float | None = 0.1,
    weight_decay: float = 5e-4,
    bn_decay: float = 0.0,
    nesterov: bool = True,
) -> list[dict[str, Any]]:
    """Param groups for ``SGDG`` / ``AdamG``; normalizes the Grassmann weights in place.

    * ``"grassmann"``: weights of convolutions with out_channels < fan_in,
      rescaled here to unit rows; ``lr=lrg``, ``momentum``, ``omega``,
      ``grad_clip``.
    * ``"norm_and_bias"``: affine parameters of BatchNorm / InstanceNorm /
      GroupNorm / LayerNorm / RMSNorm and every module's ``bias``;
      ``lr``, ``momentum``, ``weight_decay=bn_decay``, ``nesterov``.
    * ``"other"``: everything else (Linear weights, wide convolutions);
      ``lr``, ``momentum``, ``weight_decay``, ``nesterov``.

    Each parameter lands in one group (the first module that owns it decides);
    parameters with ``requires_grad=False`` are skipped; empty groups are left out.

    Usage::

        optimizer = SGDG(grassmann_param_groups(model, lr=0.01, lrg=0.2))
    """
    _check_positive("lr", lr)
    _check_positive("lrg", lrg)
    _check_nonnegative("momentum", momentum)
    _check_nonnegative("omega", omega)
    if grad_clip is not None:
        _check_positive("grad_clip", grad_clip)
    _check_nonnegative("weight_decay", weight_decay)
    _check_nonnegative("bn_decay", bn_decay)

    grassmann, norm_and_bias, other = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            if isinstance(param, nn.parameter.UninitializedParameter):
                raise ValueError(
                    "grassmann_param_groups: the model has lazy (uninitialized) parameters; "
                    "run one forward pass before building the groups"
                )
            if _is_grassmann_weight(module, param):
                grassmann.append(param)
            elif isinstance(module, NORM_LAYERS) or param is getattr(module, "bias", None):
                norm_and_bias.append(param)
            else:
                other.append(param)

    with torch.no_grad():
        for param in grassmann:
            param.copy_(unit_rows(as_rows(param))[0].view_as(param))

    groups = [
        dict(name="grassmann", params=grassmann, lr=lrg, momentum=momentum, grassmann=True,
             omega=omega, grad_clip=grad_clip),
        dict(name="norm_and_bias", params=norm_and_bias, lr=lr, momentum=momentum,
             grassmann=False, weight_decay=bn_decay, nesterov=nesterov),
        dict(name="other", params=other, lr=lr, momentum=momentum, grassmann=False,
             weight_decay=weight_decay, nesterov=nesterov),
    ]
    return [g for g in groups if g["params"]]


def _check_positive(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value <= 0:
        raise ValueError(f"grassmann_param_groups: {name} must be a number > 0, got {value!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if not _is_finite_number(value) or value < 0:
        raise ValueError(f"grassmann_param_groups: {name} must be a number >= 0, got {value!r}")


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
