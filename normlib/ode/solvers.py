"""Fixed-step ODE solvers (Euler, RK2, RK4) and a route to torchdiffeq's adaptive ones.

One explicit Runge-Kutta step of size h from (t, z) computes the stage slopes

    k_i = f(t + c_i h, z + h * sum_{j<i} a_ij k_j),      z_next = z + h * sum_i b_i k_i.

Butcher tableaux (c | a above the line, b below):

    Euler (order 1)    RK2 = explicit midpoint (order 2)    classic RK4 (order 4)
      0 |                0   |                                0   |
      --+--              1/2 | 1/2                            1/2 | 1/2
        | 1              ----+---------                       1/2 | 0    1/2
                             | 0    1                         1   | 0    0    1
                                                              ----+-------------------
                                                                  | 1/6  1/3  1/3  1/6

``odeint_fixed`` takes ``steps`` equal steps h = (t1 - t0) / steps, so it makes
``steps``, ``2 * steps`` or ``4 * steps`` evaluations of ``func(t, z)``; ``t`` is
a 0-dim tensor with z's dtype and device. Gradients flow by autograd through
every step. With ``checkpoint=True`` each step keeps only its input for the
backward pass and is recomputed there (torch.utils.checkpoint, non-reentrant),
so activation memory no longer grows with the number of function evaluations.

When ``func`` is an ``nn.Module``, two of its states are handled so that the
vector field is the same at every step and the recomputation is exact:

* parametrized weights (weight norm, spectral norm via
  ``torch.nn.utils.parametrizations``) are computed once per solve, before the
  first step; a spectral norm thus makes one power iteration per solve, not
  one per evaluation;
* a recomputed step computes its weights from the unchanged parametrization
  state (no further power iteration) and leaves every buffer (BatchNorm
  running statistics) as it found it. In the forward pass BatchNorm running
  statistics are updated at every evaluation, as for any layer called
  several times.

Adaptive methods (``"dopri5"`` and the others in ``ADAPTIVE_METHODS``) call
``torchdiffeq.odeint`` with ``rtol`` and ``atol``; they need the ``ode`` extra
(``pip install normstudy[ode]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.checkpoint import checkpoint as checkpoint_call

__all__ = [
    "ADAPTIVE_METHODS",
    "DEFAULT_STEPS",
    "FIXED_STEP_METHODS",
    "ButcherTableau",
    "available_methods",
    "check_solver",
    "odeint_fixed",
]

VectorField = Callable[[Tensor, Tensor], Tensor]

DEFAULT_STEPS = 8


@dataclass(frozen=True)
class ButcherTableau:
    """Nodes c, lower-triangular coefficients a (row i has i entries) and weights b."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


FIXED_STEP_METHODS: dict[str, ButcherTableau] = {
    "euler": ButcherTableau(c=(0.0,), a=((),), b=(1.0,)),
    "rk2": ButcherTableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0)),
    "rk4": ButcherTableau(
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
}

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")

_INSTALL_HINT = "pip install normstudy[ode]"


def _torchdiffeq() -> ModuleType | None:
    """The torchdiffeq module, or None when it is not installed."""
    try:
        import torchdiffeq
    except ImportError:
        return None
    return torchdiffeq


def available_methods() -> tuple[str, ...]:
    """Fixed-step methods, plus the adaptive ones when torchdiffeq is installed."""
    adaptive = ADAPTIVE_METHODS if _torchdiffeq() is not None else ()
    return tuple(FIXED_STEP_METHODS) + adaptive


