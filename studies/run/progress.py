"""Progress a person can follow: trial counts, the best so far and an ETA."""

from __future__ import annotations

import sys
import time

from ray.tune import Callback

DONE = ("TERMINATED", "ERROR")


class ProgressCallback(Callback):
    """Prints a line when a trial ends, and at most every ``every`` seconds otherwise.

    ETA = mean wall time of the trials finished in this session x trials left
    / trials running at once.
    """

    def __init__(self, total: int, every: float = 15.0, stream=None):
        self.total, self.every, self.stream = total, every, stream
        self._started = None
        self._last = 0.0
        self._durations: list[float] = []
        self._trial_start: dict[str, float] = {}

    def __getstate__(self):
        return {"total": self.total, "every": self.every}

    def __setstate__(self, state):
        self.__init__(state["total"], state["every"])

    def _print(self, text: str) -> None:
        print(f"[normstudy] {text}", file=self.stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._trial_start[trial.trial_id] = time.time()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finished(trials, trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finished(trials, trial, "ERRORED")

    def _finished(self, trials, trial, how: str) -> None:
        if trial.trial_id in self._trial_start:
            self._durations.append(time.time() - self._trial_start.pop(trial.trial_id))
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
        done = sum(t.status in DONE for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        errored = sum(t.status == "ERROR" for t in trials)
        total = max(self.total, len(trials))
        pending = total - done - running
        eta = ""
        if self._durations and done < total:
            mean = sum(self._durations) / len(self._durations)
            eta = f", ETA {mean * (total - done) / max(1, running):.0f}s"
        errors = f", {errored} errored" if errored else ""
        elapsed = now - self._started
        self._print(
            f"{done}/{total} done, {running} running, {pending} pending{errors}"
            f" [{elapsed:.0f}s{eta}]"
        )
