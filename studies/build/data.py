"""Datasets as in-memory tensors: a registry from names to loaders, and batches.

Every dataset here fits in host memory, so a trial loads its splits once.
Two loaders turn the training split into mini-batches (``dataset.loader``):

* ``device`` (default): the splits live on the trial's device; batches are
  sliced from tensors and the seeds' augmentation (random crop of the
  4-pixel zero-padded image, horizontal flip) is done batched there.
* ``torch``: the splits stay in host memory; a torch DataLoader with
  ``num_workers`` processes applies torchvision's per-image RandomCrop and
  RandomHorizontalFlip, and batches are copied to the device (for data
  that does not fit in device memory).

Both draw the epoch's order from the same seeded generator, so with
augmentation off they yield identical batches.

Splits: ``test`` is the dataset's own test set; ``val`` is carved from the
training set with ``split_seed`` (fixed across trials, as the BN-init paper
carved it with seed 0), so every trial of a study sees the same splits.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info

from normlib.registry import Registry
from studies.config.datasets import DatasetInfo, dataset_info

DATASETS = Registry("dataset")


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
        DATASETS.register(name)(Source(dataset_info(name), load))
        return load

    return add


def load_splits(options: dict[str, Any]) -> Splits:
    """Load a dataset config (``dataset`` section of a trial config) into splits."""
    if options["name"] not in DATASETS:  # the user's loader (studies.build.user_data)
        from studies.build.user_data import load_user_data

        info, splits = load_user_data(options)
        return carve(info, *splits["train"], *splits["test"], options, splits.get("val"))
    source: Source = DATASETS.get(options["name"])
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
    if options["name"] not in DATASETS:
        return None  # a user loader: validation calls it (studies.build.user_data)
    source: Source = DATASETS.get(options["name"])
    checker = getattr(source.load, "check", None)
    return checker(options) if checker else None


# ---------------------------------------------------------------------------
# Batches


def normalize(
    x: torch.Tensor,
    info: DatasetInfo,
    enabled: bool,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 -> float in [0, 1]; then (x - mean) / std per channel when enabled.

    ``stats``: ``channel_stats(info, x.device)``, made once, so that a training
    step does not copy mean and std from the host each time.
    """
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if not enabled:
        return x
    mean, std = stats if stats is not None else channel_stats(info, x.device)
    return (x - mean) / std


