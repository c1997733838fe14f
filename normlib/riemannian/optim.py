"""SGD-G and Adam-G: optimizers on the sphere for weights followed by BN (Cho & Lee, 2017).

Param groups with ``grassmann=True`` treat every row y of a weight (first
dimension = output unit, the rest flattened) as a point on the unit sphere.
Per step, with g the Euclidean gradient of the row and Y the matrix of rows:

1. orthogonality regularization (omega != 0): g <- g + 2 omega (Y Y^T Y - Y)
2. tangent projection:                        h = g - (y.g) y
3. clipping (grad_clip set):                  h <- h min(1, grad_clip / |h|)
4. the move of SGD-G or Adam-G (see the classes), through exp_y and a
   parallel transport of the momentum (``normlib.riemannian.manifold``).

The parameter is read as unit rows at the start of every step, so float drift
never accumulates and a weight not normalized beforehand is projected onto
the sphere at its first step. ``dampening``, ``nesterov`` and ``weight_decay``
have no meaning on the sphere and are ignored in Grassmann groups.

Other groups do plain SGD with momentum, dampening, Nesterov and weight
decay, the same numbers as ``torch.optim.SGD`` (under Adam-G too, as in the
authors' code).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.optimizer import Optimizer, required
from torch.optim.sgd import sgd

from normlib.riemannian.manifold import (
    add_orthogonality_grad,
    as_rows,
    clip_rows,
    exp_map,
    project_tangent,
    row_norms,
    transport,
    transport_own,
    unit_rows,
)

__all__ = ["SGDG", "AdamG"]

# Device types on which same-shape Grassmann weights are stepped as one stacked batch.
STACK_DEVICES = frozenset({"cuda"})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _SphereOptimizer(Optimizer):
    """Shared step: Riemannian moves for Grassmann groups, torch's SGD for the others."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group, then a check of the group's values (undone on error)."""
        super().add_param_group(param_group)
        try:
            self._validate_group(self.param_groups[-1], len(self.param_groups) - 1)
        except ValueError:
            self.param_groups.pop()
            raise

    def _validate_group(self, group: dict[str, Any], index: int) -> None:
        where = f"{type(self).__name__}: param group {index}:"
        lr = group["lr"]
        if not _is_number(lr) or lr < 0:
            raise ValueError(f"{where} lr must be a number >= 0, got lr={lr!r}")
        if not isinstance(group["grassmann"], bool):
            raise ValueError(f"{where} grassmann must be True or False, got {group['grassmann']!r}")
        momentum = group["momentum"]
        if not _is_number(momentum) or momentum < 0:
            raise ValueError(f"{where} momentum must be a number >= 0, got momentum={momentum!r}")
        if not group["grassmann"]:
            wd = group["weight_decay"]
            if not _is_number(wd) or wd < 0:
                raise ValueError(f"{where} weight_decay must be a number >= 0, got {wd!r}")
            if group["nesterov"] and (momentum <= 0 or group["dampening"] != 0):
                raise ValueError(
                    f"{where} nesterov=True needs momentum > 0 and dampening = 0, got "
                    f"momentum={momentum!r}, dampening={group['dampening']!r}"
                )
            return
        omega = group["omega"]
        if not _is_number(omega) or omega < 0:
            raise ValueError(f"{where} omega must be a number >= 0, got omega={omega!r}")
        clip = group["grad_clip"]
        if clip is not None and (not _is_number(clip) or clip <= 0):
            raise ValueError(f"{where} grad_clip must be None or a number > 0, got {clip!r}")
        if any(p.dim() == 0 for p in group["params"]):
            raise ValueError(f"{where} Grassmann parameters need >= 1 dim (rows), got a 0-d one")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step for every group; returns ``closure()`` (evaluated with grad) if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["grassmann"]:
                for bucket in self._buckets(group):
                    self._grassmann_step(bucket, group)
            else:
                self._sgd_step(group)
        return loss

    def _buckets(self, group: dict[str, Any]) -> list[list[torch.Tensor]]:
        """The group's parameters with a gradient, bucketed by (shape, dtype, device, step).

        One bucket is stepped as one ``(P, rows, n)`` batch: each manifold
        operation is one kernel launch for its P parameters instead of P. On
        CPU there is no launch to save and the stacking copies cost more than
        the Python calls they save (bench/methods.py), so a CPU bucket holds
        one parameter.
        """
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                self._init_state(p, state)
            alone = None if p.device.type in STACK_DEVICES else id(p)
            key = (p.shape, p.dtype, p.device, state.get("step"), alone)
            buckets.setdefault(key, []).append(p)
        return list(buckets.values())

    def _grassmann_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """Steps P parameters of one shape as one batch Y of shape (P, rows, n).

        A single contiguous parameter is a view (P = 1, nothing copied: the
        new rows are written straight into it); several are stacked and the
        new rows and buffers copied back. At omega = 0 no Gram matrix is formed.
        """
        y, _ = unit_rows(_stack_rows(params))  # a new tensor: the parameter can take y_new
        g = _stack_rows([p.grad for p in params if p.grad is not None])  # all have one
        if group["omega"] != 0:
            g = add_orthogonality_grad(g, y, group["omega"])
        h = project_tangent(y, g)  # a new tensor, clipped in place
        if group["grad_clip"] is not None:
            clip_rows(h, group["grad_clip"], out=True)
        states = [self.state[p] for p in params]
        into = params[0].view(y.shape) if len(params) == 1 and params[0].is_contiguous() else None
        y_new = self._move(y, h, states, group, into)
        if into is None:
            torch._foreach_copy_(params, [t.view(p.shape) for t, p in zip(y_new, params,
                                                                           strict=True)])

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)

    def _move(self, y: torch.Tensor, h: torch.Tensor, states: list[dict[str, Any]],
              group: dict[str, Any], into: torch.Tensor | None) -> torch.Tensor:
        """Update the momenta in ``states`` and return the new unit rows (batched like y),
        written into ``into`` when it is a tensor."""
        raise NotImplementedError

    def _sgd_step(self, group: dict[str, Any]) -> None:
        """torch.optim.SGD's own update (``torch.optim.sgd.sgd``): the same numbers, and
        torch's default multi-tensor (foreach) kernels on CUDA."""
        params = [p for p in group["params"] if p.grad is not None]
        momentum = group["momentum"]
        buffers = [self.state[p].get("momentum_buffer") for p in params] if momentum else []
        sgd(
            params,
            [p.grad for p in params],
            buffers,
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
        )
        for p, buf in zip(params, buffers, strict=False):
            self.state[p]["momentum_buffer"] = buf


