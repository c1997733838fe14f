"""Datasets as in-memory tensors: a registry from names to loaders.

Every dataset here fits in host (and device) memory, so a trial loads its
splits once and slices batches from tensors; augmentation (the seeds'
random crop with 4-pixel zero padding and horizontal flip) is done batched.

Splits: ``test`` is the dataset's own test set; ``val`` is carved from the
training set with ``split_seed`` (fixed across trials, as the BN-init paper
carved it with seed 0), so every trial of a study sees the same splits.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from normlib.registry import Registry

DATASETS = Registry("dataset")


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    shape: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # whether crop+flip augmentation applies by default


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


def register(name: str, info: DatasetInfo):
    def add(load):
        DATASETS.register(name)(Source(info, load))
        return load

    return add


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name).info


def load_splits(options: dict[str, Any]) -> Splits:
    """Load a dataset config (``dataset`` section of a trial config) into splits."""
    source: Source = DATASETS.get(options["name"])
    train_x, train_y, test_x, test_y = source.load(options)
    if options.get("test_size"):
        test_x, test_y = test_x[: options["test_size"]], test_y[: options["test_size"]]
    generator = torch.Generator().manual_seed(int(options.get("split_seed", 0)))
    order = torch.randperm(len(train_y), generator=generator)
    n_val = max(1, int(round(len(train_y) * options.get("val_fraction", 0.1))))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if options.get("train_size"):
        train_idx = train_idx[: options["train_size"]]
    return Splits(
        info=source.info,
        train_x=train_x[train_idx],
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
    )


def check_available(options: dict[str, Any]) -> str | None:
    """A message if the dataset's files are missing (and download is off), else None."""
    source: Source = DATASETS.get(options["name"])
    checker = getattr(source.load, "check", None)
    return checker(options) if checker else None


# ---------------------------------------------------------------------------
# Batches


def normalize(x: torch.Tensor, info: DatasetInfo, enabled: bool) -> torch.Tensor:
    """uint8 -> float in [0, 1]; then (x - mean) / std per channel when enabled."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if not enabled:
        return x
    mean = torch.tensor(info.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Batched random crop of the zero-padded image and horizontal flip with rate 1/2.

    Each image gets offsets (dy, dx) uniform on {0..2*padding}^2 into the padded
    image, exactly the distribution of torchvision's RandomCrop(size, padding).
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    span = 2 * padding + 1
    dy = torch.randint(0, span, (n,), generator=generator, device=generator.device)
    dx = torch.randint(0, span, (n,), generator=generator, device=generator.device)
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


# ---------------------------------------------------------------------------
# Offline datasets


@register("digits", DatasetInfo(10, (1, 8, 8), (0.3,), (0.38,), augment=False))
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


FAKE_TRAIN, FAKE_TEST = 2000, 500


@register("fake", DatasetInfo(10, (3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment=True))
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

    train_x, train_y = sample(FAKE_TRAIN)
    test_x, test_y = sample(FAKE_TEST)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------
# torchvision datasets (real files on disk; `download: true` fetches them)

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
HOW_TO_GET = (
    "set dataset.download: true on a machine with internet access, or copy the "
    "files there (torchvision layout)"
)


def _root(options: dict[str, Any]) -> Path:
    return Path(options.get("root") or "./data").expanduser()


def _torchvision(name: str, cls_name: str, folder: str, split_kw: str):
    """Loader for one torchvision dataset class; ``folder`` is what it expects under root."""

    def construct(options: dict[str, Any], train: bool):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        kw = {split_kw: ("train" if train else "test")} if split_kw == "split" else {"train": train}
        try:
            return cls(str(_root(options)), download=bool(options.get("download")), **kw)
        except RuntimeError as err:
            raise DatasetMissing(
                f"dataset {name!r} not found under {_root(options) / folder}: {err}; {HOW_TO_GET}"
            ) from None

    def load(options: dict[str, Any]):
        train, test = construct(options, True), construct(options, False)
        return (*_as_tensors(train), *_as_tensors(test))

    def check(options: dict[str, Any]) -> str | None:
        if options.get("download"):
            return None
        if not (_root(options) / folder).exists():
            where = _root(options) / folder
            return f"dataset {name!r} expected in {where}, which does not exist; {HOW_TO_GET}"
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


_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "train",
                DatasetInfo(10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, augment=True)),
    "cifar100": ("CIFAR100", "cifar-100-python", "train",
                 DatasetInfo(100, (3, 32, 32), (0.5071, 0.4865, 0.4409),
                             (0.2673, 0.2564, 0.2762), augment=True)),
    "svhn": ("SVHN", "", "split",
             DatasetInfo(10, (3, 32, 32), (0.4377, 0.4438, 0.4728),
                         (0.1980, 0.2010, 0.1970), augment=False)),
    "mnist": ("MNIST", "MNIST", "train", DatasetInfo(10, (1, 28, 28), (0.1307,), (0.3081,), False)),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", "train",
                      DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,), augment=False)),
}  # fmt: skip

for _name, (_cls, _folder, _split, _info) in _TORCHVISION.items():
    register(_name, _info)(_torchvision(_name, _cls, _folder, _split))


def write_cifar10_files(root: Path, train: tuple[np.ndarray, list[int]], test) -> Path:
    """Write arrays in the CIFAR-10 python-pickle layout torchvision reads.

    Used to test the loader offline; images are N x 32 x 32 x 3 uint8.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, images: np.ndarray, labels: list[int]) -> None:
        flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": flat, "labels": list(labels)}, fh)

    chunks = np.array_split(np.arange(len(train[1])), 5)
    for i, idx in enumerate(chunks, start=1):
        dump(f"data_batch_{i}", train[0][idx], [train[1][j] for j in idx])
    dump("test_batch", *test)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return folder
