"""The buffers and passes of an ENorm cycle: norms, factors and rescaling per layer.

A ``Workspace`` is laid out once for the weights' storage and holds, for every
balanced unit, l^2, r^2, d and 1/d (see ``normlib.enorm`` for the math); its
methods are the steps ``ENorm.step`` composes into a jacobi or a sequential
sweep. Each step has two paths with the same result to float rounding:
PyTorch's ops (the default; any device, dtype and thread count) and, on CPU
with one intra-op thread and numba installed (the ``fast`` extra), the fused
kernels of ``normlib.enorm_kernels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from normlib import enorm_kernels
from normlib.enorm_chain import Layer

__all__ = ["Workspace", "storage_key"]


@dataclass(slots=True)
class _Slots:
    """What one layer reads and writes in a ``Workspace``.

    ``left`` / ``right``: where l^2 of its rows (the units of pair k) and r^2 of
    its column blocks (the units of pair k - 1) go; ``rows``: (d, 1/d) of pair
    k, 1-D and shaped as ``Layer.rows``; ``cols``: (1/d, d) of pair k - 1
    (1-D, expanded by ``Layer.columns``). None where the layer has no such side.
    """

    weight: torch.Tensor  # Layer.view of the parameter
    squares: torch.Tensor  # scratch of the weight view's shape, in the norms' dtype
    left: torch.Tensor | None
    right: torch.Tensor | None
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None
    cols: tuple[torch.Tensor, torch.Tensor] | None
    home: bool  # on the workspace's device: factors need no copy
    arrays: _Arrays | None = None  # for the fused CPU kernels, where they apply


@dataclass(slots=True)
class _Arrays:
    """numpy views (shared memory) of a layer's weight and slots, for ``enorm_kernels``.

    The weight is seen as (out, units, group). A side the layer lacks (or a
    rescale leaves alone) reads ones; the row sums of a layer without rows (and
    the column sums of a layer without columns) go to a spare buffer; ``blocks``
    (units * group) is the kernels' scratch.
    """

    weight: np.ndarray
    blocks: np.ndarray
    left: np.ndarray
    right: np.ndarray
    sent: np.ndarray | None  # r^2 of pair k (what its rows' units send), for balance_rows
    rows: tuple[np.ndarray, np.ndarray]  # (d, 1/d) of pair k, or ones
    cols: tuple[np.ndarray, np.ndarray]  # (1/d, d) of pair k - 1, or ones
    ones: tuple[np.ndarray, np.ndarray]  # (out,), (units,)

    @classmethod
    def of(cls, layer: Layer, slots: _Slots, sent: torch.Tensor | None) -> _Arrays | None:
        """The views, or None where the kernels do not apply: they run on contiguous
        float32 / float64 CPU weights in the workspace's dtype, with numba."""
        view, dtype = slots.weight, slots.squares.dtype
        if (view.device.type != "cpu" or view.dtype != dtype or not view.is_contiguous()
                or dtype not in (torch.float32, torch.float64) or not enorm_kernels.available()):
            return None
        out, units = view.shape[0], layer.units
        numpy_dtype = slots.squares.numpy().dtype
        ones = (np.ones(out, numpy_dtype), np.ones(units, numpy_dtype))
        return cls(
            weight=view.detach().numpy().reshape(out, units, layer.group),
            blocks=np.empty(units * layer.group, numpy_dtype),
            left=slots.left.numpy() if slots.left is not None else np.empty_like(ones[0]),
            right=slots.right.numpy() if slots.right is not None else np.empty_like(ones[1]),
            sent=None if sent is None else sent.numpy(),
            rows=(ones[0],) * 2 if slots.rows is None else (slots.rows[0].numpy(),
                                                             slots.rows[1].numpy()),
            cols=(ones[1],) * 2 if slots.cols is None else (slots.cols[0].numpy(),
                                                             slots.cols[1].numpy()),
            ones=ones,
        )

    def factors(self, rows: bool, cols: bool) -> tuple[tuple[np.ndarray, np.ndarray],
                                                       tuple[np.ndarray, np.ndarray]]:
        """(row, column) factors for the weight, then for its momentum buffer."""
        row = self.rows if rows else (self.ones[0],) * 2
        col = self.cols if cols else (self.ones[1],) * 2
        return (row[0], col[0]), (row[1], col[1])


