import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from normlib.riemannian.groups import grassmann_param_groups
from normlib.riemannian.optim import SGDG, AdamG

D = torch.float64
LR, LRG, MOMENTUM, OMEGA, WD = 0.05, 0.02, 0.9, 0.05, 1e-2
CLIP = 15.0  # tangent-gradient rows have norms ~8 to ~65: some rows are clipped, some not
ROWS = 6 + 3


# ---------------------------------------------------------------- the problem


def _problem(seed=0):
    """A 6x10 weight and a 3x2x2x2 weight (Grassmann), a 4-vector bias (Euclidean)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 10, dtype=D, generator=gen)
    k = torch.randn(3, 2, 2, 2, dtype=D, generator=gen)
    w, k = w / w.norm(dim=1, keepdim=True), k / k.flatten(1).norm(dim=1).view(3, 1, 1, 1)
    b = torch.randn(4, dtype=D, generator=gen)
    data = dict(
        x=3 * torch.randn(10, 5, dtype=D, generator=gen),
        t=torch.randn(6, 5, dtype=D, generator=gen),
        p=2 * torch.randn(8, 3, dtype=D, generator=gen),
        c=torch.randn(4, dtype=D, generator=gen),
    )
    return [w, k, b], data


def _loss(params, data):
    w, k, b = params
    fit = 0.5 * ((w @ data["x"] - data["t"]) ** 2).sum()
    squash = 3 * torch.tanh(k.reshape(3, -1) @ data["p"]).sum()
    return fit + squash + 0.5 * ((b - data["c"]) ** 2).sum() * (b**2).sum()


def _grads(params, data):
    leaves = [p.detach().clone().requires_grad_() for p in params]
    return torch.autograd.grad(_loss(leaves, data), leaves)


def _leaves(tensors):
    return [t.clone().requires_grad_() for t in tensors]


def _backward(params, data):
    for p in params:
        p.grad = None
    loss = _loss(params, data)
    loss.backward()
    return loss


# ------------------------------------------- straight-line re-computations


def _riemannian_grad(w, grad, omega, clip):
    """Rows, omega term, tangent projection and clipping, written out."""
    rows = w.shape[0]
    y = w.reshape(rows, -1)
    y = y / torch.sqrt((y * y).sum(dim=1, keepdim=True))
    g = grad.reshape(rows, -1) + 2 * omega * (y @ y.T @ y - y)
    h = g - (y * g).sum(dim=1, keepdim=True) * y
    h_norm = torch.sqrt((h * h).sum(dim=1, keepdim=True))
    clipped = int((h_norm > clip).sum())
    h = h * torch.minimum(torch.ones_like(h_norm), clip / h_norm)
    return y, h, clipped


def _reference_sgdg(steps, data):
    params, _ = _problem()
    moms = [torch.zeros(p.shape[0], p[0].numel(), dtype=D) for p in params[:2]]
    bias_buf = None
    clipped = 0
    for _ in range(steps):
        grads = _grads(params, data)
        new = []
        for i in range(2):
            y, h, n = _riemannian_grad(params[i], grads[i], OMEGA, CLIP)
            clipped += n
            m = MOMENTUM * moms[i] - LRG * h
            size = torch.sqrt((m * m).sum(dim=1, keepdim=True))
            u = m / size
            new.append((y * torch.cos(size) + u * torch.sin(size)).reshape(params[i].shape))
            moms[i] = (u * torch.cos(size) - y * torch.sin(size)) * size
        b, gb = params[2], grads[2] + WD * params[2]
        bias_buf = gb.clone() if bias_buf is None else MOMENTUM * bias_buf + gb
        new.append(b - LR * (gb + MOMENTUM * bias_buf))
        params = new
    return params, clipped


def _reference_adamg(steps, data, beta2=0.99, eps=1e-8):
    params, _ = _problem()
    moms = [torch.zeros(p.shape[0], p[0].numel(), dtype=D) for p in params[:2]]
    vs = [torch.zeros(p.shape[0], 1, dtype=D) for p in params[:2]]
    bias_buf = None
    clipped = 0
    for t in range(1, steps + 1):
        grads = _grads(params, data)
        new = []
        for i in range(2):
            y, h, n = _riemannian_grad(params[i], grads[i], OMEGA, CLIP)
            clipped += n
            m = MOMENTUM * moms[i] + (1 - MOMENTUM) * h
            vs[i] = beta2 * vs[i] + (1 - beta2) * (h * h).sum(dim=1, keepdim=True)
            alpha = math.sqrt(1 - beta2**t) / (1 - MOMENTUM**t)
            delta = -alpha * LRG * m / torch.sqrt(vs[i] + eps)
            size = torch.sqrt((delta * delta).sum(dim=1, keepdim=True))
            u = delta / size
            new.append((y * torch.cos(size) + u * torch.sin(size)).reshape(params[i].shape))
            um = (u * m).sum(dim=1, keepdim=True)
            moms[i] = m - um * (torch.sin(size) * y + (1 - torch.cos(size)) * u)
        b, gb = params[2], grads[2] + WD * params[2]
        bias_buf = gb.clone() if bias_buf is None else MOMENTUM * bias_buf + gb
        new.append(b - LR * (gb + MOMENTUM * bias_buf))
        params = new
    return params, clipped


def _groups(params):
    # lr, momentum and omega come from the constructor (omega must be honoured).
    return [
        {"params": params[:2], "lr": LRG, "grassmann": True, "grad_clip": CLIP},
        {"params": params[2:], "grassmann": False, "weight_decay": WD, "nesterov": True},
    ]


@pytest.mark.parametrize(
    ("cls", "reference"), [(SGDG, _reference_sgdg), (AdamG, _reference_adamg)]
)
def test_five_steps_equal_the_formulas(cls, reference):
    start, data = _problem()
    params = _leaves(start)
    opt = cls(_groups(params), lr=LR, momentum=MOMENTUM, omega=OMEGA)
    assert opt.param_groups[0]["omega"] == OMEGA
    for _ in range(5):
        _backward(params, data)
        opt.step()
    expected, clipped = reference(5, data)
    assert 0 < clipped < 5 * ROWS  # clipping was active on some rows, not all
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-10)
    # The run moved: not a trivially equal pair.
    assert (params[0].detach() - start[0]).abs().max() > 1e-2


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_omega_and_clipping_change_the_result(cls):
    def run(**kw):
        start, data = _problem()
        params = _leaves(start)
        opt = cls([{"params": params[:2], "grassmann": True, **kw}], lr=LRG, momentum=0.5)
        for _ in range(3):
            _backward(params, data)
            opt.step()
        return params[0].detach()

    plain = run()
    assert (run(omega=1.0) - plain).abs().max() > 1e-4
    assert (run(grad_clip=0.01) - plain).abs().max() > 1e-4


@pytest.mark.parametrize(("cls", "dtype", "tol"), [
    (SGDG, torch.float64, 1e-12), (AdamG, torch.float64, 1e-12),
    (SGDG, torch.float32, 1e-6), (AdamG, torch.float32, 1e-6),
])
def test_rows_stay_unit_norm_over_100_steps(cls, dtype, tol):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 3, 3, 3, generator=gen).to(dtype)
    w = (w / w.flatten(1).norm(dim=1).view(5, 1, 1, 1)).requires_grad_()
    target = torch.randn(5, 27, generator=gen).to(dtype)
    opt = cls([w], lr=0.2, momentum=0.9, grassmann=True, omega=0.1, grad_clip=1.0)
    worst = 0.0
    for _ in range(100):
        w.grad = None
        ((w.flatten(1) @ target.T) ** 2).sum().backward()
        opt.step()
        worst = max(worst, float((w.detach().flatten(1).norm(dim=1) - 1).abs().max()))
    assert worst < tol
    assert torch.isfinite(w).all()


def _bn_toy(seed=0):
    """Linear (no bias) -> BatchNorm (no affine): the loss is invariant to row scales."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 12, dtype=D, generator=gen)
    teacher = torch.randn(4, 12, dtype=D, generator=gen)
    bn = nn.BatchNorm1d(4, affine=False, eps=1e-12).double()
    target = bn(x @ teacher.T).detach()
    w = torch.randn(4, 12, dtype=D, generator=gen)
    w = (w / w.norm(dim=1, keepdim=True)).requires_grad_()

    def loss_fn():
        return ((bn(x @ w.T) - target) ** 2).mean()

    return w, loss_fn


