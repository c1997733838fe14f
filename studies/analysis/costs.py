"""GPU-hour estimates for studies: a per-model cost table, scaled to the study.

The unit is the *GPU-second per CIFAR-sized epoch*: one trial alone on one
NVIDIA H100 (fp32 weights, cuDNN convolutions in TF32 as PyTorch allows by
default, cuDNN deterministic as the trainable sets it) doing what an epoch of
the trainable does on CIFAR-10: train on 45,000 images (50,000 less the 10%
validation split) and evaluate 15,000 (5,000 validation + 10,000 test).

Where the numbers come from (no GPU was available when the table was made,
so every ``seconds`` below is an **estimate**; every trial reports its
measured ``epoch_seconds``, so one real epoch per model on the target GPU is
enough to replace them):

* ``gflops`` is **measured**: forward FLOPs of one 3x32x32 image through our
  implementation, counted with ``torch.utils.flop_counter.FlopCounterMode``
  (meta device, eval mode). For ODENets it is the fixed part (stem, ResBlocks,
  head) and ``gflops_per_eval`` one evaluation of every ODE block's function.
* An epoch does ``3 x 45,000 + 15,000 = 150,000`` image-forwards' worth of
  work (a backward pass costs about two forwards); ODE blocks run with
  ``checkpoint: true`` recompute each solver step in the backward pass, so
  their training part is 4 forwards: ``4 x 45,000 + 15,000 = 195,000``.
* ``seconds = work x gflops / effective throughput + per-step overhead``,
  with an *assumed* effective throughput per model (about 10% of the H100's
  TF32 peak for wide convolutions, less for narrow ones, which are bound by
  memory bandwidth) and, for tiny models, kernel-launch overhead (a few ms
  per optimizer step). Each entry's ``source`` says which assumption it uses.

``gpu_hours(spec) = sum over trials of epochs x epoch_seconds / 3600``; for a
grid this is arms x seeds x epochs x cost (each arm, explicit ``arms`` crossed
with the sweep, priced on its own, since ODE solver steps change the cost), for
Optuna / random search it is the trial count x epochs x the base config's cost
(an upper bound under ASHA, which stops trials early). A two-stage study adds
its confirm stage: ``(top_k + 1) x len(confirm.seeds)`` trials, the ``top_k``
chosen arms priced as the base config (they are not known before the search)
and the baseline arm on its own. Trials sharing a GPU (``resources.gpu < 1``)
do the same work, so sharing shortens the wall time, not the GPU-hours.
Models not in the table are priced from their FLOP count (counted on the
``meta`` device, nothing allocated) at the generic throughput below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studies.config.datasets import DATASET_INFO, SVHN_EXTRA, dataset_info
from studies.config.space import (
    configurations,
    confirm_baseline,
    expected_trials,
    is_finite,
    resolved_config,
)
from studies.config.spec import StudySpec

CIFAR_TRAIN, CIFAR_EVAL = 45_000, 15_000
CIFAR_WORK = 3 * CIFAR_TRAIN + CIFAR_EVAL
"""Image-forwards per CIFAR epoch: a train image costs ~3 forwards, an evaluated one 1."""

GENERIC_TFLOPS = 30.0
"""Assumed effective H100 throughput for a model the table does not list."""
STEP_OVERHEAD_S = 0.003
"""Assumed fixed cost of one optimizer step (kernel launches, optimizer, bookkeeping)."""

# ODE solvers: function evaluations per step.
SOLVER_STAGES = {"euler": 1, "rk2": 2, "rk4": 4}


@dataclass(frozen=True)
class ModelCost:
    """GPU-seconds per CIFAR-sized epoch on one H100: ``seconds + per_eval x NFE``."""

    seconds: float
    gflops: float
    source: str
    per_eval: float = 0.0  # per function evaluation of every ODE block (NFE = steps x stages)
    gflops_per_eval: float = 0.0


COSTS: dict[str, ModelCost] = {
    "fully_connected-15x500": ModelCost(
        seconds=1.0,
        gflops=0.0101,
        source="estimate: 1.5 TFLOP per epoch is negligible; launch-bound, 176 steps of "
        "batch 256 x ~4 ms (16 Linear+BN+ReLU forward/backward, SGD, one ENorm cycle) "
        "+ evaluation",
    ),
    "fully_convolutional": ModelCost(
        seconds=7.0,
        gflops=1.474,
        source="estimate: 150k x 1.474 GFLOP = 221 TFLOP at ~35 TFLOPS effective "
        "(128-320 channels) + ENorm cycle per step",
    ),
    "wide_resnet-28-10": ModelCost(
        seconds=34.0,
        gflops=10.487,
        source="estimate: 150k x 10.49 GFLOP = 1,573 TFLOP at ~50 TFLOPS effective "
        "(160-640 channels, TF32) + SGD-G/Adam-G per-row manifold steps",
    ),
    "wide_resnet-40-4": ModelCost(
        seconds=11.0,
        gflops=2.597,
        source="estimate: 150k x 2.597 GFLOP = 390 TFLOP at ~35 TFLOPS effective "
        "(64-256 channels, 36 convs deep)",
    ),
    "wide_resnet-16-4": ModelCost(
        seconds=4.0,
        gflops=0.785,
        source="estimate: 150k x 0.785 GFLOP = 118 TFLOP at ~30 TFLOPS effective (64-256 channels)",
    ),
    "resnet18": ModelCost(
        seconds=6.0,
        gflops=1.111,
        source="estimate: 150k x 1.111 GFLOP = 167 TFLOP at ~30 TFLOPS effective "
        "(small-image stem: 64 channels at 32x32)",
    ),
    "odenet4-16": ModelCost(
        seconds=0.5,
        gflops=0.0008,
        per_eval=0.2,
        gflops_per_eval=0.0095,
        source="estimate: 16-channel convs are memory-bound; per evaluation 195k x "
        "0.0095 GFLOP = 1.85 TFLOP at ~10 TFLOPS effective; fixed part launch-bound "
        "(88 steps of batch 512)",
    ),
    "odenet10-64": ModelCost(
        seconds=1.5,
        gflops=0.272,
        per_eval=2.0,
        gflops_per_eval=0.302,
        source="estimate: per evaluation of both ODE blocks 195k x 0.302 GFLOP = 59 TFLOP "
        "at ~30 TFLOPS effective; fixed part 150k x 0.272 GFLOP at ~30 TFLOPS",
    ),
}


def model_key(model: dict[str, Any]) -> str:
    """The cost-table key of a model section, e.g. ``wide_resnet-28-10``, ``odenet4-16``."""
    name = model["name"]
    if name == "wide_resnet":
        return f"wide_resnet-{model.get('depth', 28)}-{model.get('width', 10)}"
    if name == "fully_connected":
        return f"fully_connected-{model.get('n_layers')}x{model.get('width')}"
    if name.startswith("odenet"):
        return f"{name}-{model.get('inplanes', 64)}"
    return name


def ode_evaluations(model: dict[str, Any]) -> int:
    """Function evaluations per ODE block and forward pass (steps x solver stages)."""
    if not str(model["name"]).startswith("odenet") or model.get("ode", True) is False:
        return 0
    from normlib.ode.solvers import DEFAULT_STEPS

    stages = SOLVER_STAGES.get(model.get("solver", "euler"), 6)  # adaptive: ~dopri5 stages
    return int(model.get("steps", DEFAULT_STEPS)) * stages


def _work_ratio(config: dict[str, Any]) -> float:
    """An epoch of this config's data relative to a CIFAR epoch (images x pixels)."""
    dataset, train = config["dataset"], config["train"]
    info = DATASET_INFO.get(dataset.get("name"), DATASET_INFO["cifar10"])
    total_train, test, side = info.train_size, info.test_size, info.shape[-1]
    if dataset.get("extra"):
        total_train += SVHN_EXTRA
    val = round(total_train * dataset.get("val_fraction", 0.1))
    n_train = total_train - val
    if dataset.get("train_size"):
        n_train = min(n_train, dataset["train_size"])
    if train.get("steps_per_epoch"):
        n_train = min(n_train, train["steps_per_epoch"] * train.get("batch_size", 128))
    if dataset.get("test_size"):
        test = min(test, dataset["test_size"])
    work = 3 * n_train + val + test
    return work / CIFAR_WORK * (side / 32) ** 2


