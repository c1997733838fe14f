"""Wide residual network (Zagoruyko & Komodakis, 2016), pre-activation form.

WRN-depth-width has depth = 6n + 4 layers: a 3x3 stem conv to 16 channels,
three groups of n blocks with 16*width, 32*width and 64*width channels
(strides 1, 2, 2), then norm -> ReLU -> global average pool -> linear.
A block computes

    a = relu(norm1(x))
    y = conv2(dropout(relu(norm2(conv1(a))))) + shortcut

with shortcut = x when the shape is kept, else a 1x1 strided conv of a.

Scale invariance (what the Riemannian-BN optimizers rely on): every conv
output reaches the rest of the network only through a norm layer. A conv
that feeds a norm layer alone (conv1 of every block; the stem when the first
block has a projection shortcut, i.e. width > 1) can be scaled on its own
without changing the network. conv2 and the shortcut convs add into a
group's residual stream, which later layers see only through norm layers
and projection shortcuts of normalized input: the network is invariant to
scaling all conv2 and shortcut weights of one group together (with the stem
when width = 1), not to scaling each one alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from normlib.registry import MODELS

__all__ = ["WideResNet"]

NormLayer = Callable[[int], nn.Module]


class _Block(nn.Module):
    """Pre-activation basic block: norm-relu-conv3x3-norm-relu-(dropout)-conv3x3 + shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, dropout: float, norm: NormLayer
    ):
        super().__init__()
        self.norm1 = norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm2 = norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        reshape = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False) if reshape else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.norm1(x))
        residual = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv2(self.dropout(self.relu(self.norm2(self.conv1(activated)))))
        return out + residual


@MODELS.register("wide_resnet")
class WideResNet(nn.Module):
    """WRN-``depth``-``width`` for images; ``norm_layer(num_channels)`` builds each norm.

    Convs have no bias and Kaiming-normal (fan_out, ReLU) weights; the
    classifier bias starts at 0; norm layers keep their own init
    (``nn.BatchNorm2d``: gamma 1, beta 0; pass
    ``functools.partial(ScaleBatchNorm2d, bn_weight=0.1)`` for BN-init).
    WRN-28-10 with 10 classes has 36,479,194 parameters.
    """

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(
                f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth!r}"
            )
        for arg, value in (
            ("width", width),
            ("num_classes", num_classes),
            ("in_channels", in_channels),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        blocks_per_group = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]

        self.stem = nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [
                _Block(
                    channels[g] if b == 0 else channels[g + 1],
                    channels[g + 1],
                    stride if b == 0 else 1,
                    dropout,
                    norm_layer,
                )
                for b in range(blocks_per_group)
            ]
            groups.append(nn.Sequential(*blocks))
        self.group1, self.group2, self.group3 = groups
        self.norm = norm_layer(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[3], num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group3(self.group2(self.group1(self.stem(x))))
        x = self.pool(self.relu(self.norm(x)))
        return self.classifier(torch.flatten(x, 1))
