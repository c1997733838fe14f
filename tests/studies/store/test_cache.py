"""The on-disk cache: a hit returns what was stored; any change of what an entry depends on
(its inputs, a source file, the machine) computes it again."""

from __future__ import annotations

import os

import pytest

from studies.store import cache


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []

    def compute(value=7):
        calls.append(value)
        return {"rows": [value, "x"]}

    return calls, compute


def test_a_hit_returns_the_stored_value_without_computing(store):
    calls, compute = store
    assert cache.cached("k", ["spec text"], compute) == {"rows": [7, "x"]}
    assert cache.cached("k", ["spec text"], compute) == {"rows": [7, "x"]}
    assert calls == [7]


def test_other_inputs_kind_sources_or_machine_compute_again(store, monkeypatch):
    calls, compute = store
    cache.cached("k", ["spec text"], compute)
    cache.cached("k", ["spec text, edited"], compute)
    cache.cached("other", ["spec text"], compute)
    assert len(calls) == 3
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "an edited source tree")
    cache.cached("k", ["spec text"], compute)
    assert len(calls) == 4
    monkeypatch.setattr(cache, "machine_facts", lambda: {"memory": 1, "cpus": 1})
    cache.cached("k", ["spec text"], compute)
    assert len(calls) == 5
    cache.cached("k", ["spec text"], compute)  # now stored for this machine too
    assert len(calls) == 5


def test_the_fingerprint_follows_every_source_file(tmp_path):
    package = tmp_path / "studies"
    package.mkdir()
    module = package / "a.py"
    module.write_text("x = 1\n")
    (package / "notes.txt").write_text("not a source")
    first = cache.fingerprint_of(tmp_path)
    (package / "notes.txt").write_text("still not a source, longer")
    assert cache.fingerprint_of(tmp_path) == first
    module.write_text("x = 22\n")  # size
    second = cache.fingerprint_of(tmp_path)
    assert second != first
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # an edit in place
    assert cache.fingerprint_of(tmp_path) != second
    (package / "b.yaml").write_text("name: b\n")  # a new catalog file
    assert cache.fingerprint_of(tmp_path) not in (first, second)


def test_an_unwritable_cache_only_costs_the_computation(store, monkeypatch, tmp_path):
    calls, compute = store
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NORMSTUDY_CACHE_DIR", str(blocker / "cache"))  # under a file
    assert cache.cached("k", [1], compute) == {"rows": [7, "x"]}
    assert cache.cached("k", [1], compute) == {"rows": [7, "x"]}
    assert calls == [7, 7]
