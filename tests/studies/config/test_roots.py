"""Data roots are made absolute where the spec is loaded: a spec file's against its folder,
``--set`` and catalog roots against the working directory, ``./data`` by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from studies.config.load import read_spec
from studies.config.roots import absolute_root, resolve_roots


def write_spec(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "roots", **fields}))
    return path


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """A working directory other than the spec file's folder."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_a_spec_files_root_is_relative_to_the_file(tmp_path, cwd):
    path = write_spec(tmp_path / "specs", dataset={"name": "cifar10", "root": "./data/../cifar"})
    assert read_spec(path)["dataset"]["root"] == str(tmp_path / "specs" / "cifar")


def test_a_set_root_and_a_catalog_root_are_relative_to_the_working_directory(
    tmp_path, cwd, monkeypatch
):
    path = write_spec(tmp_path / "specs", dataset={"name": "mnist", "root": "elsewhere"})
    assert read_spec(path, ["dataset.root=mine"])["dataset"]["root"] == str(cwd / "mine")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert read_spec("alig-svhn")["dataset"]["root"] == str(tmp_path / "home" / "data")  # ~/data
    moved = read_spec("alig-svhn", ["dataset.root=./svhn"])
    assert moved["dataset"]["root"] == str(cwd / "svhn")


def test_the_default_root_is_data_in_the_working_directory_for_file_datasets_only(tmp_path, cwd):
    path = write_spec(tmp_path / "specs", dataset={"name": "cifar100"})
    assert read_spec(path)["dataset"]["root"] == str(cwd / "data")
    assert "root" not in read_spec("quickstart")["dataset"]  # digits: no files
    swept = read_spec("quickstart", ["sweep={dataset.name: {grid: [digits, mnist]}}"])
    assert swept["dataset"]["root"] == str(cwd / "data")  # an arm reads files


def test_home_is_expanded_and_absolute_roots_stay(tmp_path, cwd, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert absolute_root("~/datasets", cwd) == str(tmp_path / "home" / "datasets")
    assert absolute_root("/srv/data/", cwd) == "/srv/data"
    assert absolute_root("s3://bucket/data", cwd) == "s3://bucket/data"


def test_roots_in_sweeps_arms_and_baselines(tmp_path):
    data = {
        "dataset": {"name": "digits"},
        "sweep": {"dataset.root": {"grid": ["a", "/abs/b"]},
                  "dataset": {"grid": [{"name": "mnist"}, {"name": "digits"},
                                       {"name": "svhn", "root": "s"}]}},
        "arms": [{"dataset.root": "c"}, {"dataset": {"root": "d", "name": "mnist"}}],
        "baseline": {"dataset.root": "a"},
        "confirm": {"baseline": {"dataset": {"root": "a"}}},
    }  # fmt: skip
    resolve_roots(data, tmp_path, default=tmp_path / "data")
    assert data["sweep"]["dataset.root"]["grid"] == [str(tmp_path / "a"), "/abs/b"]
    sections = data["sweep"]["dataset"]["grid"]
    assert sections[0]["root"] == str(tmp_path / "data")  # a whole section needs its own root
    assert "root" not in sections[1] and sections[2]["root"] == str(tmp_path / "s")
    assert data["arms"][0]["dataset.root"] == str(tmp_path / "c")
    assert data["arms"][1]["dataset"]["root"] == str(tmp_path / "d")
    assert data["baseline"]["dataset.root"] == str(tmp_path / "a")
    assert data["confirm"]["baseline"]["dataset"]["root"] == str(tmp_path / "a")
    assert data["dataset"]["root"] == str(tmp_path / "data")  # arm 1 reads mnist through it


def test_study_yaml_keeps_the_absolute_root(tmp_path, cwd):
    from studies.config.load import dump_spec, parse_config

    path = write_spec(tmp_path / "specs", dataset={"name": "fashion_mnist", "root": "fm"},
                      model={"name": "fully_connected"}, optimizer={"name": "sgd", "lr": 0.1},
                      train={"epochs": 1})  # fmt: skip
    written = yaml.safe_load(dump_spec(parse_config(read_spec(path))))
    assert written["dataset"]["root"] == str(tmp_path / "specs" / "fm")
    assert os.path.isabs(written["dataset"]["root"])