def _stack_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(P, rows, n) rows of P same-shape tensors: a view for P = 1, a stacked copy else."""
    if len(tensors) == 1:
        return as_rows(tensors[0]).unsqueeze(0)
    return torch.stack([as_rows(t) for t in tensors])


class _Buffers:
    """A state buffer of a bucket as one (P, rows, n) tensor, written back by ``store``."""

    def __init__(self, states: list[dict[str, Any]], key: str):
        self.own = [s[key] for s in states]
        self.is_view = len(self.own) == 1 and self.own[0].is_contiguous()
        self.tensor = _stack_rows(self.own)

    def store(self) -> None:
        """Copy the batch back into the per-parameter buffers (nothing to do for a view)."""
        if not self.is_view:
            copies = [t.view(b.shape) for t, b in zip(self.tensor, self.own, strict=True)]
            torch._foreach_copy_(self.own, copies)


class SGDG(_SphereOptimizer):
    """SGD-G: momentum SGD on the sphere for Grassmann groups, SGD for the others.

    For a Grassmann row y with tangent gradient h (beta = ``momentum``):

        m <- beta m - lr h
        y <- exp_y(m) = y cos|m| + (m/|m|) sin|m|
        m <- (u cos|m| - y_old sin|m|) |m|,  u = m/|m|   (m carried along its geodesic)

    ``momentum_buffer`` in ``self.state[p]`` holds m with the parameter's shape.

    Usage (the groups of the seed README)::

        groups = grassmann_param_groups(model, lr=0.01, lrg=0.2)
        optimizer = SGDG(groups)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: Any = required,  # a float; torch's `required` marker where a group must give it
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        grassmann: bool = False,
        omega: float = 0,
        grad_clip: float | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, grassmann=grassmann, omega=omega, grad_clip=grad_clip,
        )
        super().__init__(params, defaults)

    def _move(self, y: torch.Tensor, h: torch.Tensor, states: list[dict[str, Any]],
              group: dict[str, Any], into: torch.Tensor | None) -> torch.Tensor:
        buffers = _Buffers(states, "momentum_buffer")
        m = buffers.tensor
        m.mul_(group["momentum"]).sub_(h, alpha=group["lr"])
        size = row_norms(m)
        y_new = exp_map(y, m, norm=size, out=into)
        transport_own(y, m, norm=size, out=True)
        buffers.store()
        return y_new


