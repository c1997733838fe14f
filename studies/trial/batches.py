"""Mini-batches of a trial's splits (``dataset.loader``), with the seeds' augmentation.

* ``device`` (default): the splits live on the trial's device; batches are sliced from
  tensors and the augmentation (random crop of the 4-pixel zero-padded image, horizontal
  flip) is done batched there.
* ``torch``: the splits stay in host memory; a torch DataLoader with ``num_workers``
  processes applies torchvision's per-image RandomCrop and RandomHorizontalFlip, and
  batches are copied to the device (for data that does not fit in device memory).

Both draw the epoch's order from the same seeded generator, so with augmentation off they
yield identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info

from studies.config.datasets import DatasetInfo
from studies.trial.data import Splits


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

    def __init__(self, splits: Splits, generator: torch.Generator, **options: Any) -> None:
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

    def __init__(self, splits: Splits, generator: torch.Generator, num_workers: int = 2,
                 **opts: Any) -> None:
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
            seeds = torch.randint(0, 2**62, (total,), generator=generator,
                                  device=generator.device).tolist()
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
    loader: str, splits: Splits, generator: torch.Generator, *, num_workers: int = 2,
    **options: Any,
) -> Batches:
    """The ``dataset.loader`` named ``loader`` (``device`` or ``torch``) over ``splits``."""
    if loader == "device":
        return DeviceBatches(splits, generator, **options)
    if loader == "torch":
        return LoaderBatches(splits, generator, num_workers=num_workers, **options)
    raise ValueError(f"dataset.loader must be one of {', '.join(LOADERS)}, got {loader!r}")
