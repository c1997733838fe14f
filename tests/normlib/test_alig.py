import copy

import pytest
import torch
from torch import nn

from normlib.alig import AliG, l2_projection

D = torch.float64
EPS = 1e-5


def _mlp(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(seed + 1)
    x = 3 * torch.randn(16, 5, dtype=D, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    return net, x, y


def _loss(net, x, y):
    return nn.functional.cross_entropy(net(x), y)


def _train(opt, net, x, y, steps, as_tensor=False):
    sizes = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(net, x, y)
        loss.backward()
        value = loss.detach() if as_tensor else float(loss.detach())
        opt.step(lambda: value)  # noqa: B023
        sizes.append(float(opt.step_size))
    return sizes


def _reference(net, x, y, steps, max_lr, mu, adjusted):
    """ALI-G written out on a copy of the parameters."""
    params = [p.detach().clone() for p in net.parameters()]
    zs = [torch.zeros_like(p) for p in params]
    sizes = []
    for _ in range(steps):
        leaves = [p.clone().requires_grad_() for p in params]
        out = torch.tanh(x @ leaves[0].T + leaves[1]) @ leaves[2].T + leaves[3]
        f = nn.functional.cross_entropy(out, y)
        grads = torch.autograd.grad(f, leaves)
        sq = sum(float((g * g).sum()) for g in grads)
        gamma = min(float(f.detach()) / (sq + EPS), max_lr)
        sizes.append(gamma)
        for i, g in enumerate(grads):
            if adjusted:
                zs[i] = mu * zs[i] - g
                params[i] = params[i] - gamma * g + gamma * mu * zs[i]
            else:
                zs[i] = mu * zs[i] - gamma * g
                params[i] = params[i] - gamma * g + mu * zs[i]
    return params, sizes


@pytest.mark.parametrize(("mu", "adjusted"), [(0.0, False), (0.9, False), (0.9, True)])
def test_five_steps_equal_the_formulas(mu, adjusted):
    net, x, y = _mlp()
    max_lr = 2.0
    expected, expected_sizes = _reference(net, x, y, 5, max_lr, mu, adjusted)
    opt = AliG(net.parameters(), max_lr=max_lr, momentum=mu, adjusted_momentum=adjusted)
    sizes = _train(opt, net, x, y, 5)
    assert sizes == pytest.approx(expected_sizes, rel=1e-12, abs=0)
    # The bound is met in some steps and not in others.
    assert any(s == max_lr for s in expected_sizes) and any(s < max_lr for s in expected_sizes)
    for got, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-10)


def test_tensor_and_float_losses_give_the_same_run():
    runs = []
    for as_tensor in (False, True):
        net, x, y = _mlp()
        opt = AliG(net.parameters(), max_lr=0.6, momentum=0.5)
        _train(opt, net, x, y, 3, as_tensor=as_tensor)
        runs.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_step_size_is_clipped_at_max_lr_per_group():
    net, x, y = _mlp()
    first, second = net[0], net[2]
    opt = AliG(
        [{"params": first.parameters(), "max_lr": 1e-3}, {"params": second.parameters()}],
        max_lr=None,
    )
    start = [p.detach().clone() for p in net.parameters()]
    opt.zero_grad()
    loss = _loss(net, x, y)
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    opt.step(lambda: float(loss.detach()))
    unclipped = float(loss.detach()) / (sum(float((g * g).sum()) for g in grads) + EPS)
    assert float(opt.step_size_unclipped) == pytest.approx(unclipped, rel=1e-12)
    assert unclipped > 1e-3
    assert float(opt.step_sizes[0]) == 1e-3 == float(opt.step_size)
    assert float(opt.step_sizes[1]) == pytest.approx(unclipped, rel=1e-12)
    for p, p0, g, gamma in zip(net.parameters(), start, grads, [1e-3, 1e-3, unclipped, unclipped],
                               strict=True):
        torch.testing.assert_close(p.detach(), p0 - gamma * g, rtol=0, atol=1e-12)


def test_zero_loss_gives_step_size_zero():
    net, x, y = _mlp()
    opt = AliG(net.parameters(), max_lr=0.1)
    start = [p.detach().clone() for p in net.parameters()]
    opt.zero_grad()
    _loss(net, x, y).backward()
    opt.step(lambda: 0.0)
    assert float(opt.step_size) == 0.0
    assert float(opt.step_size_unclipped) == 0.0
    for p, p0 in zip(net.parameters(), start, strict=True):
        assert torch.equal(p.detach(), p0)


def test_projection_keeps_the_total_norm_inside_the_ball():
    net, x, y = _mlp()
    params = list(net.parameters())

    def total_norm():
        return float(torch.sqrt(sum((p.detach() ** 2).sum() for p in params)))

    before = total_norm()
    max_norm = 0.5 * before
    opt = AliG(params, max_lr=5.0, projection_fn=lambda: l2_projection(params, max_norm))
    assert total_norm() == pytest.approx(max_norm, rel=1e-12)  # projected at construction
    for _ in range(5):
        opt.zero_grad()
        loss = _loss(net, x, y)
        loss.backward()
        opt.step(lambda: float(loss.detach()))  # noqa: B023
        assert total_norm() <= max_norm * (1 + 1e-12)


def test_l2_projection_scales_all_parameters_and_is_a_no_op_inside():
    a = torch.tensor([3.0, 0.0], dtype=D)
    b = torch.tensor([[4.0]], dtype=D)
    l2_projection((t for t in (a, b)), max_norm=2.5)  # a generator is fine
    assert torch.equal(a, torch.tensor([1.5, 0.0], dtype=D))
    assert torch.equal(b, torch.tensor([[2.0]], dtype=D))
    l2_projection([a, b], max_norm=10.0)
    assert torch.equal(a, torch.tensor([1.5, 0.0], dtype=D))
    with pytest.raises(ValueError, match="max_norm"):
        l2_projection([a], max_norm=0)


def test_state_dict_round_trip_reproduces_the_run():
    net, x, y = _mlp()
    opt = AliG(net.parameters(), max_lr=0.6, momentum=0.9)
    _train(opt, net, x, y, 3)
    saved_state = copy.deepcopy(opt.state_dict())
    saved_params = copy.deepcopy(net.state_dict())
    _train(opt, net, x, y, 3)

    net_b, _, _ = _mlp(seed=5)
    net_b.load_state_dict(saved_params)
    opt_b = AliG(net_b.parameters(), max_lr=0.6, momentum=0.9)
    opt_b.load_state_dict(saved_state)
    _train(opt_b, net_b, x, y, 3)
    for a, b in zip(net.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_step_returns_the_closure_value():
    net, x, y = _mlp()
    opt = AliG(net.parameters())
    opt.zero_grad()
    loss = _loss(net, x, y)
    loss.backward()
    assert opt.step(lambda: 1.25) == 1.25


def test_step_without_closure_explains_the_call():
    net, _, _ = _mlp()
    opt = AliG(net.parameters(), max_lr=0.1)
    with pytest.raises(ValueError, match=r"lambda: float\(loss\)"):
        opt.step()


def test_weight_decay_group_points_to_projection():
    net, _, _ = _mlp()
    with pytest.raises(ValueError, match="projection_fn"):
        AliG([{"params": net.parameters(), "weight_decay": 1e-4}], max_lr=0.1)


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(max_lr=-0.1), "max_lr"), (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"), (dict(eps=0.0), "eps"),
    (dict(projection_fn=3), "projection_fn"),
])
def test_invalid_values_raise(kwargs, field):
    net, _, _ = _mlp()
    with pytest.raises(ValueError, match=field):
        AliG(net.parameters(), **kwargs)
