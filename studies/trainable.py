"""One trial: build everything from the config, train, evaluate, report per epoch.

:func:`run_trial` is independent of Ray: it talks to a :class:`Session` that
restores the last checkpoint and takes each epoch's metrics and state.
:func:`tune_trainable` is the Ray Tune function trainable, which plugs in
:class:`studies.checkpoints.TuneSession` (``tune.get_checkpoint`` / ``tune.report``).

The data stays on the trial's device; batches are sliced from tensors and
augmented there. Per step, nothing is copied to the host: losses and
accuracies accumulate as device tensors and are read once per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from normlib.alig import AliG
from normlib.seeding import make_complex, make_deterministic
from studies.data import Splits, load_splits, normalize, random_crop_flip
from studies.recipes import (
    build_enorm,
    build_model,
    build_optimizer,
    build_schedule,
    current_lr,
    normalize_inputs,
)
from studies.space import resolve_arm
from studies.spec import TRIAL_SECTIONS, TrialConfig


class Session(Protocol):
    def restore(self) -> dict[str, Any] | None: ...

    def report(self, metrics: dict[str, float], state: Callable[[], dict] | None) -> None: ...


class InjectedFault(RuntimeError):
    """Raised by ``train.fail_at_epoch`` to test the failure handling."""


def run_trial(config: dict[str, Any], session: Session, device: torch.device | str = "cpu") -> None:
    """Train one trial config (trial sections + ``seed``, maybe an explicit ``arm``) to the end
    or to divergence."""
    device = torch.device(device)
    config = resolve_arm(config)
    cfg = TrialConfig.model_validate({k: config[k] for k in TRIAL_SECTIONS if k in config})
    cfg = cfg.model_dump(mode="json")
    seed = int(config["seed"])
    make_deterministic(seed)

    splits = load_splits(cfg["dataset"]).to(device)
    model = build_model(cfg, splits.info).to(device)
    optimizer = build_optimizer(cfg, model)
    enorm = build_enorm(cfg, model, optimizer)
    scheduler = build_schedule(cfg, optimizer)
    generator = torch.Generator(device=device).manual_seed(make_complex(seed))
    augment = cfg["dataset"]["augment"]
    batches = Batches(
        splits,
        generator,
        batch_size=cfg["train"]["batch_size"],
        normalize=normalize_inputs(cfg),
        augment=splits.info.augment if augment is None else augment,
        max_steps=cfg["train"]["steps_per_epoch"],
    )

    start_epoch, step = 1, 0
    last_finite: dict[str, float] | None = None
    state = session.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        last_finite = state.get("last_finite")

    epochs = cfg["train"]["epochs"]
    for epoch in range(start_epoch, epochs + 1):
        if cfg["train"]["fail_at_epoch"] == epoch:
            raise InjectedFault(f"train.fail_at_epoch={epoch}: injected failure")
        started = time.perf_counter()
        lr = current_lr(optimizer)
        train, step = train_epoch(model, optimizer, enorm, batches, step, cfg["enorm"])
        scheduler.step()
        val_loss, val_acc = evaluate(model, splits.val_x, splits.val_y, batches, cfg)
        test_loss, test_acc = evaluate(model, splits.test_x, splits.test_y, batches, cfg)
        metrics = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_acc": train["acc"],
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": lr,
            "epoch_seconds": time.perf_counter() - started,
            "diverged": 0,
            **{k: v for k, v in train.items() if k not in ("loss", "acc")},
        }
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss")):
            final = dict(last_finite or metrics)
            final.update(epoch=epoch, diverged=1, epoch_seconds=metrics["epoch_seconds"])
            session.report(final, None)
            return
        last_finite = metrics

        def snapshot(epoch=epoch, step=step, metrics=metrics) -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "data_rng": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "step": step,
                "last_finite": metrics,
            }

        session.report(metrics, snapshot)


class Batches:
    """Shuffled, normalized, optionally augmented mini-batches from device tensors."""

    def __init__(self, splits: Splits, generator, batch_size, normalize, augment, max_steps):
        self.splits, self.generator = splits, generator
        self.batch_size, self.normalize, self.augment = batch_size, normalize, augment
        self.max_steps = max_steps

    def prepare(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        x = normalize(x, self.splits.info, self.normalize)
        if train and self.augment:
            x = random_crop_flip(x, self.generator)
        return x

    def train(self):
        n = len(self.splits.train_y)
        order = torch.randperm(n, generator=self.generator, device=self.generator.device)
        order = order.to(self.splits.train_y.device)
        starts = range(0, n, self.batch_size)
        if self.max_steps is not None:
            starts = starts[: self.max_steps]
        for start in starts:
            idx = order[start : start + self.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single example
                continue
            yield self.prepare(self.splits.train_x[idx], train=True), self.splits.train_y[idx]


def train_epoch(model: nn.Module, optimizer, enorm, batches: Batches, step: int, enorm_cfg):
    """One pass over the training split; returns epoch metrics and the new step count."""
    model.train()
    device = batches.splits.train_y.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    alig_steps = torch.zeros((), device=device)
    seen = 0
    for x, y in batches.train():
        output = model(x)
        loss = F.cross_entropy(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if isinstance(optimizer, AliG):
            detached = loss.detach()
            optimizer.step(lambda detached=detached: detached)
            alig_steps += optimizer.step_size
        else:
            optimizer.step()
        step += 1
        if enorm is not None and step % enorm_cfg["every"] == 0:
            enorm.step()
        loss_sum += loss.detach() * len(y)
        correct += (output.argmax(1) == y).sum()
        seen += len(y)
    metrics = {"loss": float(loss_sum) / seen, "acc": float(correct) / seen}
    if isinstance(optimizer, AliG):
        metrics["alig_step_size"] = float(alig_steps) / max(1, math.ceil(seen / batches.batch_size))
    nfe = getattr(_unwrap(model), "nfe", None)
    if nfe is not None:
        metrics["nfe"] = float(nfe)
    return metrics, step


def _unwrap(model: nn.Module) -> nn.Module:
    """The network behind an input-BN wrapper."""
    if isinstance(model, nn.Sequential) and len(model) == 2 and not hasattr(model, "nfe"):
        return model[1]
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x_all, y_all, batches: Batches, cfg) -> tuple[float, float]:
    model.eval()
    size = cfg["train"]["eval_batch_size"]
    loss_sum = torch.zeros((), device=y_all.device)
    correct = torch.zeros((), device=y_all.device, dtype=torch.long)
    for start in range(0, len(y_all), size):
        x = batches.prepare(x_all[start : start + size], train=False)
        y = y_all[start : start + size]
        output = model(x)
        loss_sum += F.cross_entropy(output, y, reduction="sum")
        correct += (output.argmax(1) == y).sum()
    return float(loss_sum) / len(y_all), float(correct) / len(y_all)


# ---------------------------------------------------------------------------
# Ray Tune


def tune_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: threads from the trial's CPU share, GPU if granted."""
    import ray

    from studies.checkpoints import TuneSession

    context = ray.get_runtime_context()
    cpus = context.get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    run_trial(config, TuneSession(), device)
