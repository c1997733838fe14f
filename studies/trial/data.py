"""Datasets as in-memory tensors: a registry from names to loaders (batches: batches.py).

Every dataset here fits in host memory, so a trial loads its splits once.

Splits: ``test`` is the dataset's own test set; ``val`` is carved from the
training set with ``split_seed`` (fixed across trials, as the BN-init paper
carved it with seed 0), so every trial of a study sees the same splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from normlib.registry import Registry
from studies.config.datasets import DatasetInfo, dataset_info

DATASET_SOURCES = Registry("dataset")


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
    load: Any  # (options) -> (train_x, train_y, test_x, test_y)


def register(name: str):
    """Register the loader of a dataset of the facts table (:mod:`studies.config.datasets`)."""

    def add(load):
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


def carve(info: DatasetInfo, train_x, train_y, test_x, test_y, options: dict[str, Any],
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
def _digits(options: dict[str, Any]):
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
def _fake(options: dict[str, Any]):
    """Deterministic CIFAR-shaped data: class prototypes plus noise, as uint8.

    Learnable (each class has its own smooth mean image) yet not trivial; the
    same ``split_seed`` always yields the same bytes.
    """
    generator = torch.Generator().manual_seed(1000 + int(options.get("split_seed", 0)))
    coarse = torch.rand(10, 3, 4, 4, generator=generator)
    prototypes = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)

    def sample(n: int):
        labels = torch.randint(0, 10, (n,), generator=generator)
        noise = 0.25 * torch.randn(n, 3, 32, 32, generator=generator)
        images = (prototypes[labels] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
        return images, labels

    info = dataset_info("fake")
    train_x, train_y = sample(info.train_size)
    test_x, test_y = sample(info.test_size)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------
# torchvision datasets (real files on disk; `download: true` fetches them)

HOW_TO_GET = (
    "set dataset.download: true on a machine with internet access, or copy the "
    "files there (torchvision layout)"
)


def _root(options: dict[str, Any]) -> Path:
    return Path(options.get("root") or "./data").expanduser()


def _torchvision(name: str, cls_name: str, folder: str, split_kw: str):
    """Loader for one torchvision dataset class; ``folder`` is what it expects under root.

    SVHN (``split_kw="split"``) with ``extra: true`` appends its 531,131-image
    ``extra`` split to ``train`` (as the ALI-G paper trained); ``val`` is then
    carved from the union.
    """

    def construct(options: dict[str, Any], split: str):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        kw = {"split": split} if split_kw == "split" else {"train": split == "train"}
        try:
            return cls(str(_root(options)), download=bool(options.get("download")), **kw)
        except (RuntimeError, FileNotFoundError) as err:
            raise DatasetMissing(
                f"dataset {name!r} ({split}) not found under {_root(options) / folder}: {err}; "
                f"{HOW_TO_GET}"
            ) from None

    def train_splits(options: dict[str, Any]) -> list[str]:
        return ["train", "extra"] if options.get("extra") else ["train"]

    def load(options: dict[str, Any]):
        parts = [_as_tensors(construct(options, split)) for split in train_splits(options)]
        train_x = torch.cat([x for x, _ in parts]) if len(parts) > 1 else parts[0][0]
        train_y = torch.cat([y for _, y in parts]) if len(parts) > 1 else parts[0][1]
        return (train_x, train_y, *_as_tensors(construct(options, "test")))

    def check(options: dict[str, Any]) -> str | None:
        if options.get("download"):
            return None
        where = _root(options) / folder
        if not where.exists():
            return f"dataset {name!r} expected in {where}, which does not exist; {HOW_TO_GET}"
        if split_kw == "split":  # SVHN: one .mat file per split, directly under root
            for split in [*train_splits(options), "test"]:
                if not (where / f"{split}_32x32.mat").exists():
                    return (
                        f"dataset {name!r}: {where / f'{split}_32x32.mat'} does not exist; "
                        f"{HOW_TO_GET}"
                    )
        return None

    load.check = check
    return load


def _as_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision dataset object -> (uint8 N x C x H x W images, int64 labels)."""
    data = dataset.data
    data = torch.as_tensor(np.asarray(data))
    if data.ndim == 3:  # MNIST-like: N x H x W
        data = data[:, None]
    elif data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):  # CIFAR: N x H x W x C
        data = data.permute(0, 3, 1, 2)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels  # SVHN
    return data.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long)


_TORCHVISION = {  # name: (torchvision class, folder under root, split keyword)
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "train"),
    "cifar100": ("CIFAR100", "cifar-100-python", "train"),
    "svhn": ("SVHN", "", "split"),
    "mnist": ("MNIST", "MNIST", "train"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", "train"),
}

for _name, (_cls, _folder, _split) in _TORCHVISION.items():
    register(_name)(_torchvision(_name, _cls, _folder, _split))
