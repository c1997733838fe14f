"""What a trial trained on, for its MLflow dataset input (issue 27): the dataset's name, its
split sizes, where it came from and a digest of the very tensors of every split, so the digest
changes when the data (files, ``val_fraction``, ``split_seed``, sizes) changes."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from studies.trial.data import Splits

SPLITS = ("train", "val", "test")
BUILT_IN = {"digits": "sklearn.datasets.load_digits", "fake": "normstudy fake CIFAR-shaped data"}


def _update(digest: Any, tensor: torch.Tensor) -> None:
    """Feed a CPU tensor's shape, dtype and bytes to ``digest`` (no copy when contiguous)."""
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    digest.update(tensor.view(torch.uint8).reshape(-1).numpy().data if tensor.numel() else b"")


def dataset_profile(options: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """``name``, ``digest`` (BLAKE2b of every split's images and labels, 20 hex digits),
    ``source`` (the data root, or the built-in generator) and the split sizes."""
    digest = hashlib.blake2b(digest_size=10)
    for split in SPLITS:
        _update(digest, getattr(splits, f"{split}_x"))
        _update(digest, getattr(splits, f"{split}_y"))
    name = str(options["name"])
    source = BUILT_IN.get(name) or str(options.get("root") or f"registered dataset {name}")
    return {"name": name, "digest": digest.hexdigest(), "source": source,
            **{split: int(len(getattr(splits, f"{split}_y"))) for split in SPLITS}}  # fmt: skip
