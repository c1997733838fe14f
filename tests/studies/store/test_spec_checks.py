"""A spec's torch checks, cached (store/spec_checks.py): a spec that passed them is not
checked again until its text, the sources, torch, the machine or its data files change; a
spec with problems, or one that runs the user's code, is checked every time."""

from __future__ import annotations

import pytest

from studies.config.spec import SpecError
from studies.store import cache, spec_checks
from studies.store.spec_checks import load_checked
from studies.trial import validation


@pytest.fixture
def checks(tmp_path, monkeypatch):
    """The full checks, counted."""
    monkeypatch.setenv("NORMSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    full = validation.parse_spec

    def counted(data, data_here=True, machine=False):
        calls.append(data["name"])
        return full(data, data_here, machine)

    monkeypatch.setattr(validation, "parse_spec", counted)
    return calls


def test_a_spec_that_passed_is_not_checked_again(checks):
    first, reused = load_checked("quickstart")
    assert not reused and checks == ["quickstart"]
    again, reused = load_checked("quickstart")
    assert reused and checks == ["quickstart"]
    full = validation.load_spec("quickstart")
    assert again.model_dump() == first.model_dump() == full.model_dump()


def test_another_text_source_tree_or_torch_checks_again(checks, monkeypatch):
    load_checked("quickstart")
    load_checked("quickstart", ["train.epochs=3"])
    assert len(checks) == 2
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "an edited source tree")
    load_checked("quickstart")
    assert len(checks) == 3
    monkeypatch.setattr(spec_checks.metadata, "version", lambda name: "99.0")
    load_checked("quickstart")
    assert len(checks) == 4
    assert load_checked("quickstart")[1]


def test_problems_are_never_cached(checks):
    for _ in range(2):
        with pytest.raises(SpecError, match="model.width"):
            load_checked("quickstart", ["model.width=100000000000"])
    assert len(checks) == 2


def test_a_data_root_that_changes_checks_again(checks, tmp_path):
    root = tmp_path / "data"
    spec = ["dataset.name=cifar10", f"dataset.root={root}", "dataset.download=false"]
    with pytest.raises(SpecError, match="dataset.root") as missing:
        load_checked("quickstart", spec)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with pytest.raises(SpecError) as still:  # a new folder: checked again, same answer
        load_checked("quickstart", spec)
    assert len(checks) == 2 and str(still.value) == str(missing.value)
    listing = spec_checks.tree_listing(root)
    (folder / "data_batch_1").write_bytes(b"x")
    assert spec_checks.tree_listing(root) != listing


def test_a_data_root_of_too_many_files_is_not_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(spec_checks, "MAX_DATA_ENTRIES", 3)
    for i in range(4):
        (tmp_path / f"f{i}").write_text("x")
    assert spec_checks.tree_listing(tmp_path) is None
    assert spec_checks.tree_listing(tmp_path / "absent") == []


def test_a_spec_with_user_code_is_checked_every_time(checks, tmp_path):
    (tmp_path / "code" / "ownpkg_spec_checks").mkdir(parents=True)
    (tmp_path / "code" / "ownpkg_spec_checks" / "__init__.py").write_text("")
    for _ in range(2):
        spec, reused = load_checked("quickstart", [f"code={tmp_path / 'code'}"])
        assert not reused and spec.code
    assert len(checks) == 2


def test_a_plugin_model_registered_at_run_time_is_user_code(monkeypatch):
    from normlib.models import MODELS

    spec = validation.load_spec("quickstart")
    assert not validation.runs_user_code(spec)
    monkeypatch.setitem(MODELS._entries, "fully_connected", lambda **kwargs: None)
    assert validation.runs_user_code(spec)
