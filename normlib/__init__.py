"""normlib: normalization and optimization methods for neural networks.

Five published methods on current PyTorch, CPU and GPU: ENorm, Riemannian BN
optimizers (SGD-G, Adam-G), BN-init, ALI-G, and normalization in Neural ODEs
(``normlib.ode``). normlib depends on torch, torchvision and numpy (and scipy
for ``normlib.stats``, imported on first use so that training processes skip
it); numba, from the optional ``fast`` extra, runs ENorm's fused CPU kernels
where it is installed (imported on first use too).
"""

import importlib
from typing import Any

from normlib.alig import AliG, l2_projection
from normlib.bninit import InputNorm, ScaleBatchNorm1d, ScaleBatchNorm2d, bn_param_groups
from normlib.enorm import ENorm
from normlib.models import construct_network
from normlib.riemannian import SGDG, AdamG, grassmann_param_groups
from normlib.seeding import make_complex, make_deterministic

__all__ = [
    "AdamG",
    "AliG",
    "ENorm",
    "InputNorm",
    "SGDG",
    "ScaleBatchNorm1d",
    "ScaleBatchNorm2d",
    "bn_param_groups",
    "construct_network",
    "grassmann_param_groups",
    "holm",
    "l2_projection",
    "make_complex",
    "make_deterministic",
    "paired_ttest",
    "power",
    "seeds_needed",
    "wilcoxon",
]

_STATS = ("holm", "paired_ttest", "power", "seeds_needed", "wilcoxon")


def __getattr__(name: str) -> Any:
    if name in _STATS:
        return getattr(importlib.import_module("normlib.stats"), name)
    raise AttributeError(f"module 'normlib' has no attribute {name!r}")
