"""ENorm: function invariance, equilibrium, hand-computed cycles, momentum, errors.

Expected values are computed here with plain torch ops from the formula
d_i = sqrt(r_i / (c * l_i)), independently of normlib's implementation.
Every test runs twice: with one intra-op thread, where CPU float weights go
through the fused kernels (``normlib.enorm_kernels``), and with two, where
ENorm uses PyTorch ops.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from normlib import enorm as enorm_module
from normlib import enorm_kernels
from normlib.enorm import ENorm

F64 = torch.float64


@pytest.fixture(autouse=True, params=["fused", "torch-ops"])
def kernels(request, monkeypatch):
    """The CPU path under test: the fused kernels run when PyTorch has one thread (and,
    here, for networks of any size)."""
    threads = torch.get_num_threads()
    if request.param == "fused":
        if not enorm_kernels.available():  # CI has it (dev brings `fast`): test_enorm_without_numba
            pytest.skip("numba (the `fast` extra) is not installed")
        monkeypatch.setattr(enorm_module, "FUSED_MIN_WEIGHTS", 0)
    torch.set_num_threads(1 if request.param == "fused" else 2)
    yield request.param
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- helpers


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the max magnitude of b."""
    return ((a - b).abs().max() / b.abs().max()).item()


def weights_of(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() >= 2]


def unbalance(model: nn.Module, seed: int = 0) -> nn.Module:
    """Scale every output unit of every layer by a random positive factor.

    For ReLU nets this keeps the function class but makes the weights far
    from balanced, so ENorm has real work to do.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                s = torch.exp(2 * torch.randn(m.weight.shape[0], generator=g, dtype=F64))
                m.weight.mul_(s.to(m.weight.dtype).view(-1, *[1] * (m.weight.dim() - 1)))
                if m.bias is not None:
                    m.bias.mul_(s.to(m.bias.dtype))
    return model


def mlp(bias: bool = False, dtype=F64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        fc1=nn.Linear(6, 8, bias=bias), r1=nn.ReLU(),
        fc2=nn.Linear(8, 7, bias=bias), r2=nn.ReLU(),
        fc3=nn.Linear(7, 5, bias=bias), r3=nn.ReLU(),
        fc4=nn.Linear(5, 3, bias=bias),
    ))
    if bias:  # make biases clearly nonzero
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.bias.uniform_(-1, 1)
    return unbalance(net.to(dtype), seed)


def convnet(bias: bool = False, dtype=F64, seed: int = 0) -> nn.Sequential:
    """All-conv ReLU net with max and avg pooling; 1x1 conv classifier."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(5, 6, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(6, 3, 1, bias=bias), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    if bias:
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Conv2d):
                    m.bias.uniform_(-1, 1)
    return unbalance(net.to(dtype), seed)


