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

import numpy as np
import torch

from normlib import enorm_kernels

__all__ = ["ENorm"]

SWEEPS = ("jacobi", "sequential")
# The fused CPU kernels pay for numba's import and their loading (about a second per
# process) within a few hundred cycles from this many weights on; below it a cycle
# costs well under a millisecond with PyTorch's ops, and numba is not imported.
FUSED_MIN_WEIGHTS = 2**20


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


@dataclass(slots=True)
class _Slots:
    """What one layer reads and writes in a ``_Workspace``.

    ``left`` / ``right``: where l^2 of its rows (the units of pair k) and r^2 of
    its column blocks (the units of pair k - 1) go; ``rows``: (d, 1/d) of pair
    k, 1-D and shaped as ``_Layer.rows``; ``cols``: (1/d, d) of pair k - 1
    (1-D, expanded by ``_Layer.columns``). None where the layer has no such side.
    """

    weight: torch.Tensor  # _Layer.view of the parameter
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
    rescale leaves alone) reads ones; the row sums of a layer without rows go
    to a spare buffer; ``blocks`` (units * group) is the kernels' scratch.
    """

    weight: np.ndarray
    blocks: np.ndarray
    left: np.ndarray
    right: np.ndarray | None
    sent: np.ndarray | None  # r^2 of pair k (what its rows' units send), for balance_rows
    rows: tuple[np.ndarray, np.ndarray]  # (d, 1/d) of pair k, or ones
    cols: tuple[np.ndarray, np.ndarray]  # (1/d, d) of pair k - 1, or ones
    ones: tuple[np.ndarray, np.ndarray]  # (out,), (units,)

    @classmethod
    def of(cls, layer: _Layer, slots: _Slots, sent: torch.Tensor | None) -> _Arrays | None:
        """The views, or None where the kernels do not apply: they run on contiguous
        float32 / float64 CPU weights in the workspace's dtype, with numba."""
        view, dtype = slots.weight, slots.squares.dtype
        if (view.device.type != "cpu" or view.dtype != dtype or not view.is_contiguous()
                or dtype not in (torch.float32, torch.float64) or not enorm_kernels.available()):
            return None
        out, units = view.shape[0], layer.units
        numpy_dtype = slots.squares.numpy().dtype
        sent = None if sent is None else sent.numpy()
        ones = (np.ones(out, numpy_dtype), np.ones(units, numpy_dtype))
        return cls(
            weight=view.detach().numpy().reshape(out, units, layer.group),
            blocks=np.empty(units * layer.group, numpy_dtype),
            left=slots.left.numpy() if slots.left is not None else np.empty_like(ones[0]),
            right=None if slots.right is None else slots.right.numpy(),
            sent=sent,
            rows=(ones[0],) * 2 if slots.rows is None else tuple(f.numpy() for f in slots.rows[:2]),
            cols=(ones[1],) * 2 if slots.cols is None else tuple(f.numpy() for f in slots.cols),
            ones=ones,
        )

    def factors(self, rows: bool, cols: bool):
        """(row, column) factors for the weight, then for its momentum buffer."""
        row = self.rows if rows else (self.ones[0],) * 2
        col = self.cols if cols else (self.ones[1],) * 2
        return (row[0], col[0]), (row[1], col[1])


class _Workspace:
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
    for networks of at least ``FUSED_MIN_WEIGHTS`` weights in the balanced layers.
    """

    def __init__(self, layers: list[_Layer], pairs: int):
        weights = [layer.weight for layer in layers]
        self.key = _storage_key(weights)
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
        fuse = sum(w.numel() for w in weights[: pairs + 1]) >= FUSED_MIN_WEIGHTS
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
        if p == 2 and cols:
            squares = torch.mul(w, w, out=slots.squares)  # half the time of torch.square
            if w.dim() == 2:
                if rows:
                    _sum_into(slots.left, squares, 1)
                _sum_into(slots.right, squares, 0)
                return
            if rows:
                _sum_into(slots.left, squares, (1, 2))
            _sum_into(slots.right, squares.sum(0), 1)
            return
        if rows:
            flat = w.flatten(1) if w.is_contiguous() else w  # one contiguous reduction per row
            _squared_norm_into(slots.left, flat, p, tuple(range(1, flat.dim())))
        if cols:
            _squared_norm_into(slots.right, w, p, (0, 2) if w.dim() == 3 else 0)

    def _fused(self, k: int) -> _Arrays | None:
        """Layer k's arrays if the fused kernels run now (CPU, PyTorch on one thread)."""
        return self.slots[k].arrays if torch.get_num_threads() == 1 else None

    def balance_rows(self, k: int, p: float, c: float) -> bool:
        """Fused: l^2 of layer k's rows, d and 1/d of pair k (its r^2 already in place)
        and the rows scaled by d, in one pass over the weight; False (nothing done) where
        the kernels do not apply."""
        arrays = self._fused(k)
        if p != 2 or arrays is None:
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

    def rescale(self, k: int, layer: _Layer, optimizer, rows: bool, cols: bool,
                weight: bool = True) -> None:
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
        row = slots.rows if rows else None
        col = slots.cols if cols else None
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
                buffer = buffer.numpy().reshape(arrays.weight.shape)
                enorm_kernels.scale(buffer, *for_buffer, arrays.blocks)
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


