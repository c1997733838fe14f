"""Dataset files in torchvision's own layouts, written by tests (no download needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


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


def write_svhn_files(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write ``{split: (N x 32 x 32 x 3 uint8 images, labels 0..9)}`` as SVHN's .mat files.

    torchvision's layout: ``X`` is 32 x 32 x 3 x N, ``y`` is N x 1 with the
    digit 0 stored as label 10. Used to test the loader offline.
    """
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
        stored = {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0))}
        stored["y"] = np.where(labels == 0, 10, labels)
        savemat(root / f"{split}_32x32.mat", stored)
    return root


def write_cifar100_files(root: Path, train: tuple[np.ndarray, list[int]], test) -> Path:
    """Write arrays in the CIFAR-100 python-pickle layout torchvision reads: ``train`` and
    ``test`` (``data`` N x 3072, ``fine_labels``, ``coarse_labels``) and ``meta``; images are
    N x 32 x 32 x 3 uint8, labels 0..99."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        flat = np.asarray(images).transpose(0, 3, 1, 2).reshape(len(images), -1)
        fine = [int(v) for v in labels]
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": flat, "fine_labels": fine,
                         "coarse_labels": [v // 5 for v in fine]}, fh)  # fmt: skip
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, fh)  # fmt: skip
    return folder


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, MNIST's format: magic ``0x0000 08 <dims>``, one
    big-endian int32 per dimension, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def write_mnist_files(root: Path, train: tuple[np.ndarray, np.ndarray], test,
                      folder_name: str = "MNIST") -> Path:  # fmt: skip
    """Write ``(N x 28 x 28 uint8 images, labels 0..9)`` as torchvision's MNIST raw files,
    ``<root>/<folder_name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``;
    ``folder_name="FashionMNIST"`` for Fashion-MNIST."""
    folder = Path(root) / folder_name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder
