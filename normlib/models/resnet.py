"""torchvision ResNets set up as in BN-init (Davis & Frank, ECCV 2022).

``construct_network`` builds ResNet-18/34/50/101/152 with every BatchNorm a
``ScaleBatchNorm2d`` (gamma = bn_weight, beta = 0), a 3x3 stride-1 stem and
no max-pool for small images (image_size <= 64, e.g. CIFAR's 32x32),
Kaiming-normal (fan_in, ReLU) conv weights, zero biases, and optionally an
``InputNorm`` BatchNorm in front that replaces dataset mean/std
normalization. The linear classifier's bias is zeroed; its weight is, with
``classifier_init="seed"`` (default, as the BN-init code),
``kaiming_uniform_(w, a=sqrt(5), nonlinearity="relu")``: with the ReLU
gain sqrt(2) (``a`` only enters for leaky_relu) that is
U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)); with ``"torch"`` it keeps
PyTorch's default U(-1/sqrt(fan_in), +1/sqrt(fan_in)), sqrt(6) ~ 2.45x narrower.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict

from torch import nn

from normlib.bninit import InputNorm, ScaleBatchNorm2d
from normlib.registry import MODELS

__all__ = ["RESNETS", "INPUT_NORMS", "CLASSIFIER_INITS", "construct_network"]

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
INPUT_NORMS = ("bn", "none")
CLASSIFIER_INITS = ("seed", "torch")
SMALL_IMAGE_MAX = 64
"""Images up to this side get the 3x3 stride-1 stem and no max-pool."""


def construct_network(
    name: str,
    num_classes: int = 10,
    image_size: int = 32,
    in_channels: int = 3,
    bn_weight: float = 1.0,
    input_norm: str = "none",
    classifier_init: str = "seed",
) -> nn.Module:
    """A torchvision ResNet ``name`` with BN-init; wrapped after an ``InputNorm`` if asked.

    With ``input_norm="bn"`` the result is ``nn.Sequential(input_norm=InputNorm,
    resnet=ResNet)``, with ``"none"`` the bare ResNet. Weights are random
    (never downloaded). ``classifier_init``: "seed" or "torch" (module docstring).
    """
    if name not in RESNETS:
        raise ValueError(f"name must be one of {', '.join(RESNETS)}; got {name!r}")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}; got {input_norm!r}")
    if classifier_init not in CLASSIFIER_INITS:
        raise ValueError(f"classifier_init must be one of {', '.join(CLASSIFIER_INITS)}; "
                         f"got {classifier_init!r}")
    for arg, value in (
        ("num_classes", num_classes),
        ("image_size", image_size),
        ("in_channels", in_channels),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
    # ScaleBatchNorm2d rejects bn_weight <= 0 when torchvision builds the first BN.
    norm_layer = functools.partial(ScaleBatchNorm2d, bn_weight=bn_weight)
    import torchvision  # imported here: it costs ~2 s in every process that builds no ResNet

    resnet = getattr(torchvision.models, name)(
        weights=None, num_classes=num_classes, norm_layer=norm_layer
    )
    if image_size <= SMALL_IMAGE_MAX:
        resnet.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    else:
        resnet.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)

    for module in resnet.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if isinstance(module, nn.Linear) and classifier_init == "seed":
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), nonlinearity="relu")
        if isinstance(module, ScaleBatchNorm2d):
            module.reset_parameters()  # torchvision set gamma to 1 after construction
        elif getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)

    if input_norm == "none":
        return resnet
    return nn.Sequential(OrderedDict(input_norm=InputNorm(in_channels, bn_weight), resnet=resnet))


for _name in RESNETS:
    MODELS.register(_name)(functools.partial(construct_network, _name))
