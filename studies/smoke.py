"""``--smoke``: shrink any study to a one-minute offline check of the whole pipeline.

Same methods, same arms (each grid cut to at most two values, the baseline's
value kept), but 2 epochs of at most 4 batches on an offline dataset with a
tiny model, 2 seeds, CPU only, under the name ``<name>-smoke``.
"""

from __future__ import annotations

import copy
from typing import Any

OFFLINE = ("digits", "fake")
# Model arguments that set size, and the value a smoke run uses.
TINY = {
    "width": 8,
    "n_layers": 3,
    "depth": 10,
    "inplanes": 8,
    "steps": 2,
}


def shrink(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data["name"] = f"{data.get('name', 'study')}-smoke"
    dataset = data.setdefault("dataset", {})
    if dataset.get("name") not in OFFLINE:
        dataset.clear()
        dataset["name"] = "fake"
    dataset.update(train_size=256, test_size=128)
    model = data.get("model", {})
    for key, tiny in TINY.items():
        if isinstance(model.get(key), int):
            model[key] = min(model[key], tiny)
    train = data.setdefault("train", {})
    train["epochs"] = min(int(train.get("epochs", 2)), 2)
    train["steps_per_epoch"] = 4
    train["batch_size"] = min(int(train.get("batch_size", 32)), 32)
    schedule = data.get("schedule") or {}
    if schedule.get("milestones"):
        schedule["milestones"] = [1]
    data["seeds"] = list(data.get("seeds", [0]))[:2]
    baseline = _flat(data.get("baseline") or {})
    for path, domain in (data.get("sweep") or {}).items():
        for kind in ("grid", "choice"):
            values = domain.get(kind) if isinstance(domain, dict) else None
            if isinstance(values, list) and len(values) > 2:
                keep = [v for v in values if path in baseline and baseline[path] == v][:1]
                keep += [v for v in values if v not in keep][: 2 - len(keep)]
                domain[kind] = keep
    if "search" in data:
        data["search"]["num_samples"] = min(int(data["search"].get("num_samples", 1)), 2)
    data["resources"] = {"cpu": 1, "gpu": 0}
    return data


def _flat(baseline: dict[str, Any]) -> dict[str, Any]:
    from studies.space import flatten_assignment

    return flatten_assignment(baseline)
