"""Forward+backward time and peak memory of one ODENet4 training step.

ODENet4 with 16 planes (BN everywhere, the defaults), a batch of 128 images of
3x32x32, cross-entropy loss. Solvers euler-8, rk2-8 and rk4-8, each without
and with activation checkpointing.

Time: median wall-clock seconds of forward+backward over ``--repeats`` runs
after one warm-up run, all configurations in this process, and the median
CPU seconds of the process over the same runs (all threads; less sensitive
than wall time to other processes sharing the cores).

Memory: each configuration runs in a fresh subprocess. On CPU the peak is the
growth of the process's resident-set high-water mark (VmHWM in
/proc/self/status, Linux) during one full-batch step, measured after a
warm-up step on a batch of 2 has loaded the kernels and thread pools. The
subprocess runs with MALLOC_MMAP_THRESHOLD_=131072, which fixes glibc's mmap
threshold: every block of 128 KiB or more is mmap-ed and unmapped on free, so
the resident set follows the live tensors and its high-water mark is the
tensor peak (without it glibc raises the threshold after the first large
free, keeps freed activations in its heap and the measure overstates the
checkpointed runs several-fold). getrusage's ru_maxrss would not do either:
it keeps the forking parent's peak across exec. On CUDA it is
``torch.cuda.max_memory_allocated`` minus the memory allocated before the step
(exact tensor memory).

    python bench/odenet_step.py [--device cpu|cuda] [--repeats 5] [--threads 2]

prints a table and writes bench/results/odenet_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from normlib.ode import odenet  # noqa: E402

SOLVERS = ("euler", "rk2", "rk4")
STEPS = 8
BATCH = 128
PLANES = 16
RESULTS = Path(__file__).resolve().parent / "results" / "odenet_step.json"


def build(solver: str, checkpoint: bool, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return odenet("odenet4", inplanes=PLANES, solver=solver, steps=STEPS,
                  checkpoint=checkpoint).to(device)


def batch(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (size,), generator=generator)
    return images.to(device), labels.to(device)


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(images), labels).backward()
    if images.device.type == "cuda":
        torch.cuda.synchronize()


def step_seconds(solver: str, checkpoint: bool, device: torch.device,
                 repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one forward+backward."""
    model = build(solver, checkpoint, device)
    images, labels = batch(BATCH, device)
    train_step(model, images, labels)
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        train_step(model, images, labels)
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return statistics.median(wall), statistics.median(cpu)


def resident_high_water_kib() -> int:
    """Peak resident set size of this process so far (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (the CPU memory measure needs Linux)")


def peak_step_mib(solver: str, checkpoint: bool, device: torch.device) -> float:
    """Run in a fresh process: peak memory growth of one full-batch step, in MiB."""
    model = build(solver, checkpoint, device)
    train_step(model, *batch(2, device))
    images, labels = batch(BATCH, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        train_step(model, images, labels)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before = resident_high_water_kib()
    train_step(model, images, labels)
    return (resident_high_water_kib() - before) / 2**10


def measure_memory_in_subprocess(solver: str, checkpoint: bool, device: str, threads: int) -> float:
    command = [sys.executable, __file__, "--memory-only", solver, str(int(checkpoint)),
               "--device", device, "--threads", str(threads)]
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=environment).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-only", nargs=2, metavar=("SOLVER", "CHECKPOINT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_only:
        solver, checkpoint = args.memory_only
        print(peak_step_mib(solver, checkpoint == "1", device))
        return

    rows = []
    for solver in SOLVERS:
        for checkpoint in (False, True):
            wall, cpu = step_seconds(solver, checkpoint, device, args.repeats)
            rows.append({
                "config": f"{solver}-{STEPS}",
                "checkpoint": checkpoint,
                "nfe": STEPS * {"euler": 1, "rk2": 2, "rk4": 4}[solver],
                "step_s": wall,
                "cpu_s": cpu,
                "peak_mib": measure_memory_in_subprocess(solver, checkpoint, args.device,
                                                         args.threads),
            })
    print(f"odenet4, {PLANES} planes, batch {BATCH}x3x32x32, forward+backward, "
          f"{args.device}, {args.threads} threads, median of {args.repeats}")
    print(f"{'config':<9} {'checkpoint':>10} {'nfe':>4} {'step s':>8} {'cpu s':>8} "
          f"{'peak MiB':>9}")
    for row in rows:
        print(f"{row['config']:<9} {str(row['checkpoint']):>10} {row['nfe']:>4} "
              f"{row['step_s']:>8.3f} {row['cpu_s']:>8.3f} {row['peak_mib']:>9.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": "odenet4", "inplanes": PLANES, "batch": BATCH, "device": args.device,
            "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "memory": "cuda max_memory_allocated growth" if args.device == "cuda"
            else "VmHWM growth in a fresh process, MALLOC_MMAP_THRESHOLD_=131072"}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
