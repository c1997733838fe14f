"""Reproducible runs from simple seeds, as in the BN-init reference.

A simple seed s (1, 2, 3, ...) is turned into a "complex" 32-bit seed with a
balanced mix of 0 and 1 bits:

    complex(s) = int(last 8 hex digits of md5(str(s)), 16)

which is then used to seed Python's ``random``, NumPy and torch (CPU and
every CUDA device); cuDNN is switched to deterministic algorithms.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

__all__ = ["make_complex", "make_deterministic"]


def make_complex(seed: int | str) -> int:
    """The 32-bit seed derived from ``seed`` by MD5; ``1`` and ``"1"`` give the same value."""
    if isinstance(seed, bool) or not isinstance(seed, int | str):
        raise ValueError(f"seed must be an int or a str, got {type(seed).__name__}: {seed!r}")
    digest = hashlib.md5(str(seed).encode(), usedforsecurity=False).hexdigest()
    return int(digest[-8:], 16)


def make_deterministic(seed: int | str) -> int:
    """Seed ``random``, NumPy and torch with ``make_complex(seed)``; return that value.

    Also sets ``torch.backends.cudnn.deterministic = True`` and
    ``torch.backends.cudnn.benchmark = False``.
    """
    complex_seed = make_complex(seed)
    random.seed(complex_seed)
    np.random.seed(complex_seed)
    torch.manual_seed(complex_seed)
    torch.cuda.manual_seed_all(complex_seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return complex_seed
