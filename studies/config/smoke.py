"""``--smoke``: shrink any study to a quick offline check of the whole pipeline.

A smoke run keeps what the study compares and cuts everything else:

* **Methods and baseline**: the baseline arm always stays, and so does at least
  one method arm. Each grid keeps at most two values (the baseline's value and
  the first other value, in the spec's order), explicit ``arms`` keep the
  baseline arm and at most two others (the first ones listed), and a two-stage
  study confirms its single best arm (``top_k: 1``) on two seeds. The baseline is
  found on resolved trial configs (:func:`studies.config.space.assigns`), so a baseline
  given as a subset of a section (``optimizer: {name: sgd}``) or as dotted paths
  finds its value in a section-valued grid. If the arms would still make more
  than :data:`MAX_TRIALS` trials, the sweep paths listed last are cut to the
  baseline's value alone, then explicit arms are dropped from the end.
* **Size**: an offline dataset (CIFAR-shaped ``fake`` for every real dataset)
  with :data:`TRAIN_IMAGES` training and about :data:`EVAL_IMAGES` validation
  and test images; tiny models (:data:`MODEL_CAPS`: WideResNet-10-1, 3 x 32
  MLPs, 8-plane ODENets; ResNets and the fully convolutional net have fixed
  widths and run as they are); :data:`EPOCHS` epochs of :data:`STEPS` batches of
  at most :data:`BATCH` images; step-schedule milestones at epoch 1.
* **Settings** (``across``): at most :data:`MAX_SETTINGS` settings, each offline and tiny
  (real datasets become ``fake``; two real datasets that both became ``fake`` stay two
  settings as ``fake`` with two ``split_seed`` values, which draw different classes; model
  sizes capped as above).
* **Where**: CPU only, one CPU per trial (``max_concurrent`` dropped), no
  ``torch.compile``, two seeds, at most two Optuna / random proposals, under the
  name ``<name>-smoke``.

Sizes in swept values (e.g. ``model.steps: {grid: [8, 2, 32]}``) are not capped
(capping could make two values equal); the grid cut keeps two of them.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from pydantic import ValidationError

from studies.config.datasets import DATASET_INFO, OFFLINE
from studies.config.space import (
    assigns,
    explicit_arms,
    flatten_assignment,
    resolved_config,
    settings,
)
from studies.config.spec import GridDomain, StudySpec

# Dataset fields that carry over when a real dataset is replaced by `fake`: how the
# images are fed, not where they come from (root, download, extra do not apply).
KEPT_DATASET_FIELDS = ("split_seed", "augment", "normalize")
TRAIN_IMAGES = 256
EVAL_IMAGES = 16
EPOCHS = 2
STEPS = 2
BATCH = 8
SEEDS = 2
MAX_VALUES = 2
MAX_OTHER_ARMS = 2
MAX_TRIALS = 8
MAX_SAMPLES = 2
MAX_SETTINGS = 2
# Model arguments that set the size, per model name (a prefix: `odenet` covers odenet4,
# odenet10, ...), and the largest value a smoke run uses.
MODEL_CAPS: dict[str, dict[str, int]] = {
    "wide_resnet": {"depth": 10, "width": 1},
    "fully_connected": {"n_layers": 3, "width": 32},
    "odenet": {"inplanes": 8},
}


def shrink(data: dict[str, Any]) -> dict[str, Any]:
    """The smoke version of a study's YAML data (validated afterwards like any spec)."""
    data = copy.deepcopy(data)
    data["name"] = f"{data.get('name', 'study')}-smoke"
    _offline_dataset(data)
    model = data.get("model")
    if isinstance(model, dict):
        _cap_model(model, model.get("name"))
    _short_training(data)
    data["seeds"] = list(data.get("seeds") or [0])[:SEEDS]
    confirm = data.get("confirm")
    if isinstance(confirm, dict):
        if isinstance(confirm.get("seeds"), list):
            confirm["seeds"] = confirm["seeds"][:SEEDS]
        confirm["top_k"] = 1
    search = data.get("search")
    if isinstance(search, dict):
        search["num_samples"] = _at_most(search.get("num_samples", 1), MAX_SAMPLES)
    data["resources"] = {"cpu": 1, "gpu": 0}
    data.pop("max_concurrent", None)
    _shrink_across(data)
    _cut_arms(data)
    return data


