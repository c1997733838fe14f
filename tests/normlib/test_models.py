import functools
import math

import pytest
import torch
from torch import nn

from normlib.bninit import ScaleBatchNorm2d
from normlib.models import (
    MODELS,
    FullyConnected,
    FullyConvolutional,
    WideResNet,
    build,
    construct_network,
)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def wrn_param_count(depth: int, width: int, num_classes: int, in_channels: int = 3) -> int:
    """Parameters of a pre-activation WRN, from the architecture (BN: 2 per channel)."""
    n = (depth - 4) // 6
    channels = [16, 16 * width, 32 * width, 64 * width]
    total = 9 * in_channels * 16
    for g in range(3):
        c_in, c_out = channels[g], channels[g + 1]
        total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out
        if g > 0 or c_in != c_out:
            total += c_in * c_out  # 1x1 projection shortcut
        total += (n - 1) * (2 * c_out + 9 * c_out * c_out + 2 * c_out + 9 * c_out * c_out)
    return total + 2 * channels[3] + channels[3] * num_classes + num_classes


# --- registry ------------------------------------------------------------------------


def test_registered_names():
    expected = {"fully_connected", "fully_convolutional", "wide_resnet"}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert expected <= set(MODELS.names())


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'nope'") as error:
        build("nope")
    for name in ("fully_connected", "fully_convolutional", "wide_resnet", "resnet18"):
        assert name in str(error.value)


def test_build_passes_num_classes_and_in_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    for name, kwargs in [
        ("fully_connected", {"in_features": 256, "n_layers": 2, "width": 8}),
        ("fully_convolutional", {"in_channels": 1}),
        ("wide_resnet", {"depth": 10, "width": 1, "in_channels": 1}),
        ("resnet18", {"in_channels": 1, "image_size": 16}),
    ]:
        model = build(name, num_classes=7, **kwargs).eval()
        with torch.no_grad():
            assert model(x).shape == (2, 7), name
    resnet = build("resnet18", num_classes=5, bn_weight=0.2, input_norm="none")
    reference = construct_network("resnet18", num_classes=5, bn_weight=0.2, input_norm="none")
    assert [p.shape for p in resnet.parameters()] == [p.shape for p in reference.parameters()]
    assert torch.equal(resnet.bn1.weight, torch.full((64,), 0.2))


# --- FullyConnected ------------------------------------------------------------------


