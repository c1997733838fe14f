"""Speed options keep the methods' math: bf16 autocast, channels_last, torch.compile, no host sync.

Under ``train.precision: bf16`` only the forward pass runs in bf16; the loss,
gradients, parameters (master weights), optimizer state, ENorm's rescaling
and ALI-G's step size are fp32. Each test checks one method's invariant
after real training steps of the trainable's step function.
"""

import math

import pytest
import torch

from studies.config.space import resolved_config
from studies.config.spec import SpecError
from studies.trial.trainable import (
    CompileUnavailable,
    TrainStep,
    build_trial,
    compile_problem,
    run_trial,
    train_epoch,
)
from studies.trial.validation import load_spec


def config(*overrides, seed=1):
    spec = load_spec("quickstart", ["train.epochs=2", "sweep={}", "baseline=null", *overrides])
    return {**resolved_config(spec, {}), "seed": seed}


class Recorder:
    def __init__(self):
        self.metrics = []

    def restore(self):
        return None

    def report(self, metrics, state):
        self.metrics.append(metrics)


def fp32_tensors(trial):
    """Every parameter, gradient and optimizer-state tensor of a trial."""
    tensors = [p for p in trial.model.parameters()]
    tensors += [p.grad for p in trial.model.parameters() if p.grad is not None]
    for state in trial.optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    return tensors


NO_BN_FC = "model={name: fully_connected, n_layers: 4, width: 32, batchnorm: false}"


def test_bf16_autocast_is_active_and_leaves_master_weights_fp32():
    trial = build_trial(config("train.precision=bf16", "train.steps_per_epoch=3"))
    x, y = next(trial.batches.train())
    with trial.step.autocast():
        hidden = trial.model.layers.fc1(x.flatten(1))
    assert hidden.dtype == torch.bfloat16  # the forward really runs in bf16
    loss = trial.step(x, y)
    assert loss.dtype == torch.float32
    train_epoch(trial.step, trial.batches)
    tensors = fp32_tensors(trial)
    assert len(tensors) > 2 * len(list(trial.model.parameters()))  # params, grads, momentum
    assert all(t.dtype == torch.float32 for t in tensors)


def test_bf16_enorm_cycle_keeps_the_function_and_balances():
    """ENorm on the fp32 weights of a bf16-trained net: f(x) unchanged, r_i = c * l_i at the end.

    No BN and no hidden biases, so the rescaling W_k[i] *= d_i,
    W_{k+1}[:, i] /= d_i leaves the function unchanged. Convergence of the
    cycles gives r_i = |W_{k+1}[:, i]| = c * |W_k[i]| = c * l_i.
    """
    c = 1.2
    trial = build_trial(
        config(NO_BN_FC, f"enorm.c={c}", "train.precision=bf16", "train.steps_per_epoch=10")
    )
    train_epoch(trial.step, trial.batches)  # bf16 steps, each followed by an ENorm cycle
    enorm, step = trial.step.enorm, trial.step
    step.enorm = None  # one more bf16 step without ENorm: the weights leave the balance
    x, y = next(trial.batches.train())
    step(x, y)
    trial.model.eval()
    weights = [p for n, p in trial.model.named_parameters() if n.endswith("weight")]
    before = [w.detach().clone() for w in weights]
    with torch.no_grad():
        out_fp32 = trial.model(x)
        out_bf16 = step.logits(x)
        enorm.step()
        pairs = zip(weights, before, strict=True)
        moved = max(float((w - b).abs().max() / b.abs().max()) for w, b in pairs)
        assert moved > 1e-3  # the cycle really rescaled something
        torch.testing.assert_close(trial.model(x), out_fp32, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(step.logits(x), out_bf16, rtol=0.05, atol=0.05)
        for _ in range(200):
            enorm.step()
        torch.testing.assert_close(trial.model(x), out_fp32, rtol=1e-4, atol=1e-4)
    assert all(w.dtype == torch.float32 for w in weights)
    # the balanced pairs: every hidden layer but the one feeding the classifier
    for left, right in zip(weights[:-2], weights[1:-1], strict=True):
        torch.testing.assert_close(right.norm(dim=0), c * left.norm(dim=1), rtol=1e-4, atol=1e-6)


def test_bf16_sgdg_grassmann_rows_stay_on_the_unit_sphere():
    trial = build_trial(
        config(
            "optimizer={name: sgdg, lr: 0.05, lrg: 0.2}",
            "model={name: fully_convolutional}",
            "train.precision=bf16",
            "train.steps_per_epoch=4",
        )
    )
    group = next(g for g in trial.optimizer.param_groups if g["grassmann"])
    start = [p.detach().clone() for p in group["params"]]
    train_epoch(trial.step, trial.batches)
    for p, p0 in zip(group["params"], start, strict=True):
        assert p.dtype == torch.float32
        assert float((p.detach() - p0).abs().max()) > 1e-4  # it moved along the sphere
        norms = p.detach().flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)


