"""The first study on real data and real hardware (issue 31): dataset files in torchvision's
layouts (written by the tests, tests/dataset_files.py) under a relative root, read by real
trials; a trial this machine cannot hold, and a download without a network, refused in
seconds with one line, nothing left behind."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from dataset_files import (
    write_cifar10_files,
    write_cifar100_files,
    write_mnist_files,
    write_svhn_files,
)
from user_shell import Shell, free_port, study_runs, wait_for

pytestmark = pytest.mark.acceptance

RNG = np.random.default_rng(31)
TINY = {  # a small net, one short epoch: the trials only have to read and train
    "model": {"name": "fully_connected", "n_layers": 2, "width": 16},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 1, "batch_size": 10},
    "resources": {"cpu": 1},
}


def images(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


def write_spec(folder: Path, **fields) -> Path:
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({**TINY, **fields}, sort_keys=False))
    return path


def elsewhere(shell: Shell, name: str) -> Shell:
    """The same user in another working directory."""
    cwd = shell.cwd.parent / name
    cwd.mkdir()
    return Shell(cwd, {**shell.env, "PWD": str(cwd)}, shell.started)


def trial_configs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("trial_*/params.json"))]


def test_cifar10_with_a_relative_root_trains_compares_and_resumes_from_another_folder(shell):
    train = (images(120, 32, 32, 3), list(RNG.integers(0, 10, 120)))
    write_cifar10_files(shell.cwd / "data", train, (images(30, 32, 32, 3), [1] * 30))
    write_spec(shell.cwd, name="cifar10-relative",
               dataset={"name": "cifar10", "root": "./data", "val_fraction": 0.2},
               enorm={"c": 0}, sweep={"enorm.c": {"grid": [0, 1.0]}}, seeds=[1, 2],
               baseline={"enorm.c": 0})  # fmt: skip
    ran = shell.run("run", "study.yaml")
    assert ran.code == 0, ran.text
    assert "done in" in ran.out and "4 finished" in ran.out
    assert "enorm.c=1.0" in ran.out and "report:" in ran.out and "not enough pairs" not in ran.out
    study = shell.results / "cifar10-relative"
    data = str(shell.cwd / "data")  # absolute, once, where the spec was loaded
    assert yaml.safe_load((study / "study.yaml").read_text())["dataset"]["root"] == data
    configs = trial_configs(study)
    assert len(configs) == 4 and {c["dataset"]["root"] for c in configs} == {data}
    rows = [json.loads(line) for p in study.glob("trial_*/result.json")
            for line in p.read_text().splitlines()]  # fmt: skip
    assert len(rows) == 4 and all(r["epoch"] == 1 and 0 <= r["test_acc"] <= 1 for r in rows)

    other = elsewhere(shell, "another folder")  # no data/ here: the saved root is absolute
    resumed = other.run("resume", str(study))
    assert resumed.code == 0, resumed.text
    assert "4 finished" in resumed.out and "enorm.c=1.0" in resumed.out
    _, _, parents, children = study_runs(shell, "cifar10-relative")
    assert len(parents) == 1 and len(children) == 4  # nothing run or logged twice
    assert max(Counter(r.data.tags["normstudy.trial_id"] for r in children).values()) == 1


def write_every_dataset(root: Path) -> dict[str, int]:
    """Each dataset's files under ``root``, every test label one class (learnt in one epoch:
    test accuracy 1 proves the labels were read); SVHN's ``train`` has another class than
    its ``extra`` and ``test`` (0, stored as 10): accuracy 1 needs extra and the 10 -> 0
    mapping. The label each dataset's test split holds."""
    labels = {"cifar10": 9, "cifar100": 99, "svhn": 0, "mnist": 3, "fashion_mnist": 5}

    def same(n: int, name: str) -> np.ndarray:
        return np.full(n, labels[name])

    write_cifar10_files(root, (images(60, 32, 32, 3), list(same(60, "cifar10"))),
                        (images(20, 32, 32, 3), list(same(20, "cifar10"))))  # fmt: skip
    write_cifar100_files(root, (images(60, 32, 32, 3), list(same(60, "cifar100"))),
                         (images(20, 32, 32, 3), list(same(20, "cifar100"))))  # fmt: skip
    write_svhn_files(root, {"train": (images(20, 32, 32, 3), np.full(20, 7)),
                            "extra": (images(120, 32, 32, 3), same(120, "svhn")),
                            "test": (images(20, 32, 32, 3), same(20, "svhn"))})  # fmt: skip
    for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")):
        write_mnist_files(root, (images(60, 28, 28), same(60, name)),
                          (images(20, 28, 28), same(20, name)), folder)  # fmt: skip
    return labels