def test_fully_connected_structure_and_init():
    torch.manual_seed(0)
    model = FullyConnected(3072, 10, n_layers=15, width=500)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 16
    assert all(m.bias is None for m in linears[:-1]) and linears[-1].bias is not None
    assert count(model, nn.BatchNorm1d) == 15 and count(model, nn.ReLU) == 15
    assert isinstance(model.layers[0], nn.Flatten)
    assert [m.in_features for m in linears] == [3072] + [500] * 15
    assert n_params(model) == 3072 * 500 + 14 * 500 * 500 + 15 * 2 * 500 + 500 * 10 + 10
    for linear in linears[:-1]:
        fan_in = linear.in_features
        assert abs(linear.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.02
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    names = [name for name, _ in model.named_parameters()]
    assert names[:3] == ["layers.fc1.weight", "layers.bn1.weight", "layers.bn1.bias"]
    assert names[-2:] == ["layers.classifier.weight", "layers.classifier.bias"]


def test_fully_connected_without_batchnorm_is_a_relu_chain():
    torch.manual_seed(0)
    model = FullyConnected(6, 3, n_layers=2, width=4, batchnorm=False)
    assert count(model, nn.BatchNorm1d) == 0
    x = torch.randn(5, 2, 3)
    w1, w2, classifier = model.layers.fc1.weight, model.layers.fc2.weight, model.layers.classifier
    expected = classifier(torch.relu(torch.relu(x.flatten(1) @ w1.T) @ w2.T))
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("field", ["in_features", "num_classes", "n_layers", "width"])
def test_fully_connected_rejects_bad_sizes(field):
    args = {"in_features": 4, "num_classes": 2, "n_layers": 1, "width": 3, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be an int >= 1"):
        FullyConnected(**args)


# --- FullyConvolutional --------------------------------------------------------------


def test_fully_convolutional_structure():
    model = FullyConvolutional(in_channels=3, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9 and count(model, nn.BatchNorm2d) == 2
    assert [c.out_channels for c in convs] == [128] * 3 + [256] * 3 + [320, 320, 10]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1]
    assert count(model, nn.ReLU) == 8 and count(model, nn.MaxPool2d) == 2
    order = [name for name, _ in model.layers.named_children()]
    assert order[order.index("conv3") + 1] == "bn3" and order[order.index("conv6") + 1] == "bn6"
    assert order.index("pool1") == order.index("relu3") + 1
    assert order.index("pool2") == order.index("relu6") + 1
    assert order[-4:] == ["relu8", "conv9", "avgpool", "flatten"]
    assert model.layers.conv3.bias is None and model.layers.conv6.bias is None
    weights = 9 * (3 * 128 + 2 * 128 * 128 + 128 * 256 + 2 * 256 * 256 + 256 * 320)
    weights += 320 * 320 + 320 * 10
    biases = 2 * 128 + 2 * 256 + 2 * 320 + 10  # every conv but conv3, conv6
    batchnorm = 2 * 128 + 2 * 256  # scale and shift of bn3, bn6
    expected = weights + biases + batchnorm
    assert n_params(model) == expected


@pytest.mark.parametrize("size", [8, 32])
def test_fully_convolutional_forward_any_size(size):
    torch.manual_seed(0)
    model = FullyConvolutional(in_channels=3, num_classes=10)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 10)
    # The logits are the spatial mean of conv9's map.
    features = model.layers[: list(dict(model.layers.named_children())).index("conv9") + 1](x)
    assert features.shape[-1] == size // 4
    torch.testing.assert_close(out, features.mean(dim=(2, 3)))


def test_fully_convolutional_init():
    torch.manual_seed(0)
    model = FullyConvolutional()
    for conv in (model.layers.conv2, model.layers.conv5, model.layers.conv7):
        fan_in = conv.weight[0].numel()
        assert abs(conv.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.05
        assert conv.bias is None or torch.equal(conv.bias, torch.zeros_like(conv.bias))


# --- WideResNet ----------------------------------------------------------------------


def test_wrn_28_10_parameter_count():
    assert wrn_param_count(28, 10, 10) == 36_479_194
    assert n_params(WideResNet(28, 10, num_classes=10)) == 36_479_194


@pytest.mark.parametrize(
    "depth, width, classes, in_channels", [(16, 4, 10, 3), (10, 1, 100, 1), (22, 2, 7, 3)]
)
def test_wrn_parameter_count_matches_formula(depth, width, classes, in_channels):
    model = WideResNet(depth, width, num_classes=classes, in_channels=in_channels)
    assert n_params(model) == wrn_param_count(depth, width, classes, in_channels)
    n = (depth - 4) // 6
    assert count(model, nn.Conv2d) == 1 + 6 * n + (2 if width == 1 else 3)
    assert count(model, nn.BatchNorm2d) == 6 * n + 1


def test_wrn_forward_and_init():
    torch.manual_seed(0)
    model = build("wide_resnet", depth=10, width=1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert torch.equal(model.classifier.bias, torch.zeros(10))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    big = WideResNet(16, 4)
    conv = big.group3[1].conv2  # 256 x 256 x 3 x 3
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() / math.sqrt(2 / fan_out) - 1) < 0.02


def test_wrn_with_scale_batchnorm_and_dropout():
    norm = functools.partial(ScaleBatchNorm2d, bn_weight=0.3)
    model = WideResNet(10, 2, num_classes=4, dropout=0.3, norm_layer=norm)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 7 and all(isinstance(m, ScaleBatchNorm2d) for m in bns)
    assert all(torch.equal(m.weight, torch.full_like(m.weight, 0.3)) for m in bns)
    assert model.group1[0].dropout.p == 0.3
    model.eval()  # dropout off: deterministic
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), model(x))


def test_wrn_scale_invariance_of_convs():
    """In training mode BN undoes a conv's scale: conv1 of a block alone, or a group's
    residual stream (its shortcut conv and every conv2) together; conv2 alone is not."""
    torch.manual_seed(0)
    model = WideResNet(16, 2, num_classes=5).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    with torch.no_grad():
        reference = model(x)

        def output_after_scaling(weights: list[torch.Tensor], factor: float) -> torch.Tensor:
            for w in weights:
                w.mul_(factor)
            out = model(x)
            for w in weights:
                w.div_(factor)
            return out

        group2 = model.group2
        invariant = [
            [group2[0].conv1.weight],
            [model.stem.weight],  # width 2: the stem feeds only a norm layer
            [group2[0].shortcut.weight, group2[0].conv2.weight, group2[1].conv2.weight],
        ]
        for weights in invariant:
            torch.testing.assert_close(
                output_after_scaling(weights, 3.0), reference, rtol=1e-4, atol=1e-6
            )
        changed = output_after_scaling([group2[0].conv2.weight], 3.0)
        assert (changed - reference).abs().max() > 1e-2


@pytest.mark.parametrize("depth", [12, 8, 4, 28.0])
def test_wrn_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 4"):
        WideResNet(depth, 1)


def test_wrn_rejects_bad_width_and_dropout():
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        WideResNet(10, 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        WideResNet(10, 1, dropout=1.0)
