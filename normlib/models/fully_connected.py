"""The fully connected ReLU network of the ENorm CIFAR experiments."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from normlib.registry import MODELS

__all__ = ["FullyConnected"]


@MODELS.register("fully_connected")
class FullyConnected(nn.Module):
    """flatten -> n_layers x [Linear(no bias) -> BatchNorm1d -> ReLU] -> Linear classifier.

    ``n_layers`` counts the hidden layers: the ENorm paper's "15 intermediary
    layers" is ``n_layers=15`` (16 Linear layers in all). The input is
    flattened first, so images of ``in_features = C*H*W`` values work as is.
    Hidden weights are Kaiming-normal (fan_in, ReLU); the classifier keeps
    PyTorch's default init and has a bias. ``self.layers`` holds, in network
    order (what ENorm walks), ``flatten``, ``fc1``, ``bn1``, ``relu1``, ...,
    ``classifier``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        n_layers: int,
        width: int,
        batchnorm: bool = True,
    ):
        for arg, value in (
            ("in_features", in_features),
            ("num_classes", num_classes),
            ("n_layers", n_layers),
            ("width", width),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        fan_in = in_features
        for i in range(1, n_layers + 1):
            linear = nn.Linear(fan_in, width, bias=False)
            nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
            layers[f"fc{i}"] = linear
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm1d(width)
            layers[f"relu{i}"] = nn.ReLU()
            fan_in = width
        layers["classifier"] = nn.Linear(width, num_classes)
        super().__init__()
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
