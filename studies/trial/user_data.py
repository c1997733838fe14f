"""The splits contract of a user's dataset loader (``dataset: {name: "pkg.mod:load", ...}``).

The loader is called once per trial (and once by validation, in the driver) as
``load(**arguments)``, the arguments being the ``dataset`` section's fields other than the
service's own (``name``, ``val_fraction``, ``split_seed``, ``normalize``, ``augment``,
``train_size``, ``test_size``, ``loader``, ``num_workers``, ``root``, ``download``). It returns
a mapping:

* ``train``, ``test`` (required), ``val`` (optional: else carved from ``train`` with
  ``val_fraction`` and ``split_seed``, as for the built-in datasets): each either a pair
  ``(images, labels)`` of tensors or a map-style ``torch.utils.data.Dataset`` of
  ``(image, label)`` items (stacked into tensors once; everything lives in memory);
* images: ``(N, C, H, W)``, ``float32`` in [0, 1] or ``uint8`` in [0, 255], the same
  ``C, H, W`` in every split; labels: ``(N,)`` integers in ``[0, num_classes)``;
* ``num_classes`` (optional int; default: the largest training label + 1),
  ``mean`` / ``std`` (optional, one float per channel, on the [0, 1] scale; default: computed
  from the training images; used when ``dataset.normalize`` is on).

Validation calls the loader with the spec's arguments and checks all of the above (shapes,
dtypes, label range, finite values) before any trial starts; a loader that breaks the
contract stops the study with exit 2 and a message naming what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch

from studies.config.datasets import DatasetInfo
from studies.trial.components import SERVICE_FIELDS, resolve_callable

SPLITS = ("train", "val", "test")


class ContractError(ValueError):
    """A loader's return value that breaks the splits contract."""


def loader_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The ``dataset`` section's arguments for the user's loader."""
    return {k: v for k, v in options.items() if k not in SERVICE_FIELDS["dataset"]}


# (info, {split: (images, labels)})
UserData = tuple[DatasetInfo, dict[str, tuple[torch.Tensor, torch.Tensor]]]
_CACHE: dict[str, UserData] = {}


def load_user_data(options: dict[str, Any]) -> UserData:
    """(info, {split: (images, labels)}) of a user loader, checked; cached per process."""
    key = repr((options["name"], sorted(loader_kwargs(options).items())))
    if key not in _CACHE:
        load = resolve_callable("dataset", options["name"])
        _CACHE.clear()  # one dataset at a time in memory
        _CACHE[key] = check_splits(load(**loader_kwargs(options)), options["name"])
    return _CACHE[key]


def check_splits(returned: Any, name: str = "the loader") -> UserData:
    """The contract's checks; (info, {split: (images, labels)}) or ContractError."""
    if not isinstance(returned, Mapping):
        raise ContractError(f"{name} returned a {type(returned).__name__}; it must return a "
                            "mapping with 'train' and 'test' (and optionally 'val') splits")
    missing = [s for s in ("train", "test") if s not in returned]
    if missing:
        raise ContractError(f"{name} returned no {' and no '.join(map(repr, missing))} split; "
                            f"it returned the keys {sorted(map(str, returned))}")  # fmt: skip
    splits = {s: _as_tensors(returned[s], s) for s in SPLITS if s in returned}
    shape = cast(tuple[int, int, int], tuple(splits["train"][0].shape[1:]))  # 4-D: checked
    for split, (x, _) in splits.items():
        if tuple(x.shape[1:]) != shape:
            raise ContractError(f"'{split}' images are {_shape(x.shape[1:])}, 'train' images "
                                f"{_shape(shape)}; every split needs the same C x H x W")
    num_classes = returned.get("num_classes")
    if num_classes is None:
        num_classes = int(splits["train"][1].max()) + 1
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ContractError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    for split, (_, y) in splits.items():
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= num_classes:
            raise ContractError(f"'{split}' labels run from {low} to {high}; they must lie in "
                                f"[0, {num_classes}) (num_classes {num_classes})")
    if len(splits["train"][1]) < 2:
        raise ContractError("'train' needs at least 2 examples")
    mean, std = _stats(returned, splits["train"][0])
    info = DatasetInfo(num_classes, shape, mean, std, False, len(splits["train"][1]),
                       len(splits["test"][1]))  # fmt: skip
    return info, splits


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return " x ".join(map(str, shape))


def _as_tensors(split: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(split, torch.utils.data.Dataset):
        split = _stack(split, name)
    if not (isinstance(split, (tuple, list)) and len(split) == 2):
        raise ContractError(f"'{name}' is a {type(split).__name__}; give a pair (images, labels) "
                            "of tensors or a Dataset of (image, label) items")
    x, y = split
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ContractError(f"'{name}' must hold tensors, got ({type(x).__name__}, "
                            f"{type(y).__name__})")  # fmt: skip
    if x.dim() != 4:
        raise ContractError(f"'{name}' images have shape {tuple(x.shape)}; they must be "
                            "N x C x H x W (a single channel is C = 1)")
    if x.dtype not in (torch.uint8, torch.float32):
        raise ContractError(f"'{name}' images are {x.dtype}; use torch.float32 in [0, 1] or "
                            "torch.uint8")
    if x.dtype == torch.float32 and not bool(torch.isfinite(x).all()):
        raise ContractError(f"'{name}' images hold NaN or infinite values")
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ContractError(f"'{name}' labels must be a 1-D integer tensor, got {y.dtype} of "
                            f"shape {tuple(y.shape)}")  # fmt: skip
    if len(x) != len(y) or len(y) == 0:
        raise ContractError(f"'{name}' has {len(x)} images and {len(y)} labels; they must "
                            "match and not be empty")
    return x.contiguous(), y.long()


def _stack(dataset: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except Exception as err:
        raise ContractError(f"reading '{name}' item by item failed: {type(err).__name__}: "
                            f"{err}") from None  # fmt: skip
    if not items or not all(isinstance(i, (tuple, list)) and len(i) == 2 for i in items):
        raise ContractError(f"'{name}' is a Dataset whose items are not (image, label) pairs")
    try:
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.tensor(
            [int(y) for _, y in items])
    except Exception as err:
        raise ContractError(f"'{name}' items do not stack into tensors: {err}") from None


def _stats(returned: Mapping, images: torch.Tensor) -> tuple[tuple[float, ...],
                                                              tuple[float, ...]]:
    """Per-channel mean and std: the loader's own, else measured on (up to) 10,000 images."""
    channels = images.shape[1]
    if "mean" in returned or "std" in returned:
        mean, std = tuple(returned.get("mean", ())), tuple(returned.get("std", ()))
        if len(mean) != channels or len(std) != channels or not all(s > 0 for s in std):
            raise ContractError(f"mean and std need one value per channel ({channels}), std > 0; "
                                f"got mean {mean}, std {std}")  # fmt: skip
        return tuple(map(float, mean)), tuple(map(float, std))
    x = images[:10_000].float()
    if images.dtype == torch.uint8:
        x = x / 255
    means = x.mean(dim=(0, 2, 3)).tolist()
    stds = [s if math.isfinite(s) and s > 0 else 1.0 for s in x.std(dim=(0, 2, 3)).tolist()]
    return tuple(means), tuple(stds)
