"""The mark of a finished study: ``resume`` answers from it without starting Ray.

When a study's last stage ends with every trial finished (none errored, none unfinished) and
its comparison and answers are made, the driver writes ``.normstudy-finished.json`` into each
stage's folder (the confirm stage's first, the search stage's last, each atomically). A mark
holds what the study's end printed and, for its stage and every later one, a digest of what
says whether the study is finished: ``study.yaml`` and its checksum, ``sequential.json``, and
the name, size and modification time of the newest Ray Tune experiment state of the stage and
of each of its looks. A mark counts only while every digest still matches: a study run again,
resumed, edited or half-copied reads as unmarked, and ``resume`` does what it always did.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from studies.store.layout import FINGERPRINT_FILE, SPEC_FILE
from studies.store.looks import SEQUENTIAL_FILE
from studies.store.results import experiment_dirs

MARK_FILE = ".normstudy-finished.json"
VERSION = 1


def folder_digest(folder: Path) -> str:
    """The digest of what says a stage's folder is finished (see the module docstring)."""
    digest = hashlib.sha256()
    for name in (SPEC_FILE, FINGERPRINT_FILE, SEQUENTIAL_FILE):
        path = folder / name
        digest.update(f"{name}:".encode() + (path.read_bytes() if path.is_file() else b"-"))
    for directory in experiment_dirs(folder):
        states = sorted(directory.glob("experiment_state-*.json"))
        stat = states[-1].stat() if states else None
        entry = f"{states[-1].name}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "-"
        digest.update(f"\n{directory.relative_to(folder)}:{entry}".encode())
    return digest.hexdigest()


def write_marks(stages: list[Path], printed: str) -> None:
    """Mark every stage of a finished study (``stages``: its folders, in order), the last
    first, each mark covering its stage and the later ones."""
    for i in reversed(range(len(stages))):
        covered = [{"folder": f.name, "digest": folder_digest(f)} for f in stages[i:]]
        data = {"version": VERSION, "stages": covered, "printed": printed}
        _write_atomically(stages[i] / MARK_FILE, json.dumps(data, indent=1) + "\n")


def read_mark(folder: Path) -> str | None:
    """What the end of the finished study in ``folder`` printed, if its mark still holds
    (see the module docstring); None if the study is not known to be finished."""
    try:
        data: Any = json.loads((folder / MARK_FILE).read_text(encoding="utf-8"))
        if data.get("version") != VERSION or not data["stages"]:
            return None
        for i, stage in enumerate(data["stages"]):  # the first is the marked folder itself
            if folder_digest(folder.parent / stage["folder"] if i else folder) != stage["digest"]:
                return None
        return str(data["printed"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".finished-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
