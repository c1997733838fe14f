"""The file-based datasets in torchvision's layouts: the test writers write what torchvision
itself reads, normstudy reads the same tensors, and the one download of a study fails in one
line with the URL's own error (no network is used: the download is replaced)."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from dataset_files import write_cifar100_files, write_idx, write_mnist_files

from studies.config.spec import CannotStart
from studies.trial import torchvision_files
from studies.trial.data import load_splits
from studies.trial.study_data import fetch_study_data, study_datasets
from studies.trial.torchvision_files import DownloadFailed, fetch, read_idx, read_split
from studies.trial.validation import load_spec

RNG = np.random.default_rng(0)


def images(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.mark.parametrize(("name", "cls", "folder"),
                         [("mnist", "MNIST", "MNIST"),
                          ("fashion_mnist", "FashionMNIST", "FashionMNIST")])  # fmt: skip
def test_mnist_files_read_as_torchvision_reads_them(tmp_path, name, cls, folder):
    train = (images(30, 28, 28), RNG.integers(0, 10, 30))
    test = (images(12, 28, 28), RNG.integers(0, 10, 12))
    write_mnist_files(tmp_path, train, test, folder)
    theirs = getattr(torchvision.datasets, cls)(str(tmp_path), train=False)  # no MD5 on read
    ours = read_split(name, tmp_path, "test")
    assert torch.equal(ours[0][:, 0], theirs.data) and torch.equal(ours[1], theirs.targets)
    splits = load_splits({"name": name, "root": str(tmp_path), "val_fraction": 0.2})
    assert splits.train_x.shape == (24, 1, 28, 28) and len(splits.val_y) == 6
    assert splits.test_y.tolist() == test[1].tolist()


def test_cifar100_files_read_as_torchvision_reads_them(tmp_path, monkeypatch):
    train = (images(25, 32, 32, 3), list(RNG.integers(0, 100, 25)))
    test = (images(10, 32, 32, 3), list(RNG.integers(0, 100, 10)))
    write_cifar100_files(tmp_path, train, test)
    # torchvision checks the official files' MD5s; these are ours (normstudy checks none)
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    theirs = torchvision.datasets.CIFAR100(str(tmp_path), train=True)
    x, y = read_split("cifar100", tmp_path, "train")
    assert torch.equal(x, torch.from_numpy(theirs.data).permute(0, 3, 1, 2))
    assert y.tolist() == theirs.targets == [int(v) for v in train[1]]


def test_read_idx_refuses_other_files(tmp_path):
    write_idx(tmp_path / "ok", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert read_idx(tmp_path / "ok").tolist() == [[0, 1, 2], [3, 4, 5]]
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float32 IDX
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "bad")


def test_files_that_are_there_are_not_downloaded(tmp_path, monkeypatch):
    write_mnist_files(tmp_path, (images(4, 28, 28), np.zeros(4)), (images(2, 28, 28), np.zeros(2)))

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded files that were there")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_download)
    assert fetch("mnist", tmp_path, ["train", "test"]) is False


def offline(monkeypatch, error: Exception) -> None:
    """torchvision's dataset classes fail their download with ``error``."""

    def failing(self, root, download=False, **options):
        (torchvision_files.folder("mnist", root)).mkdir(parents=True, exist_ok=True)
        raise error

    for cls in torchvision_files.CLASSES.values():  # their URLs stay: a subclass
        real = getattr(torchvision.datasets, cls)
        monkeypatch.setattr(torchvision.datasets, cls, type(cls, (real,), {"__init__": failing}))


def test_an_unreachable_source_names_its_url_and_error_and_cleans_up(tmp_path, monkeypatch):
    mirrors = ("Error downloading train-images-idx3-ubyte.gz:\nTried https://a.example/mnist/, "
               "got:\n<urlopen error [Errno -2] Name or service not known>\nTried "
               "http://b.example/mnist/, got:\n<urlopen error [Errno -2] Name or service not "
               "known>\n")  # torchvision's MNIST: one error per mirror  # fmt: skip
    offline(monkeypatch, RuntimeError(mirrors))
    with pytest.raises(DownloadFailed) as err:
        fetch("mnist", tmp_path / "data", ["train", "test"])
    assert err.value.url == "https://a.example/mnist/train-images-idx3-ubyte.gz"
    assert err.value.cause == "[Errno -2] Name or service not known"
    assert not (tmp_path / "data").exists()  # the folders it made for the download: gone
    offline(monkeypatch, urllib.error.URLError(OSError(-3, "Temporary failure")))
    with pytest.raises(DownloadFailed) as err:
        fetch("cifar10", tmp_path, ["train", "test"])
    assert err.value.url == torchvision.datasets.CIFAR10.url
    assert err.value.cause == "[Errno -3] Temporary failure"
    assert tmp_path.exists()  # it was there before


def test_a_study_downloads_in_the_driver_or_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec("quickstart", ["dataset={name: mnist, download: true, root: d}",
                                    "sweep={dataset.name: {grid: [mnist, fashion_mnist]}}",
                                    "baseline={dataset.name: mnist}"])  # fmt: skip
    assert [d["name"] for d in study_datasets(spec)] == ["mnist", "fashion_mnist"]
    offline(monkeypatch, urllib.error.URLError(OSError(-2, "Name or service not known")))
    said = []
    with pytest.raises(CannotStart) as err:
        fetch_study_data(spec, say=said.append)
    assert said == [f"dataset 'mnist': downloading into {tmp_path / 'd' / 'MNIST' / 'raw'} "
                    "(once, before any trial starts)"]  # fmt: skip
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot start the study: dataset.download:")
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert "[Errno -2] Name or service not known" in message
    assert f"copy the files to {tmp_path / 'd' / 'MNIST' / 'raw'}" in message
    assert "set dataset.download: false" in message


def test_a_cluster_run_is_warned_of_files_missing_here_not_refused(tmp_path):
    from studies.config.spec import SpecError
    from studies.trial.validation import missing_data

    overrides = [f"dataset={{name: mnist, root: {tmp_path}}}"]
    with pytest.raises(SpecError, match="dataset.root: dataset 'mnist': .* does not exist"):
        load_spec("quickstart", overrides)  # a local run reads them here: exit 2
    spec = load_spec("quickstart", overrides, data_here=False)  # the nodes read them
    [warning] = missing_data(spec)
    assert warning.startswith(f"dataset 'mnist': {tmp_path}/MNIST/raw/train-images-idx3-ubyte "
                              "does not exist (and 3 more of its files)")  # fmt: skip
