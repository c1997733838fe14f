"""One trial: build everything from the config, train, evaluate, report per epoch.

:func:`run_trial` is independent of Ray: it talks to a :class:`Session` that
restores the last checkpoint and takes each epoch's metrics and state.
:func:`tune_trainable` is the Ray Tune function trainable, which plugs in
:class:`studies.trial.checkpoints.TuneSession` (``tune.get_checkpoint`` / ``tune.report``).

By default the data stays on the trial's device; batches are sliced from
tensors and augmented there (``dataset.loader: torch`` streams them from a
DataLoader instead). Per step nothing is copied to the host: losses,
accuracies and ALI-G step sizes accumulate as device tensors and are read
once per epoch. Speed options (``train.precision``, ``train.channels_last``,
``train.compile``) change how the forward pass runs, never the methods' math:
parameters, gradients, optimizer state, ENorm and ALI-G work in fp32.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from normlib.alig import AliG
from normlib.enorm import ENorm
from normlib.seeding import make_complex, make_deterministic
from studies.trial.batches import Batches, make_batches
from studies.trial.data import load_splits
from studies.trial.fingerprint import dataset_profile
from studies.trial.recipes import (
    build_enorm,
    build_method,
    build_model,
    build_optimizer,
    build_schedule,
    current_lr,
    normalize_inputs,
)

# studies.config's spec modules (pydantic) are imported inside run_trial and build_trial, so
# the training loop (TrainStep, train_epoch) imports with torch alone: bench/gpu.sh runs it on
# a GPU machine without pydantic (tests/test_gpu_bench_imports.py holds this).


class Session(Protocol):
    def restore(self) -> dict[str, Any] | None: ...

    def report(self, metrics: dict[str, float], state: Callable[[], dict] | None) -> None: ...


class InjectedFault(RuntimeError):
    """Raised by ``train.fail_at_epoch`` to test the failure handling."""


class CompileUnavailable(RuntimeError):
    """``train.compile: true`` where torch.compile cannot run."""


def run_trial(config: dict[str, Any], session: Session, device: torch.device | str = "cpu") -> None:
    """Train one trial config (trial sections + ``seed``, maybe an explicit ``arm``) to the end
    or to divergence."""
    from studies.config.space import resolve_arm

    config = resolve_arm(config)
    trial = build_trial(config, device)
    cfg, model, optimizer, scheduler = trial.cfg, trial.model, trial.optimizer, trial.scheduler
    generator, stepper = trial.batches.generator, trial.step

    start_epoch = 1
    last_finite: dict[str, float] | None = None
    state = session.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, stepper.count = int(state["epoch"]) + 1, int(state["step"])
        if state.get("method") is not None:
            trial.method.load_state_dict(state["method"])
        last_finite = state.get("last_finite")

    epochs, every_s = cfg["train"]["epochs"], cfg["train"]["checkpoint_every_s"]
    last_checkpoint = time.monotonic()
    for epoch in range(start_epoch, epochs + 1):
        if cfg["train"]["fail_at_epoch"] == epoch:
            raise InjectedFault(f"train.fail_at_epoch={epoch}: injected failure")
        started = time.perf_counter()
        lr = current_lr(optimizer)
        train = train_epoch(stepper, trial.batches)
        scheduler.step()
        val_loss, val_acc = evaluate(stepper, trial.batches, "val")
        test_loss, test_acc = evaluate(stepper, trial.batches, "test")
        metrics: dict[str, Any] = {
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
        if epoch == start_epoch and trial.dataset is not None:  # the driver logs it to MLflow
            metrics["dataset_input"] = json.dumps(trial.dataset)
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "val_loss")):
            final = dict(last_finite or metrics)
            final.update(epoch=epoch, diverged=1, epoch_seconds=metrics["epoch_seconds"])
            session.report(final, None)
            return
        last_finite = metrics

        def snapshot(epoch: int = epoch, step: int = stepper.count,
                     metrics: dict[str, Any] = metrics) -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "data_rng": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "step": step,
                "last_finite": metrics,
                "method": method_state(trial.method),
            }

        # A checkpoint costs a save, a copy into storage and, in Ray Tune, a snapshot of the
        # whole experiment state every second one: short epochs checkpoint by time, not count.
        due = epoch == epochs or time.monotonic() - last_checkpoint >= every_s
        session.report(metrics, snapshot if due else None)
        if due:
            last_checkpoint = time.monotonic()


@dataclass
class TrialSetup:
    """Everything one run trains with; ``model`` is the uncompiled module (state_dict keys)."""

    cfg: dict[str, Any]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    enorm: ENorm | None
    scheduler: Any
    batches: Batches
    step: TrainStep
    method: Any = None  # the user's per-step hook (method section), if any
    dataset: dict[str, Any] | None = None  # what it trains on (studies.trial.fingerprint)


def build_trial(config: dict[str, Any], device: torch.device | str = "cpu") -> TrialSetup:
    """Validate the trial sections of ``config``, seed everything with ``config["seed"]``, build.

    Order matters for reproducibility and for the speed options: the model is
    moved to the device and to channels_last *before* the optimizer and ENorm
    take its parameters (they keep the same Parameter objects either way).
    """
    from studies.config.trial import TRIAL_SECTIONS, TrialConfig

    device = torch.device(device)
    validated = TrialConfig.model_validate({k: config[k] for k in TRIAL_SECTIONS if k in config})
    cfg = validated.model_dump(mode="json")
    seed = int(config["seed"])
    train_cfg, data_cfg = cfg["train"], cfg["dataset"]
    if train_cfg["compile"]:
        problem = compile_problem(device)
        if problem is not None:
            raise CompileUnavailable(
                f"train.compile: torch.compile cannot run here ({problem}); "
                "set train.compile: false"
            )
    make_deterministic(seed)

    splits = load_splits(data_cfg)
    model = build_model(cfg, splits.info).to(device)
    if train_cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    enorm = build_enorm(cfg, model, optimizer)
    method = build_method(cfg, model, optimizer)
    scheduler = build_schedule(cfg, optimizer)
    # the device loader draws on the device (no host round trip); the torch loader on the host
    data_device = device if data_cfg["loader"] == "device" else torch.device("cpu")
    generator = torch.Generator(device=data_device).manual_seed(make_complex(seed))
    augment = data_cfg["augment"]
    batches = make_batches(
        data_cfg["loader"],
        splits,
        generator,
        num_workers=data_cfg["num_workers"],
        batch_size=train_cfg["batch_size"],
        eval_batch_size=train_cfg["eval_batch_size"],
        normalize=normalize_inputs(cfg),
        augment=splits.info.augment if augment is None else augment,
        max_steps=train_cfg["steps_per_epoch"],
        device=device,
        channels_last=train_cfg["channels_last"],
    )
    step = TrainStep(
        model,
        optimizer,
        enorm,
        enorm_every=(cfg.get("enorm") or {}).get("every", 1),
        precision=train_cfg["precision"],
        compile=train_cfg["compile"],
        device=device,
        method=method,
        method_every=(cfg.get("method") or {}).get("every", 1),
    )
    return TrialSetup(cfg, model, optimizer, enorm, scheduler, batches, step, method,
                      dataset_profile(data_cfg, splits))


def method_state(method: Any) -> dict[str, Any] | None:
    """A hook's ``state_dict()`` for the checkpoint, if it has one."""
    return method.state_dict() if callable(getattr(method, "state_dict", None)) else None


