"""The chain of layers ENorm balances: which columns of W_{k+1} each hidden unit owns.

The parameters with dim >= 2 are the layers W_1, ..., W_L, in order. Each is
seen as ``(out, units, group)``: input unit i of W_{k+1} (output unit i of
W_k) owns ``group`` consecutive columns, kh*kw for a conv, H*W for a linear
after a conv -> flatten (H*W inferred as in_features / channels) and 1 for a
linear after a linear. ``chain`` checks that consecutive weights chain
(no skip connections, no linear -> conv) and ``bias_of`` finds the bias that
a balanced layer scales with its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Layer", "bias_of", "chain"]


@dataclass
class Layer:
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
        """``t`` (the weight or its momentum buffer) as (out, units, group), or as the
        matrix it is."""
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


def chain(weights: list[tuple[str, torch.Tensor]]) -> list[Layer]:
    """The layers of ``(name, weight)`` pairs in network order, after checking that there
    are at least two, of 2 to 4 dims, and that each feeds the next."""
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
    first_name, first = weights[0]
    layers = [Layer(first_name, first, first.shape[1], first[0, 0].numel())]
    return layers + [_next_layer(weights[k], weights[k + 1]) for k in range(len(weights) - 1)]


def _next_layer(left_nw: tuple[str, torch.Tensor], right_nw: tuple[str, torch.Tensor]) -> Layer:
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
        return Layer(rn, rw, units, fan_in // units)
    if fan_in != units:
        raise ValueError(
            f"ENorm: {ln!r} (out {units}) does not feed {rn!r} (in {fan_in}); "
            "consecutive weights must chain (skip connections are not supported)"
        )
    return Layer(rn, rw, units, rw[0, 0].numel())


def bias_of(layer: Layer, by_name: dict[str, torch.Tensor]) -> torch.Tensor | None:
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