def conv_linear_net(bias: bool = False, dtype=F64, seed: int = 0) -> nn.Sequential:
    """conv -> pool -> conv -> pool -> flatten (5 channels x 4x4) -> linear -> linear."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 7, bias=bias), nn.ReLU(),
        nn.Linear(7, 3, bias=bias),
    )
    if bias:
        with torch.no_grad():
            for m in net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.bias.uniform_(-1, 1)
    return unbalance(net.to(dtype), seed)


NETS = {"mlp": mlp, "convnet": convnet, "conv_linear": conv_linear_net}


def input_for(name: str, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    shape = (5, 6) if name == "mlp" else (5, 3, 16, 16)
    return torch.randn(shape, generator=g, dtype=F64).to(dtype)


def unit_norms(w_k: torch.Tensor, w_next: torch.Tensor, p: float = 2):
    """(l, r) per hidden unit between w_k and w_next, written independently."""
    C = w_k.shape[0]
    l = w_k.reshape(C, -1).abs().pow(p).sum(1).pow(1 / p)
    if w_k.dim() > 2 and w_next.dim() == 2:  # flatten: unit i owns HW columns
        cols = w_next.reshape(w_next.shape[0], C, -1).transpose(0, 1).reshape(C, -1)
    else:
        cols = w_next.transpose(0, 1).reshape(C, -1)
    r = cols.abs().pow(p).sum(1).pow(1 / p)
    return l, r


def hand_factors(ws: list[torch.Tensor], pairs: range, c: float, p: float = 2):
    """d for each pair index k in pairs, all from the given weights (a snapshot)."""
    out = {}
    for k in pairs:
        l, r = unit_norms(ws[k], ws[k + 1], p)
        out[k] = torch.sqrt(r / (c * l))
        assert not torch.allclose(out[k], torch.ones_like(out[k])), "test net already balanced"
    return out


def scale_rows(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return w * d.view(-1, *[1] * (w.dim() - 1))


def divide_cols(w: torch.Tensor, d: torch.Tensor, prev_conv: bool) -> torch.Tensor:
    if w.dim() == 2 and prev_conv:  # block of HW columns per unit
        hw = w.shape[1] // d.numel()
        return w / d.repeat_interleave(hw).view(1, -1)
    return w / d.view(1, -1, *[1] * (w.dim() - 2))


def expected_jacobi(ws, ds, inverse: bool = False):
    """Every weight after one jacobi cycle with factors ds (dict k -> d).

    inverse=True gives the momentum-buffer rule (rows / d, columns * d).
    """
    out = [w.clone() for w in ws]
    for k, d in ds.items():
        d = 1 / d if inverse else d
        out[k] = scale_rows(out[k], d)
        out[k + 1] = divide_cols(out[k + 1], d, prev_conv=ws[k].dim() > 2)
    return out


# ---------------------------------------------------------------- invariance


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("sweep", ["jacobi", "sequential"])
@pytest.mark.parametrize("balance_biases", [False, True])
@pytest.mark.parametrize("balance_last", [False, True])
def test_relu_net_function_unchanged_after_1_and_100_cycles(
    net, sweep, balance_biases, balance_last
):
    model = NETS[net](bias=False)
    x = input_for(net)
    y0 = model(x).detach()
    w0 = [w.detach().clone() for w in weights_of(model)]
    enorm = ENorm(model.named_parameters(), c=1.2, sweep=sweep,
                  balance_biases=balance_biases, balance_last=balance_last)
    enorm.step()
    assert rel(model(x).detach(), y0) < 1e-9
    moved = max(rel(w, w_0) for w, w_0 in zip(weights_of(model), w0, strict=True))
    assert moved > 1e-2  # ENorm did change the weights
    for _ in range(99):
        enorm.step()
    assert rel(model(x).detach(), y0) < 1e-9


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("sweep", ["jacobi", "sequential"])
def test_balanced_nonzero_biases_keep_function(net, sweep):
    model = NETS[net](bias=True)
    x = input_for(net)
    y0 = model(x).detach()
    enorm = ENorm(model.named_parameters(), c=1.0, sweep=sweep,
                  balance_biases=True, balance_last=True)
    for _ in range(100):
        enorm.step()
    assert rel(model(x).detach(), y0) < 1e-9


def test_unbalanced_nonzero_biases_change_function():
    model = mlp(bias=True)
    x = input_for("mlp")
    y0 = model(x).detach()
    b0 = [b.detach().clone() for n, b in model.named_parameters() if n.endswith("bias")]
    ENorm(model.named_parameters(), balance_biases=False).step()
    assert rel(model(x).detach(), y0) > 1e-3  # documented: biases not rescaled
    b1 = [b for n, b in model.named_parameters() if n.endswith("bias")]
    assert all(torch.equal(a, b) for a, b in zip(b0, b1, strict=True))


# ---------------------------------------------------------------- equilibrium


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("c", [1.0, 1.2])
@pytest.mark.parametrize("balance_last", [False, True])
def test_200_cycles_reach_r_equals_c_l_and_sweeps_agree(net, c, balance_last):
    finals = {}
    for sweep in ("jacobi", "sequential"):
        model = NETS[net]()
        enorm = ENorm(model.named_parameters(), c=c, sweep=sweep, balance_last=balance_last)
        for _ in range(200):
            enorm.step()
        ws = [w.detach() for w in weights_of(model)]
        n_pairs = len(ws) - 1 if balance_last else len(ws) - 2
        assert len(enorm.balanced_pairs) == n_pairs
        for k in range(n_pairs):
            l, r = unit_norms(ws[k], ws[k + 1])
            assert rel(r, c * l) < 1e-9, (sweep, k)
        finals[sweep] = ws
    for a, b in zip(finals["jacobi"], finals["sequential"], strict=True):
        assert rel(a, b) < 1e-8


def test_sequential_c1_never_increases_sum_of_squared_norms():
    model = conv_linear_net()
    enorm = ENorm(model.named_parameters(), c=1, sweep="sequential", balance_last=True)

    def total() -> float:
        return sum(w.detach().pow(2).sum().item() for w in weights_of(model))

    history = [total()]
    for _ in range(50):
        enorm.step()
        history.append(total())
    for before, after in itertools.pairwise(history):
        assert after <= before * (1 + 1e-12)
    assert history[-1] < 0.5 * history[0]  # and it did decrease a lot


# ---------------------------------------------------------------- hand-computed cycles


@pytest.mark.parametrize("c,p", [(1.0, 2), (1.2, 2), (1.0, 1)])
def test_one_jacobi_cycle_matches_hand_computation_3_layers(c, p):
    torch.manual_seed(1)
    w1 = torch.randn(4, 6, dtype=F64) * torch.tensor([0.1, 1.0, 3.0, 10.0], dtype=F64)[:, None]
    w2 = torch.randn(5, 4, dtype=F64) * 2
    w3 = torch.randn(3, 5, dtype=F64) * 0.3
    params = [nn.Parameter(w.clone()) for w in (w1, w2, w3)]
    named = [("l1.weight", params[0]), ("l2.weight", params[1]), ("l3.weight", params[2])]

    # default: only the pair (W1, W2) is balanced
    ENorm(iter(named), c=c, p=p).step()
    d1 = (w2.abs().pow(p).sum(0).pow(1 / p) / (c * w1.abs().pow(p).sum(1).pow(1 / p))).sqrt()
    torch.testing.assert_close(params[0].detach(), w1 * d1[:, None], rtol=1e-12, atol=0)
    torch.testing.assert_close(params[1].detach(), w2 / d1[None, :], rtol=1e-12, atol=0)
    assert torch.equal(params[2].detach(), w3)

    # balance_last: both factors come from the same snapshot (jacobi)
    params = [nn.Parameter(w.clone()) for w in (w1, w2, w3)]
    named = [("l1.weight", params[0]), ("l2.weight", params[1]), ("l3.weight", params[2])]
    ENorm(named, c=c, p=p, balance_last=True).step()
    d2 = (w3.abs().pow(p).sum(0).pow(1 / p) / (c * w2.abs().pow(p).sum(1).pow(1 / p))).sqrt()
    torch.testing.assert_close(params[0].detach(), w1 * d1[:, None], rtol=1e-12, atol=0)
    torch.testing.assert_close(
        params[1].detach(), w2 * d2[:, None] / d1[None, :], rtol=1e-12, atol=0
    )
    torch.testing.assert_close(params[2].detach(), w3 / d2[None, :], rtol=1e-12, atol=0)

    # sequential: d2 is computed from W2 after the first pair was applied
    params = [nn.Parameter(w.clone()) for w in (w1, w2, w3)]
    named = [("l1.weight", params[0]), ("l2.weight", params[1]), ("l3.weight", params[2])]
    ENorm(named, c=c, p=p, sweep="sequential", balance_last=True).step()
    w2_mid = w2 / d1[None, :]
    d2s = (w3.abs().pow(p).sum(0).pow(1 / p) / (c * w2_mid.abs().pow(p).sum(1).pow(1 / p))).sqrt()
    assert not torch.allclose(d2s, d2)
    torch.testing.assert_close(params[1].detach(), w2_mid * d2s[:, None], rtol=1e-12, atol=0)
    torch.testing.assert_close(params[2].detach(), w3 / d2s[None, :], rtol=1e-12, atol=0)


@pytest.mark.parametrize("net", NETS)
def test_one_jacobi_cycle_matches_hand_computation_all_layer_kinds(net):
    model = NETS[net](bias=True)
    ws = [w.detach().clone() for w in weights_of(model)]
    biases = [m.bias.detach().clone() for m in model.modules() if hasattr(m, "bias")
              and isinstance(m, (nn.Linear, nn.Conv2d))]
    ds = hand_factors(ws, range(len(ws) - 1), c=1.1)
    ENorm(model.named_parameters(), c=1.1, balance_last=True, balance_biases=True).step()
    for got, want in zip(weights_of(model), expected_jacobi(ws, ds), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=0)
    new_biases = [m.bias.detach() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for k, d in ds.items():
        torch.testing.assert_close(new_biases[k], biases[k] * d, rtol=1e-12, atol=0)
    torch.testing.assert_close(new_biases[-1], biases[-1], rtol=0, atol=0)  # classifier bias


def test_balance_last_false_leaves_classifier_weight_unchanged():
    torch.manual_seed(0)
    model = unbalance(nn.Sequential(
        nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
        nn.Linear(4, 3, bias=False),
    ).double())
    w_last = model[4].weight.detach().clone()
    w_mid = model[2].weight.detach().clone()
    enorm = ENorm(model.named_parameters())
    assert enorm.balanced_pairs == [("0.weight", "2.weight")]
    for _ in range(5):
        enorm.step()
    assert torch.equal(model[4].weight.detach(), w_last)
    assert rel(model[2].weight.detach(), w_mid) > 1e-2

    enorm = ENorm(model.named_parameters(), balance_last=True)
    assert enorm.balanced_pairs[-1] == ("2.weight", "4.weight")
    enorm.step()
    assert rel(model[4].weight.detach(), w_last) > 1e-2


def test_dead_units_are_left_alone_without_nan():
    torch.manual_seed(0)
    model = mlp()
    with torch.no_grad():
        model.fc1.weight[2] = 0  # unit 2 of layer 1 receives nothing: l = 0
        model.fc3.weight[:, 4] = 0  # unit 4 of layer 2 sends nothing: r = 0
    w2_before = model.fc2.weight.detach().clone()
    w3_before = model.fc3.weight.detach().clone()
    x = input_for("mlp")
    y0 = model(x).detach()
    enorm = ENorm(model.named_parameters(), c=1.0)
    d1, d2 = enorm.factors()[:2]
    assert d1[2].item() == 1.0 and d2[4].item() == 1.0
    for _ in range(20):
        enorm.step()
    assert all(torch.isfinite(w).all() for w in weights_of(model))
    # the dead units' outgoing column / incoming row only moved with the neighbours
    assert torch.equal(model.fc1.weight[2], torch.zeros(6, dtype=F64))
    assert torch.equal(model.fc3.weight[:, 4], torch.zeros(5, dtype=F64))
    assert not torch.equal(model.fc2.weight, w2_before)
    assert not torch.equal(model.fc3.weight, w3_before)
    assert rel(model(x).detach(), y0) < 1e-9


# ---------------------------------------------------------------- momentum


def _sgd_step(model, opt, x, target):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    opt.step()


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("balance_biases", [False, True])
def test_momentum_buffers_rescaled_inversely(net, balance_biases):
    model = NETS[net](bias=True)
    x, target = input_for(net), torch.tensor([0, 1, 2, 1, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    _sgd_step(model, opt, x, target)
    enorm = ENorm(model.named_parameters(), opt, c=1.2, balance_last=True,
                  balance_biases=balance_biases)

    ws = [w.detach().clone() for w in weights_of(model)]
    bufs = [opt.state[w]["momentum_buffer"].clone() for w in weights_of(model)]
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    bias_bufs = [opt.state[m.bias]["momentum_buffer"].clone() for m in layers]
    ds = hand_factors(ws, range(len(ws) - 1), c=1.2)

    enorm.step()
    # rows multiplied by d -> buffer rows divided by d; columns the other way
    for w, got, want in zip(weights_of(model), bufs, expected_jacobi(bufs, ds, inverse=True),
                            strict=True):
        torch.testing.assert_close(opt.state[w]["momentum_buffer"], want, rtol=1e-12, atol=0)
        assert not torch.equal(opt.state[w]["momentum_buffer"], got)
    for k, m in enumerate(layers):
        want = bias_bufs[k] / ds[k] if (balance_biases and k in ds) else bias_bufs[k]
        torch.testing.assert_close(opt.state[m.bias]["momentum_buffer"], want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("net", ["mlp", "conv_linear"])
def test_enorm_then_sgd_equals_sgd_from_rescaled_state(net):
    """ENorm + SGD step == SGD step from (W*d, buffer/d) built by hand."""
    model = NETS[net](bias=False)
    x, target = input_for(net), torch.tensor([0, 1, 2, 1, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _sgd_step(model, opt, x, target)  # creates momentum buffers
    enorm = ENorm(model.named_parameters(), opt, c=1)  # seed call shape

    ws = [w.detach().clone() for w in weights_of(model)]
    bufs = [opt.state[w]["momentum_buffer"].clone() for w in weights_of(model)]
    ds = hand_factors(ws, range(len(ws) - 2), c=1.0)
    fresh = copy.deepcopy(model)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    with torch.no_grad():
        for w, want in zip(weights_of(fresh), expected_jacobi(ws, ds), strict=True):
            w.copy_(want)
    for w, buf in zip(weights_of(fresh), expected_jacobi(bufs, ds, inverse=True), strict=True):
        fresh_opt.state[w]["momentum_buffer"] = buf.clone()

    enorm.step()
    _sgd_step(model, opt, x, target)
    _sgd_step(fresh, fresh_opt, x, target)
    x2 = input_for(net) * 0.5 + 0.1
    assert rel(model(x2).detach(), fresh(x2).detach()) < 1e-9
    for a, b in zip(weights_of(model), weights_of(fresh), strict=True):
        assert rel(a.detach(), b.detach()) < 1e-9


def test_sgd_without_momentum_or_before_first_step_is_fine():
    model = mlp()
    x = input_for("mlp")
    y0 = model(x).detach()
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1),
                torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)):
        enorm = ENorm(model.named_parameters(), opt)  # no buffers yet
        enorm.step()
        assert len(opt.state) == 0  # ENorm never creates optimizer state
    assert rel(model(x).detach(), y0) < 1e-9

    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # momentum 0: buffers stay None
    _sgd_step(model, opt, x, torch.tensor([0, 1, 2, 1, 0]))
    ENorm(model.named_parameters(), opt).step()
    assert all(s.get("momentum_buffer") is None for s in opt.state.values())


def test_sgd_subclass_is_accepted():
    class MySGD(torch.optim.SGD):
        pass

    model = mlp()
    ENorm(model.named_parameters(), MySGD(model.parameters(), lr=0.1, momentum=0.9)).step()


# ---------------------------------------------------------------- batchnorm


def test_batchnorm_parameters_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 7, bias=False), nn.BatchNorm1d(7), nn.ReLU(),
        nn.Linear(7, 3),
    ).double()
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    model(input_for("mlp"))  # update running stats
    unbalance(model)
    bn_before = {k: v.clone() for k, v in model.state_dict().items()
                 if k.startswith(("1.", "4."))}
    w_before = [w.detach().clone() for w in weights_of(model)]
    enorm = ENorm(model.named_parameters(), balance_biases=True, balance_last=True)
    assert enorm.balanced_pairs == [("0.weight", "3.weight"), ("3.weight", "6.weight")]
    for _ in range(10):
        enorm.step()
    bn_after = {k: v for k, v in model.state_dict().items() if k.startswith(("1.", "4."))}
    assert bn_before.keys() == bn_after.keys() and len(bn_before) == 10
    for k in bn_before:
        assert torch.equal(bn_before[k], bn_after[k]), k
    assert all(rel(w.detach(), w0) > 1e-2 for w, w0 in zip(weights_of(model), w_before,
                                                            strict=True))


# ---------------------------------------------------------------- dtype / layout


def test_cpu_float32():
    model = conv_linear_net(dtype=torch.float32)
    x = input_for("conv_linear", torch.float32)
    y0 = model(x).detach()
    enorm = ENorm(model.named_parameters(), c=1.2, balance_last=True)
    for _ in range(100):
        enorm.step()
    assert all(w.dtype == torch.float32 for w in model.parameters())
    assert rel(model(x).detach(), y0) < 1e-4
    ws = weights_of(model)
    for k in range(len(ws) - 1):
        l, r = unit_norms(ws[k].detach(), ws[k + 1].detach())
        assert rel(r, 1.2 * l) < 1e-4


def test_model_converted_after_construction_and_channels_last():
    model = conv_linear_net(dtype=torch.float32)
    enorm = ENorm(model.named_parameters(), c=1.0, sweep="sequential")
    model.double()  # replaces param.data; ENorm holds the parameters themselves
    model.to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    x = input_for("conv_linear")
    y0 = model(x).detach()
    w0 = model[0].weight.detach().clone()
    for _ in range(10):
        enorm.step()
    assert model[0].weight.dtype == F64
    assert rel(model[0].weight.detach(), w0) > 1e-2
    assert rel(model(x).detach(), y0) < 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu = conv_linear_net()
    gpu = copy.deepcopy(cpu).cuda()
    for m in (cpu, gpu):
        enorm = ENorm(m.named_parameters(), c=1.2, balance_last=True)
        for _ in range(5):
            enorm.step()
    for a, b in zip(weights_of(cpu), weights_of(gpu), strict=True):
        assert rel(b.detach().cpu(), a.detach()) < 1e-12


@pytest.mark.parametrize("sweep", ["jacobi", "sequential"])
@pytest.mark.parametrize("net", NETS)
def test_fused_kernels_run_with_one_thread_and_match_torch_ops(net, sweep, kernels, monkeypatch):
    """The same cycles, weights and momentum buffers with the kernels as with PyTorch ops."""
    if not enorm_kernels.available():
        pytest.skip("numba (the `fast` extra) is not installed")
    monkeypatch.setattr(enorm_module, "FUSED_MIN_WEIGHTS", 0)
    calls = []
    for name in ("sums_of_squares", "sums_of_row_squares", "scale"):
        kernel = getattr(enorm_kernels, name)
        monkeypatch.setattr(enorm_kernels, name,
                            lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    models = {}
    for path in ("fused", "torch-ops"):
        torch.set_num_threads(2)  # the same gradients (their sums depend on the threads)
        model = NETS[net](bias=True, dtype=torch.float32)
        x, target = input_for(net, torch.float32), torch.tensor([0, 1, 2, 1, 0])
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        _sgd_step(model, opt, x, target)
        torch.set_num_threads(1 if path == "fused" else 2)
        enorm = ENorm(model.named_parameters(), opt, c=1.2, sweep=sweep, balance_biases=True)
        for _ in range(3):
            enorm.step()
        models[path] = (model, opt)
        if path == "fused":
            assert {"sums_of_squares", "scale"} <= set(calls)
            calls_fused = len(calls)
    assert len(calls) == calls_fused  # none with two threads
    (fused, fused_opt), (ops, ops_opt) = models["fused"], models["torch-ops"]
    for a, b in zip(fused.parameters(), ops.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
        torch.testing.assert_close(fused_opt.state[a]["momentum_buffer"],
                                   ops_opt.state[b]["momentum_buffer"], rtol=1e-6, atol=0)


def test_small_networks_do_not_import_numba():
    """Below FUSED_MIN_WEIGHTS a cycle uses PyTorch's ops: a process that balances a small
    net never pays for numba's import."""
    if not enorm_kernels.available():
        pytest.skip("numba (the `fast` extra) is not installed")
    code = (
        "import sys, torch\n"
        "from normlib import ENorm\n"
        "torch.set_num_threads(1)\n"
        "def chain(width):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),\n"
        "                               torch.nn.Linear(width, width), torch.nn.ReLU(),\n"
        "                               torch.nn.Linear(width, 2))\n"
        "ENorm(chain(8).named_parameters()).step()\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "ENorm(chain(1100).named_parameters()).step()\n"
        "assert 'numba' in sys.modules, 'numba not imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_numba_torch_ops_run_alone(kernels, monkeypatch):
    monkeypatch.setattr(enorm_kernels, "available", lambda: False)
    for name in ("sums_of_squares", "sums_of_row_squares", "scale"):
        monkeypatch.setattr(enorm_kernels, name, None)  # a call would fail
    model = conv_linear_net(dtype=torch.float32)
    y0 = model(input_for("conv_linear", torch.float32)).detach()
    enorm = ENorm(model.named_parameters(), c=1.0)
    for _ in range(5):
        enorm.step()
    assert rel(model(input_for("conv_linear", torch.float32)).detach(), y0) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_weights_balance_with_float32_norms(dtype):
    model = mlp(dtype=torch.float32)
    ref = copy.deepcopy(model)
    model.to(dtype)
    ENorm(model.named_parameters(), c=1.0).step()
    ENorm(ref.named_parameters(), c=1.0).step()
    for got, want in zip(weights_of(model), weights_of(ref), strict=True):
        assert rel(got.detach().float(), want.detach()) < 2e-2


# ---------------------------------------------------------------- errors


def test_error_non_chaining_shapes():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(10, 64), fc2=nn.Linear(50, 3)))
    with pytest.raises(ValueError, match=r"'fc1\.weight' \(out 64\) does not feed "
                                         r"'fc2\.weight' \(in 50\)"):
        ENorm(model.named_parameters())