class TrainStep:
    """One optimizer step per call; the epoch's metrics accumulate on the device.

    With ``precision="bf16"`` the forward pass runs under autocast; the loss
    is cross-entropy of the logits cast to fp32, so it and everything after
    it are fp32: gradients of the fp32 parameters (master weights), the
    optimizer step, ALI-G's gamma = min(f / (|g|^2 + eps), max_lr), and the
    ENorm cycle after every ``enorm_every``-th step, then the user's ``method`` hook's
    ``step()`` after every ``method_every``-th. ``count`` is the number of
    optimizer steps so far (checkpointed: it sets the ENorm cadence).
    Nothing in a call reads a device value on the host; :meth:`read` does, once.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        enorm: ENorm | None = None,
        *,
        enorm_every: int = 1,
        precision: str = "fp32",
        compile: bool = False,
        device: torch.device | str = "cpu",
        method: Any = None,
        method_every: int = 1,
    ):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be fp32 or bf16, got {precision!r}")
        self.model, self.optimizer, self.enorm = model, optimizer, enorm
        self.forward = torch.compile(model) if compile else model
        self.enorm_every, self.precision = enorm_every, precision
        self.method, self.method_every = method, method_every
        self.device = torch.device(device)
        self.alig = optimizer if isinstance(optimizer, AliG) else None
        self.is_alig = self.alig is not None
        self.count = 0
        self.reset()

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on the trial's device type, or a no-op for fp32."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def reset(self) -> None:
        """Zero the epoch's accumulators."""
        zero = torch.zeros((), device=self.device)
        self.loss_sum, self.alig_sum = zero, zero.clone()
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.seen = self.steps = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            output = self.forward(x)
        return output.float()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, backward, optimizer step (and ENorm); returns the fp32 loss (a tensor)."""
        output = self.logits(x)
        loss = F.cross_entropy(output, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        detached = loss.detach()
        if self.alig is not None:
            self.alig.step(lambda: detached)
            if self.alig.step_size is not None:  # None: no parameter had a gradient
                self.alig_sum += self.alig.step_size
        else:
            self.optimizer.step()
        self.count += 1
        if self.enorm is not None and self.count % self.enorm_every == 0:
            self.enorm.step()
        if self.method is not None and self.count % self.method_every == 0:
            self.method.step()
        self.loss_sum += detached * len(y)
        self.correct += (output.detach().argmax(1) == y).sum()
        self.seen += len(y)
        self.steps += 1
        return detached

    def read(self) -> dict[str, float]:
        """The epoch's mean loss, accuracy (and ALI-G mean step size): one host sync."""
        loss_sum, correct, alig_sum = torch.stack(
            [self.loss_sum.double(), self.correct.double(), self.alig_sum.double()]
        ).tolist()
        seen = max(1, self.seen)
        metrics = {"loss": loss_sum / seen, "acc": correct / seen}
        if self.is_alig:
            metrics["alig_step_size"] = alig_sum / max(1, self.steps)
        return metrics


