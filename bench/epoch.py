"""Images/s of our training loop vs a seed-style DataLoader loop, per model.

Both loops train the same model (built as a study builds it) with SGD
(lr 0.01, momentum 0.9, weight decay 5e-4) for one epoch over the same
CIFAR-shaped fake data (``--images`` uint8 images of 3x32x32, 10 classes),
batch ``--batch``, random crop (32, padding 4) + horizontal flip +
normalization:

* ``ours``: ``studies.trial.trainable.train_epoch`` with a ``TrainStep`` (fp32)
  over the device loader (``studies.trial.data.make_batches("device", ...)``):
  uint8 tensors resident on the device, augmentation batched there, losses
  accumulated there, one host sync per epoch;
* ``seed``: the papers' loop: a ``torch.utils.data.DataLoader`` (shuffle,
  ``--workers`` worker processes, pinned memory on CUDA) over a dataset of PIL
  images with ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``; each batch copied to the device, ``loss.item()`` per step.

Each loop runs one warm-up epoch, then ``--repeats`` timed epochs (wall
clock: the workers are other processes); the table shows the medians and
the ratio ours / seed of images per second.

``--variants`` adds rows of our loop with its speed options (``bf16``,
``channels_last``, ``compile``, ``bf16+cl+compile``; ``fp32`` is the plain
loop), on every model or on ``--variant-models``; each row's ratio is
against the same seed loop. A compile row whose ``torch.compile`` cannot run
here says why instead of failing.

    python bench/epoch.py [--models fc-15x500 odenet4-16] [--device auto|cpu|cuda]
                          [--images N] [--batch 128] [--workers 2] [--repeats 3]
                          [--variants fp32 bf16 channels_last compile bf16+cl+compile]
                          [--variant-models resnet18]

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

from studies.config.datasets import dataset_info
from studies.trial.batches import make_batches
from studies.trial.data import Splits
from studies.trial.trainable import TrainStep, compile_problem, train_epoch

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


# Our loop's speed options (``train.precision``, ``train.channels_last``, ``train.compile``):
# variant name -> (precision, channels_last, compile). ``fp32`` is the plain loop.
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "channels_last": ("fp32", True, False),
    "compile": ("fp32", False, True),
    "bf16+cl+compile": ("bf16", True, True),
}


def ours(name: str, images, labels, device, batch: int, variant: str = "fp32"):
    """A function running one epoch of our loop (``dataset.loader: device``) with the speed
    options of ``variant``, set up the way ``build_trial`` does (model on the device and in
    its memory format before the optimizer takes its parameters)."""
    precision, channels_last, compile_ = VARIANTS[variant]
    model = build_model(name, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    splits = Splits(dataset_info("fake"), images, labels, images[:2], labels[:2], images[:2],
                    labels[:2])
    generator = torch.Generator(device=device).manual_seed(0)
    batches = make_batches("device", splits.to(device), generator, batch_size=batch,
                           normalize=True, augment=True, device=device,
                           channels_last=channels_last)
    step = TrainStep(model, sgd(model), precision=precision, compile=compile_, device=device)

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
    parser.add_argument("--variants", nargs="+", default=["fp32"], choices=list(VARIANTS),
                        help="our loop's speed options, one row each (default fp32)")
    parser.add_argument("--variant-models", nargs="+", default=None,
                        help="models that get the non-fp32 variants (default: all --models)")
    timing_arguments(parser, repeats=3, what="epochs per loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    models = check_models(args.models or (DEFAULT_MODELS if on_cuda else CPU_MODELS))
    n_images = args.images or (10000 if on_cuda else 256)
    images, labels = fake_images(n_images)

    variant_models = set(check_models(args.variant_models or models))
    unavailable = compile_problem(device) if any(VARIANTS[v][2] for v in args.variants) else None
    rows = []
    for name in models:
        seed_s = epoch_seconds(seed_style(name, images, labels, device, args.batch,
                                          args.workers), device, args.repeats)
        for variant in args.variants:
            if variant != "fp32" and name not in variant_models:
                continue
            row = {"model": name, "variant": variant, "ours_s": None, "seed_s": seed_s,
                   "ours_img_s": None, "seed_img_s": n_images / seed_s, "ratio": None}
            if VARIANTS[variant][2] and unavailable:
                row["note"] = f"compile unavailable: {unavailable}"
                rows.append(row)
                print(f"{name} {variant}: skipped ({row['note']})", flush=True)
                continue
            ours_s = epoch_seconds(ours(name, images, labels, device, args.batch, variant),
                                   device, args.repeats)
            row.update(ours_s=ours_s, ours_img_s=n_images / ours_s, ratio=seed_s / ours_s)
            rows.append(row)
            print(f"{name} {variant}: ours {ours_s:.2f} s, seed {seed_s:.2f} s per epoch",
                  flush=True)
    print(f"one epoch of {n_images} images, batch {args.batch}, {device}, "
          f"{args.threads} thread(s), seed loop with {args.workers} workers, "
          f"median of {args.repeats}")
    print_table([("model", ""), ("variant", ""), ("ours_s", ".2f"), ("seed_s", ".2f"),
                 ("ours_img_s", ".0f"), ("seed_img_s", ".0f"), ("ratio", ".2f")], rows)
    settings = {"images": n_images, "batch": args.batch, "workers": args.workers,
                "variants": {v: dict(zip(("precision", "channels_last", "compile"), VARIANTS[v],
                                         strict=True)) for v in args.variants},
                "repeats": args.repeats, "models": {n: MODEL_SECTIONS[n] for n in models}}
    write_json("epoch", device, settings, rows, args.out)


if __name__ == "__main__":
    main()
