"""Updates for MLflow that wait while the tracking server is away.

The Ray Tune callback never writes to MLflow directly: it queues each update, a callable
such as ``partial(tracker.end_study, status)`` or a trial's
:class:`~studies.store.tracker.TrialWrite`, and the backlog delivers the queue in order.
When the server does not answer, training goes on; the backlog is retried at most every
``RETRY_INTERVAL_S`` and delivered once the server is back.
At the end of a study it is retried for ``NORMSTUDY_MLFLOW_RETRY_S`` seconds (default 120);
what is still undelivered then is announced with a warning naming ``normstudy sync``, which
re-uploads everything from the results directory.

With ``background=True`` (the Ray Tune callback) a thread delivers the queue, so the
driver's loop only appends to it: a slow or distant tracking server never holds up the
processing of results. One delivery runs at a time (a lock), in order, so the tracker is
never used by two threads at once; ``drain`` delivers what is left on the calling thread.

A trial's writes (:class:`studies.store.tracker.TrialWrite`: start, epochs, tags, end) that
wait in the queue together (the delivery thread lets them gather for ``LINGER_S``) are
delivered merged, in as few MLflow calls as its limits allow:
with an embedded SQLite store each call costs milliseconds of the driver's CPU, which a
study of many short trials would otherwise spend several times per trial.
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from studies.config.secrets import redact
from studies.store.tracker import StudyTracker, TrialWrite

RETRY_ENV = "NORMSTUDY_MLFLOW_RETRY_S"  # how long the end of a study waits for MLflow
DEFAULT_RETRY_S = 120.0
RETRY_INTERVAL_S = 3.0  # while MLflow is down, how often the backlog is retried
LINGER_S = 0.5  # the delivery thread lets updates gather this long: whole trials merge
MERGE_WINDOW = 512  # how far behind the head the queue is searched for the same trial's writes


@dataclass(frozen=True)
class Update:
    """One queued write; ``trial_id`` names the trial it concerns (None: the study's)."""

    deliver: Callable[[], Any]
    trial_id: str | None
    write: TrialWrite | None = None  # a trial's write: merged with the ones behind it


class Backlog:
    """An in-order queue of MLflow updates for one study's tracker."""

    def __init__(self, tracker: StudyTracker, background: bool = False):
        self.tracker = tracker
        self.queue: collections.deque[Update] = collections.deque()
        self.down_since: float | None = None  # monotonic time of the first failed delivery
        self.last_error = ""
        self._next_try = 0.0
        self.seconds = 0.0  # wall time spent delivering (on whichever thread)
        self.submit_seconds = 0.0  # time the driver spent in submit (queuing, or delivering)
        self.delivered = 0
        self.background = background
        self._delivering = threading.Lock()  # one delivery at a time, in order
        self._mutex = threading.Lock()  # the queue changes under it (appends, merged removals)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, action: Callable[..., Any], *args: Any) -> None:
        """Queue ``action(*args)`` (the first argument, if any, is the trial id) and try to
        deliver the queue (in the background: wake the delivery thread)."""
        trial_id = str(args[0]) if args else None
        self._enqueue(Update(partial(action, *args), trial_id))

    def submit_write(self, trial_id: str, write: TrialWrite) -> None:
        """Queue a write into the trial's run (merged with its neighbours at delivery)."""
        trial_id = str(trial_id)
        deliver = partial(self.tracker.write_trial, trial_id, write)
        self._enqueue(Update(deliver, trial_id, write))

    def _enqueue(self, update: Update) -> None:
        started = time.perf_counter()
        with self._mutex:
            self.queue.append(update)
        self.flush()
        self.submit_seconds += time.perf_counter() - started

    def _kick(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._deliver_forever, daemon=True,
                                            name="normstudy-mlflow-backlog")  # fmt: skip
            self._thread.start()
        with self._wake:
            self._wake.notify()

    def _deliver_forever(self) -> None:
        while not self._closed:
            with self._wake:
                if not self.queue:
                    self._wake.wait(1.0)
                    continue
                lingered = time.monotonic() + LINGER_S  # new updates do not cut it short,
                while not self._closed and time.monotonic() < lingered:  # close() does
                    self._wake.wait(lingered - time.monotonic())
            if not self._flush_locked(force=False):  # MLflow is down: wait for the next try
                with self._wake:
                    self._wake.wait(max(0.05, self._next_try - time.monotonic()))

    def close(self) -> None:
        """Stop the delivery thread (what is queued stays queued)."""
        self._closed = True
        with self._wake:
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def flush(self, force: bool = False) -> bool:
        """Deliver the queue in order; True when it is empty. While MLflow is down, tries at
        most every ``RETRY_INTERVAL_S`` unless ``force``. In the background, only ``force``
        delivers on the calling thread; otherwise the delivery thread is woken."""
        if self.background and not force:
            if self.queue:
                self._kick()
            return not self.queue
        return self._flush_locked(force)

    def _flush_locked(self, force: bool) -> bool:
        with self._delivering:
            return self._flush(force)

    def _flush(self, force: bool) -> bool:
        if not self.queue:
            return True
        if self.down_since is not None and not force and time.monotonic() < self._next_try:
            return False
        delivered, started = 0, time.perf_counter()
        while self.queue:
            head, merged = self._merged_head()
            try:
                head.deliver()
            except Exception as err:  # any failure: keep the update(s), retry later
                self.seconds += time.perf_counter() - started
                self._failed(err, head.trial_id)
                return False
            with self._mutex:
                self.queue.popleft()
                if merged:
                    gone = {id(update) for update in merged}
                    self.queue = collections.deque(u for u in self.queue if id(u) not in gone)
            delivered += 1 + len(merged)
            self.delivered += 1 + len(merged)
        self.seconds += time.perf_counter() - started
        if self.down_since is not None:
            seconds = time.monotonic() - self.down_since
            say(f"MLflow at {self.tracker.uri} is reachable again after {seconds:.0f}s; "
                f"delivered {delivered} queued update(s)")  # fmt: skip
            self.down_since = None
        return True

    def _merged_head(self) -> tuple[Update, list[Update]]:
        """The head of the queue, with the same trial's writes behind it folded in (up to its
        end, or to the first other update of that trial), and the updates folded in."""
        with self._mutex:
            head = self.queue[0]
            if head.write is None or head.trial_id is None:  # a write always names its trial
                return head, []
            write, merged = head.write, []
            for update in itertools.islice(self.queue, 1, MERGE_WINDOW):
                if update.trial_id != head.trial_id:
                    continue
                if update.write is None or not write.merges(update.write):
                    break
                write = write.then(update.write)
                merged.append(update)
        if not merged:
            return head, []
        deliver = partial(self.tracker.write_trial, head.trial_id, write)
        return Update(deliver, head.trial_id, write), merged

    def _failed(self, err: Exception, trial_id: str | None = None) -> None:
        # The write may have landed although its answer was lost: the tracker reads that
        # trial's run again (one query; None: the study's, every run) before its next write.
        self.tracker.mark_stale(trial_id)
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
            f"warning: MLflow at {redact(uri)} is still unreachable after retrying for "
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
