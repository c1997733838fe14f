"""Updates for MLflow that wait while the tracking server is away.

The Ray Tune callback never writes to MLflow directly: it queues each update, a callable
such as ``partial(tracker.log_epoch, trial_id, config, result, stamp)``, and the backlog
delivers the queue in order. When the server does not answer, training goes on; the
backlog is retried at most every ``RETRY_INTERVAL_S`` and delivered once the server is back.
At the end of a study it is retried for ``NORMSTUDY_MLFLOW_RETRY_S`` seconds (default 120);
what is still undelivered then is announced with a warning naming ``normstudy sync``, which
re-uploads everything from the results directory.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from studies.config.secrets import redact
from studies.store.mlflow import StudyTracker

RETRY_ENV = "NORMSTUDY_MLFLOW_RETRY_S"  # how long the end of a study waits for MLflow
DEFAULT_RETRY_S = 120.0
RETRY_INTERVAL_S = 3.0  # while MLflow is down, how often the backlog is retried


@dataclass(frozen=True)
class Update:
    """One queued write; ``trial_id`` names the trial it concerns (None: the study's)."""

    deliver: Callable[[], Any]
    trial_id: str | None


class Backlog:
    """An in-order queue of MLflow updates for one study's tracker."""

    def __init__(self, tracker: StudyTracker):
        self.tracker = tracker
        self.queue: collections.deque[Update] = collections.deque()
        self.down_since: float | None = None  # monotonic time of the first failed delivery
        self.last_error = ""
        self._next_try = 0.0

    def submit(self, action: Callable[..., Any], *args: Any) -> None:
        """Queue ``action(*args)`` (the first argument, if any, is the trial id) and try to
        deliver the queue."""
        trial_id = str(args[0]) if args else None
        self.queue.append(Update(partial(action, *args), trial_id))
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Deliver the queue in order; True when it is empty. While MLflow is down, tries at
        most every ``RETRY_INTERVAL_S`` unless ``force``."""
        if not self.queue:
            return True
        if self.down_since is not None and not force and time.monotonic() < self._next_try:
            return False
        delivered = 0
        while self.queue:
            try:
                self.queue[0].deliver()
            except Exception as err:  # any failure: keep the update, retry later
                self._failed(err)
                return False
            self.queue.popleft()
            delivered += 1
        if self.down_since is not None:
            seconds = time.monotonic() - self.down_since
            say(f"MLflow at {self.tracker.uri} is reachable again after {seconds:.0f}s; "
                f"delivered {delivered} queued update(s)")  # fmt: skip
            self.down_since = None
        return True

    def _failed(self, err: Exception) -> None:
        self.tracker.mark_stale()  # the write may have landed although its answer was lost
        self.last_error = f"{type(err).__name__}: {first_line(err)}"
        self._next_try = time.monotonic() + RETRY_INTERVAL_S
        if self.down_since is None:
            self.down_since = time.monotonic()
            say(f"warning: MLflow at {self.tracker.uri} did not take an update "
                f"({self.last_error}); training goes on, updates are kept and retried every "
                f"{RETRY_INTERVAL_S:.0f}s")  # fmt: skip

    def drain(self, seconds: float) -> bool:
        """Retry the queue for up to ``seconds``; True when everything was delivered."""
        deadline = time.monotonic() + seconds
        while not self.flush(force=True):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        return True

    def undelivered_warning(self, seconds: float) -> str:
        spec, uri = self.tracker.spec, self.tracker.uri
        trials = {update.trial_id for update in self.queue if update.trial_id is not None}
        return (
            f"warning: MLflow at {uri} is still unreachable after retrying for "
            f"{seconds:.0f}s ({self.last_error}); {len(self.queue)} update(s) of "
            f"{len(trials)} trial(s) were not delivered. Nothing is lost: the results directory "
            "holds every reported metric. Once the server is back, upload them with "
            f"`normstudy sync {spec.name} --storage {spec.storage}"
            + (f" --tracking-uri {redact(uri)}`" if spec.tracking.uri else "`")
        )


def retry_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S)))
    except ValueError:
        return DEFAULT_RETRY_S


def first_line(err: Exception) -> str:
    text = redact(str(err)).strip().splitlines()
    return (text[0] if text else "")[:300]


def say(message: str) -> None:
    print(f"[normstudy] {message}", file=sys.stderr, flush=True)