@pytest.mark.parametrize(("cls", "lr"), [(SGDG, 0.2), (AdamG, 0.05)])
def test_scale_invariant_bn_loss_decreases(cls, lr):
    w, loss_fn = _bn_toy()
    with torch.no_grad():
        before = float(loss_fn())
        scale = torch.tensor([[2.0], [0.5], [3.0], [1.0]], dtype=D)
        w_scaled = w * scale
        w_saved = w.clone()
        w.copy_(w_scaled)
        assert abs(float(loss_fn()) - before) < 1e-9  # scale invariance
        w.copy_(w_saved)
    opt = cls([w], lr=lr, momentum=0.9, grassmann=True)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.detach()

    losses = [float(opt.step(closure)) for _ in range(60)]
    assert losses[0] == pytest.approx(before)
    assert losses[-1] < 0.2 * before


# ---------------------------------------------- Euclidean groups == torch SGD


def _euclid_setup(seed=0):
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(5, 4, dtype=D, generator=gen), torch.randn(4, dtype=D, generator=gen),
               torch.randn(3, 2, 2, dtype=D, generator=gen)]
    configs = [
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        dict(lr=0.05, momentum=0.5, dampening=0.2, weight_decay=0.0),
        dict(lr=0.2, momentum=0.0, weight_decay=5e-2),
    ]
    return tensors, configs


