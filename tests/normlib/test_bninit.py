import functools
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from normlib.bninit import InputNorm, ScaleBatchNorm1d, ScaleBatchNorm2d, bn_param_groups
from normlib.models.resnet import construct_network

BN_WEIGHT = 0.1


@pytest.fixture(scope="module")
def resnet18_bn():
    torch.manual_seed(0)
    return construct_network("resnet18", num_classes=10, bn_weight=BN_WEIGHT, input_norm="bn")


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


# --- ScaleBatchNorm ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, shape",
    [(ScaleBatchNorm1d, (8, 5)), (ScaleBatchNorm1d, (8, 5, 3)), (ScaleBatchNorm2d, (4, 5, 3, 3))],
)
def test_scale_batchnorm_init_and_forward(cls, shape):
    torch.manual_seed(0)
    bn = cls(5, eps=1e-3, momentum=0.2, bn_weight=0.3)
    assert torch.equal(bn.weight, torch.full((5,), 0.3))
    assert torch.equal(bn.bias, torch.zeros(5))

    x = torch.randn(shape) * 2 + 1
    running_mean, running_var = torch.zeros(5), torch.ones(5)
    expected = F.batch_norm(
        x,
        running_mean,
        running_var,
        torch.full((5,), 0.3),
        torch.zeros(5),
        training=True,
        momentum=0.2,
        eps=1e-3,
    )
    torch.testing.assert_close(bn(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_mean, running_mean)
    torch.testing.assert_close(bn.running_var, running_var)
    # Normalized with batch statistics, each channel's std is gamma * sqrt(var / (var + eps)).
    dims = [d for d in range(x.dim()) if d != 1]
    var = x.var(dim=dims, unbiased=False)
    std = bn(x).std(dim=dims, unbiased=False)
    torch.testing.assert_close(std, 0.3 * torch.sqrt(var / (var + 1e-3)), rtol=1e-5, atol=0)


def test_reset_parameters_restores_bn_weight():
    bn = ScaleBatchNorm2d(4, bn_weight=0.25)
    with torch.no_grad():
        bn.weight.fill_(7.0)
        bn.bias.fill_(-2.0)
    bn.running_mean.fill_(3.0)
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.full((4,), 0.25))
    assert torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_mean, torch.zeros(4))
    assert "bn_weight=0.25" in repr(bn)


def test_scale_batchnorm_without_affine():
    bn = ScaleBatchNorm2d(3, affine=False, bn_weight=0.5)
    assert bn.weight is None and bn.bias is None
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, training=True))


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
@pytest.mark.parametrize("cls", [ScaleBatchNorm1d, ScaleBatchNorm2d])
def test_scale_batchnorm_rejects_non_positive_weight(cls, bad):
    with pytest.raises(ValueError, match="bn_weight must be > 0"):
        cls(4, bn_weight=bad)


def test_scale_batchnorm_as_torchvision_norm_layer():
    norm_layer = functools.partial(ScaleBatchNorm2d, bn_weight=0.2)
    net = torchvision.models.resnet18(num_classes=3, norm_layer=norm_layer)
    assert all(isinstance(m, ScaleBatchNorm2d) for m in batchnorms(net))
    assert len(batchnorms(net)) == 20


def test_input_norm():
    norm = InputNorm(3, bn_weight=0.5)
    assert torch.equal(norm.weight, torch.full((3,), 0.58 * 0.5))
    assert torch.equal(norm.bias, torch.zeros(3))
    assert norm.weight.requires_grad and not norm.bias.requires_grad
    with pytest.raises(ValueError, match="bn_weight"):
        InputNorm(3, bn_weight=0.0)


# --- bn_param_groups -----------------------------------------------------------------


def test_param_groups_by_module_type(resnet18_bn):
    groups = bn_param_groups(resnet18_bn, lr=0.1, weight_decay=5e-4, c=100)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["bn_scale", "no_decay", "decay"]

    bns = batchnorms(resnet18_bn)
    scales = [m.weight for m in bns]
    shifts = [m.bias for m in bns if m.bias.requires_grad]
    linear_biases = [m.bias for m in resnet18_bn.modules() if isinstance(m, nn.Linear)]
    weights = [m.weight for m in resnet18_bn.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    # 20 ResNet BNs + InputNorm; its frozen shift is left out.
    assert len(bns) == 21 and len(shifts) == 20

    def ids(params):
        return sorted(id(p) for p in params)

    assert ids(by_name["bn_scale"]["params"]) == ids(scales)
    assert ids(by_name["no_decay"]["params"]) == ids(shifts + linear_biases)
    assert ids(by_name["decay"]["params"]) == ids(weights)

    assert by_name["bn_scale"]["lr"] == pytest.approx(1e-3)
    assert by_name["no_decay"]["lr"] == 0.1 and by_name["decay"]["lr"] == 0.1
    assert by_name["bn_scale"]["weight_decay"] == 0.0
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert by_name["decay"]["weight_decay"] == 5e-4

    listed = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in resnet18_bn.parameters() if p.requires_grad]
    assert len(listed) == len(set(listed)) == len(trainable)
    assert set(listed) == set(trainable)
    frozen = resnet18_bn.input_norm.bias
    assert id(frozen) not in listed
    assert sum(p.numel() for g in groups for p in g["params"]) == (
        sum(p.numel() for p in resnet18_bn.parameters()) - frozen.numel()
    )


