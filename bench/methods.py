"""Per-step cost of ENorm, SGD-G, Adam-G and ALI-G relative to a plain SGD step.

For each model (built as a study builds it) this measures

* ``train``: one plain SGD training step, zero_grad + forward + backward +
  ``torch.optim.SGD.step`` (momentum 0.9, Nesterov, weight decay 5e-4) on a
  batch of random CIFAR-shaped images;
* ``step``: the method's own work alone, with gradients pre-filled (random,
  scale 1e-2): ``optimizer.step()`` for SGD, SGD-G, Adam-G (the seed
  README's groups: ``grassmann_param_groups``) and ALI-G (momentum 0.9, the
  loss as a device tensor), and one ENorm cycle (jacobi, c = 1, rescaling
  SGD's momentum buffers) for the models it supports;
* ``seed-style enorm``: the same cycle written as the seed code does it
  (``seed_style_enorm``: four passes, momentum rescaled for conv nets only),
  timed in the same rounds, and both again with SGD at momentum 0 (no
  buffers, the seed's FC setting): ``x seed`` is normlib's ENorm time over
  the seed-style time. On CPU with ``--threads 1`` (the default) normlib's
  cycle runs through its fused kernels (``normlib.enorm_kernels``), with
  more threads through PyTorch's ops.

The methods are timed round robin (medians), so load drift on a shared
machine hits them alike. Ratios:

* ``x sgd step``: method step / SGD step (optimizer work only);
* ``x sgd train``: a training step with the method / the plain SGD training
  step, i.e. (train - SGD step + method step) / train for the optimizers and
  (train + cycle) / train for ENorm (one cycle per step, as in the papers).

SGD-G / Adam-G are left out for models without Grassmann weights (no
convolution with out_channels < fan_in), ENorm for models with skip
connections (it runs on the ENorm papers' FC and fully convolutional nets).

    python bench/methods.py [--models fc-15x500 odenet4-16] [--device auto|cpu|cuda]
                            [--batch N] [--repeats 20] [--threads 1]

prints a table and writes bench/results/methods.json.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import (
    MODEL_SECTIONS,
    build_model,
    check_models,
    print_table,
    resolve_device,
    round_robin,
    timing_arguments,
    write_json,
)
from torch import nn

from normlib.alig import AliG
from normlib.enorm import ENorm
from normlib.riemannian import SGDG, AdamG, grassmann_param_groups

DEFAULT_MODELS = ("fc-15x500", "fullyconv", "odenet4-16", "resnet18", "wrn-16-4")
# The skip-free chains ENorm is meant for (its parameter shapes also chain in
# ODENet4, but the Euler step z + h f(z) is a skip connection: not balanced there).
ENORM_MODELS = ("fc-15x500", "fullyconv")


def sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)


def sphere(cls) -> Callable[[nn.Module], torch.optim.Optimizer | None]:
    def make(model: nn.Module):
        groups = grassmann_param_groups(model, lr=0.01, lrg=0.2)
        if not any(g["name"] == "grassmann" for g in groups):
            return None
        return cls(groups, lr=0.01)

    return make


OPTIMIZERS: dict[str, Callable[[nn.Module], torch.optim.Optimizer | None]] = {
    "sgd": sgd,
    "sgdg": sphere(SGDG),
    "adamg": sphere(AdamG),
    "alig": lambda model: AliG(model.parameters(), max_lr=0.1, momentum=0.9),
}


def seed_style_enorm(model: nn.Module, optimizer: torch.optim.SGD,
                     c: float = 1.0) -> Callable[[], None]:
    """One jacobi ENorm cycle as the seed code computes it, written here from the math.

    For the hidden layers k = 1..L-2 (the classifier's pair is left alone),
    four passes: the row norms l = |W_k[i]|_2 of every W_k, the column norms
    r = |W_{k+1}[:, i]|_2 of every W_{k+1} (all from the same snapshot),
    d = sqrt(r / (c l)), then W_k[i] *= d_i, then W_{k+1}[:, i] /= d_i.
    Momentum buffers follow (rows / d, columns * d) for conv nets only, as in
    the seed. Chains of linear or conv layers only (no flatten in between).
    """
    weights = [p for p in model.parameters() if p.dim() >= 2]
    conv = weights[0].dim() > 2

    def cycle() -> None:
        with torch.no_grad():
            pairs = list(zip(weights[:-2], weights[1:-1], strict=True))
            ds = [(torch.linalg.vector_norm(right, dim=[0, *range(2, right.dim())])
                   / (c * torch.linalg.vector_norm(left, dim=list(range(1, left.dim())))))
                  .sqrt() for left, right in pairs]
            shape = [1] * (weights[0].dim() - 1)
            buffers = [optimizer.state[w].get("momentum_buffer") if conv else None
                       for w in weights]
            for (left, _), buf, d in zip(pairs, buffers, ds, strict=False):
                left.mul_(d.view(-1, *shape))
                if buf is not None:
                    buf.div_(d.view(-1, *shape))
            for (_, right), buf, d in zip(pairs, buffers[1:], ds, strict=False):
                right.div_(d.view(1, -1, *shape[1:]))
                if buf is not None:
                    buf.mul_(d.view(1, -1, *shape[1:]))

    return cycle


def enorm_steppers(base: nn.Module, grads: list[torch.Tensor]) -> dict[str, Callable[[], None]]:
    """normlib's ENorm and the seed-style cycle, each on its own copy of the model, after
    one SGD step with momentum 0.9 (buffers to rescale) and with momentum 0 (none)."""
    steppers = {}
    for momentum, suffix in ((0.9, ""), (0.0, " m=0")):
        for name in ("enorm", "seed-style enorm"):
            model = copy.deepcopy(base)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
            steppers[name + suffix] = (
                ENorm(model.named_parameters(), optimizer, c=1.0).step if name == "enorm"
                else seed_style_enorm(model, optimizer))
    return steppers


def train_step(model: nn.Module, optimizer, images, labels) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def optimizer_stepper(optimizer) -> Callable[[], None]:
    if isinstance(optimizer, AliG):
        loss = torch.ones((), device=optimizer.param_groups[0]["params"][0].device)
        return lambda: optimizer.step(lambda: loss)
    return optimizer.step


def measure(name: str, device: torch.device, batch: int, repeats: int) -> list[dict]:
    base = build_model(name, device)
    generator = torch.Generator(device=device).manual_seed(1)
    images = torch.randn(batch, 3, 32, 32, generator=generator, device=device)
    labels = torch.randint(0, 10, (batch,), generator=generator, device=device)

    model = copy.deepcopy(base)
    (train_seconds,) = round_robin([train_step(model, sgd(model), images, labels)], device,
                                   repeats=max(3, repeats // 4), warmup=1)

    grads = [1e-2 * torch.randn(p.shape, generator=generator, device=device)
             for p in base.parameters()]
    names, steppers = [], []
    for method, build in OPTIMIZERS.items():
        model = copy.deepcopy(base)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()
        optimizer = build(model)
        if optimizer is None:
            continue
        names.append(method)
        steppers.append(optimizer_stepper(optimizer))
    if name in ENORM_MODELS:
        for method, stepper in enorm_steppers(base, grads).items():
            names.append(method)
            steppers.append(stepper)

    timings = dict(zip(names, round_robin(steppers, device, repeats), strict=True))
    sgd_step = timings["sgd"]
    rows = []
    for method, step_seconds in timings.items():
        cycle = "enorm" in method
        with_method = (train_seconds + step_seconds if cycle
                       else train_seconds - sgd_step + step_seconds)
        seed = timings.get(method.replace("enorm", "seed-style enorm")) if cycle else None
        rows.append({
            "model": name,
            "method": method,
            "step_ms": 1e3 * step_seconds,
            "x_sgd_step": step_seconds / sgd_step,
            "x_seed": step_seconds / seed if method.startswith("enorm") else None,
            "train_ms": 1e3 * train_seconds,
            "x_sgd_train": with_method / train_seconds,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"of {sorted(MODEL_SECTIONS)}")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per training step (default 128 on CUDA, 32 on CPU)")
    timing_arguments(parser, repeats=20, what="method steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 32)
    models = check_models(args.models)

    rows = [row for name in models for row in measure(name, device, batch, args.repeats)]
    print(f"method step vs plain SGD, {device}, batch {batch}, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print_table([("model", ""), ("method", ""), ("step_ms", ".2f"), ("x_sgd_step", ".2f"),
                 ("x_seed", ".2f"), ("train_ms", ".1f"), ("x_sgd_train", ".3f")], rows)
    models_used = {name: MODEL_SECTIONS[name] for name in models}
    write_json("methods", device, {"batch": batch, "repeats": args.repeats,
                                   "models": models_used}, rows, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
