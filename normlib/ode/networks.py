"""ODENets: ResNets whose blocks that keep the feature-map shape become ODE blocks.

Every network is

    stem: conv3x3(in_channels -> p) -> norm_stem -> act_stem
    stages: stage i works on p * 2**i channels; its first block is a ResBlock
            (BasicBlock, stride 2 and doubling the channels for i > 0, stride 1
            for i = 0) followed by same-shape ODE blocks
    head: adaptive average pool -> fc

with p = inplanes. Layouts, one (ResBlocks, ODE blocks) pair per stage; each
ODE block stands for one shape-preserving BasicBlock of the ResNet (two 3x3
convolutions each, so the depth in the name counts the stem, two convolutions
per block and the fc):

    odenet4   (0, 1)                               stem -> ODE -> pool -> fc
    odenet6   (1, 1)                               stem -> Res -> ODE -> pool -> fc
    odenet10  (1, 1) (1, 1)                        stem -> Res -> ODE -> Res/2 -> ODE -> ...
    odenet18  (1, 1) (1, 1) (1, 1) (1, 1)          ResNet-18 stages of 2 blocks
    odenet34  (1, 2) (1, 3) (1, 5) (1, 2)          ResNet-34 stages of 3, 4, 6, 3 blocks

odenet4 and odenet10 are those of the seed (DESIGN.md). With ``ode=False``
every ODE block is replaced by a BasicBlock of the same channels and stride 1,
built with the ODE place's norm, weight norm and activation: the plain ResNet
counterpart (for odenet18/34 the CIFAR-style ResNet-18/34: 3x3 stem, no max-pool).

Norms, weight norms and activations are chosen per place: after the stem
(``*_stem``), in the ResBlocks (``*_res``) and inside the ODE functions
(``*_ode``); see ``normlib.ode.blocks``. As in the seed, every convolution is
bias-free and instance norm has no affine parameters; ``conv_bias=True`` and
``instance_affine=True`` change that at every place. The fc layer is a plain
Linear.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor, nn

from normlib.ode.blocks import (
    ACTIVATIONS,
    NORMS,
    PARAM_NORMS,
    BasicBlock,
    ODEBlock,
    ODEFunc,
    check_choice,
    conv3x3,
    make_activation,
    make_norm,
)
from normlib.ode.solvers import (
    ADAPTIVE_METHODS,
    DEFAULT_STEPS,
    available_methods,
    check_solver,
)
from normlib.registry import MODELS

__all__ = ["LAYOUTS", "ODENet", "odenet"]

LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    "odenet4": ((0, 1),),
    "odenet6": ((1, 1),),
    "odenet10": ((1, 1), (1, 1)),
    "odenet18": ((1, 1), (1, 1), (1, 1), (1, 1)),
    "odenet34": ((1, 2), (1, 3), (1, 5), (1, 2)),
}


def _check_positive_int(argument: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be an integer >= 1; got {value!r}")


class ODENet(nn.Module):
    """stem -> blocks -> global average pool -> fc; ``nfe`` sums its ODE blocks' last counts."""

    def __init__(self, stem: nn.Module, blocks: nn.Sequential, features: int, num_classes: int):
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, num_classes)

    @property
    def nfe(self) -> int:
        """Function evaluations of all ODE blocks in the last forward pass."""
        return sum(module.nfe for module in self.modules() if isinstance(module, ODEBlock))

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def odenet(
    arch: str,
    num_classes: int = 10,
    in_channels: int = 3,
    inplanes: int = 64,
    solver: str = "euler",
    steps: int = DEFAULT_STEPS,
    checkpoint: bool = False,
    norm_stem: str = "bn",
    norm_res: str = "bn",
    norm_ode: str = "bn",
    param_norm_stem: str = "none",
    param_norm_res: str = "none",
    param_norm_ode: str = "none",
    act_stem: str = "relu",
    act_res: str = "relu",
    act_ode: str = "relu",
    ode: bool = True,
    conv_bias: bool = False,
    instance_affine: bool = False,
) -> ODENet:
    """Build ``arch`` (a key of LAYOUTS); ``ode=False`` gives its plain ResNet counterpart.

    solver/steps/checkpoint configure every ODE block (``normlib.ode.odeint_fixed``).
    conv_bias: a bias on the convolutions of places with ``norm="none"`` (the seed has none).
    instance_affine: a scale and shift in every instance norm (the seed has none).
    """
    check_choice("arch", arch, tuple(LAYOUTS))
    for argument, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("inplanes", inplanes)):
        _check_positive_int(argument, value)
    for argument, value in (("conv_bias", conv_bias), ("instance_affine", instance_affine)):
        if not isinstance(value, bool):
            raise ValueError(f"{argument} must be True or False; got {value!r}")
    for place, norm, param_norm, act in (
        ("stem", norm_stem, param_norm_stem, act_stem),
        ("res", norm_res, param_norm_res, act_res),
        ("ode", norm_ode, param_norm_ode, act_ode),
    ):
        check_choice(f"norm_{place}", norm, NORMS)
        check_choice(f"param_norm_{place}", param_norm, PARAM_NORMS)
        check_choice(f"act_{place}", act, ACTIVATIONS)
    if solver not in ADAPTIVE_METHODS:  # those raise ImportError without torchdiffeq
        check_choice("solver", solver, available_methods())
    check_solver(solver, steps, checkpoint)

    stem = nn.Sequential(
        conv3x3(in_channels, inplanes, bias=conv_bias and norm_stem == "none",
                param_norm=param_norm_stem),
        make_norm(norm_stem, inplanes, instance_affine),
        make_activation(act_stem),
    )
    shared: dict[str, Any] = {"conv_bias": conv_bias, "instance_affine": instance_affine}
    res_options = {"norm": norm_res, "param_norm": param_norm_res, "activation": act_res,
                   **shared}
    ode_options = {"norm": norm_ode, "param_norm": param_norm_ode, "activation": act_ode,
                   **shared}
    blocks: list[nn.Module] = []
    channels = inplanes
    for stage, (res_blocks, ode_blocks) in enumerate(LAYOUTS[arch]):
        width = inplanes * 2**stage
        for _ in range(res_blocks):
            blocks.append(BasicBlock(channels, width, 1 if stage == 0 else 2, **res_options))
            channels = width
        for _ in range(ode_blocks):
            if ode:
                blocks.append(ODEBlock(ODEFunc(width, **ode_options), solver, steps, checkpoint))
            else:
                blocks.append(BasicBlock(width, width, 1, **ode_options))
    return ODENet(stem, nn.Sequential(*blocks), channels, num_classes)


for _arch in LAYOUTS:
    MODELS.register(_arch)(partial(odenet, _arch))
