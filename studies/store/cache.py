"""A small on-disk cache of what commands that do not train would otherwise recompute.

An entry is found by a key that hashes everything its value depends on: the caller's inputs
(a spec file's text), the normstudy sources (the size and modification time of every file of
``studies/`` and ``normlib/``: an edit or an upgrade invalidates every entry) and the machine
facts a check reads (memory, CPUs). The cache lives in ``$NORMSTUDY_CACHE_DIR``, else
``$XDG_CACHE_HOME/normstudy``, else ``~/.cache/normstudy``; a folder that cannot be written
only costs the recomputation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGES = ("studies", "normlib")
SOURCE_SUFFIXES = (".py", ".yaml")


def cache_dir() -> Path:
    """Where entries are kept (see the module docstring)."""
    if os.environ.get("NORMSTUDY_CACHE_DIR"):
        return Path(os.environ["NORMSTUDY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "normstudy"


ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def source_fingerprint() -> str:
    """:func:`fingerprint_of` normstudy's own sources (once per process)."""
    return fingerprint_of(ROOT)


def fingerprint_of(root: Path) -> str:
    """A digest of the name, size and modification time of every source file of the
    packages under ``root``."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES:
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n"
                              .encode())  # fmt: skip
    return digest.hexdigest()


def machine_facts() -> dict[str, int]:
    """What validation reads of this machine (the memory a trial may use, CPUs)."""
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"memory": pages * os.sysconf("SC_PAGE_SIZE") if pages else 0,
            "cpus": os.cpu_count() or 0}  # fmt: skip


def entry_key(kind: str, inputs: Any) -> str:
    """The key of an entry of ``kind`` computed from ``inputs`` (any JSON value)."""
    text = json.dumps([kind, inputs, source_fingerprint(), machine_facts()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cached(kind: str, inputs: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON value, read from the cache when ``kind`` and ``inputs`` (and the
    sources and machine) are those it was computed from, else computed and stored."""
    path = cache_dir() / kind / f"{entry_key(kind, inputs)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["value"]
    except (OSError, ValueError, KeyError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         encoding="utf-8") as fh:  # fmt: skip
            json.dump({"value": value}, fh)
        os.replace(fh.name, path)  # whole or not at all, whoever else writes it
    except OSError:
        with contextlib.suppress(OSError, NameError):
            os.unlink(fh.name)
    return value