class Workspace:
    """Buffers and views for the cycles of an ``ENorm``, laid out once for the weights'
    current storage (``ENorm`` lays them out again when a weight moves: ``model.to``,
    ``model.double()``, channels_last).

    ``left``, ``right``, ``d`` and ``inverse`` hold l^2, r^2, d and 1/d of every
    balanced unit, pair after pair (pair k at ``spans[k]``), on the first
    weight's device, in float64 if any weight is float64 and else float32 (half
    weights accumulate in float32). Every layer keeps views of its slices and
    of one squares buffer shared by all layers, so a cycle allocates nothing
    but a few unit-sized temporaries and makes no views, and a reduction writes
    straight into its slice (no concatenation).

    On CPU with one intra-op thread, contiguous float weights go through the
    fused kernels of ``enorm_kernels``: one read per weight for both norms, one
    read-and-write per weight (and per momentum buffer) for both scalings; only
    for networks of at least ``fuse_from`` weights in the balanced layers, and
    only where numba imports.
    """

    def __init__(self, layers: list[Layer], pairs: int, fuse_from: int):
        weights = [layer.weight for layer in layers]
        self.key = storage_key(weights)
        self.dtype = torch.float64 if torch.float64 in {w.dtype for w in weights} else torch.float32
        device = weights[0].device
        units = [layers[k + 1].units for k in range(pairs)]
        self.left, self.right, self.d, self.inverse = (
            torch.empty(4, sum(units), dtype=self.dtype, device=device).unbind())
        starts = [sum(units[:k]) for k in range(pairs)]
        self.spans = [slice(s, s + n) for s, n in zip(starts, units, strict=True)]
        largest: dict[torch.device, int] = {}
        for w in weights[: pairs + 1]:
            largest[w.device] = max(largest.get(w.device, 0), w.numel())
        squares = {dev: torch.empty(n, dtype=self.dtype, device=dev) for dev, n in largest.items()}
        fuse = sum(w.numel() for w in weights[: pairs + 1]) >= fuse_from
        self.slots = []
        for k, layer in enumerate(layers[: pairs + 1]):
            view = layer.view(layer.weight)
            scratch = squares[view.device][: view.numel()].view(view.shape)
            slots = _Slots(weight=view, squares=scratch, left=None, right=None, rows=None,
                           cols=None, home=view.device == device)
            if k < pairs:
                span = self.spans[k]
                slots.left = self.left[span]
                d, inverse = self.d[span], self.inverse[span]
                slots.rows = (d, inverse, layer.rows(d), layer.rows(inverse))
            if k > 0:
                span = self.spans[k - 1]
                slots.right = self.right[span]
                slots.cols = (self.inverse[span], self.d[span])
            if slots.home and fuse:
                sent = self.right[self.spans[k]] if k < pairs else None
                slots.arrays = _Arrays.of(layer, slots, sent)
            self.slots.append(slots)

    def norms(self, k: int, p: float, rows: bool, cols: bool) -> None:
        """l^2 of layer k's rows and r^2 of its column blocks (each only if asked).

        Fused kernel: one pass over the weight. Otherwise, for p = 2 both come
        from one tensor of squares (written into the shared scratch, so no
        fresh memory is touched): l^2 sums it over (units, group), r^2 over
        (out, group), each a contiguous reduction (far faster on CPU than
        ``vector_norm`` across the outer dim); a weight whose rows alone are
        asked is reduced row by row with ``vector_norm``.
        """
        slots = self.slots[k]
        arrays = self._fused(k)
        if p == 2 and arrays is not None:
            if cols:
                enorm_kernels.sums_of_squares(arrays.weight, arrays.left, arrays.right,
                                              arrays.blocks)
            elif rows:
                enorm_kernels.sums_of_row_squares(arrays.weight, arrays.left)
            return
        w = slots.weight if slots.weight.dtype == self.dtype else slots.weight.to(self.dtype)
        left = slots.left if rows else None  # rows are asked only of a layer that has them
        right = slots.right if cols else None
        if p == 2 and right is not None:
            squares = torch.mul(w, w, out=slots.squares)  # half the time of torch.square
            if w.dim() == 2:
                if left is not None:
                    _sum_into(left, squares, 1)
                _sum_into(right, squares, 0)
                return
            if left is not None:
                _sum_into(left, squares, (1, 2))
            _sum_into(right, squares.sum(0), 1)
            return
        if left is not None:
            flat = w.flatten(1) if w.is_contiguous() else w  # one contiguous reduction per row
            _squared_norm_into(left, flat, p, tuple(range(1, flat.dim())))
        if right is not None:
            _squared_norm_into(right, w, p, (0, 2) if w.dim() == 3 else 0)

    def _fused(self, k: int) -> _Arrays | None:
        """Layer k's arrays if the fused kernels run now (CPU, PyTorch on one thread)."""
        return self.slots[k].arrays if torch.get_num_threads() == 1 else None

    def balance_rows(self, k: int, p: float, c: float) -> bool:
        """Fused: l^2 of layer k's rows, d and 1/d of pair k (its r^2 already in place)
        and the rows scaled by d, in one pass over the weight; False (nothing done) where
        the kernels do not apply."""
        arrays = self._fused(k)
        if p != 2 or arrays is None or arrays.sent is None:  # sent: every layer with rows
            return False
        enorm_kernels.balance_rows(arrays.weight, arrays.sent, c, arrays.left, *arrays.rows)
        return True

    def factors(self, span: slice, c: float) -> None:
        """d = sqrt(r / (c l)) = (r^2 / l^2)^(1/4) / sqrt(c) and 1/d for the units in
        ``span``, from the squared norms there; d = 1 where l = 0 or r = 0 (dead units)."""
        left, right, d = self.left[span], self.right[span], self.d[span]
        torch.div(right, left, out=d).sqrt_().sqrt_()  # two square roots: 20x faster than pow
        if c != 1:
            d.mul_(c**-0.5)
        d.masked_fill_((left > 0).logical_and_(right > 0).logical_not_(), 1.0)
        torch.reciprocal(d, out=self.inverse[span])

    def rescale(self, k: int, layer: Layer, optimizer: torch.optim.Optimizer | None,
                rows: bool, cols: bool, weight: bool = True) -> None:
        """W_k <- diag(d_k) W_k diag(1/d_(k-1)) (the sides asked for; the weight itself
        only if ``weight``), and its momentum buffer with the inverse factors (weight * d
        -> buffer / d).

        Fused kernel: one pass per tensor. Otherwise a multiplication by a
        broadcast row factor, then one by a broadcast column factor (1/d
        repeated over the unit's block of columns), back to back so the second
        finds the weight in cache (one kernel each; ``torch._foreach_mul_``
        would launch the same kernels, as the factors' shapes differ from the
        weights'). A balanced bias takes the row factor.
        """
        slots = self.slots[k]
        row: tuple[torch.Tensor, ...] | None = slots.rows if rows else None
        col: tuple[torch.Tensor, ...] | None = slots.cols if cols else None
        if not slots.home:
            device = slots.weight.device
            row = row and tuple(f.to(device) for f in row)
            col = col and tuple(f.to(device) for f in col)
        buffer = _momentum_buffer(optimizer, layer.weight)
        buffer = None if buffer is None else layer.view(buffer)
        arrays = self._fused(k)
        if arrays is not None:
            for_weight, for_buffer = arrays.factors(rows, cols)
            if weight:
                enorm_kernels.scale(arrays.weight, *for_weight, arrays.blocks)
            if buffer is not None and buffer.dtype == self.dtype and buffer.is_contiguous():
                array = buffer.numpy().reshape(arrays.weight.shape)
                enorm_kernels.scale(array, *for_buffer, arrays.blocks)
                buffer = None
        elif weight:
            if row is not None:
                slots.weight.mul_(row[2])
            if col is not None:
                slots.weight.mul_(layer.columns(col[0]))
        if buffer is not None:
            if row is not None:
                buffer.mul_(row[3])
            if col is not None:
                buffer.mul_(layer.columns(col[1]))
        if layer.bias is not None and row is not None:
            layer.bias.mul_(row[0])
            buffer = _momentum_buffer(optimizer, layer.bias)
            if buffer is not None:
                buffer.mul_(row[1])


