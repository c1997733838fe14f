"""Images/s of our training loop vs a seed-style DataLoader loop, per model.

Both loops train the same model (built as a study builds it) with SGD
(lr 0.01, momentum 0.9, weight decay 5e-4) for one epoch over the same
CIFAR-shaped fake data (``--images`` uint8 images of 3x32x32, 10 classes),
batch ``--batch``, random crop (32, padding 4) + horizontal flip +
normalization:

* ``ours``: ``studies.build.trainable.train_epoch`` with a ``TrainStep`` (fp32)
  over the device loader (``studies.build.data.make_batches("device", ...)``):
  uint8 tensors resident on the device, augmentation batched there, losses
  accumulated there, one host sync per epoch;
* ``seed``: the papers' loop: a ``torch.utils.data.DataLoader`` (shuffle,
  ``--workers`` worker processes, pinned memory on CUDA) over a dataset of PIL
  images with ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``; each batch copied to the device, ``loss.item()`` per step.

Each loop runs one warm-up epoch, then ``--repeats`` timed epochs (wall
clock: the workers are other processes); the table shows the medians and
the ratio ours / seed of images per second.

    python bench/epoch.py [--models fc-15x500 odenet4-16] [--device auto|cpu|cuda]
                          [--images N] [--batch 128] [--workers 2] [--repeats 3]

prints a table and writes bench/results/epoch.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import (
    MODEL_SECTIONS,
    build_model,
    check_models,
    print_table,
    resolve_device,
    sync,
    timing_arguments,
    write_json,
)
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from studies.build.data import Splits, make_batches
from studies.build.trainable import TrainStep, train_epoch
from studies.config.datasets import dataset_info

DEFAULT_MODELS = ("fc-15x500", "fullyconv", "odenet4-16", "resnet18", "wrn-28-10")
CPU_MODELS = ("fc-15x500", "fullyconv", "odenet4-16", "resnet18")  # wrn-28-10: hours on CPU


def fake_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 images (n, 3, 32, 32) and int64 labels in [0, 10)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=generator)


class PILImages(Dataset):
    """A CIFAR-like dataset: PIL images in memory, torchvision transforms per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def ours(name: str, images, labels, device, batch: int):
    """A function running one epoch of our loop (``dataset.loader: device``)."""
    model = build_model(name, device)
    splits = Splits(dataset_info("fake"), images, labels, images[:2], labels[:2], images[:2],
                    labels[:2])
    generator = torch.Generator(device=device).manual_seed(0)
    batches = make_batches("device", splits.to(device), generator, batch_size=batch,
                           normalize=True, augment=True, device=device)
    step = TrainStep(model, sgd(model), device=device)

    def epoch() -> None:
        train_epoch(step, batches)

    return epoch


def seed_style(name: str, images, labels, device, batch: int, workers: int):
    """A function running one epoch of the seeds' DataLoader loop."""
    model = build_model(name, device)
    optimizer = sgd(model)
    info = dataset_info("fake")
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(info.mean, info.std),
    ])
    loader = DataLoader(PILImages(images, labels, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)

    def epoch() -> None:
        model.train()
        running = 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()

    return epoch


def epoch_seconds(run, device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` epochs after one warm-up epoch."""
    run()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"of {sorted(MODEL_SECTIONS)} (default: all five on CUDA, "
                        f"{' '.join(CPU_MODELS)} on CPU)")
    parser.add_argument("--images", type=int, default=None,
                        help="images per epoch (default 10000 on CUDA, 256 on CPU)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="seed loop's DataLoader workers")
    timing_arguments(parser, repeats=3, what="epochs per loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    models = check_models(args.models or (DEFAULT_MODELS if on_cuda else CPU_MODELS))
    n_images = args.images or (10000 if on_cuda else 256)
    images, labels = fake_images(n_images)

    rows = []
    for name in models:
        ours_s = epoch_seconds(ours(name, images, labels, device, args.batch), device,
                               args.repeats)
        seed_s = epoch_seconds(seed_style(name, images, labels, device, args.batch,
                                          args.workers), device, args.repeats)
        rows.append({
            "model": name,
            "ours_s": ours_s,
            "seed_s": seed_s,
            "ours_img_s": n_images / ours_s,
            "seed_img_s": n_images / seed_s,
            "ratio": seed_s / ours_s,
        })
        print(f"{name}: ours {ours_s:.2f} s, seed {seed_s:.2f} s per epoch", flush=True)
    print(f"one epoch of {n_images} images, batch {args.batch}, {device}, "
          f"{args.threads} thread(s), seed loop with {args.workers} workers, "
          f"median of {args.repeats}")
    print_table([("model", ""), ("ours_s", ".2f"), ("seed_s", ".2f"), ("ours_img_s", ".0f"),
                 ("seed_img_s", ".0f"), ("ratio", ".2f")], rows)
    settings = {"images": n_images, "batch": args.batch, "workers": args.workers,
                "repeats": args.repeats, "models": {n: MODEL_SECTIONS[n] for n in models}}
    write_json("epoch", device, settings, rows, args.out)


if __name__ == "__main__":
    main()
