"""The fused ENorm kernels against numpy, written from their one-line contracts."""

from __future__ import annotations

import numpy as np
import pytest

from normlib import enorm_kernels

if not enorm_kernels.available():  # CI has it (dev brings `fast`): test_enorm_without_numba
    pytest.skip("numba (the `fast` extra) is not installed", allow_module_level=True)

SHAPES = [(7, 5, 1), (6, 4, 9), (3, 1, 1), (1, 300, 1), (5, 3, 16)]


def array(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_sums_of_squares(shape, dtype):
    w = array(shape, dtype)
    rows, columns = np.full(shape[0], np.nan, dtype), np.full(shape[1], np.nan, dtype)
    blocks = np.full(shape[1] * shape[2], np.nan, dtype)  # scratch: its contents do not matter
    enorm_kernels.sums_of_squares(w, rows, columns, blocks)
    squares = w.astype(np.float64) ** 2
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(rows, squares.reshape(shape[0], -1).sum(1), rtol=tol)
    np.testing.assert_allclose(columns, squares.swapaxes(0, 1).reshape(shape[1], -1).sum(1),
                               rtol=tol)
    only_rows = np.full(shape[0], np.nan, dtype)
    enorm_kernels.sums_of_row_squares(w, only_rows)
    np.testing.assert_allclose(only_rows, rows, rtol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_scale_rows_and_columns_in_place(shape, dtype):
    w = array(shape, dtype)
    a, b = array(shape[0], dtype, 1) ** 2, array(shape[1], dtype, 2) ** 2
    want = w * a.reshape(-1, 1, 1) * b.reshape(1, -1, 1)
    enorm_kernels.scale(w, a, b, np.full(shape[1] * shape[2], np.nan, dtype))
    np.testing.assert_allclose(w, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_nan_and_infinity_propagate():
    """Only reassociation is allowed: no fast-math flag that assumes finite values."""
    w = np.ones((3, 4, 1), np.float32)
    w[0, 1], w[2, 3] = np.nan, np.inf
    rows, columns = np.empty(3, np.float32), np.empty(4, np.float32)
    enorm_kernels.sums_of_squares(w, rows, columns, np.empty(4, np.float32))
    assert np.isnan(rows[0]) and rows[1] == 4 and np.isinf(rows[2])
    assert np.isnan(columns[1]) and np.isinf(columns[3]) and columns[0] == 3


@pytest.mark.parametrize("c", [1.0, 1.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_balance_rows(shape, dtype, c):
    """d_i = (r^2_i / l^2_i)^(1/4) / sqrt(c), 1 for a dead unit; rows scaled in place."""
    w = array(shape, dtype)
    right = array(shape[0], dtype, 3) ** 2
    w[0] = 0  # dead: l = 0
    if shape[0] > 2:
        right[2] = 0  # dead: r = 0
    before = w.astype(np.float64)
    left, d, inverse = (np.full(shape[0], np.nan, dtype) for _ in range(3))
    enorm_kernels.balance_rows(w, right, c, left, d, inverse)
    l2 = (before**2).reshape(shape[0], -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where((l2 > 0) & (right > 0), (right / l2) ** 0.25 / np.sqrt(c), 1.0)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(left, l2, rtol=tol)
    np.testing.assert_allclose(d, want, rtol=tol)
    np.testing.assert_allclose(inverse, 1 / want, rtol=tol)
    np.testing.assert_allclose(w, before * want.reshape(-1, 1, 1), rtol=tol)
    assert d[0] == 1
