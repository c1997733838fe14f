"""The datasets of a whole study: which distinct ``dataset`` sections its trials read, and
their download, once, in the driver before any trial starts (trials only read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from studies.config.roots import FILE_DATASETS
from studies.config.space import configurations, is_finite, resolved_config
from studies.config.spec import CannotStart, StudySpec
from studies.trial.data import data_root, missing_files, train_splits
from studies.trial.torchvision_files import DownloadFailed, fetch, folder


def study_datasets(spec: StudySpec) -> list[dict[str, Any]]:
    """The distinct ``dataset`` sections of the study's trials (the base one for a study of
    continuous sweeps)."""
    configs = [resolved_config(spec, v) for v in configurations(spec)] if is_finite(spec) else [
        spec.trial_config()]  # fmt: skip
    found: dict[str, dict[str, Any]] = {}
    for config in configs:
        found.setdefault(repr(sorted(config["dataset"].items())), config["dataset"])
    return list(found.values())


def fetch_study_data(spec: StudySpec, say: Callable[[str], None] = print) -> None:
    """Download, or find, the files of every dataset the study's trials read with
    ``download: true``, once, in the driver, before any trial starts (trials only read).
    An unreachable source is CannotStart (exit 2): the URL, its own error, and the offline
    way."""
    done: set[tuple] = set()
    for options in study_datasets(spec):
        name = options["name"]
        key = (name, str(data_root(options)), bool(options.get("extra")))
        if not options.get("download") or name not in FILE_DATASETS or key in done:
            continue
        done.add(key)
        if not missing_files(name, options):
            continue  # found: torchvision's download would only check them again
        where = folder(name, data_root(options))
        say(f"dataset {name!r}: downloading into {where} (once, before any trial starts)")
        try:
            fetch(name, data_root(options), [*train_splits(options), "test"])
        except DownloadFailed as err:
            raise CannotStart("dataset.download", f"{err}; without internet access, copy the "
                              f"files to {where} (torchvision's layout, README: Datasets) and "
                              "set dataset.download: false") from None