def channel_stats(info: DatasetInfo, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's per-channel mean and std as float32 (1, C, 1, 1) tensors on ``device``."""
    mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    return mean, std


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


LOADERS = ("device", "torch")


class Batches:
    """Seeded, shuffled training mini-batches and in-order evaluation batches.

    Each epoch draws one permutation ``order = randperm(n, generator)`` of the
    training indices; batch b holds ``order[b*B : (b+1)*B]``. Only the first
    ``max_steps`` batches are used, and a last batch of one example is dropped
    (BatchNorm cannot train on it). Images reach the model as float
    ``(x / 255 - mean) / std`` (uint8 data; float data in [0, 1] is not
    divided), after augmentation, so the padding is black as in the seeds.
    Subclasses say where the data lives and where augmentation happens.
    """

    def __init__(
        self,
        splits: Splits,
        generator: torch.Generator,
        *,
        batch_size: int,
        eval_batch_size: int = 1024,
        normalize: bool = True,
        augment: bool = False,
        max_steps: int | None = None,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ):
        self.splits, self.generator = splits, generator
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.normalize, self.augment, self.max_steps = normalize, augment, max_steps
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.stats = channel_stats(splits.info, self.device)

    def __len__(self) -> int:
        """Training batches per epoch."""
        return len(self._starts())

    def _starts(self) -> list[int]:
        n = len(self.splits.train_y)
        starts = range(0, n, self.batch_size)
        if self.max_steps is not None:
            starts = starts[: self.max_steps]
        return [s for s in starts if min(self.batch_size, n - s) >= 2]

    def index_batches(self) -> list[torch.Tensor]:
        """This epoch's index batches (advances the generator by one permutation)."""
        n = len(self.splits.train_y)
        order = torch.randperm(n, generator=self.generator, device=self.generator.device)
        return [order[s : s + self.batch_size] for s in self._starts()]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Device batch of raw images -> normalized float model input."""
        x = normalize(x, self.splits.info, self.normalize, self.stats)
        if x.dim() == 4 and self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def eval(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``val`` or ``test`` in order, ``eval_batch_size`` at a time, without augmentation."""
        x_all, y_all = getattr(self.splits, f"{split}_x"), getattr(self.splits, f"{split}_y")
        for start in range(0, len(y_all), self.eval_batch_size):
            x = x_all[start : start + self.eval_batch_size].to(self.device, non_blocking=True)
            y = y_all[start : start + self.eval_batch_size].to(self.device, non_blocking=True)
            yield self.finish(x), y


class DeviceBatches(Batches):
    """All splits on the device; crop+flip batched there (:func:`random_crop_flip`).

    The generator should live on the same device, so that no step waits for
    the host.
    """

    def __init__(self, splits: Splits, generator: torch.Generator, **options):
        super().__init__(splits, generator, **options)
        self.splits = splits.to(self.device)

    def train(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x_all, y_all = self.splits.train_x, self.splits.train_y
        for idx in self.index_batches():
            idx = idx.to(y_all.device)
            x = x_all[idx]
            if self.augment:
                x = random_crop_flip(x, self.generator)
            yield self.finish(x), y_all[idx]


class LoaderBatches(Batches):
    """Splits in host memory; a torch DataLoader applies per-image transforms.

    The batch sampler draws the same permutation as :class:`DeviceBatches`
    from the generator (a CPU one) and, with augmentation, one seed per image;
    a worker applies torchvision's ``RandomCrop(size, padding=4)`` and
    ``RandomHorizontalFlip()`` to image i under the CPU RNG seeded with its
    seed. The result depends on the generator only, not on ``num_workers``
    or on which worker got the batch, and checkpointing the generator state
    suffices to resume. uint8 batches are copied to the device (pinned when
    it is a GPU) and normalized there.
    """

    def __init__(self, splits: Splits, generator: torch.Generator, num_workers: int = 2, **opts):
        super().__init__(splits, generator, **opts)
        cuda = self.device.type == "cuda"
        if cuda:
            self.splits = Splits(
                info=splits.info,
                **{k: v.pin_memory() for k, v in vars(splits).items() if k != "info"},
            )
        images = SeededImages(self.splits.train_x, self.splits.train_y, self.augment)
        self.loader = DataLoader(
            images,
            batch_sampler=_SeededBatchSampler(self),
            num_workers=num_workers,
            pin_memory=cuda,
            # workers start each epoch and exit at its end (fork: the images are shared, not
            # copied), so none outlive the trial
            # worker base seeds are unused (images carry their own seeds); a private
            # generator keeps the DataLoader from drawing on the global RNG
            generator=torch.Generator().manual_seed(0),
        )

    def train(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            yield self.finish(x), y.to(self.device, non_blocking=True)


class _SeededBatchSampler:
    """Per epoch: the index batches of :meth:`Batches.index_batches` as ``(index, seed)`` keys.

    Seeds are drawn after the permutation and only with augmentation, so
    without it the generator advances exactly as in :class:`DeviceBatches`.
    """

    def __init__(self, batches: Batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        index_batches = self.batches.index_batches()
        total = sum(len(idx) for idx in index_batches)
        seeds = [0] * total
        if self.batches.augment:
            generator = self.batches.generator
            seeds = torch.randint(0, 2**62, (total,), generator=generator, device=generator.device)
            seeds = seeds.tolist()
        start = 0
        for idx in index_batches:
            indices = idx.tolist()
            yield list(zip(indices, seeds[start : start + len(indices)], strict=True))
            start += len(indices)


class SeededImages(Dataset):
    """``(index, seed) -> (image, label)``; with ``augment``, the seeds' per-image transforms.

    The transforms are torchvision's RandomCrop(H x W, padding=4) (zero fill)
    and RandomHorizontalFlip(p=0.5), run under the CPU RNG seeded with
    ``seed``: crop offsets uniform on {0..8}^2, flip with probability 1/2. In
    the main process the global RNG state is restored afterwards.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool, padding: int = 4):
        self.images, self.labels = images, labels
        self.transform = None
        if augment:
            from torchvision import transforms

            size = tuple(images.shape[-2:])
            self.transform = transforms.Compose(
                [transforms.RandomCrop(size, padding=padding), transforms.RandomHorizontalFlip()]
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        image = self.images[index]
        if self.transform is not None:
            in_worker = get_worker_info() is not None
            saved = None if in_worker else torch.get_rng_state()
            torch.default_generator.manual_seed(seed)  # CPU only; CUDA RNGs untouched
            try:
                image = self.transform(image)
            finally:
                if saved is not None:
                    torch.set_rng_state(saved)
        return image, self.labels[index]


def make_batches(
    loader: str, splits: Splits, generator: torch.Generator, *, num_workers: int = 2, **options
) -> Batches:
    """The ``dataset.loader`` named ``loader`` (``device`` or ``torch``) over ``splits``."""
    if loader == "device":
        return DeviceBatches(splits, generator, **options)
    if loader == "torch":
        return LoaderBatches(splits, generator, num_workers=num_workers, **options)
    raise ValueError(f"dataset.loader must be one of {', '.join(LOADERS)}, got {loader!r}")


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
