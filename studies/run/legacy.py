"""Module paths that pickled Ray Tune state of earlier normstudy versions names.

A study's saved Tuner (``tuner.pkl``) pickles its callbacks, and with them the MLflow tracker,
by module path. Studies started before normstudy 0.3 name ``studies.store.mlflow``, which
0.3 split into ``tracker``, ``queries`` and ``sqlite_wal`` (the old name shadowed the
``mlflow`` package); the alias lets ``resume`` read their state. Dropped in normstudy 0.4.
(The flat ``studies.spec`` / ``studies.tracking`` / ``studies.progress`` /
``studies.trainable`` modules serve the pickles of normstudy 0.1 the same way.)
"""

from __future__ import annotations

import importlib
import sys

RENAMED = {"studies.store.mlflow": "studies.store.tracker"}


def alias_renamed_modules() -> None:
    """Make every old module path of :data:`RENAMED` import as its new module."""
    for old, new in RENAMED.items():
        sys.modules.setdefault(old, importlib.import_module(new))
