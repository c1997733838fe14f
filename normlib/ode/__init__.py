"""Neural ODE networks with normalization choices and fixed-step solvers.

Gusak et al., "Towards Understanding Normalization in Neural ODEs" (ICLR 2020
DeepDiffeq workshop). ``solvers`` integrates dz/dt = f(t, z) with Euler, RK2 or
RK4 (or torchdiffeq's adaptive methods), ``blocks`` holds the ODE function,
the ResNet block and the ODE block with pluggable norms, and ``networks``
assembles ODENet4/6/10/18/34 and registers them as models.
"""

from normlib.ode.blocks import (
    ACTIVATIONS,
    NORMS,
    PARAM_NORMS,
    BasicBlock,
    ODEBlock,
    ODEFunc,
    apply_param_norm,
    make_activation,
    make_norm,
)
from normlib.ode.networks import LAYOUTS, ODENet, odenet
from normlib.ode.solvers import (
    ADAPTIVE_METHODS,
    DEFAULT_STEPS,
    FIXED_STEP_METHODS,
    available_methods,
    odeint_fixed,
)

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_METHODS",
    "DEFAULT_STEPS",
    "FIXED_STEP_METHODS",
    "LAYOUTS",
    "NORMS",
    "PARAM_NORMS",
    "BasicBlock",
    "ODEBlock",
    "ODEFunc",
    "ODENet",
    "apply_param_norm",
    "available_methods",
    "make_activation",
    "make_norm",
    "odeint_fixed",
    "odenet",
]
