"""On disk, a sequential study: one Ray Tune experiment per look, and the decisions so far.

``<study>/look-<k>/`` (k = 1..K) is look k's experiment (its trials: the seeds of that look
for the arms still undecided and the baseline); ``<study>/sequential.json`` records the
looks completed and every arm's decisions. It is replaced atomically (write a temporary
file, fsync, rename) after a look ends, so a driver killed at any moment leaves either the
old or the new record, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from studies.store.results import LOOK_PREFIX

SEQUENTIAL_FILE = "sequential.json"


def look_dir(folder: Path, look: int) -> Path:
    """The experiment directory of look ``look`` (1-based)."""
    return folder / f"{LOOK_PREFIX}{look}"


def read_state(folder: Path) -> dict[str, Any]:
    """The recorded state (empty before the first look ended)."""
    path = folder / SEQUENTIAL_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def completed_looks(folder: Path) -> int:
    """Looks whose decisions are recorded."""
    value = read_state(folder).get("completed_looks", 0)
    return value if isinstance(value, int) and value >= 0 else 0


def write_state(folder: Path, data: dict[str, Any]) -> Path:
    """Replace ``sequential.json`` atomically; returns its path."""
    path = folder / SEQUENTIAL_FILE
    handle, temporary = tempfile.mkstemp(prefix=".sequential-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=False, allow_nan=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