def train_epoch(step: TrainStep, batches: Batches) -> dict[str, float]:
    """One pass over the training split; returns the epoch's metrics."""
    step.model.train()
    step.reset()
    for x, y in batches.train():
        step(x, y)
    metrics = step.read()
    nfe = getattr(_unwrap(step.model), "nfe", None)
    if nfe is not None:
        metrics["nfe"] = float(nfe)
    return metrics


def _unwrap(model: nn.Module) -> nn.Module:
    """The network behind an input-BN wrapper."""
    if isinstance(model, nn.Sequential) and len(model) == 2 and not hasattr(model, "nfe"):
        return model[1]
    return model


@torch.no_grad()
def evaluate(step: TrainStep, batches: Batches, split: str) -> tuple[float, float]:
    """Mean loss and accuracy on ``split`` (``val`` or ``test``), in eval mode."""
    step.model.eval()
    loss_sum = torch.zeros((), device=step.device)
    correct = torch.zeros((), device=step.device, dtype=torch.long)
    n = 0
    for x, y in batches.eval(split):
        output = step.logits(x)
        loss_sum += F.cross_entropy(output, y, reduction="sum")
        correct += (output.argmax(1) == y).sum()
        n += len(y)
    loss, hits = torch.stack([loss_sum.double(), correct.double()]).tolist()
    return loss / max(1, n), hits / max(1, n)


def compile_problem(device: torch.device | str) -> str | None:
    """Why torch.compile (inductor) cannot run on ``device`` here, or None if it can."""
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return "TorchDynamo does not support this Python version or platform"
    except Exception as err:  # noqa: BLE001 - any import failure means no compile
        return f"TorchDynamo unavailable: {err}"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception:  # noqa: BLE001 - internal API; fall back to a PATH lookup
            if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
                return "inductor needs a C++ compiler (g++ or clang++) on PATH for CPU code"
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "inductor needs Triton for GPU code; pip install triton"
    return None


# ---------------------------------------------------------------------------
# Ray Tune


def tune_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: threads from the trial's CPU share, GPU if granted."""
    import ray

    from studies.trial.checkpoints import TuneSession

    context = ray.get_runtime_context()
    cpus = context.get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    run_trial(config, TuneSession(), device)