@pytest.mark.parametrize("max_lr", [0.05, 100.0])
def test_bf16_alig_step_size_is_the_fp32_formula(max_lr):
    """gamma = min(f / (|g|^2 + eps), max_lr) with f, g the fp32 loss and gradients."""
    trial = build_trial(
        config(
            f"optimizer={{name: alig, max_lr: {max_lr}, momentum: 0.9}}",
            "train.precision=bf16",
            "train.steps_per_epoch=6",
        )
    )
    optimizer, original = trial.optimizer, trial.optimizer.step
    seen = []

    def checked_step(closure):
        f = closure()
        grads = [p.grad.double() for p in trial.model.parameters() if p.grad is not None]
        sq = sum(float(g.square().sum()) for g in grads)
        result = original(closure)
        seen.append((f.dtype, float(optimizer.step_size), min(float(f) / (sq + 1e-5), max_lr)))
        assert optimizer.step_size.dtype == torch.float32
        return result

    optimizer.step = checked_step
    train_epoch(trial.step, trial.batches)
    assert len(seen) == 6
    for loss_dtype, gamma, expected in seen:
        assert loss_dtype == torch.float32
        assert gamma == pytest.approx(expected, rel=1e-5)
    clipped = [gamma == pytest.approx(max_lr) for _, gamma, _ in seen]
    assert all(clipped) if max_lr == 0.05 else not any(clipped)  # both branches are exercised


def test_bf16_run_reaches_fp32_accuracy_on_digits():
    runs = {}
    for precision in ("fp32", "bf16"):
        recorder = Recorder()
        run_trial(config("train.epochs=3", f"train.precision={precision}"), recorder)
        runs[precision] = recorder.metrics[-1]
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert fp32["train_loss"] != bf16["train_loss"]  # autocast changed the arithmetic
    assert fp32["val_acc"] > 0.85
    assert abs(fp32["val_acc"] - bf16["val_acc"]) <= 0.04
    assert abs(fp32["test_acc"] - bf16["test_acc"]) <= 0.04


CONV = ["model={name: fully_convolutional}", "train.batch_size=16", "train.steps_per_epoch=3"]


@pytest.mark.parametrize(
    "recipe",
    [["enorm.c=1.0", "optimizer.lr=0.01"], ["optimizer={name: sgdg, lr: 0.01, lrg: 0.05}"]],
    ids=["sgd+enorm", "sgdg"],
)
def test_channels_last_trains_like_contiguous(recipe):
    trials = {cl: build_trial(config(*CONV, *recipe, f"train.channels_last={cl}")) for cl in (0, 1)}
    x, _ = next(trials[True].batches.eval("val"))  # the training order stays untouched
    assert x.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # same initial weights, same function
        trials[False].model.eval(), trials[True].model.eval()
        torch.testing.assert_close(
            trials[True].model(x), trials[False].model(x.contiguous()), rtol=1e-4, atol=1e-5
        )
    metrics = {cl: train_epoch(t.step, t.batches) for cl, t in trials.items()}
    assert metrics[True]["loss"] == pytest.approx(metrics[False]["loss"], rel=1e-4)
    # conv algorithms differ in rounding: compare all weights at once, in norm
    flat = {cl: torch.cat([p.detach().flatten() for p in t.model.parameters()])
            for cl, t in trials.items()}  # fmt: skip
    assert float((flat[True] - flat[False]).norm() / flat[False].norm()) < 1e-3
    for p in trials[True].model.parameters():
        if p.dim() == 4:  # the weights keep their layout through the optimizer and ENorm
            assert p.is_contiguous(memory_format=torch.channels_last)


