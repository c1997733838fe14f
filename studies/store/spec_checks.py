"""A spec's checks, read from normstudy's cache (:mod:`studies.store.cache`) when the same
spec passed them before: ``validate`` answers without loading torch.

What :mod:`studies.trial.validation` checks with torch (the registry, the models built on the
meta device, the dataset files) is a pass or a list of problems that depends on the spec's
text, normstudy's and normlib's sources, torch, the machine's memory and, for a dataset read
from files, what lies under its root. The key of a pass holds all of these (the files by
name, size and modification time), so any change checks again. A spec that runs the user's
code (a ``code:`` folder, a component that is not built in) is always checked afresh, and so
is one whose data root holds too many files to list quickly. Problems are never cached: a
spec with problems reports them as it did.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from studies.config.load import parse_config, read_spec
from studies.config.roots import FILE_DATASETS
from studies.config.space import configurations, is_finite, resolved_config
from studies.config.spec import StudySpec
from studies.store.cache import cached

KIND = "spec-checks"
MAX_DATA_ENTRIES = 5000  # a data root listing longer than this is not worth a cache key


def load_checked(spec: str | Path, overrides: list[str] | None = None, smoke: bool = False,
                 data_here: bool = True,
                 machine: bool = False) -> tuple[StudySpec, bool]:  # fmt: skip
    """As :func:`studies.trial.validation.load_spec`, and whether the torch checks were
    skipped (the spec passed them before: it names no user component)."""
    data = read_spec(spec, overrides, smoke)
    config = parse_config(data)  # a config problem: SpecError here, as in the full checks
    inputs = check_inputs(data, config, data_here)
    checked: list[StudySpec] = []

    def check() -> bool:
        from studies.trial.validation import parse_spec, runs_user_code

        checked.append(parse_spec(data, data_here, machine))
        return not runs_user_code(checked[0])

    if inputs is None:
        check()
    elif cached(KIND, inputs, check) and not checked:
        if machine:
            from studies.trial.hardware import check_machine

            check_machine(config)
        return config, True
    if checked:
        return checked[0], False
    from studies.trial.validation import parse_spec

    return parse_spec(data, data_here, machine), False


def check_inputs(data: dict[str, Any], spec: StudySpec, data_here: bool) -> list[Any] | None:
    """What the checks' verdict depends on beyond the sources and the machine; None when it
    depends on more than can be listed (user code, a data root of too many files)."""
    if spec.code is not None:
        return None
    listing: list[Any] = []
    try:
        roots = data_roots(spec) if data_here else []
    except ValueError:  # an arm the full checks name
        return None
    for root in roots:
        files = tree_listing(Path(root))
        if files is None:
            return None
        listing.append([root, files])
    text = json.dumps(data, sort_keys=True, default=repr)
    return [text, data_here, listing, metadata.version("torch")]


def data_roots(spec: StudySpec) -> list[str]:
    """The roots of the study's datasets that are read from files, in every arm and setting."""
    configs = [spec.trial_config()]
    if is_finite(spec):
        configs += [resolved_config(spec, values) for values in configurations(spec)]
    return sorted({str(c["dataset"].get("root")) for c in configs
                   if c["dataset"]["name"] in FILE_DATASETS})  # fmt: skip


def tree_listing(root: Path) -> list[list[Any]] | None:
    """Every entry under ``root``: relative path, size, modification time (empty if there is
    no such folder); None past :data:`MAX_DATA_ENTRIES`."""
    found: list[list[Any]] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in [*dirs, *sorted(files)]:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                stat = None
            found.append([str(path.relative_to(root)), stat.st_size if stat else -1,
                          stat.st_mtime_ns if stat else -1])  # fmt: skip
            if len(found) > MAX_DATA_ENTRIES:
                return None
    return found
