"""ALI-G: adaptive learning rates for interpolation (Berrada, Zisserman & Kumar, 2019).

For a loss f >= 0 whose minimum is 0 (a model that can interpolate its
training data), with g the gradient over all parameters of all groups,

    gamma = min(f / (|g|^2 + eps), max_lr)          (no clip when max_lr is None)
    w <- w - gamma g                                  (momentum mu = 0)
    z <- mu z - gamma g,  w <- w - gamma g + mu z     (mu > 0, default form)
    z <- mu z - g,        w <- w - gamma g + gamma mu z   (adjusted_momentum=True)

|g|^2 is one global sum, so the unclipped step size is shared; each group
clips it with its own ``max_lr``. Regularization is a constraint, not a
penalty: ``projection_fn`` (no arguments, in place) runs once at
construction and after every step, e.g. ``l2_projection``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim.optimizer import Optimizer

__all__ = ["AliG", "l2_projection"]


@torch.no_grad()
def l2_projection(parameters: Iterable[torch.Tensor], max_norm: float) -> None:
    """Project onto the ball {total 2-norm <= max_norm}, in place; a no-op inside it.

    Every parameter is multiplied by min(1, max_norm / total_norm), the total
    norm taken over all of them (multiplying by exactly 1 changes no bit).
    """
    if not _is_number(max_norm) or max_norm <= 0:
        raise ValueError(f"l2_projection: max_norm must be a number > 0, got {max_norm!r}")
    params = list(parameters)
    if not params:
        return
    total = torch.linalg.vector_norm(_stacked(torch._foreach_norm(params)))
    scale = (max_norm / total).clamp(max=1.0)  # a 0-d tensor: no host sync
    for same in _by_device_and_dtype(params):
        torch._foreach_mul_(same, scale.to(same[0]))


class AliG(Optimizer):
    """ALI-G; ``step`` needs a closure returning the loss value.

    Args:
        params: parameters or param groups (a group may set its own
            ``max_lr``, ``momentum`` and ``adjusted_momentum``).
        max_lr: upper bound of the step size (>= 0), or None for no bound.
        momentum: mu in [0, 1).
        projection_fn: callable without arguments that projects the
            parameters in place onto the feasible set.
        eps: small constant > 0 added to |g|^2.
        adjusted_momentum: use the adjusted form z <- mu z - g.

    After each step, ``step_size_unclipped`` (0-d tensor) is f / (|g|^2 + eps),
    ``step_sizes`` the clipped step size of every group and ``step_size``
    that of group 0 (tensors, so logging them is the only host sync).

    Usage::

        optimizer = AliG(model.parameters(), max_lr=0.1)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step(lambda: loss.detach())   # or the seed's lambda: float(loss)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        max_lr: float | None = None,
        momentum: float = 0,
        projection_fn: Callable[[], Any] | None = None,
        eps: float = 1e-5,
        adjusted_momentum: bool = False,
    ):
        if not _is_number(eps) or eps <= 0:
            raise ValueError(f"AliG: eps must be a number > 0, got eps={eps!r}")
        if projection_fn is not None and not callable(projection_fn):
            raise ValueError(f"AliG: projection_fn must be None or callable, got {projection_fn!r}")
        defaults = dict(max_lr=max_lr, momentum=momentum, adjusted_momentum=adjusted_momentum)
        super().__init__(params, defaults)
        self.eps = eps
        self.projection_fn = projection_fn
        self.step_size: torch.Tensor | None = None
        self.step_sizes: list[torch.Tensor] = []
        self.step_size_unclipped: torch.Tensor | None = None
        self._project()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group, then a check of the group's values (undone on error)."""
        if "weight_decay" in param_group:
            raise ValueError(
                "AliG: param groups take no 'weight_decay'; ALI-G regularizes by a constraint: "
                "pass projection_fn, e.g. lambda: l2_projection(params, max_norm=100)"
            )
        super().add_param_group(param_group)
        group, index = self.param_groups[-1], len(self.param_groups) - 1
        try:
            _validate_group(group, index)
        except ValueError:
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def _project(self) -> None:
        if self.projection_fn is not None:
            self.projection_fn()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One ALI-G step; ``closure()`` returns the current loss (float or 0-d tensor)."""
        if closure is None:
            raise ValueError(
                "AliG.step needs the loss value: after loss.backward(), call "
                "optimizer.step(lambda: float(loss)) (or lambda: loss.detach(), no host sync)"
            )
        with torch.enable_grad():
            loss = closure()

        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return loss
        sq_norm = _stacked(torch._foreach_norm(grads)).square().sum()
        f = torch.as_tensor(loss, dtype=sq_norm.dtype, device=sq_norm.device).detach()
        if f.numel() != 1:
            raise ValueError(f"AliG: the closure must return one loss value, got shape {f.shape}")
        f = f.reshape(())
        # The method assumes f >= 0; a negative loss gives no step, not an ascent.
        self.step_size_unclipped = (f / (sq_norm + self.eps)).clamp(min=0)

        self.step_sizes = []
        for group in self.param_groups:
            gamma = self.step_size_unclipped
            if group["max_lr"] is not None:
                gamma = gamma.clamp(max=group["max_lr"])
            self.step_sizes.append(gamma)
            self._update(group, gamma)
        self.step_size = self.step_sizes[0]
        self._project()
        return loss

    def _update(self, group: dict[str, Any], gamma: torch.Tensor) -> None:
        """The group's update with multi-tensor (foreach) ops, in place, no temporaries."""
        mu, adjusted = group["momentum"], group["adjusted_momentum"]
        params = [p for p in group["params"] if p.grad is not None]
        if mu != 0:
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
        for same in _by_device_and_dtype(params):
            steps = [gamma.to(same[0])] * len(same)
            grads = [p.grad for p in same if p.grad is not None]  # all: params have one
            torch._foreach_addcmul_(same, grads, steps, value=-1)  # w <- w - gamma g
            if mu == 0:
                continue
            z = [self.state[p]["momentum_buffer"] for p in same]
            torch._foreach_mul_(z, mu)
            if adjusted:
                torch._foreach_sub_(z, grads)  # z <- mu z - g
                torch._foreach_addcmul_(same, z, steps, value=mu)  # w <- w + gamma mu z
            else:
                torch._foreach_addcmul_(z, grads, steps, value=-1)  # z <- mu z - gamma g
                torch._foreach_add_(same, z, alpha=mu)  # w <- w + mu z


def _stacked(scalars: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d tensors as one vector, on the first one's device, in their promoted dtype."""
    dtype = functools.reduce(torch.promote_types, (s.dtype for s in scalars))
    return torch.stack([s.to(scalars[0].device, dtype) for s in scalars])


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The tensors split into lists of one device and dtype (what a foreach call takes)."""
    lists: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        lists.setdefault((t.device, t.dtype), []).append(t)
    return list(lists.values())


def _validate_group(group: dict[str, Any], index: int) -> None:
    where = f"AliG: param group {index}:"
    max_lr, mu = group["max_lr"], group["momentum"]
    if max_lr is not None and (not _is_number(max_lr) or max_lr < 0):
        raise ValueError(f"{where} max_lr must be None or a number >= 0, got max_lr={max_lr!r}")
    if not _is_number(mu) or not 0 <= mu < 1:
        raise ValueError(f"{where} momentum must be in [0, 1), got momentum={mu!r}")
    if not isinstance(group["adjusted_momentum"], bool):
        raise ValueError(
            f"{where} adjusted_momentum must be True or False, got {group['adjusted_momentum']!r}"
        )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
