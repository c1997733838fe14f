"""The embedded SQLite MLflow store in write-ahead-log mode (a process-wide SQLAlchemy hook)."""

from __future__ import annotations

import os
from typing import Any

_WAL_FILES: set[str] = set()


def write_ahead_log(uri: str) -> None:
    """Open the embedded SQLite store at ``uri`` in write-ahead-log mode, synchronous=NORMAL.

    SQLite's default journal writes and deletes a rollback file per transaction; with the
    WAL a commit appends to one file: MLflow's writes of a trial cost about a quarter less
    CPU (18 -> 14 ms on the 2-core bench machine), and the MLflow UI reading the file never
    blocks the study writing it. A crash of the process loses no committed write; a power
    loss may lose the last ones (``normstudy sync`` rewrites them from the results
    directory). Applied by a SQLAlchemy connect hook to connections of this file only.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine, make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        return
    if not _WAL_FILES:
        event.listen(Engine, "connect", _wal_on_connect)
    _WAL_FILES.add(os.path.realpath(database))


def _wal_on_connect(connection: Any, record: Any) -> None:
    if type(connection).__module__ != "sqlite3":
        return
    cursor = connection.cursor()
    try:
        files = {os.path.realpath(row[2]) for row in cursor.execute("PRAGMA database_list")
                 if row[1] == "main" and row[2]}  # fmt: skip
        if files & _WAL_FILES:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
