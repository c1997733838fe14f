"""Progress a person can follow: trial counts, the best so far and an ETA."""

from __future__ import annotations

import collections
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from studies.run.resources import ResourceWatch
from studies.store.results import error_cause

DONE = ("TERMINATED", "ERROR")
WINDOW = 50  # trial ends the ETA's rate is measured over
IDLE_NOTE_S = 5.0  # no trial running this long with trials left: the line says it waits


class ProgressCallback(Callback):
    """Prints a line when a trial ends, and at most every ``every`` seconds otherwise.

    ETA = trials left / the recent rate of trial ends (the last ``window`` ends of this
    session), so a study whose pace changes (trials that get longer, a node that joins or
    leaves) gets the ETA of its current pace, not of its average since the start.

    Counts are kept from the trial events, so nothing here scans the trial list per trial
    or per step: the list is read once, at the first step (a resumed study's finished
    trials).

    With a ``watch`` (:class:`studies.run.resources.ResourceWatch`), a study with no trial
    running says what it waits for ("waiting for resources: 1 GPU per trial, the cluster has
    0 now") and, once ``watch.wait_s`` seconds have passed so, stops like Ctrl-C (Ray Tune
    saves its state; ``normstudy resume`` continues it). An errored or retried trial's line
    carries its cause; the traceback stays in its ``error.txt``.
    """

    def __init__(self, total: int, every: float = 15.0, stream: TextIO | None = None,
                 window: int = WINDOW, watch: ResourceWatch | None = None) -> None:
        self.total, self.every, self.stream, self.watch = total, every, stream, watch
        self._idle_since: float | None = None  # since when no trial has been running
        self.stopped_waiting = False
        self._started: float | None = None
        self._last = 0.0
        self._ends = RecentRate(window)
        self._done: set[str] = set()  # TERMINATED or ERROR
        self._errored: set[str] = set()
        self._running: set[str] = set()
        self._seen = 0  # trials Ray Tune has created (the study's total may be a guess)
        self._counted = False

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total, "every": self.every, "watch": self.watch}

    def __setstate__(self, state: dict[str, Any]) -> None:
        ProgressCallback.__init__(self, state["total"], state["every"], watch=state.get("watch"))

    def _print(self, text: str) -> None:
        print(f"[normstudy] {text}", file=self.stream or sys.stdout, flush=True)

    def _count(self, trials: list[Trial]) -> None:
        """Once: the trials that ended before this session (a resumed study)."""
        if self._counted:
            return
        self._counted = True
        for t in trials:
            if t.status in DONE:
                self._done.add(t.trial_id)
                if t.status == "ERROR":
                    self._errored.add(t.trial_id)
            elif t.status == "RUNNING":
                self._running.add(t.trial_id)
        self._seen = max(self._seen, len(trials))

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._count(trials)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self._count(trials)
        self._running.add(trial.trial_id)
        self._seen = max(self._seen, len(trials))  # len() of a list is O(1)

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self._running.discard(trial.trial_id)  # pending again, for a retry
        self._print(f"trial {trial.trial_id} failed: {_cause(trial)}; retrying it from its "
                    "last checkpoint")  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self._finished(trials, trial, "finished")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                         **info: Any) -> None:
        self._errored.add(trial.trial_id)
        self._finished(trials, trial, "ERRORED", f": {_cause(trial)}")

    def _finished(self, trials: list[Trial], trial: Trial, how: str, cause: str = "") -> None:
        self._count(trials)
        self._running.discard(trial.trial_id)
        if trial.trial_id not in self._done:
            self._done.add(trial.trial_id)
            self._ends.add(time.time())
        result = trial.last_result or {}
        detail = ", ".join(
            f"{k}={result[k]:.4g}" for k in ("epoch", "val_acc", "test_acc") if k in result
        )
        if result.get("diverged"):
            detail += ", DIVERGED"
        self._print(f"trial {trial.trial_id} {how} ({detail}){cause}")
        self._status(trials, force=True)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._status(trials)
        self._watch_idle(len(trials))

    def _idle_seconds(self, now: float) -> float:
        """Seconds no trial has been running while trials are left (0: one runs)."""
        return 0.0 if self._idle_since is None else now - self._idle_since

    def _watch_idle(self, created: int) -> None:
        """Stop the study like Ctrl-C after ``watch.wait_s`` seconds with no trial running."""
        now = time.time()
        left = len(self._done) < max(self.total, self._seen, created)
        if self._running or not left:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        watch = self.watch
        if watch is None or self.stopped_waiting or self._idle_seconds(now) < watch.wait_s:
            return
        self.stopped_waiting = True
        self._print(f"no trial could start for {watch.wait_s:g}s (resources.wait_s; "
                    f"{watch.text()}): stopping the study, its state saved")  # fmt: skip
        os.kill(os.getpid(), signal.SIGINT)  # Ray Tune's own graceful stop, as Ctrl-C

    def _status(self, trials: list[Trial], force: bool = False) -> None:
        now = time.time()
        if self._started is None:
            self._started = now
        if not force and now - self._last < self.every:
            return
        self._last = now
        self._count(trials)
        done, running, errored = len(self._done), len(self._running), len(self._errored)
        total = max(self.total, self._seen, len(trials))
        pending = max(0, total - done - running)
        eta = ""
        seconds = self._ends.seconds_left(total - done, now)
        if seconds is not None and done < total:
            eta = f", ETA {seconds:.0f}s"
        errors = f", {errored} errored" if errored else ""
        elapsed = now - self._started
        waiting = ""
        if self.watch is not None and not running and self._idle_seconds(now) >= IDLE_NOTE_S:
            stop_in = max(0.0, self.watch.wait_s - self._idle_seconds(now))
            waiting = f"; {self.watch.text()} (stops in {stop_in:.0f}s if none can start)"
        self._print(
            f"{done}/{total} done, {running} running, {pending} pending{errors}{waiting}"
            f" [{elapsed:.0f}s{eta}]"
        )


def _cause(trial: Trial) -> str:
    """The cause of a trial's last failure, from its ``error.txt``."""
    path = getattr(trial, "error_file", None)
    try:
        return error_cause(Path(path).read_text(errors="replace")) if path else "unknown error"
    except OSError:
        return "unknown error (no error.txt)"


class RecentRate:
    """The rate of recent events (trial ends) from their times: over the last ``window``
    events, ``(events - 1) / (last - first)``; once the time since the last event is longer
    than the recent mean gap (a study that slowed down), that open gap counts too:
    ``(events - 1) / (now - first)``."""

    def __init__(self, window: int = WINDOW):
        self.times: collections.deque[float] = collections.deque(maxlen=max(2, window))

    def add(self, at: float) -> None:
        self.times.append(at)

    def per_second(self, now: float | None = None) -> float | None:
        if len(self.times) < 2:
            return None
        span = self.times[-1] - self.times[0]
        gaps = len(self.times) - 1
        if now is not None and span > 0 and now - self.times[-1] > span / gaps:
            span = now - self.times[0]  # slower than usual since the last end
        return gaps / span if span > 0 else None

    def seconds_left(self, left: int, now: float | None = None) -> float | None:
        """Seconds until ``left`` more events at the recent rate (None: not known yet)."""
        rate = self.per_second(now)
        return left / rate if rate else None
