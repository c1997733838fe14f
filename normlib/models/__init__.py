"""Networks the seed studies need, and a registry so configs can name them.

``build(name, **kwargs)`` constructs a registered network; ``MODELS.names()``
lists them: fully_connected, fully_convolutional, wide_resnet, resnet18 ..
resnet152.
"""

from normlib.models.fully_connected import FullyConnected
from normlib.models.fully_convolutional import FullyConvolutional
from normlib.models.resnet import construct_network
from normlib.models.wide_resnet import WideResNet
from normlib.ode import networks as _ode_networks  # noqa: F401  (registers odenet4..odenet34)
from normlib.registry import MODELS

build = MODELS.build

__all__ = [
    "MODELS",
    "FullyConnected",
    "FullyConvolutional",
    "WideResNet",
    "build",
    "construct_network",
]