def check_solver(method: str, steps: int, checkpoint: bool = False) -> None:
    """Raise before any work when the method, step count or checkpoint flag is invalid."""
    if method in ADAPTIVE_METHODS and _torchdiffeq() is None:
        raise ImportError(f"method {method!r} needs torchdiffeq: {_INSTALL_HINT}")
    if method not in available_methods():
        hint = "" if _torchdiffeq() is not None else f" (adaptive methods: {_INSTALL_HINT})"
        raise ValueError(
            f"method must be one of {', '.join(available_methods())}{hint}; got {method!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    if checkpoint and method not in FIXED_STEP_METHODS:
        raise ValueError(
            f"checkpoint=True needs a fixed-step method ({', '.join(FIXED_STEP_METHODS)}); "
            f"got method {method!r}"
        )


def _rk_step(func: VectorField, tableau: ButcherTableau, t: Tensor, z: Tensor, h: float) -> Tensor:
    """One explicit Runge-Kutta step of size h from (t, z)."""
    slopes: list[Tensor] = []
    for c_i, a_i in zip(tableau.c, tableau.a, strict=True):
        z_i = z
        for a_ij, k_j in zip(a_i, slopes, strict=True):
            if a_ij != 0.0:
                z_i = z_i + (h * a_ij) * k_j
        slopes.append(func(t + c_i * h, z_i))
    weighted = [b_i * k_i for b_i, k_i in zip(tableau.b, slopes, strict=True) if b_i != 0.0]
    return z + h * sum(weighted[1:], weighted[0])


def _materialize_parametrizations(func: VectorField) -> None:
    """Compute every parametrized tensor of func once (into the active parametrize cache)."""
    if not isinstance(func, nn.Module):
        return
    for module in func.modules():
        if parametrize.is_parametrized(module):
            for name in cast(nn.ModuleDict, module.parametrizations):
                getattr(module, name)


@contextlib.contextmanager
def _exact_recomputation(func: VectorField) -> Iterator[None]:
    """Context for a checkpointed step's recomputation: same weights, buffers left as found.

    Parametrizations go to eval mode (a spectral norm makes no power iteration,
    so it reuses the vectors of the forward pass) and are computed without
    autograd into a fresh cache, so the recomputed step saves exactly the
    tensors the original step saved. Buffers are copied before and restored after.
    """
    if not isinstance(func, nn.Module):
        yield
        return
    buffers = [(buffer, buffer.clone()) for buffer in func.buffers()]
    parametrization_modules = [
        module
        for parametrizations in func.modules()
        if isinstance(parametrizations, parametrize.ParametrizationList)
        for module in parametrizations.modules()
    ]
    modes = [module.training for module in parametrization_modules]
    try:
        for module in parametrization_modules:
            module.training = False
        with parametrize.cached():
            with torch.no_grad():
                _materialize_parametrizations(func)
            yield
    finally:
        for module, mode in zip(parametrization_modules, modes, strict=True):
            module.training = mode
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def _adaptive(func: VectorField, z0: Tensor, method: str, t0: float, t1: float,
              rtol: float, atol: float) -> Tensor:
    """z(t1) by torchdiffeq's adaptive ``method``."""
    torchdiffeq = _torchdiffeq()
    if torchdiffeq is None:  # check_solver refuses such a method before any work
        raise ImportError(f"ODE solver {method!r} needs torchdiffeq: {_INSTALL_HINT}")
    times = torch.tensor([t0, t1], dtype=z0.dtype, device=z0.device)
    return torchdiffeq.odeint(func, z0, times, rtol=rtol, atol=atol, method=method)[-1]


def odeint_fixed(
    func: VectorField,
    z0: Tensor,
    method: str = "euler",
    steps: int = DEFAULT_STEPS,
    t0: float = 0.0,
    t1: float = 1.0,
    checkpoint: bool = False,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> Tensor:
    """Integrate dz/dt = func(t, z) from z(t0) = z0 and return z(t1).

    method: "euler", "rk2" (explicit midpoint) or "rk4" (classic), each with
    ``steps`` equal steps; or an adaptive torchdiffeq method (``steps`` and
    ``checkpoint`` unused, ``rtol``/``atol`` control the step size).
    checkpoint: recompute each step in the backward pass instead of storing
    its activations (same outputs and gradients, less memory).
    """
    check_solver(method, steps, checkpoint)
    with parametrize.cached():
        _materialize_parametrizations(func)
        if method not in FIXED_STEP_METHODS:
            return _adaptive(func, z0, method, t0, t1, rtol, atol)
        tableau = FIXED_STEP_METHODS[method]
        h = (t1 - t0) / steps

        def step(t: Tensor, z: Tensor) -> Tensor:
            return _rk_step(func, tableau, t, z, h)

        def contexts() -> tuple[contextlib.AbstractContextManager[Any],
                                contextlib.AbstractContextManager[Any]]:
            return contextlib.nullcontext(), _exact_recomputation(func)

        z = z0
        for index in range(steps):
            t = torch.full((), t0 + index * h, dtype=z0.dtype, device=z0.device)
            if checkpoint:
                z = checkpoint_call(step, t, z, use_reentrant=False, context_fn=contexts)
            else:
                z = step(t, z)
        return z
