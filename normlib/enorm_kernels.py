"""Fused CPU kernels of the ENorm cycle (numba), one pass over a weight each.

A weight W is seen as a 2-D array (out, units) or, for a conv or a linear
after a flatten, as a 3-D array (out, units, group) whose input unit j owns
the ``group`` columns W[:, j, :].

* ``sums_of_squares``: l^2_i = sum_(j,g) W[i, j, g]^2 and
  r^2_j = sum_(i,g) W[i, j, g]^2 from one read of W (eager PyTorch writes
  the squares to a buffer and reads it back twice, or reads W four times as
  the seed code does);
* ``sums_of_row_squares``: l^2 alone;
* ``scale``: W[i, j, g] <- a_i * W[i, j, g] * b_j, rows and columns in one
  read-and-write of W (eager: a row pass then a column pass).

Row sums accumulate in float64; column sums accumulate row after row in the
weight's dtype, as ``torch.sum(squares, 0)`` does. The reductions may be
reassociated (``fastmath={"reassoc"}``, which lets them vectorize); no other
fast-math flag is set, so NaN and infinity propagate as in PyTorch.

The kernels are single-threaded: ENorm uses them on CPU tensors when PyTorch
runs with one intra-op thread (a study trial with one CPU, the benchmarks);
with more threads PyTorch's parallel kernels are used. numba is imported and
the kernels compiled on first use (about a second; compiled code is cached on
disk); without numba, ``available()`` is False and ENorm uses PyTorch ops.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

__all__ = ["available", "scale", "sums_of_row_squares", "sums_of_squares"]


@functools.cache
def _kernels() -> SimpleNamespace | None:
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(fastmath={"reassoc"}, nogil=True, cache=True)

    @jit
    def sums_of_squares_2d(w, rows, columns):
        columns[:] = 0
        for i in range(w.shape[0]):
            acc = 0.0
            for j in range(w.shape[1]):
                s = w[i, j] * w[i, j]
                acc += s
                columns[j] += s
            rows[i] = acc

    @jit
    def sums_of_squares_3d(w, rows, columns):
        columns[:] = 0
        for i in range(w.shape[0]):
            acc = 0.0
            for j in range(w.shape[1]):
                block = 0.0
                for g in range(w.shape[2]):
                    block += w[i, j, g] * w[i, j, g]
                acc += block
                columns[j] += block
            rows[i] = acc

    @jit
    def sums_of_row_squares(w, rows):
        for i in range(w.shape[0]):
            acc = 0.0
            for j in range(w.shape[1]):
                acc += w[i, j] * w[i, j]
            rows[i] = acc

    @jit
    def scale_2d(w, rows, columns):
        for i in range(w.shape[0]):
            a = rows[i]
            for j in range(w.shape[1]):
                w[i, j] *= a * columns[j]

    @jit
    def scale_3d(w, rows, columns):
        for i in range(w.shape[0]):
            a = rows[i]
            for j in range(w.shape[1]):
                f = a * columns[j]
                for g in range(w.shape[2]):
                    w[i, j, g] *= f

    return SimpleNamespace(sums_2d=sums_of_squares_2d, sums_3d=sums_of_squares_3d,
                           row_sums=sums_of_row_squares, scale_2d=scale_2d, scale_3d=scale_3d)


def available() -> bool:
    """numba can be imported (the kernels compile on their first call)."""
    return _kernels() is not None


def sums_of_squares(w: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> None:
    """rows[i] = l^2_i and columns[j] = r^2_j of a C-contiguous 2-D or 3-D ``w``."""
    kernels = _kernels()
    (kernels.sums_2d if w.ndim == 2 else kernels.sums_3d)(w, rows, columns)


def sums_of_row_squares(w: np.ndarray, rows: np.ndarray) -> None:
    """rows[i] = l^2_i of a C-contiguous ``w``, flattened to (out, everything else)."""
    _kernels().row_sums(w.reshape(w.shape[0], -1), rows)


def scale(w: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> None:
    """w[i, j, ...] *= rows[i] * columns[j], in place, for a C-contiguous 2-D or 3-D ``w``."""
    kernels = _kernels()
    (kernels.scale_2d if w.ndim == 2 else kernels.scale_3d)(w, rows, columns)