def _euclid_loss(params):
    a, b, c = params
    return torch.sin(a).sum() * (b**2).sum() + (c**3).sum() + (a @ b).pow(2).sum()


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_euclidean_groups_match_torch_sgd_for_10_steps(cls):
    tensors, configs = _euclid_setup()
    ours, theirs = _leaves(tensors), _leaves(tensors)
    opt = cls([{"params": [p], **cfg} for p, cfg in zip(ours, configs, strict=True)], lr=0.1)
    ref = torch.optim.SGD(
        [{"params": [p], **cfg} for p, cfg in zip(theirs, configs, strict=True)], lr=0.1
    )
    for _ in range(10):
        for params, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            _euclid_loss(params).backward()
            o.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    assert (ours[0].detach() - tensors[0]).abs().max() > 1e-2


# ---------------------------------------------------------- state_dict, closure


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_state_dict_round_trip_reproduces_the_run(cls):
    start, data = _problem()

    def make(tensors):
        params = _leaves(tensors)
        return params, cls(_groups(params), lr=LR, momentum=MOMENTUM, omega=OMEGA)

    params, opt = make(start)
    for _ in range(3):
        _backward(params, data)
        opt.step()
    saved_state = copy.deepcopy(opt.state_dict())
    saved_params = [p.detach().clone() for p in params]
    for _ in range(3):
        _backward(params, data)
        opt.step()

    params_b, opt_b = make(saved_params)
    opt_b.load_state_dict(saved_state)
    for _ in range(3):
        _backward(params_b, data)
        opt_b.step()
    for a, b in zip(params, params_b, strict=True):
        assert torch.equal(a, b)
    if cls is AdamG:
        assert opt_b.state[params_b[0]]["step"] == 6
        assert opt_b.state[params_b[0]]["row_sq_avg"].shape == (6, 1)


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_step_returns_the_closure_loss_computed_with_grad(cls):
    start, data = _problem()
    params = _leaves(start)
    opt = cls(_groups(params), lr=LR, momentum=MOMENTUM)

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        return _backward(params, data)

    with torch.no_grad():
        loss = opt.step(closure)
    assert float(loss.detach()) == pytest.approx(float(_loss(start, data)))


