"""Data roots made absolute once, where a spec is loaded.

Trials run in Ray's per-trial working directories, a resumed study may be resumed from any
folder and a cluster node has its own working directory: a relative ``dataset.root`` would
name a different folder in each. So the loader (:mod:`studies.config.load`) makes every root
absolute (``~`` expanded) before the spec is validated, and ``study.yaml`` keeps it so:

* a root written in a spec file is relative to that file's folder (like ``code:``);
* a root given with ``--set``, and a catalog study's, is relative to the working directory;
* a file-based dataset (CIFAR-10/100, SVHN, MNIST, Fashion-MNIST) without a root reads
  ``data/`` in the working directory (:data:`DEFAULT_ROOT`).

Roots are found in the ``dataset`` section, in sweeps of ``dataset.root`` or of whole
``dataset`` sections, in explicit arms and in baselines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from studies.config.datasets import DATASET_INFO, OFFLINE

DEFAULT_ROOT = "data"
FILE_DATASETS = tuple(name for name in DATASET_INFO if name not in OFFLINE)
"""Built-in datasets read from files under ``dataset.root``."""


def absolute_root(root: str, base: Path) -> str:
    """``root`` with ``~`` expanded, made absolute against ``base`` (a folder), normalized
    (symbolic links are kept: a shared mount may be reached through one)."""
    if "://" in root:
        return root  # a URI is no local path; the loader names it if it cannot read it
    path = Path(root).expanduser()
    return os.path.normpath(path if path.is_absolute() else Path(base).absolute() / path)


def resolve_roots(data: dict[str, Any], base: Path, default: Path | None = None) -> None:
    """Make every relative root in spec ``data`` absolute against ``base``, in place; with
    ``default``, a file-based dataset section without a root gets ``default``."""

    def section(value: Any, needs_root: bool) -> None:
        if not isinstance(value, dict):
            return
        if isinstance(value.get("root"), str):
            value["root"] = absolute_root(value["root"], base)
        elif default is not None and value.get("root") is None and needs_root:
            value["root"] = str(default)

    def assignment(values: Any) -> None:
        if not isinstance(values, dict):
            return
        if isinstance(values.get("dataset.root"), str):
            values["dataset.root"] = absolute_root(values["dataset.root"], base)
        if isinstance(values.get("dataset"), dict):
            nested = values["dataset"]
            if isinstance(nested.get("root"), str):
                nested["root"] = absolute_root(nested["root"], base)

    if data.get("dataset") is None and default is not None and _base_needs_root(data):
        data["dataset"] = {}
    section(data.get("dataset"), _base_needs_root(data))
    sweep = data.get("sweep")
    if isinstance(sweep, dict):
        for kind, values in _domain_lists(sweep.get("dataset.root")):
            sweep["dataset.root"][kind] = [
                absolute_root(v, base) if isinstance(v, str) else v for v in values
            ]
        for _, values in _domain_lists(sweep.get("dataset")):
            for value in values:  # a whole section replaces the base one: it needs its root
                section(value, isinstance(value, dict) and value.get("name") in FILE_DATASETS)
    for arm in data.get("arms") or []:
        assignment(arm)
    assignment(data.get("baseline"))
    confirm = data.get("confirm")
    if isinstance(confirm, dict):
        assignment(confirm.get("baseline"))


def _domain_lists(domain: Any) -> list[tuple[str, list[Any]]]:
    """The value lists of a grid / choice sweep domain (none for other domains)."""
    if not isinstance(domain, dict):
        return []
    return [(kind, values) for kind, values in domain.items()
            if kind in ("grid", "choice") and isinstance(values, list)]  # fmt: skip


def _base_needs_root(data: dict[str, Any]) -> bool:
    """Whether some trial of the study reads a file-based dataset through the base
    ``dataset`` section's root: its own name, a swept ``dataset.name`` or an arm's."""
    dataset = data.get("dataset")
    dataset = dataset if isinstance(dataset, dict) else {}
    names = [dataset.get("name", "digits")]
    sweep = data.get("sweep")
    sweep = sweep if isinstance(sweep, dict) else {}
    names += [v for _, values in _domain_lists(sweep.get("dataset.name")) for v in values]
    for arm in data.get("arms") or []:
        if isinstance(arm, dict):
            names.append(arm.get("dataset.name"))
            nested = arm.get("dataset")
            names.append(nested.get("name") if isinstance(nested, dict) else None)
    return any(name in FILE_DATASETS for name in names)
