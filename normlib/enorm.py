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
class _Layer:
    """One weight W_k seen as ``(out, units, group)``: input unit i owns ``group`` columns.

    ``group`` is kh*kw for a conv, H*W for a linear after a conv -> flatten
    (channel-major, as ``torch.flatten`` lays it out) and 1 for a linear after
    a linear, whose weight is used as the (out, units) matrix it is. ``view``
    splits only the trailing dims, so it is a view of the parameter (and of
    its momentum buffer), contiguous or channels_last, and the in-place
    updates reach them. ``weight`` is the parameter itself (not a ``.data``
    snapshot), so ``model.to(...)`` after construction and optimizer-state
    lookups keep working.
    """

    name: str
    weight: torch.Tensor
    units: int
    group: int
    bias: torch.Tensor | None = None  # balanced with the rows (balance_biases)

    @property
    def matrix(self) -> bool:
        """A linear after a linear: rows and columns of the weight are the units."""
        return self.group == 1 and self.weight.dim() == 2

    def view(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.matrix else t.view(t.shape[0], self.units, self.group)

    def rows(self, d: torch.Tensor) -> torch.Tensor:
        """A factor per output unit, broadcast against ``view``."""
        return d.view(-1, 1) if self.matrix else d.view(-1, 1, 1)

    def columns(self, d: torch.Tensor) -> torch.Tensor:
        """A factor per input unit as a factor per column, broadcast against ``view``."""
        if self.matrix:
            return d
        if self.group == 1:
            return d.view(-1, 1)
        return d.repeat_interleave(self.group).view(self.units, self.group)

    def squared_norms(self, p: float, rows: bool, cols: bool, scratch: _Scratch):
        """(l^2, r^2): the squared p-norms of the rows (out) and of the column blocks (units).

        Each only if asked (else None). For p = 2 both come from one tensor of
        squares (written into ``scratch``, reused from layer to layer and
        cycle to cycle, so no fresh memory is touched): l^2 sums it over
        (units, group), r^2 over (out, group), each a contiguous reduction
        (far faster on CPU than ``vector_norm`` across the outer dim).
        Half-precision weights accumulate in float32.
        """
        w = self.view(self.weight)
        if w.dtype in (torch.float16, torch.bfloat16):
            w = w.float()
        if p != 2 or not cols:
            if rows and not cols and w.is_contiguous():  # one contiguous reduction per row
                flat = w if self.matrix else w.view(w.shape[0], -1)
                return torch.linalg.vector_norm(flat, ord=p, dim=1).square_(), None
            dims = tuple(range(1, w.dim()))
            left = torch.linalg.vector_norm(w, ord=p, dim=dims).square_() if rows else None
            right = (torch.linalg.vector_norm(w, ord=p, dim=(0, *dims[1:])).square_().view(-1)
                     if cols else None)  # fmt: skip
            return left, right
        squares = torch.mul(w, w, out=scratch.like(w))  # half the time of torch.square
        if self.matrix:
            return (squares.sum(1) if rows else None), squares.sum(0)
        right = squares.sum(0)
        right = right.sum(1) if self.group > 1 else right.view(-1)
        return (squares.sum((1, 2)) if rows else None), right


class _Scratch:
    """One flat buffer per (device, dtype), grown to the largest tensor asked for; the view
    of each shape asked for is kept, so asking again costs no tensor operation."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._views: dict[tuple[torch.device, torch.dtype, torch.Size], torch.Tensor] = {}

    def like(self, t: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of t's shape, dtype and device (contents undefined)."""
        key = (t.device, t.dtype, t.shape)
        view = self._views.get(key)
        if view is not None:
            return view
        buffer = self._buffers.get(key[:2])
        if buffer is None or buffer.numel() < t.numel():
            buffer = self._buffers[key[:2]] = t.new_empty(t.numel())
            self._views = {k: v for k, v in self._views.items() if k[:2] != key[:2]}
        view = self._views[key] = buffer[: t.numel()].view(t.shape)
        return view


def _factors(lefts: list[torch.Tensor], rights: list[torch.Tensor], c: float) -> torch.Tensor:
    """d = sqrt(r / (c l)) = (r^2 / l^2)^(1/4) / sqrt(c) from the squared norms, for the
    units of all pairs at once (on the first pair's device); 1 where l = 0 or r = 0
    (dead units)."""
    device = lefts[0].device
    left = torch.cat([t.to(device) for t in lefts])
    right = torch.cat([t.to(device) for t in rights])
    alive = (left > 0) & (right > 0)
    return torch.where(alive, (right / left).pow_(0.25).mul_(c**-0.5), torch.ones_like(left))


def _momentum_buffer(optimizer: torch.optim.Optimizer | None, param: torch.Tensor):
    if optimizer is None:
        return None
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

        self._layers = [_Layer(*weights[0], weights[0][1].shape[1], weights[0][1][0, 0].numel())]
        self._layers += [_make_layer(weights[k], weights[k + 1]) for k in range(len(weights) - 1)]
        if balance_biases:  # every pair is validated, the last one too
            for layer in self._layers[:-1]:
                layer.bias = _bias_of(layer, by_name)
        self._pairs = len(weights) - 1 if balance_last else len(weights) - 2
        self._scratch = _Scratch()

    @property
    def balanced_pairs(self) -> list[tuple[str, str]]:
        """Names of (W_k, W_{k+1}) for every balanced hidden layer, in order."""
        names = self.weight_names
        return [(names[k], names[k + 1]) for k in range(self._pairs)]

    @torch.no_grad()
    def factors(self) -> list[torch.Tensor]:
        """The d vectors one jacobi cycle would apply now (no side effect)."""
        return self._jacobi_factors().split(self._units())

    @torch.no_grad()
    def step(self) -> None:
        """Perform one ENorm cycle over the balanced hidden layers."""
        if self.sweep == "jacobi":
            d = self._jacobi_factors()
            self._rescale(0, d.split(self._units()), d.reciprocal().split(self._units()))
            return
        for k in range(self._pairs):
            left, _ = self._layers[k].squared_norms(self.p, True, False, self._scratch)
            _, right = self._layers[k + 1].squared_norms(self.p, False, True, self._scratch)
            d = _factors([left], [right], self.c)
            self._rescale(k, [d], [d.reciprocal()])

    def _units(self) -> list[int]:
        return [self._layers[k + 1].units for k in range(self._pairs)]

    def _jacobi_factors(self) -> torch.Tensor:
        """d of every balanced unit (pairs concatenated), all from one snapshot.

        Each weight is read once for its norms: W_k gives l of pair k (rows)
        and r of pair k - 1 (column blocks).
        """
        lefts, rights = [], []
        for k, layer in enumerate(self._layers[: self._pairs + 1]):
            left, right = layer.squared_norms(self.p, k < self._pairs, k > 0, self._scratch)
            lefts += [left] if left is not None else []
            rights += [right] if right is not None else []
        return _factors(lefts, rights, self.c)

    def _rescale(self, first: int, ds: list[torch.Tensor], inverses: list[torch.Tensor]) -> None:
        """W_k <- diag(d_k) W_k diag(1/d_{k-1}) for the pairs k = first, first + 1, ...

        Weight by weight, a multiplication by a broadcast row factor and one
        by a broadcast column factor (1/d repeated over the unit's block of
        columns), back to back so the second finds the weight in cache (one
        kernel each; ``torch._foreach_mul_`` would launch the same kernels, as
        the factors' shapes differ from the weights'). The momentum buffer
        gets the inverse factors (weight * d -> buffer / d), a balanced bias
        the row factor.
        """
        last = first + len(ds)
        device = ds[0].device if ds else None
        for k in range(first, last + 1):
            layer = self._layers[k]
            rows = (ds[k - first], inverses[k - first]) if k < last else None
            cols = (inverses[k - first - 1], ds[k - first - 1]) if k > first else None
            if layer.weight.device != device:
                rows = rows and tuple(d.to(layer.weight.device) for d in rows)
                cols = cols and tuple(d.to(layer.weight.device) for d in cols)
            buffer = _momentum_buffer(self.optimizer, layer.weight)
            for i, t in enumerate((layer.weight, buffer)):  # the buffer takes the inverses
                if t is None:
                    continue
                t = layer.view(t)
                if rows is not None:
                    t.mul_(layer.rows(rows[i]))
                if cols is not None:
                    t.mul_(layer.columns(cols[i]))
            if layer.bias is not None and rows is not None:
                layer.bias.mul_(rows[0])
                buffer = _momentum_buffer(self.optimizer, layer.bias)
                if buffer is not None:
                    buffer.mul_(rows[1])


def _make_layer(left_nw, right_nw) -> _Layer:
    """W_{k+1} as a ``_Layer``, after checking that W_k feeds it."""
    (ln, lw), (rn, rw) = left_nw, right_nw
    units, fan_in = lw.shape[0], rw.shape[1]
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
        return _Layer(rn, rw, units, fan_in // units)
    if fan_in != units:
        raise ValueError(
            f"ENorm: {ln!r} (out {units}) does not feed {rn!r} (in {fan_in}); "
            "consecutive weights must chain (skip connections are not supported)"
        )
    return _Layer(rn, rw, units, rw[0, 0].numel())


def _bias_of(layer: _Layer, by_name: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """``<prefix>.bias`` next to the layer's ``<prefix>.weight``, if any (shape checked)."""
    prefix, dot, last = layer.name.rpartition(".")
    name = f"{prefix}{dot}bias"
    bias = by_name.get(name) if last == "weight" else None
    units = layer.weight.shape[0]
    if bias is not None and tuple(bias.shape) != (units,):
        raise ValueError(
            f"ENorm: bias {name!r} has shape {tuple(bias.shape)}, expected ({units},)"
        )
    return bias
