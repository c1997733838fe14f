"""The 9-convolution network of the ENorm CIFAR experiments."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from normlib.registry import MODELS

__all__ = ["FullyConvolutional"]

# (name, out_channels, kernel size); "pool" is a 2x2 max-pool.
_LAYOUT = (
    ("conv1", 128, 3),
    ("conv2", 128, 3),
    ("conv3", 128, 3),
    ("pool", 0, 0),
    ("conv4", 256, 3),
    ("conv5", 256, 3),
    ("conv6", 256, 3),
    ("pool", 0, 0),
    ("conv7", 320, 3),
    ("conv8", 320, 1),
)
_BATCHNORM_AFTER = ("conv3", "conv6")


@MODELS.register("fully_convolutional")
class FullyConvolutional(nn.Module):
    """conv 3x(128) - maxpool - 3x(256) - maxpool - 320 - 320(1x1) - classes(1x1) - avgpool.

    3x3 convs are padded by 1, so only the two max-pools shrink the input;
    ReLU follows every conv except the last, BatchNorm2d sits between conv3
    and conv6 and their ReLU (those two convs have no bias, BN's shift
    replaces it). Global average pooling over what conv9 produces gives the
    logits, so any input of at least 4x4 works (CIFAR: 32x32 -> 8x8 -> 1).
    Conv weights are Kaiming-normal (fan_in, ReLU), biases zero.
    ``self.layers`` holds ``conv1``, ``relu1``, ..., ``conv9``, ``avgpool``,
    ``flatten`` in network order.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        n_pools = 0
        for name, out_channels, kernel in _LAYOUT:
            if name == "pool":
                n_pools += 1
                layers[f"pool{n_pools}"] = nn.MaxPool2d(2)
                continue
            with_bn = name in _BATCHNORM_AFTER
            layers[name] = nn.Conv2d(
                channels, out_channels, kernel, padding=kernel // 2, bias=not with_bn
            )
            if with_bn:
                layers[f"bn{name[-1]}"] = nn.BatchNorm2d(out_channels)
            layers[f"relu{name[-1]}"] = nn.ReLU()
            channels = out_channels
        layers["conv9"] = nn.Conv2d(channels, num_classes, 1)
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        super().__init__()
        self.layers = nn.Sequential(layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
