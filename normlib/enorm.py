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

Modules: ``enorm_chain`` (which columns each unit owns, the chain checks),
``enorm_workspace`` (the buffers and the passes of a cycle), ``enorm_kernels``
(the fused CPU kernels, with numba from the ``fast`` extra); this one holds
the public ``ENorm``, which composes the passes into a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from normlib.enorm_chain import bias_of, chain
from normlib.enorm_workspace import Workspace, storage_key

__all__ = ["ENorm"]

SWEEPS = ("jacobi", "sequential")
# The fused CPU kernels pay for numba's import and their loading (about a second per
# process) within a few hundred cycles from this many weights on; below it a cycle
# costs well under a millisecond with PyTorch's ops, and numba is not imported.
FUSED_MIN_WEIGHTS = 2**20


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
        layers = chain(weights)

        self.optimizer = optimizer
        self.c = float(c)
        self.p = float(p)
        self.sweep = sweep
        self.balance_biases = balance_biases
        self.balance_last = balance_last
        self.weight_names = [n for n, _ in weights]

        self._layers = layers
        if balance_biases:  # every pair is validated, the last one too
            for layer in self._layers[:-1]:
                layer.bias = bias_of(layer, by_name)
        self._pairs = len(weights) - 1 if balance_last else len(weights) - 2
        self._workspace: Workspace | None = None

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

    def _current_workspace(self) -> Workspace:
        """The workspace, laid out again when a weight has moved (``model.to``, a dtype
        change, channels_last) since the last cycle."""
        workspace = self._workspace
        if workspace is None or workspace.key != storage_key([x.weight for x in self._layers]):
            workspace = Workspace(self._layers, self._pairs, fuse_from=FUSED_MIN_WEIGHTS)
            self._workspace = workspace
        return workspace

    def _jacobi_factors(self) -> Workspace:
        """d of every balanced unit, all from one snapshot, in the workspace.

        Each weight is read once for its norms: W_k gives l of pair k (rows)
        and r of pair k - 1 (column blocks).
        """
        workspace = self._current_workspace()
        for k in range(self._pairs + 1):
            workspace.norms(k, self.p, k < self._pairs, k > 0)
        workspace.factors(slice(None), self.c)
        return workspace
