"""A study whose folder is deleted while it runs stops at once, with one message.

Without this, every trial that reports after the deletion fails on Ray Tune's storage
check, one traceback each, until the study has run through all of them. The guard looks
for the study's ``study.yaml`` at most once a second (a ``stat`` or two) and, when it is
gone, stops the study the way Ctrl-C does; the runner then reports the deletion (exit 2).
It looks for the file, not the folder: Ray Tune recreates a stub experiment folder as soon
as a trial reports into the deleted one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from studies.store.backlog import say
from studies.store.layout import SPEC_FILE

CHECK_EVERY_S = 1.0
_deleted: set[str] = set()  # study folders this process saw deleted (Ray recreates a stub)


def study_file_gone(experiment: Path) -> bool:
    """Whether the ``study.yaml`` of the study running the experiment ``experiment`` is gone:
    it lies in the experiment folder, or in its parent for a look of a sequential study."""
    return not any((folder / SPEC_FILE).is_file() for folder in (experiment, experiment.parent))


def was_deleted(folder: Path) -> bool:
    """Whether the guard stopped the study in ``folder`` because the folder was deleted."""
    return str(Path(folder).resolve()) in _deleted


class StudyFolderGuard(Callback):
    def __init__(self) -> None:
        self._next_check = 0.0
        self.tripped = False

    def __getstate__(self) -> dict:  # pickled into Ray Tune's experiment state
        return {}

    def __setstate__(self, state: dict) -> None:
        StudyFolderGuard.__init__(self)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        now = time.monotonic()
        if self.tripped or not trials or now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        folder = trials[0].remote_experiment_path  # the study folder, wherever it now is
        if "://" in folder or not study_file_gone(Path(folder)):
            return
        self.tripped = True
        _deleted.add(str(Path(folder).resolve()))
        say(f"the study folder {folder} was deleted while the study ran; stopping it")
        os.kill(os.getpid(), signal.SIGINT)  # Ray Tune's own graceful stop
