"""The trial function without Ray: every recipe trains, resumes exactly, stops on divergence."""

import io
import math

import pytest
import torch

from studies.config.space import resolved_config
from studies.trial.trainable import InjectedFault, run_trial
from studies.trial.validation import load_spec


class Recorder:
    """A Session that keeps reports, and can restore from a saved state."""

    def __init__(self, restore_from=None, stop_after=None):
        self.metrics, self.states = [], []
        self.restore_from, self.stop_after = restore_from, stop_after

    def restore(self):
        if self.restore_from is None:
            return None
        buffer = io.BytesIO()  # the same safe round trip as a Ray checkpoint
        torch.save(self.restore_from, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)

    def report(self, metrics, state):
        self.metrics.append(metrics)
        self.states.append(state() if state else None)
        if self.stop_after and len(self.metrics) == self.stop_after:
            raise KeyboardInterrupt  # simulated kill after this epoch's checkpoint


def config(*overrides, seed=1):
    spec = load_spec("quickstart", ["train.epochs=3", "sweep={}", "baseline=null", *overrides])
    return {**resolved_config(spec, {}), "seed": seed}


RECIPES = {
    "sgd": [],
    "sgd+enorm": ["enorm.c=1.2"],
    "sgd+bninit": ["bn={bn_weight: 0.5, c: 10, input_norm: bn}"],
    "sgdg": ["optimizer={name: sgdg, lr: 0.05, lrg: 0.2}", "model={name: fully_convolutional}"],
    "adamg": [
        "optimizer={name: adamg, lr: 0.01, lrg: 0.05}",
        "model={name: wide_resnet, depth: 10, width: 1}",
    ],
    "alig": ["optimizer={name: alig, max_lr: 0.1, momentum: 0.9, max_norm: 50}"],
    "odenet": ["model={name: odenet4, inplanes: 16, steps: 2, solver: rk2}"],
}


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_learns(name):
    recorder = Recorder()
    run_trial(config(*RECIPES[name], "train.steps_per_epoch=8"), recorder)
    first, last = recorder.metrics[0], recorder.metrics[-1]
    assert [m["epoch"] for m in recorder.metrics] == [1, 2, 3]
    assert all(m["diverged"] == 0 for m in recorder.metrics)
    assert last["train_loss"] < math.log(10)  # below chance-level cross-entropy
    assert last["train_loss"] < first["train_loss"]
    assert last["val_acc"] > 0.15 and 0 <= last["test_acc"] <= 1  # chance is 0.1
    if name == "alig":
        assert 0 < last["alig_step_size"] <= 0.1
    if name == "odenet":
        assert last["nfe"] == 4  # rk2, 2 steps
    if name == "sgd+bninit":
        assert recorder.states[-1]["model"]["0.weight"].mean().item() == pytest.approx(
            0.29, rel=0.02
        )  # 0.58 * bn_weight, trained at lr / c


def test_enorm_balances_the_trained_network():
    recorder = Recorder()
    run_trial(config("enorm.c=1.0", "optimizer.momentum=0", "optimizer.weight_decay=0"), recorder)
    weights = [
        w for k, w in recorder.states[-1]["model"].items() if k.endswith("weight") and w.dim() == 2
    ]
    # after the last ENorm cycle, hidden unit i of layer 1 satisfies r_i = c * l_i
    l_in = weights[0].norm(dim=1)
    r_out = weights[1].norm(dim=0)
    torch.testing.assert_close(r_out, l_in, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "loader",
    [[], ["dataset.loader=torch", "dataset.augment=true", "dataset.num_workers=2"]],
    ids=["device", "torch+augment"],
)
def test_resume_from_checkpoint_continues_bitwise(loader):
    options = ["train.epochs=4", "enorm.c=1.2", "train.checkpoint_every_s=0", *loader]
    full = Recorder()
    run_trial(config(*options), full)
    killed = Recorder(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config(*options), killed)
    resumed = Recorder(restore_from=killed.states[-1])
    run_trial(config(*options), resumed)
    assert [m["epoch"] for m in resumed.metrics] == [3, 4]  # continues, does not restart
    # A restarted trial reports its dataset again with its first epoch (the driver's MLflow
    # input is idempotent): the only field besides the timing that differs.
    assert "dataset_input" in resumed.metrics[0] and "dataset_input" not in full.metrics[2]
    strip = ("epoch_seconds", "dataset_input")
    for a, b in zip(full.metrics[2:], resumed.metrics, strict=True):
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }


@pytest.mark.parametrize("every_s, saved", [(0, [1, 2, 3, 4]), (3600, [4])])
def test_epochs_checkpoint_by_time_and_the_last_always(every_s, saved):
    recorder = Recorder()
    run_trial(config("train.epochs=4", f"train.checkpoint_every_s={every_s}"), recorder)
    pairs = zip(recorder.metrics, recorder.states, strict=True)
    assert [m["epoch"] for m, s in pairs if s] == saved
    assert [s["epoch"] for s in recorder.states if s] == saved


def test_a_slow_epoch_checkpoints_once_its_time_is_up(monkeypatch):
    import studies.trial.trainable as trainable

    clock = iter(range(0, 1000, 4))  # every call to the clock: 4 s later
    monkeypatch.setattr(trainable.time, "monotonic", lambda: next(clock))
    recorder = Recorder()
    run_trial(config("train.epochs=3", "train.checkpoint_every_s=3"), recorder)
    assert all(recorder.states)


def test_same_seed_same_metrics_other_seed_differs():
    a, b, c = Recorder(), Recorder(), Recorder()
    run_trial(config(seed=3), a)
    run_trial(config(seed=3), b)
    run_trial(config(seed=4), c)
    drop = lambda ms: [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in ms]  # noqa: E731
    assert drop(a.metrics) == drop(b.metrics)
    assert drop(a.metrics) != drop(c.metrics)


def test_divergence_stops_cleanly_with_last_finite_metrics():
    recorder = Recorder()
    run_trial(config("optimizer.lr=1e6", "train.epochs=5"), recorder)
    last = recorder.metrics[-1]
    assert last["diverged"] == 1 and recorder.states[-1] is None
    assert len(recorder.metrics) < 5 or last["epoch"] == 5
    assert math.isfinite(last["val_acc"])


def test_injected_fault_raises_at_that_epoch():
    recorder = Recorder()
    with pytest.raises(InjectedFault):
        run_trial(config("train.fail_at_epoch=2"), recorder)
    assert [m["epoch"] for m in recorder.metrics] == [1]


def test_torch_loader_trial_equals_device_loader_trial():
    """Same seed, augmentation off: the same batches in the same order, so the same numbers."""
    device, torch_loader = Recorder(), Recorder()
    run_trial(config("enorm.c=1.2"), device)
    run_trial(config("enorm.c=1.2", "dataset.loader=torch", "dataset.num_workers=0"), torch_loader)
    drop = lambda ms: [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in ms]  # noqa: E731
    assert drop(device.metrics) == drop(torch_loader.metrics)
    assert device.metrics[-1]["val_acc"] > 0.5
