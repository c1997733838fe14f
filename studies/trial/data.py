"""Datasets as in-memory tensors: a registry from names to loaders (batches: batches.py).

Every dataset here fits in host memory, so a trial loads its splits once.

Splits: ``test`` is the dataset's own test set; ``val`` is carved from the
training set with ``split_seed`` (fixed across trials, as the BN-init paper
carved it with seed 0), so every trial of a study sees the same splits.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from normlib.registry import Registry
from studies.config.datasets import DatasetInfo, dataset_info
from studies.config.roots import DEFAULT_ROOT, FILE_DATASETS
from studies.trial.torchvision_files import read_split, split_files

DATASET_SOURCES: Registry[Source] = Registry("dataset")
# (options) -> (train_x, train_y, test_x, test_y)
Loader = Callable[[dict[str, Any]], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class Splits:
    """Images as uint8 (N, C, H, W) or float tensors, labels as int64."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device) -> Splits:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Splits(info=self.info, **moved)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not where the spec says, and download is off."""


@dataclass(frozen=True)
class Source:
    info: DatasetInfo
    load: Loader


def register(name: str) -> Callable[[Loader], Loader]:
    """Register the loader of a dataset of the facts table (:mod:`studies.config.datasets`)."""

    def add(load: Loader) -> Loader:
        DATASET_SOURCES.register(name)(Source(dataset_info(name), load))
        return load

    return add


def load_splits(options: dict[str, Any]) -> Splits:
    """Load a dataset config (``dataset`` section of a trial config) into splits."""
    if options["name"] not in DATASET_SOURCES:  # the user's loader (studies.trial.user_data)
        from studies.trial.user_data import load_user_data

        info, splits = load_user_data(options)
        return carve(info, *splits["train"], *splits["test"], options, splits.get("val"))
    source: Source = DATASET_SOURCES.get(options["name"])
    return carve(source.info, *source.load(options), options)


def carve(info: DatasetInfo, train_x: torch.Tensor, train_y: torch.Tensor,
          test_x: torch.Tensor, test_y: torch.Tensor, options: dict[str, Any],
          val: tuple[torch.Tensor, torch.Tensor] | None = None) -> Splits:  # fmt: skip
    """Splits: ``val`` carved from train with ``split_seed`` (unless given), sizes capped."""
    if options.get("test_size"):
        test_x, test_y = test_x[: options["test_size"]], test_y[: options["test_size"]]
    generator = torch.Generator().manual_seed(int(options.get("split_seed", 0)))
    order = torch.randperm(len(train_y), generator=generator)
    fraction = options.get("val_fraction", 0.1)
    n_val = 0 if val is not None else max(1, int(round(len(train_y) * fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if options.get("train_size"):
        train_idx = train_idx[: options["train_size"]]
    val_x, val_y = val if val is not None else (train_x[val_idx], train_y[val_idx])
    return Splits(
        info=info,
        train_x=train_x[train_idx],
        train_y=train_y[train_idx],
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
    )


def check_available(options: dict[str, Any]) -> str | None:
    """A message if the dataset's files are missing (and download is off), else None."""
    if options["name"] not in DATASET_SOURCES:
        return None  # a user loader: validation calls it (studies.trial.user_data)
    source: Source = DATASET_SOURCES.get(options["name"])
    checker = getattr(source.load, "check", None)
    return checker(options) if checker else None


# ---------------------------------------------------------------------------
# Offline datasets


@register("digits")
def _digits(options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images); fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train).long(),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test).long(),
    )


@register("fake")
def _fake(options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                            torch.Tensor]:
    """Deterministic CIFAR-shaped data: class prototypes plus noise, as uint8.

    Learnable (each class has its own smooth mean image) yet not trivial; the
    same ``split_seed`` always yields the same bytes.
    """
    generator = torch.Generator().manual_seed(1000 + int(options.get("split_seed", 0)))
    coarse = torch.rand(10, 3, 4, 4, generator=generator)
    prototypes = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=generator)
        noise = 0.25 * torch.randn(n, 3, 32, 32, generator=generator)
        images = (prototypes[labels] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
        return images, labels

    info = dataset_info("fake")
    train_x, train_y = sample(info.train_size)
    test_x, test_y = sample(info.test_size)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------
# File-based datasets: torchvision's layouts under dataset.root (torchvision_files.py). A trial
# only reads them; `download: true` fetches them once, in the driver, before any trial.

HOW_TO_GET = (
    "set dataset.download: true to fetch them here (needs internet access), or copy the "
    "files there in torchvision's layout (README: Datasets)"
)


def data_root(options: dict[str, Any]) -> Path:
    """The dataset root, absolute since the spec was loaded (studies.config.roots); a spec of
    an older normstudy may hold a relative one, read from the working directory."""
    return Path(options.get("root") or DEFAULT_ROOT).expanduser().absolute()


def train_splits(options: dict[str, Any]) -> list[str]:
    """SVHN with ``extra: true`` appends its 531,131-image ``extra`` split to ``train`` (as
    the ALI-G paper trained); ``val`` is then carved from the union."""
    return ["train", "extra"] if options.get("extra") else ["train"]


def missing_files(name: str, options: dict[str, Any]) -> list[Path]:
    """The files of dataset ``name`` (every split a trial reads) that are not there."""
    splits = [*train_splits(options), "test"]
    return [path for split in splits for path in split_files(name, data_root(options), split)
            if not path.is_file()]  # fmt: skip


def _file_dataset(name: str) -> Loader:
    """The loader of a file-based dataset, with its ``check`` (validation, in the driver)."""

    def load(options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                               torch.Tensor]:
        missing = missing_files(name, options)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetMissing(
                f"dataset {name!r}: {missing[0]}{more} not found on host {socket.gethostname()!r}"
                "; a trial reads the files at this path on the node that runs it: put them on "
                "storage every node mounts at that path, or copy them to each node"
            )
        root = data_root(options)
        parts = [read_split(name, root, split) for split in train_splits(options)]
        train_x = torch.cat([x for x, _ in parts]) if len(parts) > 1 else parts[0][0]
        train_y = torch.cat([y for _, y in parts]) if len(parts) > 1 else parts[0][1]
        return (train_x, train_y, *read_split(name, root, "test"))

    def check(options: dict[str, Any]) -> str | None:
        if options.get("download"):
            return None  # the driver fetches the files before any trial starts
        missing = missing_files(name, options)
        if not missing:
            return None
        more = f" (and {len(missing) - 1} more of its files)" if len(missing) > 1 else ""
        return f"dataset {name!r}: {missing[0]} does not exist{more}; {HOW_TO_GET}"

    load.check = check  # type: ignore[attr-defined]  # check_available reads it
    return load


for _name in FILE_DATASETS:
    register(_name)(_file_dataset(_name))
