"""ODENets: layouts, norm choices, checkpointing, nfe, training, registry and bad input."""

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from normlib.ode import NORMS, PARAM_NORMS, BasicBlock, ODEBlock, ODEFunc, make_norm, odenet
from normlib.registry import MODELS

ARCHS = ("odenet4", "odenet6", "odenet10", "odenet18", "odenet34")
# (ResBlocks, ODE blocks) in the whole network.
BLOCK_COUNTS = {
    "odenet4": (0, 1),
    "odenet6": (1, 1),
    "odenet10": (2, 2),
    "odenet18": (4, 4),
    "odenet34": (4, 12),
}


def count(model, kind):
    return sum(isinstance(module, kind) for module in model.modules())


def conv3x3_count(model):
    return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_layouts(arch):
    res_blocks, ode_blocks = BLOCK_COUNTS[arch]
    model = odenet(arch, inplanes=8, steps=1)
    assert (count(model, BasicBlock), count(model, ODEBlock)) == (res_blocks, ode_blocks)
    plain = odenet(arch, inplanes=8, ode=False)
    assert count(plain, ODEBlock) == 0
    assert count(plain, BasicBlock) == res_blocks + ode_blocks
    # The depth in the name: stem conv + two 3x3 convs per block + fc.
    assert conv3x3_count(plain) + 1 == int(arch.removeprefix("odenet"))
    stages = {"odenet4": 1, "odenet6": 1, "odenet10": 2, "odenet18": 4, "odenet34": 4}[arch]
    assert model.fc.in_features == plain.fc.in_features == 8 * 2 ** (stages - 1)


def test_odenet10_follows_the_design():
    model = odenet("odenet10", inplanes=8, steps=1)
    kinds = [type(block) for block in model.blocks]
    assert kinds == [BasicBlock, ODEBlock, BasicBlock, ODEBlock]
    assert model.blocks[0].conv1.stride == (1, 1) and model.blocks[2].conv1.stride == (2, 2)
    assert model.blocks[2].conv1.out_channels == 16
    features = []
    model.blocks[3].register_forward_hook(lambda module, args, out: features.append(out.shape))
    model(torch.randn(2, 3, 32, 32))
    assert features == [torch.Size([2, 16, 16, 16])]


@pytest.mark.parametrize("arch", ["odenet4", "odenet10"])
@pytest.mark.parametrize(("norm", "param_norm"), list(itertools.product(NORMS, PARAM_NORMS)))
def test_every_norm_combination_trains_a_step(arch, norm, param_norm):
    torch.manual_seed(0)
    model = odenet(arch, num_classes=5, inplanes=8, steps=2, norm_stem=norm, norm_res=norm,
                   norm_ode=norm, param_norm_stem=param_norm, param_norm_res=param_norm,
                   param_norm_ode=param_norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    parametrized = sum(parametrize.is_parametrized(conv, "weight") for conv in convs)
    assert parametrized == (0 if param_norm == "none" else len(convs))
    assert all(conv.bias is None for conv in convs)  # the seed's convs are bias-free
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5)
    nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_instance_norm_equals_group_norm_with_one_channel_per_group():
    torch.manual_seed(0)
    instance, group = make_norm("in", 6, instance_affine=True), nn.GroupNorm(6, 6)
    with torch.no_grad():
        for module in (instance, group):
            module.weight.copy_(torch.linspace(0.5, 2.0, 6))
            module.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    x = torch.randn(3, 6, 5, 5)
    torch.testing.assert_close(instance(x), group(x), rtol=1e-5, atol=1e-5)


def odenet4_parameters(p, classes, norm_stem, norm_ode, conv_bias, instance_affine):
    """Parameter count of odenet4 (3 input channels, no weight norm) from its layers."""
    def norm(kind):  # per-channel scale and shift, or nothing
        return 2 * p if kind in ("bn", "ln") or (kind == "in" and instance_affine) else 0

    def bias(kind):
        return p if conv_bias and kind == "none" else 0

    stem = 3 * p * 9 + bias(norm_stem) + norm(norm_stem)
    ode = 2 * (p * p * 9 + bias(norm_ode) + norm(norm_ode))
    return stem + ode + p * classes + classes


@pytest.mark.parametrize(("norm_stem", "norm_ode"), [("bn", "none"), ("none", "in"),
                                                     ("in", "ln"), ("bn", "bn")])
@pytest.mark.parametrize(("conv_bias", "instance_affine"), list(itertools.product((False, True),
                                                                                  repeat=2)))
def test_parameter_count_follows_bias_and_affine_options(norm_stem, norm_ode, conv_bias,
                                                         instance_affine):
    model = odenet("odenet4", inplanes=16, norm_stem=norm_stem, norm_ode=norm_ode,
                   conv_bias=conv_bias, instance_affine=instance_affine)
    got = sum(p.numel() for p in model.parameters())
    assert got == odenet4_parameters(16, 10, norm_stem, norm_ode, conv_bias, instance_affine)