def test_zero_gradient_leaves_grassmann_rows_unchanged():
    w = torch.nn.functional.normalize(torch.randn(4, 9, dtype=D), dim=1).requires_grad_()
    for cls in (SGDG, AdamG):
        opt = cls([w], lr=0.1, momentum=0.9, grassmann=True, grad_clip=0.1)
        before = w.detach().clone()
        w.grad = torch.zeros_like(w)
        opt.step()
        assert torch.isfinite(w).all()
        torch.testing.assert_close(w.detach(), before, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("cls", "kwargs", "field"), [
    (SGDG, dict(lr=-0.1), "lr"),
    (SGDG, dict(lr=0.1, momentum=-1), "momentum"),
    (SGDG, dict(lr=0.1, grassmann=True, omega=-0.1), "omega"),
    (SGDG, dict(lr=0.1, grassmann=True, grad_clip=0.0), "grad_clip"),
    (SGDG, dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    (SGDG, dict(lr=0.1, nesterov=True), "nesterov"),
    (SGDG, dict(lr=0.1, grassmann="yes"), "grassmann"),
    (AdamG, dict(lr=0.1, grassmann=True, beta2=1.0), "beta2"),
    (AdamG, dict(lr=0.1, grassmann=True, epsilon=0.0), "epsilon"),
    (AdamG, dict(lr=0.1, grassmann=True, momentum=1.0), "momentum"),
])
def test_invalid_hyperparameters_raise(cls, kwargs, field):
    w = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=field):
        cls([w], **kwargs)


def test_invalid_added_group_is_not_kept():
    w, v = torch.randn(3, 4, requires_grad=True), torch.randn(2, 5, requires_grad=True)
    opt = SGDG([w], lr=0.1)
    with pytest.raises(ValueError, match="omega"):
        opt.add_param_group({"params": [v], "grassmann": True, "omega": -1.0})
    assert len(opt.param_groups) == 1


# --------------------------------------------------------- grassmann_param_groups


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, bias=False)  # fan_in 27 > 8: Grassmann
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 1)  # fan_in 8 > 4: Grassmann; its bias
        self.wide = nn.Conv2d(4, 64, 1)  # fan_in 4 < 64: other
        self.gn = nn.GroupNorm(4, 64)
        self.up = nn.ConvTranspose2d(64, 2, 2)  # transposed: other
        self.ln = nn.LayerNorm(2)
        self.frozen = nn.Conv2d(2, 1, 3)
        self.frozen.requires_grad_(False)
        self.fc = nn.Linear(2, 10)  # classifier: Euclidean
        self.fc2 = nn.Linear(10, 2, bias=False)
        self.fc2.weight = nn.Parameter(self.fc.weight.detach().T.clone())
        self.tied = nn.Linear(10, 2, bias=False)
        self.tied.weight = self.fc2.weight  # a shared parameter


