"""What a study needs to know of each dataset before loading it: the one table of facts.

Shapes, classes and normalization statistics build the model and feed it; split sizes
scale cost estimates and smoke runs. The loaders (:mod:`studies.trial.data`) register one
loader per name here, and a study may only name these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    shape: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # whether crop+flip augmentation applies by default
    train_size: int  # training images, the validation split included
    test_size: int


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SVHN_EXTRA = 531_131
"""Images of SVHN's ``extra`` split (``dataset.extra: true`` adds them to train)."""

DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, (1, 8, 8), (0.3,), (0.38,), False, 1_437, 360),
    "fake": DatasetInfo(10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, True, 2_000, 500),
    "cifar10": DatasetInfo(10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, True, 50_000, 10_000),
    "cifar100": DatasetInfo(100, (3, 32, 32), (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762), True, 50_000, 10_000),
    "svhn": DatasetInfo(10, (3, 32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                        False, 73_257, 26_032),
    "mnist": DatasetInfo(10, (1, 28, 28), (0.1307,), (0.3081,), False, 60_000, 10_000),
    "fashion_mnist": DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,), False, 60_000, 10_000),
}  # fmt: skip
OFFLINE = ("digits", "fake")
"""Datasets that need no files: digits ships with scikit-learn, fake is generated."""


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASET_INFO[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_INFO)}") from None