def test_seed_defaults_bias_free_convs_and_affine_free_instance_norm():
    # the cases: the seed's odenet4 with no feature norm in the ODE block
    # (e.g. bn-wn) has no conv bias; instance norm has no affine parameters
    plain = odenet4_parameters(16, 10, "bn", "none", conv_bias=False, instance_affine=False)
    model = odenet("odenet4", inplanes=16, norm_ode="none")
    assert sum(p.numel() for p in model.parameters()) == plain
    biased = odenet("odenet4", inplanes=16, norm_ode="none", conv_bias=True)
    assert sum(p.numel() for p in biased.parameters()) == plain + 2 * 16
    model = odenet("odenet4", inplanes=16, norm_ode="in")
    assert sum(p.numel() for p in model.parameters()) == plain
    affine = odenet("odenet4", inplanes=16, norm_ode="in", instance_affine=True)
    assert sum(p.numel() for p in affine.parameters()) == plain + 2 * 2 * 16

    instance = make_norm("in", 6)
    assert instance.weight is None and instance.bias is None and not list(instance.parameters())
    x = torch.randn(3, 6, 5, 5)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(instance(x), (x - mean) / torch.sqrt(var + 1e-5))
    for arch in ("odenet10", "odenet18"):
        for norm in ("none", "in"):
            model = odenet(arch, inplanes=8, norm_stem=norm, norm_res=norm, norm_ode=norm,
                           param_norm_ode="wn")
            assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
            assert not any(isinstance(m, nn.InstanceNorm2d) and m.affine
                           for m in model.modules())


def test_weight_norm_and_spectral_norm_constrain_the_weight():
    torch.manual_seed(0)
    func = ODEFunc(4, norm="none", param_norm="wn")
    magnitude = func.conv1.parametrizations.weight.original0.flatten()
    torch.testing.assert_close(func.conv1.weight.flatten(1).norm(dim=1), magnitude)
    func = ODEFunc(4, norm="none", param_norm="sn")
    z = torch.randn(1, 4, 4, 4)
    for _ in range(30):  # one power iteration per forward in train mode
        func(torch.zeros(()), z)
    sigma = torch.linalg.matrix_norm(func.conv1.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(("norm", "param_norm"), [("bn", "none"), ("ln", "wn"), ("bn", "sn")])
@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_checkpoint_gives_identical_outputs_gradients_and_buffers(norm, param_norm, solver):
    torch.manual_seed(0)
    plain = odenet("odenet4", inplanes=8, solver=solver, steps=3, norm_ode=norm,
                   param_norm_ode=param_norm).double()
    checkpointed = copy.deepcopy(plain)
    checkpointed.blocks[0].checkpoint = True
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    outputs = []
    for model in (plain, checkpointed):
        out = model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-10)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-10, msg=name)
    # The recomputation in backward neither updates BN running statistics again
    # nor runs another spectral-norm power iteration.
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=name)
    if norm == "bn":
        bn = checkpointed.blocks[0].func.norm1
        assert bn.num_batches_tracked.item() == 3 * {"euler": 1, "rk4": 4}[solver]


@pytest.mark.parametrize(("solver", "per_step"), [("euler", 1), ("rk2", 2), ("rk4", 4)])
def test_model_nfe_sums_its_ode_blocks(solver, per_step):
    model = odenet("odenet10", inplanes=8, solver=solver, steps=3)
    model(torch.randn(2, 3, 16, 16))
    counts = [block.nfe for block in model.blocks if isinstance(block, ODEBlock)]
    assert counts == [3 * per_step] * 2
    assert model.nfe == 2 * 3 * per_step
    assert odenet("odenet10", inplanes=8, ode=False).nfe == 0


def test_seed_config_bn_ln_euler_32_fits_a_fixed_batch():
    torch.manual_seed(0)
    model = odenet("odenet4", inplanes=16, solver="euler", steps=32, norm_stem="bn",
                   norm_ode="ln")
    # Low-frequency random images: white noise would average out in the global pool.
    images = nn.functional.interpolate(torch.randn(16, 3, 4, 4), size=16, mode="bilinear")
    labels = torch.arange(16) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.nfe == 32
    assert losses[-1] <= 0.5 * losses[0]


def test_registry_builds_every_arch_with_injected_shapes():
    assert set(ARCHS) <= set(MODELS.names())
    model = MODELS.build("odenet10", num_classes=7, in_channels=1, inplanes=8, steps=1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    plain = MODELS.build("odenet6", num_classes=3, in_channels=3, inplanes=8, ode=False)
    assert count(plain, ODEBlock) == 0 and count(plain, BasicBlock) == 2


@pytest.mark.parametrize(
    ("kwargs", "argument", "listed"),
    [
        ({"norm_ode": "xx"}, "norm_ode", "bn, ln, in, none"),
        ({"norm_stem": "batch"}, "norm_stem", "bn, ln, in, none"),
        ({"param_norm_res": "xx"}, "param_norm_res", "wn, sn, none"),
        ({"act_ode": "gelu"}, "act_ode", "relu, none"),
        ({"solver": "heun"}, "solver", "euler, rk2, rk4"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"inplanes": 0}, "inplanes", ">= 1"),
        ({"num_classes": 0}, "num_classes", ">= 1"),
        ({"arch": "odenet5"}, "arch", "odenet4, odenet6, odenet10, odenet18, odenet34"),
        ({"conv_bias": "yes"}, "conv_bias", "True or False"),
        ({"instance_affine": 1}, "instance_affine", "True or False"),
    ],
)
def test_bad_choices_name_the_argument_and_the_valid_values(kwargs, argument, listed):
    kwargs = {"arch": "odenet4", **kwargs}
    with pytest.raises(ValueError, match=argument) as error:
        odenet(**kwargs)
    assert listed in str(error.value)