def test_param_groups_shared_and_frozen_params_and_empty_groups():
    linear = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(linear, nn.ReLU(), linear, nn.Linear(4, 2))
    model[3].weight.requires_grad_(False)
    groups = bn_param_groups(model, lr=0.5)
    assert [g["name"] for g in groups] == ["no_decay", "decay"]
    assert groups[0]["params"] == [model[3].bias]
    assert groups[1]["params"] == [linear.weight]


def test_param_groups_group_norm_affine_is_no_decay_with_full_lr():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.BatchNorm2d(4))
    by_name = {g["name"]: g for g in bn_param_groups(model, lr=1.0, c=10)}
    assert by_name["bn_scale"]["params"] == [model[2].weight]
    assert by_name["no_decay"]["params"] == [
        model[0].bias,
        model[1].weight,
        model[1].bias,
        model[2].bias,
    ]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"c": 0.5}, "c"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -1e-4}, "weight_decay"),
    ],
)
def test_param_groups_reject_bad_arguments(kwargs, field):
    args = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=f"^{field} must be"):
        bn_param_groups(nn.Linear(2, 2), **args)


def test_sgd_step_uses_group_lr_and_weight_decay():
    lr, c, wd = 0.1, 100.0, 1e-2
    model = construct_network("resnet18", bn_weight=BN_WEIGHT, input_norm="bn")  # stepped
    optimizer = torch.optim.SGD(bn_param_groups(model, lr=lr, weight_decay=wd, c=c), lr=lr)
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()

    scale = model.resnet.layer1[0].bn1.weight
    shift = model.resnet.layer1[0].bn1.bias
    conv = model.resnet.layer1[0].conv1.weight
    before = {
        name: (p.detach().clone(), p.grad.clone())
        for name, p in (("scale", scale), ("shift", shift), ("conv", conv))
    }
    optimizer.step()

    old, grad = before["scale"]
    assert grad.abs().max() > 0
    torch.testing.assert_close(scale.detach(), old - lr / c * grad, rtol=0, atol=1e-7)
    old, grad = before["shift"]
    torch.testing.assert_close(shift.detach(), old - lr * grad, rtol=0, atol=1e-7)
    old, grad = before["conv"]
    torch.testing.assert_close(conv.detach(), old - lr * (grad + wd * old), rtol=0, atol=1e-7)
    # The frozen InputNorm shift never gets a gradient.
    assert model.input_norm.bias.grad is None
    assert torch.equal(model.input_norm.bias, torch.zeros(3))


def test_adam_first_step_moves_each_group_by_its_lr():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(6, 8), ScaleBatchNorm1d(8, bn_weight=0.1), nn.ReLU(), nn.Linear(8, 3)
    )
    lr, c = 1e-2, 10.0
    optimizer = torch.optim.Adam(bn_param_groups(model, lr=lr, weight_decay=0.0, c=c), lr=lr)
    assert [g["name"] for g in optimizer.param_groups] == ["bn_scale", "no_decay", "decay"]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    F.cross_entropy(model(x), y).backward()
    scale_before = model[1].weight.detach().clone()
    weight_before = model[0].weight.detach().clone()
    optimizer.step()
    # Adam's first step is lr * g / (|g| + eps): a move of lr per entry (g not tiny).
    torch.testing.assert_close(
        (model[1].weight - scale_before).abs(), torch.full((8,), lr / c), rtol=1e-3, atol=0
    )
    moved = (model[0].weight - weight_before).abs()
    big = model[0].weight.grad.abs() > 1e-4
    torch.testing.assert_close(moved[big], torch.full_like(moved[big], lr), rtol=1e-2, atol=0)


# --- construct_network ---------------------------------------------------------------


