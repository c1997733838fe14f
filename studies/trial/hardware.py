"""What a trial asks for, and whether this machine can hold it: checked before a local run
starts Ray (:func:`check_machine`), and the words of every refusal (exit 2, one line naming
the field, what the machine or cluster has, and the ways out). A cluster's nodes are checked
against the same needs once Ray is up (:mod:`studies.run.resources`)."""

from __future__ import annotations

import os

from studies.config.spec import CannotStart, StudySpec

GIB = 2**30
FIELDS = {"CPU": "resources.cpu", "GPU": "resources.gpu", "memory": "resources.memory_gb"}


def trial_needs(spec: StudySpec) -> dict[str, float]:
    """What one trial asks Ray for, in Ray's resource names (memory in bytes)."""
    needs = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if spec.resources.memory_gb is not None:
        needs["memory"] = spec.resources.memory_gb * GIB
    return {**{k: v for k, v in needs.items() if v}, **spec.resources.custom}


def field_of(resource: str) -> str:
    return FIELDS.get(resource, f"resources.custom.{resource}")


def amount(resource: str, value: float) -> str:
    """``1 GPU``, ``2 CPUs``, ``4 GiB of memory``, ``1 'a100'``."""
    if resource == "memory":
        return f"{value / GIB:.3g} GiB of memory"
    if resource in ("CPU", "GPU"):
        return f"{value:g} {resource}{'s' if value > 1 else ''}"
    return f"{value:g} {resource!r}"


def quantity(resource: str, value: float) -> str:
    """A count as the cluster has it: ``0``, ``12.5 GiB``."""
    return f"{value / GIB:.3g} GiB" if resource == "memory" else f"{value:g}"


def fits(needs: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(key, 0.0) >= value for key, value in needs.items())


def shortfall(needs: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """The first resource no single node has enough of (None: each alone would fit)."""
    return next((key for key, value in needs.items()
                 if all(node.get(key, 0.0) < value for node in nodes)), None)  # fmt: skip


def machine_resources() -> dict[str, float]:
    """What a local Ray can offer a trial: CPUs this process may use, GPUs as torch sees them,
    the machine's memory."""
    import torch  # loaded already: validation builds the models with it

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"CPU": float(cpus or 1), "GPU": float(torch.cuda.device_count()),
            "memory": float(machine_memory())}  # fmt: skip


def refusal(resource: str, need: float, have: float, where: str) -> CannotStart:
    """Exit 2: the field, what a trial asks, what ``where`` has, and the ways out."""
    field, asks = field_of(resource), f"a trial asks for {amount(resource, need)}"
    if resource == "GPU":
        seen = " (GPUs as torch sees them)" if where == "this machine" else ""
        return CannotStart(field, f"{asks}, {where} has {have:g}{seen}; train on CPU with "
                           "--set resources.gpu=0, or run on a Ray cluster that has GPUs with "
                           "--address")  # fmt: skip
    if resource == "CPU":
        fix = f"--set resources.cpu={have:g}" if have >= 1 else "fewer CPUs"
        return CannotStart(field, f"{asks}, {where} has {have:g}; ask for at most that "
                           f"({fix}), or run on a Ray cluster with --address")  # fmt: skip
    if resource == "memory":
        return CannotStart(field, f"{asks}, {where} has {quantity(resource, have)}; ask for "
                           "less (--set resources.memory_gb=...), or run on a Ray cluster "
                           "with --address")  # fmt: skip
    return CannotStart(field, f"{asks} (a custom resource), {where} has {have:g}; run on a Ray "
                       f"cluster whose nodes offer it (ray start --resources "
                       f"'{{\"{resource}\": 1}}') with --address, or remove {field}")  # fmt: skip


def check_machine(spec: StudySpec) -> None:
    """A local run: CannotStart (exit 2) unless a trial fits this machine; before Ray starts."""
    needs, have = trial_needs(spec), machine_resources()
    short = shortfall(needs, [have])
    if short is not None:
        raise refusal(short, needs[short], have.get(short, 0.0), "this machine")


def machine_memory() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