def _flop_estimate(config: dict[str, Any]) -> ModelCost:
    """Price a model the table lacks from its forward FLOPs (counted on the meta device)."""
    import torch  # lazily: `normstudy list` prices most studies from the table
    from torch.utils.flop_counter import FlopCounterMode

    from studies.trial.recipes import build_model

    info = dataset_info(config["dataset"].get("name", "cifar10"))
    with torch.device("meta"):
        model = build_model(config, info).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(2, *info.shape))
    gflops = counter.get_total_flops() / 2 / 1e9 / ((info.shape[1] / 32) ** 2)
    steps = CIFAR_TRAIN / config["train"].get("batch_size", 128)
    seconds = CIFAR_WORK * gflops / (GENERIC_TFLOPS * 1000) + steps * STEP_OVERHEAD_S
    return ModelCost(seconds=seconds, gflops=gflops, source="estimate from the FLOP count")


def model_cost(config: dict[str, Any]) -> ModelCost:
    """The table entry for a trial config's model, or a FLOP-count estimate."""
    return COSTS.get(model_key(config["model"])) or _flop_estimate(config)


def epoch_seconds(config: dict[str, Any]) -> float:
    """Estimated GPU-seconds of one epoch of a resolved trial config."""
    cost = model_cost(config)
    per_eval = cost.per_eval
    if not config["model"].get("checkpoint", False):
        per_eval *= CIFAR_WORK / (4 * CIFAR_TRAIN + CIFAR_EVAL)  # no recomputation
    seconds = cost.seconds + per_eval * ode_evaluations(config["model"])
    return seconds * _work_ratio(config)


def gpu_hours(spec: StudySpec) -> float:
    """Estimated H100 GPU-hours of a whole study, both stages of a two-stage one (see the
    module docstring)."""
    epochs = spec.train.epochs
    base = epoch_seconds(resolved_config(spec, {}))
    if is_finite(spec) and spec.search.name == "grid":
        seconds = sum(
            epoch_seconds(resolved_config(spec, values)) * epochs * len(spec.seeds)
            for values in configurations(spec)  # every arm in every setting of across
        )
    else:
        seconds = expected_trials(spec) * epochs * base
    if spec.confirm is not None:
        baseline = confirm_baseline(spec)
        per_seed = spec.confirm.top_k * base + epoch_seconds(resolved_config(spec, baseline))
        seconds += per_seed * epochs * len(spec.confirm.seeds)
    return seconds / 3600
