"""Datasets: splits, determinism, augmentation distribution, both loaders, torchvision files."""

import socket

import numpy as np
import pytest
import torch
from dataset_files import write_cifar10_files, write_svhn_files
from scipy import stats

from studies.config.datasets import DatasetInfo
from studies.config.spec import SpecError
from studies.trial.batches import DeviceBatches, LoaderBatches, normalize, random_crop_flip
from studies.trial.data import (
    DatasetMissing,
    Splits,
    check_available,
    load_splits,
)
from studies.trial.validation import load_spec


def test_digits_splits_are_fixed_disjoint_and_complete():
    a = load_splits({"name": "digits", "val_fraction": 0.1, "split_seed": 0})
    b = load_splits({"name": "digits", "val_fraction": 0.1, "split_seed": 0})
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (1293, 144, 360)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    train_rows = {tuple(r) for r in a.train_x.flatten(1).tolist()}
    val_rows = {tuple(r) for r in a.val_x.flatten(1).tolist()}
    assert len(train_rows & val_rows) <= 5  # digits has a few duplicate images, no shared rows
    c = load_splits({"name": "digits", "val_fraction": 0.1, "split_seed": 1})
    assert not torch.equal(a.val_y, c.val_y)
    assert a.train_x.shape[1:] == (1, 8, 8) and float(a.train_x.max()) == 1.0


def test_fake_dataset_is_deterministic_uint8_and_learnable_shape():
    a = load_splits({"name": "fake", "val_fraction": 0.1})
    b = load_splits({"name": "fake", "val_fraction": 0.1})
    assert a.train_x.dtype == torch.uint8 and a.train_x.shape[1:] == (3, 32, 32)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    # class means differ far more than noise averaged over a class: the data is learnable
    x = a.train_x.float()
    means = torch.stack([x[a.train_y == k].mean(0) for k in range(10)])
    assert float((means[0] - means[1]).abs().mean()) > 5.0