class AdamG(_SphereOptimizer):
    """Adam-G: Adam on the sphere for Grassmann groups, SGD for the others.

    For a Grassmann row y with tangent gradient h (b1 = ``momentum``,
    b2 = ``beta2``, t = 1, 2, ... the step count of the parameter):

        m <- b1 m + (1 - b1) h
        v <- b2 v + (1 - b2) |h|^2                          (one scalar per row)
        delta = -alpha lr m / sqrt(v + epsilon),  alpha = sqrt(1 - b2^t) / (1 - b1^t)
        y <- exp_y(delta)
        m <- m - (u.m)(y_old sin|delta| + u (1 - cos|delta|)),  u = delta/|delta|

    ``self.state[p]`` holds ``momentum_buffer`` (m, the parameter's shape),
    ``row_sq_avg`` (v, shape ``(rows, 1)``) and ``step`` (t, an int).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: Any = required,  # a float; torch's `required` marker where a group must give it
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        grassmann: bool = False,
        beta2: float = 0.99,
        epsilon: float = 1e-8,
        omega: float = 0,
        grad_clip: float | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, grassmann=grassmann, beta2=beta2, epsilon=epsilon, omega=omega,
            grad_clip=grad_clip,
        )
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any], index: int) -> None:
        super()._validate_group(group, index)
        if not group["grassmann"]:
            return
        where = f"AdamG: param group {index}:"
        b1, b2, eps = group["momentum"], group["beta2"], group["epsilon"]
        if not b1 < 1:
            raise ValueError(f"{where} momentum (beta1) must be in [0, 1), got {b1!r}")
        if not _is_number(b2) or not 0 <= b2 < 1:
            raise ValueError(f"{where} beta2 must be in [0, 1), got beta2={b2!r}")
        if not _is_number(eps) or eps <= 0:
            raise ValueError(f"{where} epsilon must be a number > 0, got epsilon={eps!r}")

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        super()._init_state(p, state)
        state["row_sq_avg"] = p.new_zeros(p.shape[0], 1)
        state["step"] = 0

    def _move(self, y: torch.Tensor, h: torch.Tensor, states: list[dict[str, Any]],
              group: dict[str, Any], into: torch.Tensor | None) -> torch.Tensor:
        b1, b2 = group["momentum"], group["beta2"]
        for state in states:  # a bucket shares its step count
            state["step"] += 1
        t = states[0]["step"]
        buffers, averages = _Buffers(states, "momentum_buffer"), _Buffers(states, "row_sq_avg")
        m, v = buffers.tensor, averages.tensor
        m.mul_(b1).add_(h, alpha=1 - b1)
        v.mul_(b2).add_(row_norms(h).square(), alpha=1 - b2)
        alpha = math.sqrt(1 - b2**t) / (1 - b1**t)
        delta = m / (v + group["epsilon"]).sqrt() * (-alpha * group["lr"])
        size = row_norms(delta)
        y_new = exp_map(y, delta, norm=size, out=into)
        transport(y, delta, m, norm=size, out=True)
        buffers.store()
        averages.store()
        return y_new