def _offline_dataset(data: dict[str, Any]) -> None:
    dataset = data.get("dataset")
    if not isinstance(dataset, dict):
        dataset = data["dataset"] = {}
    name = dataset.get("name", "digits")
    if name not in OFFLINE:
        kept = {key: dataset[key] for key in KEPT_DATASET_FIELDS if key in dataset}
        dataset.clear()
        dataset.update(name="fake", **kept)
        name = "fake"
    train = DATASET_INFO[name].train_size
    dataset.update(
        train_size=TRAIN_IMAGES,
        test_size=EVAL_IMAGES,
        val_fraction=round(EVAL_IMAGES / train, 4),
    )
    if dataset.get("loader") == "torch":
        dataset["num_workers"] = 0


def _caps(model_name: Any) -> dict[str, int]:
    for prefix, caps in MODEL_CAPS.items():
        if isinstance(model_name, str) and model_name.startswith(prefix):
            return caps
    return {}


def _cap_model(model: dict[str, Any], model_name: Any) -> None:
    """Cap the size arguments of a model section in place."""
    for key, cap in _caps(model_name).items():
        if key in model:
            model[key] = _at_most(model[key], cap)


def _short_training(data: dict[str, Any]) -> None:
    train = data.get("train")
    if not isinstance(train, dict):
        train = data["train"] = {}
    train["epochs"] = _at_most(train.get("epochs", EPOCHS), EPOCHS)
    train["steps_per_epoch"] = STEPS
    train["batch_size"] = _at_most(train.get("batch_size", BATCH), BATCH)
    train["compile"] = False
    if isinstance(train.get("fail_at_epoch"), int) and isinstance(train["epochs"], int):
        train["fail_at_epoch"] = min(train["fail_at_epoch"], train["epochs"])
    _short_schedule(data.get("schedule"))
    # Explicit arms and the confirm stage's baseline may set whole sections too.
    assignments = [arm for arm in data.get("arms") or [] if isinstance(arm, dict)]
    confirm = data.get("confirm")
    if isinstance(confirm, dict) and isinstance(confirm.get("baseline"), dict):
        assignments.append(confirm["baseline"])
    model_name = (data.get("model") or {}).get("name")
    for assignment in assignments:
        _short_schedule(assignment.get("schedule"))
        if assignment.get("schedule.milestones"):
            assignment["schedule.milestones"] = [1]
        if isinstance(assignment.get("model"), dict):
            _cap_model(assignment["model"], assignment["model"].get("name", model_name))
        for key, cap in _caps(model_name).items():
            if f"model.{key}" in assignment:
                assignment[f"model.{key}"] = _at_most(assignment[f"model.{key}"], cap)


def _at_most(value: Any, cap: int) -> Any:
    """``min(value, cap)`` for an int; anything else is left for validation to report."""
    if isinstance(value, int) and not isinstance(value, bool):
        return min(value, cap)
    return value


def _short_schedule(schedule: Any) -> None:
    if isinstance(schedule, dict) and schedule.get("milestones"):
        schedule["milestones"] = [1]


# ---------------------------------------------------------------------------
# Arms: keep the baseline, cut the rest


def _cut_arms(data: dict[str, Any]) -> None:
    """Cut grids and explicit arms in place (see the module docstring)."""
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError:
        return  # parse_config reports the problems, with the user's field paths
    grids = _finite_grids(data)
    explicit = list(range(len(spec.arms)))
    chosen = _baseline_choice(spec, grids) or {
        "arm": 0 if explicit else None,
        **{path: 0 for path in grids},
    }

    keep = {path: _keep(len(values), chosen[path], MAX_VALUES) for path, values in grids.items()}
    arm_keep = _keep(len(explicit), chosen["arm"], 1 + MAX_OTHER_ARMS) if explicit else []

    def trials() -> int:
        count = max(1, len(arm_keep)) * len(spec.seeds) * len(settings(spec))
        for path, kept in keep.items():
            if isinstance(spec.sweep[path], GridDomain) or spec.search.name == "grid":
                count *= len(kept)
        if spec.search.name != "grid":
            count *= spec.search.num_samples
        return count

    for path in reversed(list(keep)):
        if trials() <= MAX_TRIALS:
            break
        keep[path] = [chosen[path]]
    while trials() > MAX_TRIALS and len(arm_keep) > 2:
        arm_keep.remove(max(i for i in arm_keep if i != chosen["arm"]))

    for path, kept in keep.items():
        domain = data["sweep"][path]
        kind = next(iter(domain))
        domain[kind] = [domain[kind][i] for i in kept]
    if explicit:
        data["arms"] = [data["arms"][i] for i in arm_keep]