def test_normalize_matches_formula():
    splits = load_splits({"name": "fake", "val_fraction": 0.1, "train_size": 16})
    x = splits.train_x[:4]
    out = normalize(x, splits.info, enabled=True)
    expected = (x.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(out, expected)


def decode_crops(out, size):
    """Crop offsets (dy, dx) into the 4-padded image and flips, from crops of 1..size^2 images."""
    center, left = out[:, 0, 8, 8].long() - 1, out[:, 0, 8, 7].long() - 1
    flipped = center < left
    row, col = center // size, center % size
    dx = torch.where(flipped, col - 3, col - 4)
    return row - 4, dx, flipped


def assert_seed_augmentation(out, image, size):
    """Offsets uniform over the 9x9 positions (chi-square), flip rate 1/2, exact windows."""
    n = len(out)
    dy, dx, flipped = decode_crops(out, size)
    assert int(dy.min()) == 0 and int(dy.max()) == 8 and int(dx.min()) == 0 and int(dx.max()) == 8
    counts = torch.bincount(dy * 9 + dx, minlength=81).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    rate = float(flipped.float().mean())
    assert abs(rate - 0.5) < 3 * np.sqrt(0.25 / n)
    # a crop is an exact window of the zero-padded image (mirrored when flipped)
    padded = torch.nn.functional.pad(image[0, 0], (4, 4, 4, 4))
    for i in range(20):
        window = padded[dy[i] : dy[i] + size, dx[i] : dx[i] + size]
        expected = window.flip(1) if flipped[i] else window
        assert torch.equal(out[i, 0], expected)


def test_crop_offsets_uniform_over_9x9_and_flip_rate_half():
    n, size = 8100, 16
    image = (1 + torch.arange(size * size, dtype=torch.float32)).view(1, 1, size, size)
    out = random_crop_flip(image.expand(n, 1, size, size), torch.Generator().manual_seed(0))
    assert_seed_augmentation(out, image, size)


def identical_images(n, size):
    """n copies of one float image with pixel values 1..size^2, as training split."""
    image = (1 + torch.arange(size * size, dtype=torch.float32)).view(1, 1, size, size)
    info = DatasetInfo(10, (1, size, size), (0.0,), (1.0,), augment=True, train_size=n, test_size=0)
    x, y = image.expand(n, 1, size, size).contiguous(), torch.arange(n) % 10
    return image, Splits(info, x, y, x[:2], y[:2], x[:2], y[:2])


def test_torch_loader_augmentation_has_the_seeds_distribution():
    """torchvision's per-image RandomCrop(16, padding=4) + RandomHorizontalFlip, seeded."""
    n, size = 8100, 16
    image, splits = identical_images(n, size)
    batches = LoaderBatches(splits, torch.Generator().manual_seed(0), num_workers=0,
                            batch_size=n, normalize=False, augment=True)  # fmt: skip
    (out, labels), = list(batches.train())
    assert len(out) == n and sorted(labels.tolist()) == sorted(splits.train_y.tolist())
    assert_seed_augmentation(out, image, size)


def batches_of(kind, splits, seed, epochs=2, **options):
    """All training batches of ``epochs`` epochs, as lists of (x, y)."""
    cls = DeviceBatches if kind == "device" else LoaderBatches
    batches = cls(splits, torch.Generator().manual_seed(seed), **options)
    return [(x.clone(), y.clone()) for _ in range(epochs) for x, y in batches.train()]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_yield_identical_batches_without_augmentation(num_workers):
    splits = load_splits({"name": "fake", "train_size": 90})
    options = dict(batch_size=16, augment=False, normalize=True)  # 90 = 5 x 16 + 10
    device = batches_of("device", splits, 7, **options)
    loader = batches_of("torch", splits, 7, num_workers=num_workers, **options)
    assert len(device) == len(loader) == 12
    for (xd, yd), (xl, yl) in zip(device, loader, strict=True):
        assert xd.dtype == xl.dtype == torch.float32
        assert torch.equal(xd, xl) and torch.equal(yd, yl)
    assert not torch.equal(device[0][1], device[6][1])  # each epoch has its own order
    other = batches_of("torch", splits, 8, num_workers=num_workers, **options)
    assert not torch.equal(other[0][1], loader[0][1])
    # every training example exactly once per epoch
    epoch = torch.cat([y for _, y in loader[:6]])
    assert torch.equal(epoch.sort().values, splits.train_y.sort().values)


def test_torch_loader_with_augmentation_is_reproducible_and_worker_independent():
    splits = load_splits({"name": "fake", "train_size": 48})
    options = dict(batch_size=16, augment=True, normalize=True)
    one = batches_of("torch", splits, 3, num_workers=0, **options)
    again = batches_of("torch", splits, 3, num_workers=2, **options)
    plain = batches_of("torch", splits, 3, num_workers=0, **{**options, "augment": False})
    for (xa, ya), (xb, yb) in zip(one, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for (xa, ya), (xp, yp) in zip(one[:3], plain[:3], strict=True):  # epoch 1: same order
        assert torch.equal(ya, yp) and not torch.equal(xa, xp)  # crops and flips were applied
    # the generator state alone resumes the stream
    generator = torch.Generator().manual_seed(3)
    batches = LoaderBatches(splits, generator, num_workers=0, **options)
    list(batches.train())
    state = generator.get_state()
    second = [x for x, _ in batches.train()]
    generator.set_state(state)
    replay = [x for x, _ in batches.train()]
    assert len(replay) == 3 and all(map(torch.equal, second, replay))


@pytest.mark.parametrize("kind", ["device", "torch"])
def test_augmentation_pads_black_as_the_seeds(kind):
    """Padding happens before normalization: padded pixels are (0 - mean) / std."""
    splits = load_splits({"name": "fake", "train_size": 64})
    splits.train_x.fill_(255)
    batches = batches_of(kind, splits, 0, epochs=1, batch_size=64, augment=True, normalize=True)
    values = set(torch.cat([x.flatten() for x, _ in batches]).unique().tolist())
    assert values == {(0 - 0.5) / 0.25, (1 - 0.5) / 0.25}


def test_loader_caps_steps_and_drops_a_last_single_example():
    splits = load_splits({"name": "fake", "train_size": 33})
    for kind in ("device", "torch"):
        sizes = [len(y) for _, y in batches_of(kind, splits, 0, epochs=1, batch_size=16)]
        assert sizes == [16, 16]  # 33 = 16 + 16 + 1: one example cannot train BatchNorm
        capped = batches_of(kind, splits, 0, epochs=1, batch_size=8, max_steps=3)
        assert [len(y) for _, y in capped] == [8, 8, 8]


def test_cifar10_loader_reads_torchvision_files(tmp_path):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), list(rng.integers(0, 10, 50)))
    test = (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), list(rng.integers(0, 10, 20)))
    write_cifar10_files(tmp_path, train, test)  # not the official files: no MD5 is checked
    options = {"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.2}
    assert check_available(options) is None
    splits = load_splits(options)
    assert splits.test_x.shape == (20, 3, 32, 32) and splits.test_x.dtype == torch.uint8
    assert torch.equal(splits.test_x[3], torch.from_numpy(test[0][3]).permute(2, 0, 1))
    assert splits.test_y.tolist() == [int(v) for v in test[1]]
    assert len(splits.train_y) + len(splits.val_y) == 50 and len(splits.val_y) == 10


def test_missing_dataset_says_where_and_how(tmp_path):
    options = {"name": "cifar10", "root": str(tmp_path / "nowhere")}
    message = check_available(options)
    first = tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1"
    assert f"{first} does not exist (and 5 more of its files)" in message
    assert "download: true" in message
    assert check_available({**options, "download": True}) is None  # the driver fetches them
    (tmp_path / "nowhere" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DatasetMissing) as err:  # in a trial: the path and the node
        load_splits(options)
    assert f"{first} (and 5 more) not found on host {socket.gethostname()!r}" in str(err.value)
    assert "storage every node mounts" in str(err.value)


def fake_svhn(tmp_path, sizes):
    """SVHN .mat files of random images (not the real files: no MD5 is checked)."""
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in sizes.items()
    }
    write_svhn_files(tmp_path, splits)
    return splits


