"""Fused CPU kernels of the ENorm cycle (numba), one pass over a weight each.

A weight W is a C-contiguous 3-D array (out, units, group): input unit j owns
the ``group`` columns W[:, j, :] (kh*kw for a conv, H*W for a linear after a
flatten, 1 for a linear after a linear). The kernels walk it as the 2-D
array (out, units * group), so the inner loop runs over contiguous memory
and vectorizes whatever the group:

* ``sums_of_squares``: l^2_i = sum_(j,g) W[i, j, g]^2 and
  r^2_j = sum_(i,g) W[i, j, g]^2 from one read of W (eager PyTorch writes
  the squares to a buffer and reads it back twice; the seed code reads W
  four times in a cycle);
* ``sums_of_row_squares``: l^2 alone;
* ``balance_rows``: where r^2 is known, row by row: l^2_i, then
  d_i = (r^2_i / l^2_i)^(1/4) / sqrt(c) (1 where l_i = 0 or r_i = 0, a dead
  unit), then W[i] <- d_i * W[i], while the row is in cache: the norms, the
  factors and the row scaling of a layer in one read-and-write of W;
* ``scale``: W[i, j, g] <- a_i * W[i, j, g] * b_j, rows and columns in one
  read-and-write of W (eager: a row pass, then a column pass).

Row sums accumulate in float64; column sums accumulate row after row in the
weight's dtype, as ``torch.sum(squares, 0)`` does, into ``blocks`` (one per
column, units * group), then over each unit's group. The reductions may be
reassociated (``fastmath={"reassoc"}``, which lets them vectorize); no other
fast-math flag is set, so NaN and infinity propagate as in PyTorch.

The kernels are single-threaded: ENorm uses them on CPU tensors when PyTorch
runs with one intra-op thread (a study trial with one CPU, the benchmarks);
with more threads PyTorch's parallel kernels are used. numba is imported and
the kernels compiled on first use (about a second; compiled code is cached on
disk); without numba (it comes with the ``fast`` extra), ``available()`` is
False and ENorm uses PyTorch ops.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

__all__ = ["available", "balance_rows", "scale", "sums_of_row_squares", "sums_of_squares"]


@functools.cache
def _kernels() -> SimpleNamespace | None:
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(fastmath={"reassoc"}, nogil=True, cache=True)

    @jit
    def sums_of_squares(w: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                        blocks: np.ndarray) -> None:
        out, units, group = w.shape
        flat = w.reshape(out, units * group)
        blocks[:] = 0
        for i in range(out):
            acc = 0.0
            for j in range(units * group):
                s = flat[i, j] * flat[i, j]
                acc += s
                blocks[j] += s
            rows[i] = acc
        for j in range(units):
            acc = 0.0
            for g in range(group):
                acc += blocks[j * group + g]
            columns[j] = acc

    @jit
    def sums_of_row_squares(w: np.ndarray, rows: np.ndarray) -> None:
        for i in range(w.shape[0]):
            acc = 0.0
            for j in range(w.shape[1]):
                acc += w[i, j] * w[i, j]
            rows[i] = acc

    @jit
    def balance_rows(w: np.ndarray, right: np.ndarray, c_factor: float, left: np.ndarray,
                     d: np.ndarray, inverse: np.ndarray) -> None:
        out, units, group = w.shape
        flat = w.reshape(out, units * group)
        for i in range(out):
            acc = 0.0
            for j in range(units * group):
                acc += flat[i, j] * flat[i, j]
            left[i] = acc
            if left[i] > 0 and right[i] > 0:
                d[i] = np.sqrt(np.sqrt(right[i] / left[i])) * c_factor
            else:
                d[i] = 1
            inverse[i] = 1 / d[i]
            f = d[i]
            for j in range(units * group):
                flat[i, j] *= f

    @jit
    def scale(w: np.ndarray, rows: np.ndarray, columns: np.ndarray,
              blocks: np.ndarray) -> None:
        out, units, group = w.shape
        for j in range(units):
            for g in range(group):
                blocks[j * group + g] = columns[j]
        flat = w.reshape(out, units * group)
        for i in range(out):
            a = rows[i]
            for j in range(units * group):
                flat[i, j] *= a * blocks[j]

    return SimpleNamespace(sums=sums_of_squares, row_sums=sums_of_row_squares,
                           balance_rows=balance_rows, scale=scale)


def available() -> bool:
    """numba can be imported (the kernels compile on their first call)."""
    return _kernels() is not None


def _loaded() -> SimpleNamespace:
    """The compiled kernels; ImportError naming the extra where numba is missing."""
    kernels = _kernels()
    if kernels is None:
        raise ImportError("normlib.enorm_kernels needs numba: pip install 'normstudy[fast]'")
    return kernels


def sums_of_squares(w: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                    blocks: np.ndarray) -> None:
    """rows[i] = l^2_i and columns[j] = r^2_j of ``w`` (out, units, group);
    ``blocks`` (units * group) is scratch."""
    _loaded().sums(w, rows, columns, blocks)


def sums_of_row_squares(w: np.ndarray, rows: np.ndarray) -> None:
    """rows[i] = l^2_i of ``w`` (out, units, group)."""
    _loaded().row_sums(w.reshape(w.shape[0], -1), rows)


def balance_rows(w: np.ndarray, right: np.ndarray, c: float, left: np.ndarray, d: np.ndarray,
                 inverse: np.ndarray) -> None:
    """Given r^2 (``right``), write l^2, d and 1/d of the rows of ``w`` (out, units, group)
    into ``left``, ``d``, ``inverse`` and scale each row by its d, in place."""
    _loaded().balance_rows(w, right, c**-0.5, left, d, inverse)


def scale(w: np.ndarray, rows: np.ndarray, columns: np.ndarray, blocks: np.ndarray) -> None:
    """w[i, j, g] *= rows[i] * columns[j], in place; ``blocks`` (units * group) is scratch."""
    _loaded().scale(w, rows, columns, blocks)