def _shrink_across(data: dict[str, Any]) -> None:
    """Settings offline and tiny, at most ``MAX_SETTINGS`` of them (module docstring)."""
    across = data.get("across")
    if not isinstance(across, dict) or not across:
        return
    model_name = (data.get("model") or {}).get("name")
    collapsed = False
    for path, values in list(across.items()):
        if not isinstance(values, list):
            return  # validation names the field
        shrunk = [_shrink_setting_value(path, value, model_name) for value in values]
        distinct = [v for i, v in enumerate(shrunk) if v not in shrunk[:i]]
        if path.startswith("model.") and len(distinct) < len(values) <= len(set(values)):
            distinct = _distinct_sizes(values, max(shrunk))  # sizes capped alike: keep apart
        collapsed |= path in ("dataset", "dataset.name") and len(distinct) < len(values)
        across[path] = distinct
    raw = data.get("dataset")
    dataset = raw if isinstance(raw, dict) else {}
    if collapsed and "dataset.split_seed" not in across and "dataset" not in across:
        first = dataset.get("split_seed", 0)
        across["dataset.split_seed"] = [first, first + 1] if isinstance(first, int) else [0, 1]
    room = MAX_SETTINGS
    for path, values in across.items():  # the first paths keep their first values
        across[path] = values[: max(1, room)]
        room //= len(across[path])


def _distinct_sizes(values: list[int], cap: int) -> list[int]:
    """Distinct sizes at most ``cap`` in the order of ``values``: the largest value gets
    ``cap``, the next ``cap - 1``, ... (at least 1)."""
    ranked = sorted(values, reverse=True)
    return [max(1, cap - ranked.index(value)) for value in values]


def _shrink_setting_value(path: str, value: Any, model_name: Any) -> Any:
    """One ``across`` value at smoke size: offline data, capped model sizes."""
    if path == "dataset.name" and isinstance(value, str) and value in DATASET_INFO:
        return value if value in OFFLINE else "fake"
    if path == "dataset" and isinstance(value, dict):
        holder = {"dataset": copy.deepcopy(value)}
        _offline_dataset(holder)
        return holder["dataset"]
    if path == "model" and isinstance(value, dict):
        model = copy.deepcopy(value)
        _cap_model(model, model.get("name", model_name))
        return model
    if path.startswith("model.") and path.count(".") == 1:
        cap = _caps(model_name).get(path.split(".")[1])
        return _at_most(value, cap) if cap is not None else value
    return value


def _finite_grids(data: dict[str, Any]) -> dict[str, list[Any]]:
    """Each sweep path with a grid or choice domain, and its values."""
    grids = {}
    for path, domain in (data.get("sweep") or {}).items():
        kind = next(iter(domain))
        if kind in ("grid", "choice"):
            grids[path] = domain[kind]
    return grids


def _baseline_choice(spec: StudySpec, grids: dict[str, list[Any]]) -> dict[str, Any] | None:
    """Indices of the baseline's explicit arm (``"arm"``) and grid values, found on resolved
    trial configs; None if the study has no baseline or no arm matches it."""
    wanted = spec.baseline
    if wanted is None and spec.confirm is not None:
        wanted = spec.confirm.baseline
    if not wanted:
        return None
    wanted = flatten_assignment(wanted)
    explicit = explicit_arms(spec)
    paths = list(grids)
    for arm_index in range(len(explicit)) if explicit else [None]:
        arm = explicit[arm_index] if arm_index is not None else {}
        for combo in itertools.product(*(range(len(grids[path])) for path in paths)):
            values = {**arm, **{path: grids[path][i] for path, i in zip(paths, combo, strict=True)}}
            try:
                config = resolved_config(spec, values)
            except ValidationError:
                continue
            if assigns(config, wanted):
                return {"arm": arm_index, **dict(zip(paths, combo, strict=True))}
    return None


def _keep(count: int, baseline: int | None, limit: int) -> list[int]:
    """Indices to keep out of ``count``: the baseline's and the first others, up to
    ``limit``, in their original order."""
    kept = [] if baseline is None else [baseline]
    kept += [i for i in range(count) if i != baseline][: limit - len(kept)]
    return sorted(kept)