def _storage_key(weights: list[torch.Tensor]) -> tuple:
    """Where and how the weights are stored now; a workspace is valid while it holds."""
    return tuple((w.data_ptr(), w.dtype) for w in weights)


def _sum_into(out: torch.Tensor, t: torch.Tensor, dims) -> None:
    if out.device == t.device:
        torch.sum(t, dims, out=out)
    else:
        out.copy_(t.sum(dims))


def _squared_norm_into(out: torch.Tensor, t: torch.Tensor, p: float, dims) -> None:
    if out.device == t.device:
        torch.linalg.vector_norm(t, ord=p, dim=dims, out=out)
    else:
        out.copy_(torch.linalg.vector_norm(t, ord=p, dim=dims))
    out.square_()


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
        self._workspace: _Workspace | None = None

    @property
    def balanced_pairs(self) -> list[tuple[str, str]]:
        """Names of (W_k, W_{k+1}) for every balanced hidden layer, in order."""
        names = self.weight_names
        return [(names[k], names[k + 1]) for k in range(self._pairs)]

    @torch.no_grad()
    def factors(self) -> list[torch.Tensor]:
        """The d vectors one jacobi cycle would apply now (no side effect)."""
        workspace = self._jacobi_factors()
        return list(workspace.d.clone().split([s.stop - s.start for s in workspace.spans]))

    @torch.no_grad()
    def step(self) -> None:
        """Perform one ENorm cycle over the balanced hidden layers."""
        layers, optimizer, pairs = self._layers, self.optimizer, self._pairs
        workspace = self._current_workspace()
        if self.sweep == "jacobi":
            for k in range(1, pairs + 1):
                workspace.norms(k, self.p, k < pairs, True)
            # the first layer has rows only: with r^2 of pair 0 known, its norms,
            # factors and scaling take one pass (fused), else it joins the others
            first = pairs > 0 and workspace.balance_rows(0, self.p, self.c)
            if not first:
                workspace.norms(0, self.p, pairs > 0, False)
            workspace.factors(slice(workspace.spans[0].stop if first else 0, None), self.c)
            for k in range(pairs + 1):
                workspace.rescale(k, layers[k], optimizer, k < pairs, k > 0,
                                  weight=k > 0 or not first)
            return
        for k in range(pairs):
            workspace.norms(k + 1, self.p, rows=False, cols=True)
            fused = workspace.balance_rows(k, self.p, self.c)
            if not fused:
                workspace.norms(k, self.p, rows=True, cols=False)
                workspace.factors(workspace.spans[k], self.c)
            workspace.rescale(k, layers[k], optimizer, rows=True, cols=False, weight=not fused)
            workspace.rescale(k + 1, layers[k + 1], optimizer, rows=False, cols=True)

    def _current_workspace(self) -> _Workspace:
        workspace = self._workspace
        if workspace is None or workspace.key != _storage_key([x.weight for x in self._layers]):
            workspace = self._workspace = _Workspace(self._layers, self._pairs)
        return workspace

    def _jacobi_factors(self) -> _Workspace:
        """d of every balanced unit, all from one snapshot, in the workspace.

        Each weight is read once for its norms: W_k gives l of pair k (rows)
        and r of pair k - 1 (column blocks).
        """
        workspace = self._current_workspace()
        for k in range(self._pairs + 1):
            workspace.norms(k, self.p, k < self._pairs, k > 0)
        workspace.factors(slice(None), self.c)
        return workspace


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
