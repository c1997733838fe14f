"""Progress a person can follow: trial counts, the best so far and an ETA."""

from __future__ import annotations

import collections
import sys
import time

from ray.tune import Callback

DONE = ("TERMINATED", "ERROR")
WINDOW = 50  # trial ends the ETA's rate is measured over


class ProgressCallback(Callback):
    """Prints a line when a trial ends, and at most every ``every`` seconds otherwise.

    ETA = trials left / the recent rate of trial ends (the last ``window`` ends of this
    session), so a study whose pace changes (trials that get longer, a node that joins or
    leaves) gets the ETA of its current pace, not of its average since the start.

    Counts are kept from the trial events, so nothing here scans the trial list per trial
    or per step: the list is read once, at the first step (a resumed study's finished
    trials).
    """

    def __init__(self, total: int, every: float = 15.0, stream=None, window: int = WINDOW):
        self.total, self.every, self.stream = total, every, stream
        self._started = None
        self._last = 0.0
        self._ends = RecentRate(window)
        self._done: set[str] = set()  # TERMINATED or ERROR
        self._errored: set[str] = set()
        self._running: set[str] = set()
        self._seen = 0  # trials Ray Tune has created (the study's total may be a guess)
        self._counted = False

    def __getstate__(self):
        return {"total": self.total, "every": self.every}

    def __setstate__(self, state):
        self.__init__(state["total"], state["every"])

    def _print(self, text: str) -> None:
        print(f"[normstudy] {text}", file=self.stream or sys.stdout, flush=True)

    def _count(self, trials) -> None:
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

    def on_step_begin(self, iteration, trials, **info):
        self._count(trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._count(trials)
        self._running.add(trial.trial_id)
        self._seen = max(self._seen, len(trials))  # len() of a list is O(1)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._running.discard(trial.trial_id)  # pending again, for a retry

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finished(trials, trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._errored.add(trial.trial_id)
        self._finished(trials, trial, "ERRORED")

    def _finished(self, trials, trial, how: str) -> None:
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
        self._print(f"trial {trial.trial_id} {how} ({detail})")
        self._status(trials, force=True)

    def on_step_end(self, iteration, trials, **info):
        self._status(trials)

    def _status(self, trials, force: bool = False) -> None:
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
        self._print(
            f"{done}/{total} done, {running} running, {pending} pending{errors}"
            f" [{elapsed:.0f}s{eta}]"
        )


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
