"""Trials per hour of a 16-trial study with k small trials sharing one device.

A trial here is a separate process training one small model (``--model``,
ODENet4-16 or FC-15x500) with SGD for ``--steps`` steps on device-resident
random CIFAR-shaped batches of ``--batch`` (one torch thread each). For
k = 1, 2, 4, 8, k trials are launched at once and the wall time until the
last one exits is measured (process start, CUDA context and model build
included, as in a study); a 16-trial study then takes ceil(16 / k) such
rounds, so trials/hour = 16 / (ceil(16 / k) * round seconds) * 3600.

With ``--runner processes`` (what bench/gpu.sh uses) the study runs as a
study does: k long-lived worker processes share the device, each training
its share of the 16 trials one after another (worker i takes trials i,
i + k, ...), and the study's wall time is measured from launch to the last
exit (one process start and CUDA context per worker, a fresh model per
trial). No Ray is involved in either runner.

On CUDA the k processes share one GPU (what a fractional ``resources.gpu``
does). On CPU the k processes share the CPU cores instead: the table then
measures the CPU, not GPU packing, and says so.

    python bench/packing.py [--model odenet4-16|fc-15x500] [--device auto|cpu|cuda]
                            [--ks 1 2 4 8] [--steps 50] [--batch 128]
                            [--runner rounds|processes] [--trials 16]

prints a table and writes bench/results/packing.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import build_model, print_table, resolve_device, sync, write_json

STUDY_TRIALS = 16
MODELS = ("odenet4-16", "fc-15x500")


def trial(model_name: str, device: torch.device, steps: int, batch: int) -> None:
    """One trial process: ``steps`` SGD steps on one device-resident batch."""
    torch.set_num_threads(1)
    model = build_model(model_name, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator, device=device)
    labels = torch.randint(0, 10, (batch,), generator=generator, device=device)
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)


def worker(model_name: str, device: torch.device, steps: int, batch: int, trials: int) -> None:
    """One worker process of ``--runner processes``: ``trials`` trials in turn, each with its
    own model; prints one JSON line of the seconds each trial took."""
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        trial(model_name, device, steps, batch)
        times.append(time.perf_counter() - start)
    print(json.dumps({"trial_s": times}), flush=True)


def study_seconds(k: int, args: argparse.Namespace, device: torch.device) -> dict:
    """``--runner processes``: wall seconds of the whole study with k worker processes."""
    shares = [len(range(i, args.trials, k)) for i in range(k)]
    command = [sys.executable, str(Path(__file__).resolve()), "--model", args.model,
               "--device", str(device), "--steps", str(args.steps), "--batch", str(args.batch)]
    start = time.perf_counter()
    processes = [subprocess.Popen([*command, "--worker", str(n)], stdout=subprocess.PIPE,
                                  text=True) for n in shares if n]  # fmt: skip
    outputs = [p.communicate()[0] for p in processes]
    elapsed = time.perf_counter() - start
    codes = [p.returncode for p in processes]
    if any(codes):
        raise SystemExit(f"a worker process failed (exit codes {codes})")
    trial_s = [t for out in outputs for t in json.loads(out.strip().splitlines()[-1])["trial_s"]]
    return {"k": k, "workers": len(processes), "study_s": elapsed,
            "trial_s": statistics.median(trial_s),
            "trials_per_hour": args.trials / elapsed * 3600}  # fmt: skip


def round_seconds(k: int, args: argparse.Namespace, device: torch.device) -> float:
    """Wall seconds until all of k concurrently launched trial processes have exited."""
    command = [sys.executable, str(Path(__file__).resolve()), "--trial", "--model", args.model,
               "--device", str(device), "--steps", str(args.steps), "--batch", str(args.batch)]
    start = time.perf_counter()
    processes = [subprocess.Popen(command) for _ in range(k)]
    codes = [p.wait() for p in processes]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a trial process failed (exit codes {codes})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="odenet4-16", choices=MODELS)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=None,
                        help="SGD steps per trial (default 500 on CUDA, 20 on CPU)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--runner", default="rounds", choices=("rounds", "processes"),
                        help="rounds: k one-trial processes at a time, study = rounds x round "
                        "time; processes: k worker processes train the study's trials")
    parser.add_argument("--trials", type=int, default=STUDY_TRIALS,
                        help="trials of the study (--runner processes)")
    parser.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.steps = args.steps or (500 if device.type == "cuda" else 20)
    if args.trial:
        trial(args.model, device, args.steps, args.batch)
        return
    if args.worker is not None:
        torch.set_num_threads(1)
        worker(args.model, device, args.steps, args.batch, args.worker)
        return
    if args.runner == "processes":
        run_processes(args, device)
        return

    rows = []
    for k in args.ks:
        seconds = round_seconds(k, args, device)
        study_seconds = math.ceil(STUDY_TRIALS / k) * seconds
        rows.append({"k": k, "round_s": seconds, "study_s": study_seconds,
                     "trials_per_hour": STUDY_TRIALS / study_seconds * 3600})
    base = rows[0]["trials_per_hour"]
    for row in rows:
        row["x_first_k"] = row["trials_per_hour"] / base
    shared = "one GPU" if device.type == "cuda" else (
        f"the CPU ({os.cpu_count()} cores, one torch thread per trial): "
        "this measures the CPU, not GPU packing")
    print(f"{STUDY_TRIALS}-trial study of {args.model}, {args.steps} steps of batch "
          f"{args.batch} per trial, k trial processes sharing {shared}")
    print_table([("k", "d"), ("round_s", ".1f"), ("study_s", ".0f"),
                 ("trials_per_hour", ".0f"), ("x_first_k", ".2f")], rows)
    settings = {"model": args.model, "steps": args.steps, "batch": args.batch, "shared": shared}
    write_json("packing", device, settings, rows, args.out)


def _shared(device: torch.device) -> str:
    return "one GPU" if device.type == "cuda" else (
        f"the CPU ({os.cpu_count()} cores, one torch thread per trial): "
        "this measures the CPU, not GPU packing")


def run_processes(args: argparse.Namespace, device: torch.device) -> None:
    """The table of ``--runner processes``."""
    rows = []
    for k in args.ks:
        rows.append(study_seconds(k, args, device))
        print(f"k = {k}: {rows[-1]['study_s']:.1f} s", flush=True)
    base = rows[0]["trials_per_hour"]
    for row in rows:
        row["x_first_k"] = row["trials_per_hour"] / base
    shared = _shared(device)
    print(f"{args.trials}-trial study of {args.model}, {args.steps} steps of batch "
          f"{args.batch} per trial, k worker processes sharing {shared}")
    print_table([("k", "d"), ("workers", "d"), ("study_s", ".1f"), ("trial_s", ".2f"),
                 ("trials_per_hour", ".0f"), ("x_first_k", ".2f")], rows)
    settings = {"runner": "processes", "model": args.model, "trials": args.trials,
                "steps": args.steps, "batch": args.batch, "shared": shared}
    write_json("packing", device, settings, rows, args.out)


if __name__ == "__main__":
    main()
