"""The file-based datasets in torchvision's own layouts: which files, how to read them, and
the one download of a study.

A trial only reads: the files under ``dataset.root`` (absolute since the spec was loaded,
:mod:`studies.config.roots`), in the layout torchvision downloads them to. Reading here
rather than through torchvision's dataset classes skips their MD5 check of every file (of
the CIFAR archives and the SVHN ``.mat`` files) in every trial: the download (torchvision's,
with its checksums) happens once, in the driver, before any trial starts (:func:`fetch`).

=============== ============================================ ===========================
dataset         files under ``root``                         torchvision class
=============== ============================================ ===========================
cifar10         ``cifar-10-batches-py/data_batch_{1..5}``,   ``CIFAR10``
                ``test_batch`` (pickled ``data``, ``labels``)
cifar100        ``cifar-100-python/train``, ``test``         ``CIFAR100``
                (pickled ``data``, ``fine_labels``)
svhn            ``{train,test,extra}_32x32.mat`` (``X``:     ``SVHN``
                32x32x3xN, ``y``: Nx1, digit 0 stored as 10)
mnist           ``MNIST/raw/{train,t10k}-{images-idx3,       ``MNIST``
                labels-idx1}-ubyte`` (IDX files)
fashion_mnist   ``FashionMNIST/raw/...`` (as MNIST)          ``FashionMNIST``
=============== ============================================ ===========================
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch

CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN", "mnist": "MNIST",
           "fashion_mnist": "FashionMNIST"}  # fmt: skip
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "svhn": "",
           "mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}  # fmt: skip
IDX_PREFIX = {"train": "train", "test": "t10k"}


def folder(name: str, root: str | Path) -> Path:
    """Where the files of dataset ``name`` lie under ``root``."""
    return Path(root) / FOLDERS[name]


def split_files(name: str, root: str | Path, split: str) -> list[Path]:
    """The files one split (``train``, ``test``, SVHN's ``extra``) of ``name`` is read from."""
    where = folder(name, root)
    if name == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    elif name == "cifar100":
        names = [split]
    elif name == "svhn":
        names = [f"{split}_32x32.mat"]
    else:
        names = [f"{IDX_PREFIX[split]}-images-idx3-ubyte", f"{IDX_PREFIX[split]}-labels-idx1-ubyte"]
    return [where / file for file in names]


def read_split(name: str, root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 N x C x H x W images, int64 labels)."""
    files = split_files(name, root, split)
    if name in ("cifar10", "cifar100"):
        key = "labels" if name == "cifar10" else "fine_labels"
        batches = [_unpickle(path) for path in files]
        images = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
        images = images.reshape(-1, 3, 32, 32)
    elif name == "svhn":
        from scipy.io import loadmat

        stored = loadmat(files[0])
        images = np.transpose(stored["X"], (3, 2, 0, 1))  # 32 x 32 x 3 x N -> N x 3 x 32 x 32
        labels = stored["y"].astype(np.int64).reshape(-1)
        labels[labels == 10] = 0
    else:
        images = read_idx(files[0])[:, None]
        labels = read_idx(files[1]).astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format): magic 0x0000 08 <dims>, then one
    big-endian int32 per dimension, then the data."""
    raw = bytearray(Path(path).read_bytes())  # writable: torch tensors share it
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#010x})")
    dims = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def source_url(name: str, split: str = "train") -> str:
    """Where torchvision downloads ``name`` from (its first mirror)."""
    import torchvision.datasets as tvd  # heavy: only when a download is asked for

    cls = getattr(tvd, CLASSES[name])
    if name == "svhn":
        return cls.split_list[split][0]
    if name in ("mnist", "fashion_mnist"):
        return f"{cls.mirrors[0]}{cls.resources[0][0]}"
    return cls.url


class DownloadFailed(RuntimeError):
    """A download that did not complete: ``url`` and the ``cause`` as the source said it."""

    def __init__(self, name: str, url: str, cause: str):
        self.name, self.url, self.cause = name, url, cause
        super().__init__(f"could not download {name!r} from {url}: {cause}")


def fetch(name: str, root: str | Path, splits: list[str]) -> bool:
    """Download ``splits`` of ``name`` into ``root`` with torchvision (its checksums) unless
    their files are there already; True if it downloaded. Folders it made for a download
    that failed are removed again (DownloadFailed)."""
    if all(path.exists() for split in splits for path in split_files(name, root, split)):
        return False
    import torchvision.datasets as tvd  # heavy: only when a download is asked for

    cls = getattr(tvd, CLASSES[name])
    target = folder(name, root)
    made = [p for p in (target, *target.parents) if not p.exists()]  # deepest first
    for split in splits:
        options = {"split": split} if name == "svhn" else {"train": split == "train"}
        try:
            cls(str(root), download=True, **options)
        except Exception as err:  # the source's own words: URLError, HTTPError, a checksum
            for path in made:
                with contextlib.suppress(OSError):
                    os.rmdir(path)  # only if empty
            url, cause = _failure(err, source_url(name, split))
            raise DownloadFailed(name, url, cause) from None
    return True


def _failure(err: Exception, url: str) -> tuple[str, str]:
    """The URL that failed and its error in one line. torchvision's MNIST download collects
    one error per mirror ("Error downloading FILE:\nTried MIRROR, got:\n<error>"); the others
    raise the URL's own (urllib's URLError, HTTPError)."""
    text = str(err)
    tried = re.search(r"Tried (\S+?), got:\s*\n\s*(.+)", text)
    if tried:
        file = re.search(r"Error downloading (\S+?):", text)
        url = tried.group(1) + (file.group(1) if file else "")
        return url, _unwrap(tried.group(2).strip())
    reason = getattr(err, "reason", None)  # URLError: the socket's own error
    if reason is not None and not hasattr(err, "code"):
        return url, str(reason)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return url, f"{type(err).__name__}: {first}" if first else type(err).__name__


def _unwrap(cause: str) -> str:
    """``<urlopen error [Errno -2] Name or service not known>`` -> ``[Errno -2] Name or ...``."""
    found = re.fullmatch(r"<urlopen error (.*)>", cause)
    return found.group(1) if found else cause