def test_every_file_dataset_loads_in_a_trial_and_an_errored_one_says_why(shell):
    write_every_dataset(shell.cwd / "data")
    good = (shell.cwd / "data" / "cifar-100-python" / "test").read_bytes()
    (shell.cwd / "data" / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    arms = [{"dataset.name": "cifar10"}, {"dataset.name": "cifar100"},
            {"dataset.name": "svhn", "dataset.extra": True}, {"dataset.name": "mnist"},
            {"dataset.name": "fashion_mnist"}]  # fmt: skip
    dataset = {"name": "cifar10", "val_fraction": 0.25}  # no root: ./data here, the default
    write_spec(shell.cwd, name="datasets", dataset=dataset, arms=arms, seeds=[1])
    ran = shell.run("run", "study.yaml")
    assert ran.code == 1, ran.text  # the study ran; one trial errored
    assert "done in" in ran.out and "1 errored, 4 finished" in ran.out, ran.out
    [summary] = [line for line in ran.out.splitlines() if " errored: " in line]
    assert "errored: UnpicklingError: invalid load key" in summary and "error.txt" in summary
    assert "Traceback" not in ran.text and "Trial task failed" not in ran.text
    assert len(ran.text.splitlines()) < 80  # no traceback per failure and retry

    (shell.cwd / "data" / "cifar-100-python" / "test").write_bytes(good)
    other = elsewhere(shell, "another folder")  # the trial reruns from here: absolute root
    resumed = other.run("resume", str(shell.results / "datasets"), "--retry-errored")
    assert resumed.code == 0, resumed.text
    assert "5 finished" in resumed.out
    study = shell.results / "datasets"
    by_name = {}
    for trial in sorted(study.glob("trial_*")):
        config = json.loads((trial / "params.json").read_text())
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        by_name[config["arm"]["dataset.name"]] = rows[-1]
    assert set(by_name) == {"cifar10", "cifar100", "svhn", "mnist", "fashion_mnist"}
    for name, row in by_name.items():
        assert row["epoch"] == 1 and row["test_acc"] == 1.0, (name, row)
    _, _, parents, children = study_runs(shell, "datasets")
    assert len(parents) == 1 and len(children) == 5


def session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def assert_nothing_left(shell: Shell, ran) -> None:
    """No results folder, no dataset folder, no process of the command (Ray, MLflow)."""
    assert not shell.results.exists(), sorted(shell.results.rglob("*"))
    assert not (shell.cwd / "data").exists()
    assert session_processes(shell.started[-1].pid) == []
    assert "Traceback" not in ran.text and "local Ray instance" not in ran.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the trial fits")
def test_a_gpu_trial_on_a_machine_without_one_is_refused_in_seconds(shell):
    ran = shell.run("run", "quickstart", "--set", "resources.gpu=1")
    assert ran.code == 2, ran.text
    assert ran.cpu_seconds < 10, f"used {ran.cpu_seconds:.1f} CPU seconds"
    assert ran.err.splitlines() == [
        "normstudy: cannot start the study: resources.gpu: a trial asks for 1 GPU, this machine "
        "has 0 (GPUs as torch sees them); train on CPU with --set resources.gpu=0, or run on a "
        "Ray cluster that has GPUs with --address"
    ]
    assert_nothing_left(shell, ran)


def test_memory_beyond_what_the_local_ray_offers_is_refused_and_ray_stopped(shell):
    from studies.trial.hardware import machine_memory

    asked = round(machine_memory() / 2**30 * 0.9, 1)  # Ray offers ~70% of the free memory
    ran = shell.run("run", "quickstart", "--set", f"resources.memory_gb={asked}")
    assert ran.code == 2, ran.text
    [line] = [t for t in ran.err.splitlines() if t.startswith("normstudy:")]
    assert line.startswith("normstudy: cannot start the study: resources.memory_gb: a trial asks "
                           f"for {asked:.3g} GiB of memory, this machine's Ray has ")
    wait_for(lambda: not session_processes(shell.started[-1].pid), 60, "Ray's processes to end")
    assert not (shell.results / "quickstart").exists() and "trial_" not in ran.text


def test_a_download_without_a_network_stops_before_any_trial_with_its_cause(shell):
    closed = f"http://127.0.0.1:{free_port()}"  # no network here, whatever the machine has
    shell.env.update(http_proxy=closed, https_proxy=closed, no_proxy="")
    ran = shell.run("run", "quickstart", "--set", "dataset={name: mnist, download: true}",
                    "--set", "seeds=[1]")  # fmt: skip
    assert ran.code == 2, ran.text
    assert ran.cpu_seconds < 30, f"used {ran.cpu_seconds:.1f} CPU seconds"
    [line] = ran.err.splitlines()
    assert line.startswith(
        "normstudy: cannot start the study: dataset.download: could not download 'mnist' from "
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz: ")
    assert "Connection refused" in line, line
    raw = shell.cwd / "data" / "MNIST" / "raw"
    assert f"copy the files to {raw}" in line and "set dataset.download: false" in line
    assert ran.out == f"[normstudy] dataset 'mnist': downloading into {raw} (once, before any " \
                      "trial starts)\n"  # fmt: skip
    assert_nothing_left(shell, ran)