def storage_key(weights: list[torch.Tensor]) -> tuple[tuple[int, torch.dtype], ...]:
    """Where and how the weights are stored now; a workspace is valid while it holds."""
    return tuple((w.data_ptr(), w.dtype) for w in weights)


def _sum_into(out: torch.Tensor, t: torch.Tensor, dims: int | tuple[int, ...]) -> None:
    """out = the sums of ``t`` over ``dims``, written in place (copied across devices)."""
    if out.device == t.device:
        torch.sum(t, dims, out=out)
    else:
        out.copy_(t.sum(dims))


def _squared_norm_into(out: torch.Tensor, t: torch.Tensor, p: float,
                       dims: int | tuple[int, ...]) -> None:
    """out = the p-norms of ``t`` over ``dims``, squared, in place."""
    if out.device == t.device:
        torch.linalg.vector_norm(t, ord=p, dim=dims, out=out)
    else:
        out.copy_(torch.linalg.vector_norm(t, ord=p, dim=dims))
    out.square_()


def _momentum_buffer(optimizer: torch.optim.Optimizer | None,
                     param: torch.Tensor) -> torch.Tensor | None:
    """SGD's momentum buffer of ``param``, None before the first step or without one."""
    if optimizer is None:
        return None
    state = optimizer.state.get(param)  # .get: never create state entries
    if not state:
        return None
    return state.get("momentum_buffer")