def test_svhn_extra_joins_the_training_split(tmp_path):
    files = fake_svhn(tmp_path, {"train": 30, "test": 12, "extra": 40})
    options = {"name": "svhn", "root": str(tmp_path), "val_fraction": 0.1}
    plain = load_splits(options)
    assert len(plain.train_y) + len(plain.val_y) == 30 and len(plain.test_y) == 12
    assert torch.equal(plain.test_x[5], torch.from_numpy(files["test"][0][5]).permute(2, 0, 1))
    assert plain.test_y.tolist() == files["test"][1].tolist()  # label 10 read back as 0
    both = load_splits({**options, "extra": True})
    assert len(both.train_y) + len(both.val_y) == 70 and len(both.val_y) == 7
    assert torch.equal(both.test_x, plain.test_x)
    # train + val hold exactly the train and extra images, with their labels
    seen = sorted(
        (x.flatten().tolist(), int(y))
        for xs, ys in ((both.train_x, both.train_y), (both.val_x, both.val_y))
        for x, y in zip(xs, ys, strict=True)
    )
    expected = sorted(
        (torch.from_numpy(img).permute(2, 0, 1).flatten().tolist(), int(label))
        for split in ("train", "extra")
        for img, label in zip(*files[split], strict=True)
    )
    assert seen == expected


def test_svhn_extra_missing_file_is_named(tmp_path):
    fake_svhn(tmp_path, {"train": 20, "test": 10})
    options = {"name": "svhn", "root": str(tmp_path)}
    assert check_available(options) is None
    message = check_available({**options, "extra": True})
    assert "extra_32x32.mat" in message and "download: true" in message
    with pytest.raises(DatasetMissing, match="extra"):
        load_splits({**options, "extra": True})


def test_extra_is_only_for_svhn():
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", ["dataset.extra=true"])
    assert [path for path, _ in err.value.problems] == ["dataset.extra"]
    assert "only for svhn" in str(err.value)
    spec = load_spec("alig-svhn", ["dataset.extra=true"])
    assert spec.dataset.extra is True
