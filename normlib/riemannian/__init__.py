"""Riemannian batch normalization (Cho & Lee, NeurIPS 2017): SGD-G and Adam-G.

``manifold`` holds the sphere geometry (one point per weight row), ``optim``
the optimizers and ``groups`` the helper that builds their param groups.
"""

from normlib.riemannian.groups import grassmann_param_groups
from normlib.riemannian.optim import SGDG, AdamG

__all__ = ["SGDG", "AdamG", "grassmann_param_groups"]
