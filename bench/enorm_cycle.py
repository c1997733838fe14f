"""Cost of one ENorm cycle vs one SGD step, on CPU.

Model: FullyConnected(in_features=3072, num_classes=10, n_layers=15, width=500)
(the ENorm paper's CIFAR-10 MLP). One SGD step = forward + backward +
optimizer.step() on a batch of 128 inputs of 3072 features; SGD has
momentum 0.9, so ENorm also rescales the momentum buffers (the most work it
ever does). Reports the median over repetitions and writes
bench/results/enorm_cycle.json.

    python bench/enorm_cycle.py [--reps 50] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from normlib.enorm import ENorm
from normlib.models import FullyConnected

RESULTS = Path(__file__).resolve().parent / "results" / "enorm_cycle.json"


def median_ms(fn, reps: int, warmup: int = 5) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = FullyConnected(in_features=3072, num_classes=10, n_layers=15, width=500)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(128, 3072)
    y = torch.randint(0, 10, (128,))
    loss_fn = nn.CrossEntropyLoss()

    def sgd_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    sgd_step()  # create momentum buffers before timing ENorm
    results = {}
    results["sgd_step_ms"], _ = median_ms(sgd_step, args.reps)
    for sweep in ("jacobi", "sequential"):
        enorm = ENorm(model.named_parameters(), opt, c=1.0, sweep=sweep)
        results[f"enorm_{sweep}_ms"], _ = median_ms(enorm.step, args.reps)
    enorm = ENorm(model.named_parameters(), None, c=1.0)
    results["enorm_jacobi_no_optimizer_ms"], _ = median_ms(enorm.step, args.reps)

    n_pairs = len(enorm.balanced_pairs)
    report = {
        "model": "FullyConnected(in_features=3072, num_classes=10, n_layers=15, width=500)",
        "batch": 128,
        "sgd": "SGD(lr=0.01, momentum=0.9, weight_decay=1e-3), forward+backward+step",
        "balanced_pairs": n_pairs,
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "reps": args.reps,
        **{k: round(v, 4) for k, v in results.items()},
        "ratio_jacobi_to_sgd": round(results["enorm_jacobi_ms"] / results["sgd_step_ms"], 4),
        "ratio_sequential_to_sgd": round(
            results["enorm_sequential_ms"] / results["sgd_step_ms"], 4
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
