"""Step time of SGD-G, Adam-G and ALI-G against torch.optim.SGD on WRN-16-4 parameters.

Only ``optimizer.step()`` is timed; gradients are pre-filled with random
values once. Median over ``--steps`` steps after ``--warmup`` steps, the
optimizers timed in turn (round robin) so load drift hits them all alike.

    python bench/optimizer_step.py [--steps 30] [--warmup 5] [--threads 1] [--device cpu]

Prints a table and writes bench/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from normlib.alig import AliG
from normlib.models.wide_resnet import WideResNet
from normlib.riemannian.groups import grassmann_param_groups
from normlib.riemannian.optim import SGDG, AdamG

RESULTS = Path(__file__).parent / "results" / "optimizer_step.json"


def _optimizers():
    """name -> builder(model); the reference for the ratio column is the first row."""
    return {
        "SGD (momentum 0.9, nesterov, wd)": lambda m: torch.optim.SGD(
            m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        "SGDG (grassmann_param_groups)": lambda m: SGDG(
            grassmann_param_groups(m, lr=0.01, lrg=0.2)
        ),
        "AdamG (grassmann_param_groups)": lambda m: AdamG(
            grassmann_param_groups(m, lr=0.01, lrg=0.05)
        ),
        "SGDG (omega=0: no orthogonality)": lambda m: SGDG(
            grassmann_param_groups(m, lr=0.01, lrg=0.2, omega=0.0)
        ),
        "SGD (momentum 0.9)": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
        "AliG (momentum 0.9)": lambda m: AliG(m.parameters(), max_lr=0.1, momentum=0.9),
        "SGD (no momentum)": lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
        "AliG (no momentum)": lambda m: AliG(m.parameters(), max_lr=0.1),
    }


def _stepper(optimizer, device: torch.device):
    """A no-argument call of one step (ALI-G gets a constant loss value)."""
    if isinstance(optimizer, AliG):
        loss = torch.tensor(1.0, device=device)
        return lambda: optimizer.step(lambda: loss)
    return optimizer.step


def _time_round_robin(steppers, steps: int, warmup: int, device: torch.device):
    """(median, min) ms per step of each stepper, timed in turn each round.

    Interleaving spreads the machine's load drift evenly over the optimizers,
    so the ratios stay meaningful on a shared CPU.
    """
    times = [[] for _ in steppers]
    for i in range(warmup + steps):
        for own, step in zip(times, steppers, strict=True):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                own.append(time.perf_counter() - start)
    return [(1000 * statistics.median(t), 1000 * min(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    base = WideResNet(depth=16, width=4, num_classes=10).to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    grads = [1e-2 * torch.randn(p.shape, generator=gen, device=device) for p in base.parameters()]
    n_params = sum(p.numel() for p in base.parameters())

    steppers = []
    for build in _optimizers().values():
        model = copy.deepcopy(base)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()
        steppers.append(_stepper(build(model), device))
    timings = _time_round_robin(steppers, args.steps, args.warmup, device)
    rows = [{"optimizer": name, "median_ms": med, "min_ms": low}
            for name, (med, low) in zip(_optimizers(), timings, strict=True)]
    for row in rows:
        row["median_vs_first_row"] = row["median_ms"] / rows[0]["median_ms"]
        row["min_vs_first_row"] = row["min_ms"] / rows[0]["min_ms"]

    print(f"WideResNet(depth=16, width=4): {n_params:,} parameters, {device}, "
          f"{args.threads} threads, median of {args.steps} steps")
    print(f"{'optimizer':<34} {'median ms':>10} {'x row 1':>8} {'min ms':>8} {'x row 1':>8}")
    for r in rows:
        print(f"{r['optimizer']:<34} {r['median_ms']:>10.2f} {r['median_vs_first_row']:>8.2f} "
              f"{r['min_ms']:>8.2f} {r['min_vs_first_row']:>8.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "model": "WideResNet(depth=16, width=4, num_classes=10)",
        "parameters": n_params,
        "device": str(device),
        "threads": args.threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "results": rows,
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