def test_error_conv_flatten_not_divisible():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 6, 3), fc=nn.Linear(50, 3)))
    with pytest.raises(ValueError, match=r"'conv\.weight' \(out 6 channels\) does not feed "
                                         r"'fc\.weight' \(in 50\)"):
        ENorm(model.named_parameters())


def test_error_linear_to_conv():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(10, 4), conv=nn.Conv2d(4, 3, 3)))
    with pytest.raises(ValueError, match=r"linear -> conv.*'fc\.weight'.*'conv\.weight'"):
        ENorm(model.named_parameters())


def test_error_5d_weight():
    model = nn.Sequential(OrderedDict(c3=nn.Conv3d(3, 4, 3), c3b=nn.Conv3d(4, 2, 3)))
    with pytest.raises(ValueError, match=r"'c3\.weight' has 5 dims"):
        ENorm(model.named_parameters())


def test_error_one_layer():
    model = nn.Sequential(nn.Linear(10, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match=r"at least 2 weight layers.*got 1.*'0\.weight'"):
        ENorm(model.named_parameters())


@pytest.mark.parametrize("kwargs,match", [
    ({"c": 0}, r"c must be .*> 0, got c=0"),
    ({"c": -1.0}, r"c must be .*> 0, got c=-1\.0"),
    ({"p": -1}, r"p must be .*> 0.*got p=-1"),
    ({"p": 0}, r"p must be .*> 0.*got p=0"),
    ({"sweep": "xx"}, r"sweep='xx'.*'jacobi', 'sequential'"),
])
def test_error_bad_arguments(kwargs, match):
    model = mlp()
    with pytest.raises(ValueError, match=match):
        ENorm(model.named_parameters(), **kwargs)


def test_error_other_optimizer():
    model = mlp()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=r"Adam.*only torch\.optim\.SGD \(momentum buffers\)"):
        ENorm(model.named_parameters(), opt)


