"""Datasets: splits, determinism, augmentation distribution, torchvision loader."""

import numpy as np
import pytest
import torch
from scipy import stats

from studies.data import (
    DatasetMissing,
    check_available,
    load_splits,
    normalize,
    random_crop_flip,
    write_cifar10_files,
)


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


def test_crop_offsets_uniform_over_9x9_and_flip_rate_half():
    n, size = 8100, 16
    image = (1 + torch.arange(size * size, dtype=torch.float32)).view(1, 1, size, size)
    out = random_crop_flip(image.expand(n, 1, size, size), torch.Generator().manual_seed(0))
    center, left = out[:, 0, 8, 8].long() - 1, out[:, 0, 8, 7].long() - 1
    flipped = center < left
    row, col = center // size, center % size
    dy = row - 4
    dx = torch.where(flipped, col - 3, col - 4)
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


def test_cifar10_loader_reads_torchvision_files(tmp_path, monkeypatch):
    import torchvision

    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), list(rng.integers(0, 10, 50)))
    test = (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), list(rng.integers(0, 10, 20)))
    write_cifar10_files(tmp_path, train, test)
    # our files are not the official ones, so skip torchvision's md5 check only
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
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
    assert "cifar-10-batches-py" in message and "download: true" in message
    (tmp_path / "nowhere" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DatasetMissing, match="download: true"):
        load_splits(options)