def test_small_image_stem(resnet18_bn):
    resnet = resnet18_bn.resnet
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert resnet.conv1.padding == (1, 1) and resnet.conv1.bias is None
    assert isinstance(resnet.maxpool, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    assert stem.shape == (2, 64, 32, 32)


def test_forward_shape_and_input_norm(resnet18_bn):
    model = resnet18_bn
    assert list(dict(model.named_children())) == ["input_norm", "resnet"]
    assert isinstance(model[0], InputNorm)
    torch.testing.assert_close(model[0].weight, torch.full((3,), 0.58 * BN_WEIGHT))
    assert not model[0].bias.requires_grad
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_bn_gamma_beta_and_biases(resnet18_bn):
    resnet = resnet18_bn.resnet
    bns = batchnorms(resnet)
    assert len(bns) == 20 and all(isinstance(m, ScaleBatchNorm2d) for m in bns)
    for bn in bns:
        assert torch.equal(bn.weight, torch.full_like(bn.weight, BN_WEIGHT))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert torch.equal(resnet.fc.bias, torch.zeros(10))


def test_conv_init_is_kaiming_normal_fan_in(resnet18_bn):
    checked = 0
    for module in resnet18_bn.modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
            if module.weight.numel() >= 30_000:
                fan_in = module.weight[0].numel()
                std = module.weight.std().item()
                assert abs(std / math.sqrt(2 / fan_in) - 1) < 0.1
                assert abs(module.weight.mean().item()) < 0.1 * std
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize("init, bound_of_fan_in", [
    ("seed", lambda fan_in: math.sqrt(6 / fan_in)),  # kaiming_uniform_, ReLU gain sqrt(2)
    ("torch", lambda fan_in: 1 / math.sqrt(fan_in)),  # nn.Linear's default
])
def test_classifier_init_is_uniform_with_the_bound_of_the_math(init, bound_of_fan_in):
    torch.manual_seed(0)
    model = construct_network("resnet18", num_classes=10, classifier_init=init)
    (fc,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    fan_in = fc.weight.shape[1]
    assert fan_in == 512
    bound = bound_of_fan_in(fan_in)
    w = fc.weight.detach()
    # 5120 draws of U(-b, b): max |w| > 0.99 b except with probability 0.99^5120 ~ 1e-22
    assert 0.99 * bound < w.abs().max().item() <= bound
    assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.05  # std of U(-b, b)
    assert torch.equal(fc.bias, torch.zeros(10))


def test_classifier_init_default_is_the_seed_and_bad_values_are_named():
    torch.manual_seed(0)
    default = construct_network("resnet18")
    torch.manual_seed(0)
    seed = construct_network("resnet18", classifier_init="seed")
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), seed.parameters(),
                                                   strict=True))
    with pytest.raises(ValueError, match=r"classifier_init must be one of seed, torch; got 'x'"):
        construct_network("resnet18", classifier_init="x")


def test_large_image_stem_keeps_torchvision_layout():
    net = construct_network("resnet18", image_size=224, in_channels=1, input_norm="none")
    assert isinstance(net, torchvision.models.ResNet)
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert net.conv1.in_channels == 1 and net.conv1.padding == (3, 3)
    assert isinstance(net.maxpool, nn.MaxPool2d)
    fan_in = 1 * 7 * 7
    assert abs(net.conv1.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.2


def test_resnet50_matches_torchvision_structure():
    torch.manual_seed(0)
    ours = construct_network(
        "resnet50", num_classes=10, image_size=224, bn_weight=0.5, input_norm="none"
    )
    reference = torchvision.models.resnet50(num_classes=10)
    assert [tuple(p.shape) for p in ours.parameters()] == [
        tuple(p.shape) for p in reference.parameters()
    ]
    small = construct_network("resnet50", num_classes=10, image_size=32, input_norm="none")
    n_ours = sum(p.numel() for p in small.parameters())
    n_reference = sum(p.numel() for p in reference.parameters())
    assert n_ours == n_reference - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    assert all(torch.equal(m.weight, torch.full_like(m.weight, 0.5)) for m in batchnorms(ours))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "resnet20"}, "name"),
        ({"input_norm": "dataset"}, "input_norm"),
        ({"bn_weight": 0.0}, "bn_weight"),
        ({"num_classes": 0}, "num_classes"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_construct_network_rejects_bad_arguments(kwargs, field):
    args = {"name": "resnet18", **kwargs}
    with pytest.raises(ValueError, match=field) as error:
        construct_network(**args)
    if field == "name":
        assert "resnet18, resnet34, resnet50, resnet101, resnet152" in str(error.value)
    if field == "input_norm":
        assert "bn, none" in str(error.value)


def test_the_registry_default_adds_no_input_norm():
    from torchvision.models import ResNet

    from normlib.models import MODELS

    model = MODELS.build("resnet18", num_classes=10)
    assert isinstance(model, ResNet) and not hasattr(model, "input_norm")
