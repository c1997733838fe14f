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

# Every public name, by the module that defines it: imported on first use (PEP 562), so that
# ``import normlib.stats`` (what `normstudy compare` needs) loads neither torch nor the
# methods, and a training process never loads scipy.
_MODULES = {
    "AliG": "normlib.alig",
    "l2_projection": "normlib.alig",
    "InputNorm": "normlib.bninit",
    "ScaleBatchNorm1d": "normlib.bninit",
    "ScaleBatchNorm2d": "normlib.bninit",
    "bn_param_groups": "normlib.bninit",
    "ENorm": "normlib.enorm",
    "construct_network": "normlib.models",
    "SGDG": "normlib.riemannian",
    "AdamG": "normlib.riemannian",
    "grassmann_param_groups": "normlib.riemannian",
    "make_complex": "normlib.seeding",
    "make_deterministic": "normlib.seeding",
    "holm": "normlib.stats",
    "paired_ttest": "normlib.stats",
    "power": "normlib.stats",
    "seeds_needed": "normlib.stats",
    "wilcoxon": "normlib.stats",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'normlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