def test_grassmann_param_groups_on_a_small_net():
    net = _SmallNet()
    groups = grassmann_param_groups(net, lr=0.01, lrg=0.2, omega=0.05, grad_clip=0.2)
    names = {id(p): n for n, p in net.named_parameters()}  # shared params are listed once
    by_group = {g["name"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert by_group == {
        "grassmann": ["conv1.weight", "conv2.weight"],
        "norm_and_bias": sorted(["bn1.weight", "bn1.bias", "conv2.bias", "wide.bias",
                                 "gn.weight", "gn.bias", "up.bias", "ln.weight", "ln.bias",
                                 "fc.bias"]),
        "other": sorted(["wide.weight", "up.weight", "fc.weight", "fc2.weight"]),
    }
    g, nb, other = groups
    assert (g["lr"], g["momentum"], g["grassmann"], g["omega"], g["grad_clip"]) == (
        0.2, 0.9, True, 0.05, 0.2)
    assert (nb["lr"], nb["weight_decay"], nb["grassmann"], nb["nesterov"]) == (
        0.01, 0.0, False, True)
    assert (other["lr"], other["weight_decay"], other["grassmann"]) == (0.01, 5e-4, False)
    for p in g["params"]:
        norms = p.detach().flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-6)
    # Usable as is.
    SGDG(groups)
    AdamG(groups)


def test_grassmann_param_groups_on_wide_resnet():
    if not Path(__file__).parents[2].joinpath("normlib/models/wide_resnet.py").exists():
        pytest.skip("normlib.models.wide_resnet is not there")
    from normlib.models.wide_resnet import WideResNet

    net = WideResNet(depth=16, width=4, num_classes=10)
    groups = {g["name"]: g["params"] for g in grassmann_param_groups(net, lr=0.01, lrg=0.2)}
    # Count by the seed README's rule on names, independently of module types.
    expected_g = {
        n for n, p in net.named_parameters()
        if p.dim() == 4 and p.shape[0] < p[0].numel()
    }
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)] for p in groups["grassmann"]} == expected_g
    # WRN-16-4: stem + 2 convs in each of 6 blocks; 3 shortcut convs (fan_in < out) and
    # the classifier weight; 13 norms (2 per block + final) x 2 and the classifier bias.
    assert len(groups["grassmann"]) == 13
    assert len(groups["other"]) == 4
    assert len(groups["norm_and_bias"]) == 27
    assert sum(map(len, groups.values())) == len(list(net.parameters()))
    for p in groups["grassmann"]:
        assert (p.detach().flatten(1).norm(dim=1) - 1).abs().max() < 1e-5


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(lr=0.0), "lr"), (dict(lrg=-1.0), "lrg"), (dict(omega=-0.1), "omega"),
    (dict(grad_clip=0.0), "grad_clip"),
])
def test_grassmann_param_groups_rejects_bad_values_before_touching_weights(kwargs, field):
    net = _SmallNet()
    before = net.conv1.weight.detach().clone()
    args = dict(lr=0.01, lrg=0.2) | kwargs
    with pytest.raises(ValueError, match=field):
        grassmann_param_groups(net, **args)
    assert torch.equal(net.conv1.weight, before)


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_channels_last_weight_follows_the_same_path(cls):
    gen = torch.Generator().manual_seed(4)
    start = torch.randn(4, 3, 3, 3, dtype=D, generator=gen)
    grads = [torch.randn(4, 3, 3, 3, dtype=D, generator=gen) for _ in range(3)]
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        w = start.clone().to(memory_format=fmt).requires_grad_()
        opt = cls([w], lr=0.1, momentum=0.9, grassmann=True, omega=0.1)
        for g in grads:
            w.grad = g.clone().to(memory_format=fmt)
            opt.step()
        results.append(w.detach().contiguous())
    assert torch.equal(results[0], results[1])
    assert (results[0] - start).abs().max() > 1e-2


@pytest.mark.parametrize("cls", [SGDG, AdamG])
def test_stacked_buckets_equal_one_parameter_at_a_time(cls, monkeypatch):
    """Same-shape weights stepped as one (P, rows, n) batch give the per-parameter run."""
    import normlib.riemannian.optim as optim

    gen = torch.Generator().manual_seed(5)
    starts = [torch.randn(4, 3, 3, 3, dtype=D, generator=gen) for _ in range(3)]
    starts.append(torch.randn(6, 10, dtype=D, generator=gen))  # a bucket of its own
    grads = [[torch.randn(s.shape, dtype=D, generator=gen) for s in starts] for _ in range(4)]

    def run(stack):
        monkeypatch.setattr(optim, "STACK_DEVICES", frozenset({"cpu"} if stack else ()))
        params = _leaves(starts)
        opt = cls([{"params": params, "grassmann": True}], lr=0.1, momentum=0.9, omega=0.1,
                  grad_clip=0.5)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        return params, opt

    stacked, opt = run(stack=True)
    assert len(opt._buckets(opt.param_groups[0])) == 2
    single, _ = run(stack=False)
    for a, b in zip(stacked, single, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-12)
    for p in stacked:  # the buffers were written back into each parameter's state
        assert opt.state[p]["momentum_buffer"].abs().max() > 0
        if cls is AdamG:
            assert opt.state[p]["step"] == 4
            assert opt.state[p]["row_sq_avg"].min() > 0