# ---------------------------------------------------------------- project models


def test_project_models_chain_and_balance():
    from normlib.models import FullyConnected, FullyConvolutional

    torch.manual_seed(0)
    fc = FullyConnected(in_features=12, num_classes=3, n_layers=3, width=8)
    enorm = ENorm(fc.named_parameters(), c=1.2)
    assert enorm.balanced_pairs == [
        ("layers.fc1.weight", "layers.fc2.weight"),
        ("layers.fc2.weight", "layers.fc3.weight"),
    ]
    bn = {k: v.clone() for k, v in fc.state_dict().items() if k.startswith("layers.bn")}
    classifier = fc.layers.classifier.weight.detach().clone()
    for _ in range(200):
        enorm.step()
    assert all(torch.equal(v, fc.state_dict()[k]) for k, v in bn.items())
    assert torch.equal(fc.layers.classifier.weight.detach(), classifier)
    for a, b in ((fc.layers.fc1, fc.layers.fc2), (fc.layers.fc2, fc.layers.fc3)):
        l, r = unit_norms(a.weight.detach(), b.weight.detach())
        assert rel(r, 1.2 * l) < 1e-5  # float32 model

    conv = FullyConvolutional(in_channels=3, num_classes=10).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    enorm = ENorm(conv.named_parameters(), c=1.0, balance_last=True)
    assert [p[0] for p in enorm.balanced_pairs] == [f"layers.conv{i}.weight" for i in range(1, 9)]
    # BN (eval mode, affine per channel) sits before conv3/conv6's ReLU: the
    # function changes there, as in the reference; conv weights still move.
    w1 = conv.layers.conv1.weight.detach().clone()
    enorm.step()
    assert rel(conv.layers.conv1.weight.detach(), w1) > 1e-3
    assert torch.isfinite(conv(x)).all()
