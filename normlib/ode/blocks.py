"""Building blocks of ODENets: norm, weight-norm and activation factories, the ODE
function, the ResNet BasicBlock and the ODE block that integrates a function.

Layer-output norms (``norm``), for C channels:

    "bn"   BatchNorm2d(C)                       statistics over (N, H, W)
    "ln"   GroupNorm(1, C)                      statistics over (C, H, W), per sample
    "in"   InstanceNorm2d(C)                    statistics over (H, W), per sample and channel
    "none" Identity

"in" has no affine parameters, as the seed's ``InstanceNorm2d(C)``
(``instance_affine=True`` adds a per-channel scale and shift, and is then
GroupNorm(C, C) by another name); it keeps no running statistics.
Weight norms (``param_norm``) reparametrize every convolution weight W with
``torch.nn.utils.parametrizations``:

    "wn"   W = g * V / ||V||   (norm over all dims but the output channel, dim=0)
    "sn"   W = V / sigma(V)    (sigma: largest singular value of V as an out x (in*k*k)
                                matrix, estimated by one power iteration per forward)
    "none" W

Every convolution is bias-free, as in the seed's ODENets (where the place
has ``norm="none"`` too). ``conv_bias=True`` gives a bias to the
convolutions that no norm follows (``norm="none"``); elsewhere a norm would
subtract it again or its shift plays that role.

ODE function (channels preserved, no time input):
    f(t, z) = act(norm(conv3x3(act(norm(conv3x3(z))))))
BasicBlock (ResNet):
    y = act(norm(conv3x3(act(norm(conv3x3_stride(x))))) + shortcut(x)),
    shortcut = identity, or norm(conv1x1_stride(x)) when the shape changes.
ODEBlock: z(1) for dz/dt = f(t, z), z(0) = x, with a solver of ``normlib.ode.solvers``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from normlib.ode.solvers import DEFAULT_STEPS, check_solver, odeint_fixed

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "PARAM_NORMS",
    "BasicBlock",
    "ODEBlock",
    "ODEFunc",
    "apply_param_norm",
    "check_choice",
    "conv3x3",
    "make_activation",
    "make_norm",
]

NORMS = ("bn", "ln", "in", "none")
PARAM_NORMS = ("wn", "sn", "none")
ACTIVATIONS = ("relu", "none")


def check_choice(argument: str, value: object, valid: Sequence[str]) -> None:
    """Raise ValueError naming the argument and its valid values unless value is one of them."""
    if value not in valid:
        raise ValueError(f"{argument} must be one of {', '.join(valid)}; got {value!r}")


def make_norm(kind: str, channels: int, instance_affine: bool = False) -> nn.Module:
    """Layer-output normalization over ``channels`` feature maps (see module docstring)."""
    check_choice("norm", kind, NORMS)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "ln":
        return nn.GroupNorm(1, channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels, affine=instance_affine)
    return nn.Identity()


def apply_param_norm(module: nn.Module, kind: str) -> nn.Module:
    """Reparametrize ``module.weight`` with weight norm or spectral norm (or leave it)."""
    check_choice("param_norm", kind, PARAM_NORMS)
    if kind == "wn":
        return weight_norm(module, name="weight", dim=0)
    if kind == "sn":
        return spectral_norm(module, name="weight")
    return module


def make_activation(kind: str) -> nn.Module:
    """ReLU or Identity."""
    check_choice("activation", kind, ACTIVATIONS)
    return nn.ReLU() if kind == "relu" else nn.Identity()


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False,
            param_norm: str = "none") -> nn.Module:
    """3x3 convolution with padding 1, its weight reparametrized by ``param_norm``."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
    return apply_param_norm(conv, param_norm)


class ODEFunc(nn.Module):
    """f(t, z) = act(norm(conv3x3(act(norm(conv3x3(z)))))); t is ignored (autonomous).

    ``conv_bias``, ``instance_affine``: see the module docstring (both off, as the seed).
    """

    def __init__(self, channels: int, norm: str = "bn", param_norm: str = "none",
                 activation: str = "relu", conv_bias: bool = False,
                 instance_affine: bool = False):
        super().__init__()
        bias = conv_bias and norm == "none"
        self.conv1 = conv3x3(channels, channels, bias=bias, param_norm=param_norm)
        self.norm1 = make_norm(norm, channels, instance_affine)
        self.conv2 = conv3x3(channels, channels, bias=bias, param_norm=param_norm)
        self.norm2 = make_norm(norm, channels, instance_affine)
        self.act = make_activation(activation)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        z = self.act(self.norm1(self.conv1(z)))
        return self.act(self.norm2(self.conv2(z)))


class BasicBlock(nn.Module):
    """ResNet basic block; downsamples by ``stride`` and maps in -> out channels.

    ``conv_bias``, ``instance_affine``: see the module docstring (both off, as the seed).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn",
                 param_norm: str = "none", activation: str = "relu", conv_bias: bool = False,
                 instance_affine: bool = False):
        super().__init__()
        bias = conv_bias and norm == "none"
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias, param_norm)
        self.norm1 = make_norm(norm, out_channels, instance_affine)
        self.conv2 = conv3x3(out_channels, out_channels, 1, bias, param_norm)
        self.norm2 = make_norm(norm, out_channels, instance_affine)
        self.act = make_activation(activation)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)
            self.shortcut = nn.Sequential(
                apply_param_norm(projection, param_norm),
                make_norm(norm, out_channels, instance_affine),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class _CountedFunc(nn.Module):
    """Wraps an ODE function for one solve and counts its evaluations."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func
        self.calls = 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.calls += 1
        return self.func(t, z)


class ODEBlock(nn.Module):
    """z(1) for dz/dt = func(t, z), z(0) = x, integrated on [0, 1].

    ``nfe`` holds the number of evaluations of ``func`` in the last forward
    (steps, 2 * steps, 4 * steps for euler, rk2, rk4; recomputations in a
    checkpointed backward pass are not counted).
    """

    def __init__(self, func: nn.Module, method: str = "euler", steps: int = DEFAULT_STEPS,
                 checkpoint: bool = False, rtol: float = 1e-7, atol: float = 1e-9):
        super().__init__()
        if not isinstance(func, nn.Module):
            raise TypeError(f"func must be an nn.Module computing func(t, z); got {type(func)}")
        check_solver(method, steps, checkpoint)
        self.func = func
        self.method = method
        self.steps = steps
        self.checkpoint = checkpoint
        self.rtol = rtol
        self.atol = atol
        self.nfe = 0

    def forward(self, x: Tensor) -> Tensor:
        counted = _CountedFunc(self.func)
        z = odeint_fixed(counted, x, self.method, self.steps, checkpoint=self.checkpoint,
                         rtol=self.rtol, atol=self.atol)
        self.nfe = counted.calls
        return z

    def extra_repr(self) -> str:
        return f"method={self.method!r}, steps={self.steps}, checkpoint={self.checkpoint}"
