"""Which files under a folder hold a given byte string, read by a child process.

A test that holds an open SQLite connection (an in-process ``MlflowClient`` on
``sqlite:///.../mlflow.db``) must not open and close that database's files itself: closing
any descriptor of a file drops every POSIX lock the process holds on it, so the next
``normstudy`` command takes the write-ahead-log index for unused, rebuilds it under the test's
connection, and the test then reads "database disk image is malformed". A child process holds
its own locks, and its closes touch no one else's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCAN = """
import json, pathlib, sys
root, needles = sys.argv[1], json.loads(sys.argv[2])
found = []
for path in sorted(pathlib.Path(root).rglob("*")):
    if path.is_file():
        data = path.read_bytes()
        found += [[str(path), n] for n in needles if n.encode() in data]
print(json.dumps(found))
"""


def files_holding(root: Path, needles: list[str]) -> list[tuple[Path, str]]:
    """(file, needle) for each needle found in each file under ``root``."""
    done = subprocess.run([sys.executable, "-c", _SCAN, str(root), json.dumps(needles)],
                          capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    return [(Path(path), needle) for path, needle in json.loads(done.stdout)]
