"""The unit sphere, one point per row: the geometry behind SGD-G and Adam-G.

A weight followed by batch normalization is scale invariant per output unit,
so each row y (the first dimension is the row, the rest is flattened) is a
point on the unit sphere S^{n-1}; the Grassmann manifold of lines through
the origin is that sphere with y ~ -y, and shares its local geometry. Every
function takes ``(rows, n)`` matrices, or a batch ``(P, rows, n)`` of P such
matrices of one shape, and works on all rows at once; per-row scalars keep
the shape ``(..., rows, 1)``. With |.| the row-wise 2-norm:

* tangent projection      h = g - (y.g) y
* exponential map         exp_y(m) = y cos|m| + (m/|m|) sin|m|
* transport of m along its own geodesic to exp_y(m)
                          m -> (u cos|m| - y sin|m|) |m|,  u = m/|m|
* transport of a tangent m along the geodesic of direction d to exp_y(d)
                          m -> m - (u.m)(y sin|d| + u (1 - cos|d|)),  u = d/|d|
* per-row clipping        h -> h min(1, c/|h|)
* orthogonality penalty   omega ||Y Y^T - I||_F^2 / 2, gradient 2 omega (Y Y^T Y - Y)

y is always the start point of the geodesic. A zero-norm vector is safe
everywhere: it gives no NaN, exp_y(0) = y and a zero step transports
nothing.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "as_rows",
    "row_norms",
    "unit_rows",
    "project_tangent",
    "exp_map",
    "transport_own",
    "transport",
    "clip_rows",
    "add_orthogonality_grad",
]


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """View any tensor of rank >= 1 as ``(rows, n)``: rows = first dim, the rest flattened."""
    return t.reshape(t.shape[0], -1)


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """|x_i| for every row, shape ``(..., rows, 1)``."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _unit_direction(x: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """x / |x| row-wise; a zero row stays zero (no NaN)."""
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def unit_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_i / |x_i|, |x_i|) for every row; a zero row stays zero."""
    norm = row_norms(x)
    return _unit_direction(x, norm), norm


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a_i . b_i for every row, shape ``(..., rows, 1)``."""
    return torch.linalg.vecdot(a, b, dim=-1).unsqueeze(-1)


def project_tangent(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """h = g - (y.g) y, the component of g tangent to the unit sphere at y."""
    return torch.addcmul(g, y, _row_dot(y, g), value=-1)


def exp_map(y: torch.Tensor, m: torch.Tensor, norm: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """exp_y(m) = y cos|m| + (m/|m|) sin|m|; exp_y(0) = y.

    Written y cos|m| + m sinc(|m|) with sinc(x) = sin(x)/x = 1 at 0: no division.
    ``norm`` may pass |m| (``row_norms(m)``) when the caller has it already;
    ``out``, a tensor of y's shape sharing memory with neither y nor m, receives
    the result.
    """
    norm = row_norms(m) if norm is None else norm
    return torch.mul(y, torch.cos(norm), out=out).addcmul_(m, torch.sinc(norm / math.pi))


def transport_own(
    y: torch.Tensor, m: torch.Tensor, norm: torch.Tensor | None = None, out: bool = False
) -> torch.Tensor:
    """Parallel transport of m along its own geodesic from y to exp_y(m).

    (u cos|m| - y sin|m|) |m| with u = m/|m|, written m cos|m| - y |m| sin|m|,
    which needs no division and is 0 for m = 0. The result is tangent at exp_y(m).
    ``norm``: |m| if known; ``out=True`` overwrites m with the result.
    """
    norm = row_norms(m) if norm is None else norm
    moved = m.mul_(torch.cos(norm)) if out else m * torch.cos(norm)
    return moved.addcmul_(y, norm * torch.sin(norm), value=-1)


def transport(
    y: torch.Tensor,
    direction: torch.Tensor,
    m: torch.Tensor,
    norm: torch.Tensor | None = None,
    out: bool = False,
) -> torch.Tensor:
    """Parallel transport of a tangent m along the geodesic from y to exp_y(direction).

    m - (u.m)(y sin|d| + u (1 - cos|d|)), u = d/|d|: the component of m along u
    turns with the geodesic, the rest is unchanged. d = 0 leaves m unchanged.
    ``norm``: |d| if known; ``out=True`` overwrites m with the result.
    """
    norm = row_norms(direction) if norm is None else norm
    u = _unit_direction(direction, norm)
    along = _row_dot(u, m)
    sin = along * torch.sin(norm)
    turned = m.addcmul_(y, sin, value=-1) if out else torch.addcmul(m, y, sin, value=-1)
    return turned.addcmul_(u, along * (1 - torch.cos(norm)), value=-1)


def clip_rows(h: torch.Tensor, max_norm: float, out: bool = False) -> torch.Tensor:
    """h_i min(1, max_norm/|h_i|): rows longer than max_norm are shortened to it.

    ``out=True`` overwrites h with the result.
    """
    factor = (max_norm / row_norms(h)).clamp_(max=1.0)  # 1/0 = inf clamps to 1: 0 stays 0
    return h.mul_(factor) if out else h * factor


def add_orthogonality_grad(g: torch.Tensor, y: torch.Tensor, omega: float) -> torch.Tensor:
    """g + 2 omega (Y Y^T Y - Y): g plus the gradient of omega ||Y Y^T - I||_F^2 / 2.

    Computed as g + 2 omega (Y Y^T - I) Y with one fused matrix product (one
    per matrix of a ``(P, rows, n)`` batch) after the Gram matrix (``gram``):
    4 rows^2 n multiply-adds at most, 3.5 rows^2 n for 256 rows or more.
    Y (Y^T Y) would take 4 rows n^2: more for the selected weights (rows < n).
    """
    gram = _gram(y)
    gram.diagonal(dim1=-2, dim2=-1).sub_(1)
    fused = torch.addmm if y.dim() == 2 else torch.baddbmm
    return fused(g, gram, y, alpha=2 * omega)


GRAM_SPLIT_ROWS = 256
"""From this many rows the Gram matrix is formed from three of its four blocks."""


def _gram(y: torch.Tensor) -> torch.Tensor:
    """Y Y^T. With Y = [A; B] split at half the rows, Y Y^T = [[A A^T, A B^T], [B A^T, B B^T]]
    and B A^T = (A B^T)^T: three products of a quarter of the work each, 3/4 of one product."""
    rows = y.shape[-2]
    if rows < GRAM_SPLIT_ROWS:
        return y @ y.mT
    half = rows // 2
    a, b = y[..., :half, :], y[..., half:, :]
    gram = y.new_empty(*y.shape[:-1], rows)
    torch.matmul(a, a.mT, out=gram[..., :half, :half])
    torch.matmul(b, b.mT, out=gram[..., half:, half:])
    torch.matmul(a, b.mT, out=gram[..., :half, half:])
    gram[..., half:, :half] = gram[..., :half, half:].mT
    return gram
