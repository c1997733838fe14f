"""ENorm: equi-normalization of a feedforward network (Stock et al., ICLR 2019).

The math
--------
Let W_1, ..., W_L be the layer weights in network order (Linear: out x in,
Conv: out x in x kh x kw). Hidden unit i of layer k sits between W_k and
W_{k+1}. With p-norms over flattened slices,

    l_i = || W_k[i] ||_p            everything unit i receives,
    r_i = || W_{k+1}[:, i] ||_p     everything unit i sends,

where after a conv -> flatten -> linear transition unit i (a channel) owns
the block of H*W consecutive input columns [i*HW, (i+1)*HW) of the linear
layer (channel-major, as ``torch.flatten`` lays it out); HW is inferred as
in_features / channels. The rescaling factor of unit i is

    d_i = sqrt(r_i / (c * l_i)),
    W_k[i] <- d_i * W_k[i],   W_{k+1}[:, i] <- W_{k+1}[:, i] / d_i,
    b_k[i] <- d_i * b_k[i]    (only with ``balance_biases=True``).

ReLU and max/avg pooling commute with a positive per-unit scaling, so a
network without normalization layers computes the same function after the
rescaling (with biases present, only if they are balanced too). After one
update of a pair r_i = c * l_i holds for its units; iterating over the
network converges to the unique point where it holds for every balanced
unit. For c = 1 and p = 2 each update minimizes the sum of squared weight
norms over the pair, so the sequential sweep never increases it.

One cycle (``step()``) visits the pairs (W_k, W_{k+1}) for k = 1..L-2; the
pair that feeds the classifier (W_{L-1}, W_L) is left alone, as in the
authors' reference, unless ``balance_last=True``.

* ``sweep="jacobi"`` (default, the reference behaviour): every d is
  computed from one snapshot of the weights, then all are applied.
* ``sweep="sequential"`` (Gauss-Seidel, the paper's analysis): for k in
  order, d is computed from the current weights and applied before k+1.

A unit with l_i = 0 or r_i = 0 (dead unit) keeps d_i = 1.

SGD momentum follows the jump: where a weight slice is multiplied by d its
momentum buffer slice is multiplied by 1/d (and by d where the weight is
divided), for every layer kind and for balanced biases. Only
``torch.optim.SGD`` (and subclasses) is supported, or no optimizer.

Layers are the parameters with dim >= 2; 1-D parameters (BatchNorm scales
and shifts, biases) are never rescaled, except a balanced layer's bias
``<prefix>.bias`` next to its ``<prefix>.weight``. With BatchNorm between
layers the function changes, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = ["ENorm"]

SWEEPS = ("jacobi", "sequential")


@dataclass
class _Pair:
    """Hidden layer between ``left`` (W_k) and ``right`` (W_{k+1}).

    The reshaping is precomputed at construction. Unit i is ``left[i]``
    (l reduces ``left_dims``, every dim but the first) and
    ``right_view(right)[:, i]`` (r reduces ``right_dims``, every dim but the
    second). ``block`` is set for a conv -> flatten -> linear transition:
    the linear weight (out x C*HW) is viewed as out x C x HW, a split of
    dim 1 that is always a view, so the in-place update reaches the weight.
    The tensors are the parameters themselves (not ``.data`` snapshots), so
    ``model.to(...)`` after construction and optimizer-state lookups work.
    """

    left_name: str
    right_name: str
    left: torch.Tensor
    right: torch.Tensor
    bias: torch.Tensor | None
    left_dims: tuple[int, ...]
    left_bshape: tuple[int, ...]  # shape of d broadcast against W_k
    right_dims: tuple[int, ...]
    right_bshape: tuple[int, ...]  # shape of d broadcast against right_view(W_{k+1})
    block: tuple[int, int, int] | None  # (out, C, HW) after a flatten, else None

    def right_view(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.block is None else t.view(self.block)

    def left_norms(self, p: float) -> torch.Tensor:
        """l_i = |W_k[i]|_p for every unit."""
        left = self.left.detach()
        return torch.linalg.vector_norm(left, ord=p, dim=self.left_dims, dtype=_norm_dtype(left))

    def right_norms(self, p: float) -> torch.Tensor:
        """r_i = |W_{k+1}[:, i]|_p for every unit (a block of columns after a flatten)."""
        right = self.right_view(self.right.detach())
        return torch.linalg.vector_norm(right, ord=p, dim=self.right_dims,
                                        dtype=_norm_dtype(right))

    def factors(self, c: float, p: float) -> torch.Tensor:
        """d_i = sqrt(r_i / (c * l_i)) for every unit, 1 for dead units."""
        left = self.left_norms(p)
        return _factors(left, self.right_norms(p).to(left.device), c)

    def apply(self, d: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> None:
        """W_k[i] *= d_i, W_{k+1}[:, i] /= d_i (+ bias, + momentum buffers)."""
        d_left = d.view(self.left_bshape)
        d_right = d.to(self.right.device).view(self.right_bshape)
        self.left.mul_(d_left)
        self.right_view(self.right).div_(d_right)
        if self.bias is not None:
            self.bias.mul_(d)
        if optimizer is None:
            return
        # The buffers move the other way: weight * d -> buffer / d.
        buf = _momentum_buffer(optimizer, self.left)
        if buf is not None:
            buf.div_(d_left)
        buf = _momentum_buffer(optimizer, self.right)
        if buf is not None:
            self.right_view(buf).mul_(d_right)
        if self.bias is not None:
            buf = _momentum_buffer(optimizer, self.bias)
            if buf is not None:
                buf.div_(d)


def _factors(left: torch.Tensor, right: torch.Tensor, c: float) -> torch.Tensor:
    """d = sqrt(r / (c l)) elementwise; 1 where l = 0 or r = 0 (dead units)."""
    alive = (left > 0) & (right > 0)
    return torch.where(alive, (right / (c * left)).sqrt(), torch.ones_like(left))


def _norm_dtype(t: torch.Tensor) -> torch.dtype | None:
    """Accumulate norms of half-precision weights in float32."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else None


