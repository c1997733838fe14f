"""Shared parts of the benchmarks: the models, timing, the table printer, the JSON writer.

Models are built the way a study builds them (``studies.trial.recipes.build_model``
with the CIFAR-shaped ``fake`` dataset's shape), from the catalog's model
sections. Times are wall-clock medians; on CUDA every timed call is
bracketed by ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

# name -> model section of a trial config (the catalog's settings)
MODEL_SECTIONS: dict[str, dict[str, Any]] = {
    "fc-15x500": {"name": "fully_connected", "n_layers": 15, "width": 500, "batchnorm": True},
    "fullyconv": {"name": "fully_convolutional"},
    "odenet4-16": {"name": "odenet4", "inplanes": 16, "solver": "euler", "steps": 8},
    "resnet18": {"name": "resnet18"},
    "wrn-16-4": {"name": "wide_resnet", "depth": 16, "width": 4},
    "wrn-28-10": {"name": "wide_resnet", "depth": 28, "width": 10},
}


def build_model(name: str, device: torch.device, seed: int = 0) -> nn.Module:
    """The model ``name`` of MODEL_SECTIONS, as a study builds it, on ``device``."""
    from studies.config.datasets import dataset_info
    from studies.trial.recipes import build_model as build

    torch.manual_seed(seed)
    return build({"model": MODEL_SECTIONS[name]}, dataset_info("fake")).to(device)


def check_models(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in MODEL_SECTIONS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(MODEL_SECTIONS)}")
    return list(names)


def timing_arguments(parser: argparse.ArgumentParser, repeats: int, what: str) -> None:
    """The options every timing benchmark takes: --device, --repeats, --threads, --out."""
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed {what}")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> Callable[[], float]:
    """CPU seconds of this process on CPU, wall-clock seconds on CUDA.

    On a CPU shared with other processes, the process's own CPU time counts
    the work done and not the time spent waiting for a core, so it is far
    less noisy than wall time (with one intra-op thread both agree on an idle
    machine). GPU work is only seen by the wall clock.
    """
    return time.perf_counter if device.type == "cuda" else time.process_time


def seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (device work included) on ``clock(device)``."""
    now = clock(device)
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def round_robin(fns: Sequence[Callable[[], Any]], device: torch.device, repeats: int,
                warmup: int = 2) -> list[float]:
    """Median seconds (``seconds``) of each function, timed in turn each round.

    Interleaving spreads the load drift of a shared machine evenly over the
    functions, so their ratios stay meaningful.
    """
    times: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + repeats):
        for own, fn in zip(times, fns, strict=True):
            elapsed = seconds(fn, device)
            if i >= warmup:
                own.append(elapsed)
    return [statistics.median(t) for t in times]


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
    """Rows as a fixed-width table; ``columns`` are (key, format spec) pairs."""
    cells = [[_cell(row.get(key), spec) for key, spec in columns] for row in rows]
    widths = [max(len(key), *(len(c[i]) for c in cells)) for i, (key, _) in enumerate(columns)]
    print("  ".join(key.rjust(w) for (key, _), w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))


def _cell(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def write_json(name: str, device: torch.device, settings: dict[str, Any],
               rows: Sequence[dict[str, Any]], out: Path | None = None) -> Path:
    """``bench/results/<name>.json``: the machine, the run's settings, the table rows."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(device), **settings, "rows": list(rows)}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path