def test_compile_trains_like_eager():
    problem = compile_problem("cpu")
    if problem is not None:
        pytest.skip(f"torch.compile cannot run on this CPU: {problem}")
    torch._dynamo.reset()
    tiny = ["model={name: fully_connected, n_layers: 2, width: 16}", "enorm.c=1.0",
            "train.batch_size=32", "train.steps_per_epoch=3"]  # fmt: skip
    compiled = build_trial(config(*tiny, "train.compile=true"))
    eager = build_trial(config(*tiny))
    assert compiled.step.forward is not compiled.model
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # no _orig_mod.
    losses = {}
    for name, trial in (("compiled", compiled), ("eager", eager)):
        trial.model.train()
        losses[name] = [float(trial.step(x, y)) for x, y in trial.batches.train()]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4)
    eager_params = dict(eager.model.named_parameters())
    for name, p in compiled.model.named_parameters():
        torch.testing.assert_close(p, eager_params[name], rtol=1e-4, atol=1e-5)


def test_compile_unavailable_is_a_clear_error(monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(CompileUnavailable, match=r"train\.compile.*set train\.compile: false"):
        build_trial(config("train.compile=true"))


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.precision=fp16", "train.precision"),
        ("train.channels_last=maybe", "train.channels_last"),
        ("dataset.loader=gpu", "dataset.loader"),
        ("dataset.num_workers=-1", "dataset.num_workers"),
    ],
)
def test_bad_speed_options_name_the_field(override, field):
    with pytest.raises(SpecError) as err:
        config(override)
    assert any(path == field for path, _ in err.value.problems), err.value.problems


# ---------------------------------------------------------------------------
# No host-device synchronization inside a training step


class HostSync(AssertionError):
    pass


READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


class forbid_host_reads:
    """Make every Python-level read of a tensor's value raise (and, on CUDA, every sync)."""

    def __enter__(self):
        self.saved = {name: getattr(torch.Tensor, name) for name in READS}
        for name in READS:
            setattr(torch.Tensor, name, _raiser(name))
        if torch.cuda.is_available():
            self.mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
        return self

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(self.mode)


def _raiser(name):
    def read(self, *args, **kwargs):
        raise HostSync(f"Tensor.{name} inside a training step reads a device value on the host")

    return read


def test_the_guard_catches_host_reads():
    x = torch.ones(())
    for read in (lambda: x.item(), lambda: float(x), lambda: bool(x), lambda: [0, 1][x.long()]):
        with forbid_host_reads(), pytest.raises(HostSync):
            read()
    assert float(x) == 1.0  # restored afterwards


SYNC_RECIPES = {
    "sgd": [],
    "sgd+enorm": ["enorm.c=1.2"],
    "sgd+bninit": ["bn={bn_weight: 0.5, c: 10, input_norm: bn}"],
    "sgdg": ["optimizer={name: sgdg, lr: 0.05, lrg: 0.2}", "model={name: fully_convolutional}"],
    "adamg": ["optimizer={name: adamg, lr: 0.01, lrg: 0.05}", "model={name: fully_convolutional}"],
    "alig": ["optimizer={name: alig, max_lr: 0.1, momentum: 0.9, max_norm: 50}"],
    "odenet": ["model={name: odenet4, inplanes: 8, steps: 2, solver: rk2}"],
    "bf16+augment": ["train.precision=bf16", "dataset.augment=true"],
}


class GuardedStep(TrainStep):
    """The trainable's step with host reads forbidden for its whole duration."""

    def __call__(self, x, y):
        with forbid_host_reads():
            return super().__call__(x, y)


def guarded(train):
    """``batches.train`` whose every ``next()`` (slicing, augmenting, copying) forbids reads."""

    def batches():
        iterator = train()
        while True:
            with forbid_host_reads():
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
            yield batch

    return batches


@pytest.mark.parametrize("name", SYNC_RECIPES)
def test_training_steps_never_read_device_values(name):
    """train_epoch with every batch and step guarded: only the epoch's end reads metrics."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trial = build_trial(config(*SYNC_RECIPES[name], "train.steps_per_epoch=4"), device)
    trial.step.__class__ = GuardedStep
    trial.batches.train = guarded(trial.batches.train)
    metrics = train_epoch(trial.step, trial.batches)
    assert trial.step.steps == 4 and math.isfinite(metrics["loss"])
    if name == "alig":
        assert 0 < metrics["alig_step_size"] <= 0.1 + 1e-6