def _momentum_buffer(optimizer: torch.optim.Optimizer, param: torch.Tensor):
    state = optimizer.state.get(param)  # .get: never create state entries
    if not state:
        return None
    return state.get("momentum_buffer")


class ENorm:
    """Equi-normalization of a chain of Linear / Conv layers.

    Args:
        named_params: ``model.named_parameters()`` (an iterable of
            ``(name, parameter)``, consumed once). Parameters with dim >= 2
            are the layers, in this order.
        optimizer: ``None`` or a ``torch.optim.SGD`` whose momentum buffers
            are rescaled with the weights.
        c: asymmetric scaling coefficient (> 0); at equilibrium r_i = c * l_i.
        p: norm order (> 0) of the row and column norms.
        sweep: ``"jacobi"`` (reference) or ``"sequential"`` (Gauss-Seidel).
        balance_biases: also multiply layer k's bias by d (default off, as
            the authors found training more stable).
        balance_last: also balance the hidden layer that feeds the
            classifier (off in the reference).

    Usage::

        enorm = ENorm(model.named_parameters(), optimizer, c=1)
        ...
        optimizer.step()
        enorm.step()
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer | None = None,
        c: float = 1.0,
        p: float = 2,
        sweep: str = "jacobi",
        balance_biases: bool = False,
        balance_last: bool = False,
    ):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (c > 0) or math.isinf(c):
            raise ValueError(f"ENorm: c must be a finite number > 0, got c={c!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (p > 0):
            raise ValueError(f"ENorm: p must be a number > 0 (norm order), got p={p!r}")
        if sweep not in SWEEPS:
            raise ValueError(
                f"ENorm: unknown sweep={sweep!r}; allowed values: "
                + ", ".join(repr(s) for s in SWEEPS)
            )
        if optimizer is not None and not isinstance(optimizer, torch.optim.SGD):
            raise ValueError(
                f"ENorm: optimizer of type {type(optimizer).__name__} is not supported; "
                "only torch.optim.SGD (momentum buffers) is supported, or optimizer=None"
            )

        params = list(named_params)
        by_name = dict(params)
        weights = [(n, t) for n, t in params if t.dim() >= 2]
        if len(weights) < 2:
            raise ValueError(
                "ENorm needs at least 2 weight layers (parameters with dim >= 2), got "
                f"{len(weights)}: {[n for n, _ in weights]}"
            )
        for name, w in weights:
            if w.dim() > 4:
                raise ValueError(
                    f"ENorm: weight {name!r} has {w.dim()} dims {tuple(w.shape)}; "
                    "only Linear (2-D) and Conv1d/Conv2d (3-D/4-D) weights are supported"
                )

        self.optimizer = optimizer
        self.c = float(c)
        self.p = float(p)
        self.sweep = sweep
        self.balance_biases = balance_biases
        self.balance_last = balance_last
        self.weight_names = [n for n, _ in weights]

        pairs = [
            _make_pair(weights[k], weights[k + 1], by_name if balance_biases else None)
            for k in range(len(weights) - 1)
        ]  # every pair is validated, the last one too
        self._pairs = pairs if balance_last else pairs[:-1]

    @property
    def balanced_pairs(self) -> list[tuple[str, str]]:
        """Names of (W_k, W_{k+1}) for every balanced hidden layer, in order."""
        return [(pr.left_name, pr.right_name) for pr in self._pairs]

    @torch.no_grad()
    def factors(self) -> list[torch.Tensor]:
        """The d vectors one jacobi cycle would apply now (no side effect)."""
        return [pr.factors(self.c, self.p) for pr in self._pairs]

    @torch.no_grad()
    def step(self) -> None:
        """Perform one ENorm cycle over the balanced hidden layers."""
        if self.sweep == "jacobi":
            self._jacobi()
        else:
            for pr in self._pairs:
                pr.apply(pr.factors(self.c, self.p), self.optimizer)

    def _jacobi(self) -> None:
        """All d from one snapshot, then applied with multi-tensor (foreach) ops.

        The norms are one reduction per weight and side; d = sqrt(r / (c l))
        is computed once for the concatenated units of all pairs; every
        weight (and buffer) slice is then scaled by one ``torch._foreach_*``
        call per kind of update instead of one Python call per pair. Pairs on
        several devices or with norms of mixed dtypes fall back to one pair at
        a time.
        """
        pairs = self._pairs
        lefts = [pr.left_norms(self.p) for pr in pairs]
        rights = [pr.right_norms(self.p) for pr in pairs]
        if len({(t.device, t.dtype) for t in lefts + rights}) > 1:
            ds = [_factors(left, right.to(left.device), self.c)
                  for left, right in zip(lefts, rights, strict=True)]
            for pr, d in zip(pairs, ds, strict=True):
                pr.apply(d, self.optimizer)
            return
        ds = _factors(torch.cat(lefts), torch.cat(rights), self.c).split(
            [len(left) for left in lefts]
        )
        scale: dict[str, tuple[list, list]] = {"mul": ([], []), "div": ([], [])}

        def add(kind: str, target: torch.Tensor | None, d: torch.Tensor) -> None:
            if target is not None:
                scale[kind][0].append(target)
                scale[kind][1].append(d)

        for pr, d in zip(pairs, ds, strict=True):
            d_left, d_right = d.view(pr.left_bshape), d.view(pr.right_bshape)
            add("mul", pr.left, d_left)
            add("div", pr.right_view(pr.right), d_right)
            if pr.bias is not None:
                add("mul", pr.bias, d)
            if self.optimizer is not None:
                # The buffers move the other way: weight * d -> buffer / d.
                add("div", _momentum_buffer(self.optimizer, pr.left), d_left)
                buf = _momentum_buffer(self.optimizer, pr.right)
                add("mul", None if buf is None else pr.right_view(buf), d_right)
                if pr.bias is not None:
                    add("div", _momentum_buffer(self.optimizer, pr.bias), d)
        torch._foreach_mul_(*scale["mul"])
        torch._foreach_div_(*scale["div"])


def _make_pair(left_nw, right_nw, by_name: dict[str, torch.Tensor] | None) -> _Pair:
    """Validate that W_k feeds W_{k+1} and precompute the pair's reshaping."""
    (ln, lw), (rn, rw) = left_nw, right_nw
    units = lw.shape[0]
    fan_in = rw.shape[1]
    left_conv, right_conv = lw.dim() > 2, rw.dim() > 2
    if not left_conv and right_conv:
        raise ValueError(
            f"ENorm: linear -> conv transition from {ln!r} {tuple(lw.shape)} to {rn!r} "
            f"{tuple(rw.shape)} is not supported"
        )
    if left_conv and not right_conv:  # conv -> flatten -> linear
        if fan_in % units != 0:
            raise ValueError(
                f"ENorm: {ln!r} (out {units} channels) does not feed {rn!r} (in {fan_in}): "
                f"after a flatten, in_features must be a multiple of the channel count"
            )
        block = (rw.shape[0], units, fan_in // units)
    else:
        block = None
        if fan_in != units:
            raise ValueError(
                f"ENorm: {ln!r} (out {units}) does not feed {rn!r} (in {fan_in}); "
                "consecutive weights must chain (skip connections are not supported)"
            )

    bias = None
    if by_name is not None:
        prefix, dot, last = ln.rpartition(".")
        bias_name = f"{prefix}{dot}bias" if last == "weight" else None
        if bias_name is not None and bias_name in by_name:
            bias = by_name[bias_name]
            if tuple(bias.shape) != (units,):
                raise ValueError(
                    f"ENorm: bias {bias_name!r} has shape {tuple(bias.shape)}, expected ({units},)"
                )

    right_ndim = 3 if block is not None else rw.dim()
    return _Pair(
        left_name=ln,
        right_name=rn,
        left=lw,
        right=rw,
        bias=bias,
        left_dims=tuple(range(1, lw.dim())),
        left_bshape=(units,) + (1,) * (lw.dim() - 1),
        right_dims=(0,) + tuple(range(2, right_ndim)),
        right_bshape=(1, units) + (1,) * (right_ndim - 2),
        block=block,
    )
