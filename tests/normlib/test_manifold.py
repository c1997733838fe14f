import math

import torch

from normlib.riemannian.manifold import (
    add_orthogonality_grad,
    as_rows,
    clip_rows,
    exp_map,
    project_tangent,
    row_norms,
    transport,
    transport_own,
    unit_rows,
)

D = torch.float64


def _points_and_tangents(rows=7, n=5, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(rows, n, dtype=D, generator=gen)
    y = y / y.norm(dim=1, keepdim=True)
    g = scale * torch.randn(rows, n, dtype=D, generator=gen)
    m = g - (y * g).sum(1, keepdim=True) * y
    return y, m, gen


def _dots(a, b):
    return (a * b).sum(dim=1)


def test_as_rows_flattens_everything_but_the_first_dim():
    w = torch.arange(2 * 3 * 4 * 5, dtype=D).reshape(2, 3, 4, 5)
    r = as_rows(w)
    assert r.shape == (2, 60)
    assert torch.equal(r[1], w[1].flatten())


def test_unit_rows_and_zero_row():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=D)
    u, norm = unit_rows(x)
    assert norm.shape == (2, 1)
    assert torch.equal(norm[:, 0], torch.tensor([5.0, 0.0], dtype=D))
    assert torch.equal(u, torch.tensor([[0.6, 0.8], [0.0, 0.0]], dtype=D))


def test_projection_is_tangent_and_idempotent():
    y, _, gen = _points_and_tangents()
    g = torch.randn(y.shape, dtype=D, generator=gen)
    h = project_tangent(y, g)
    assert _dots(h, y).abs().max() < 1e-14
    torch.testing.assert_close(project_tangent(y, h), h, rtol=0, atol=1e-15)
    # g - h is parallel to y: its component orthogonal to y vanishes.
    torch.testing.assert_close(g - h, _dots(g, y)[:, None] * y, rtol=0, atol=1e-15)


def test_exp_map_keeps_rows_unit_norm_and_moves_the_geodesic_distance():
    y, m, _ = _points_and_tangents(scale=0.7)
    z = exp_map(y, m)
    assert (row_norms(z) - 1).abs().max() < 1e-12
    # Angle between start and end point equals |m| (|m| < pi here).
    angle = torch.arccos(_dots(y, z).clamp(-1, 1))
    assert (row_norms(m)[:, 0] < math.pi).all()
    torch.testing.assert_close(angle, row_norms(m)[:, 0], rtol=0, atol=1e-7)


def test_exp_of_zero_is_identity_and_zero_rows_give_no_nan():
    y, m, _ = _points_and_tangents()
    m[2] = 0
    z = exp_map(y, m)
    assert torch.isfinite(z).all()
    assert torch.equal(z[2], y[2])
    assert torch.equal(exp_map(y, torch.zeros_like(y)), y)
    assert torch.equal(transport_own(y, torch.zeros_like(y)), torch.zeros_like(y))
    t = transport(y, torch.zeros_like(y), m)
    assert torch.equal(t, m)
    assert torch.isfinite(transport_own(y, m)).all()


def test_transport_own_is_tangent_at_the_new_point_and_keeps_norm():
    y, m, _ = _points_and_tangents(scale=0.8)
    z = exp_map(y, m)
    t = transport_own(y, m)
    assert _dots(t, z).abs().max() < 1e-12
    torch.testing.assert_close(row_norms(t), row_norms(m), rtol=0, atol=1e-12)
    # It is the velocity of the geodesic at its end: d/ds exp_y(s m) at s = 1.
    s = 1e-6
    fd = (exp_map(y, (1 + s) * m) - exp_map(y, (1 - s) * m)) / (2 * s)
    torch.testing.assert_close(t, fd, rtol=0, atol=1e-8)


def test_transport_toward_direction_is_tangent_keeps_norm_and_inner_products():
    y, d, gen = _points_and_tangents(scale=0.9, seed=1)
    g1 = torch.randn(y.shape, dtype=D, generator=gen)
    g2 = torch.randn(y.shape, dtype=D, generator=gen)
    a, b = project_tangent(y, g1), project_tangent(y, g2)
    z = exp_map(y, d)
    ta, tb = transport(y, d, a), transport(y, d, b)
    assert _dots(ta, z).abs().max() < 1e-12
    assert _dots(tb, z).abs().max() < 1e-12
    torch.testing.assert_close(row_norms(ta), row_norms(a), rtol=0, atol=1e-12)
    torch.testing.assert_close(_dots(ta, tb), _dots(a, b), rtol=0, atol=1e-12)
    # Transporting the direction itself equals the own-geodesic form.
    torch.testing.assert_close(transport(y, d, d), transport_own(y, d), rtol=0, atol=1e-14)


def test_clip_rows():
    h = torch.tensor([[3.0, 4.0], [0.03, 0.04], [0.0, 0.0]], dtype=D)
    c = clip_rows(h, 0.1)
    expected = torch.tensor([[0.06, 0.08], [0.03, 0.04], [0.0, 0.0]], dtype=D)
    torch.testing.assert_close(c, expected, rtol=0, atol=1e-15)


def test_orthogonality_grad_is_the_gradient_of_the_penalty():
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(3, 6, dtype=D, generator=gen, requires_grad=True)
    eye = torch.eye(3, dtype=D)
    penalty = 0.5 * ((y @ y.T - eye) ** 2).sum()
    (grad,) = torch.autograd.grad(penalty, y)
    g = torch.randn(3, 6, dtype=D, generator=gen)
    got = add_orthogonality_grad(g, y.detach(), 0.3)
    torch.testing.assert_close(got, g + 0.3 * grad, rtol=0, atol=1e-12)
    # Orthonormal rows are a minimum: zero gradient.
    q = torch.linalg.qr(torch.randn(6, 3, dtype=D, generator=gen)).Q.T
    assert (add_orthogonality_grad(g, q, 1.0) - g).abs().max() < 1e-14


def test_orthogonality_grad_with_the_gram_from_three_blocks_equals_the_formula():
    from normlib.riemannian.manifold import GRAM_SPLIT_ROWS

    gen = torch.Generator().manual_seed(4)
    for shape in [(GRAM_SPLIT_ROWS + 45, 700), (2, GRAM_SPLIT_ROWS, 400)]:
        y = torch.randn(*shape, dtype=D, generator=gen)
        y = y / y.norm(dim=-1, keepdim=True)
        g = torch.randn(*shape, dtype=D, generator=gen)
        want = g + 2 * 0.1 * (y @ y.mT @ y - y)  # Y Y^T Y - Y, written out
        torch.testing.assert_close(add_orthogonality_grad(g, y, 0.1), want, rtol=0, atol=1e-12)


def test_exp_map_and_clip_write_into_the_given_tensor():
    y, m, _ = _points_and_tangents(scale=2.0)
    into = torch.empty_like(y)
    got = exp_map(y, m, out=into)
    assert got.data_ptr() == into.data_ptr()
    torch.testing.assert_close(into, exp_map(y, m), rtol=0, atol=0)
    h = m.clone()
    clipped = clip_rows(h, 0.5, out=True)
    assert clipped.data_ptr() == h.data_ptr()
    torch.testing.assert_close(h, clip_rows(m, 0.5), rtol=0, atol=0)
    assert (row_norms(h) <= 0.5 + 1e-15).all()
