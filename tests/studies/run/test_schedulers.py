"""The schedulers choose the trial Ray Tune's own FIFO scan would, without walking the ended
trials at the front of the list (studies/run/schedulers.py)."""

from __future__ import annotations

import pickle
import random

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from studies.run.schedulers import AshaScheduler, FifoScheduler


class Counted:
    """A trial whose status reads are counted."""

    reads = 0

    def __init__(self, status: str = Trial.PENDING):
        self._status = status

    @property
    def status(self) -> str:
        Counted.reads += 1
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value


class Controller:
    def __init__(self, trials: list) -> None:
        self.trials = trials

    def get_trials(self) -> list:
        return self.trials


def test_the_same_choice_as_ray_tunes_scan_through_a_random_run():
    rng = random.Random(0)
    ours, ray_fifo = FifoScheduler(), FIFOScheduler()
    controller = Controller([])
    for step in range(3000):
        trials = controller.trials
        if rng.random() < 0.5:
            trials.append(Counted())  # the searcher adds a trial
        live = [t for t in trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
        if live and rng.random() < 0.6:
            trial = rng.choice(live)
            event = rng.random()
            if event < 0.6:
                trial.status = Trial.TERMINATED
            elif event < 0.7:
                trial.status = Trial.ERROR
            elif event < 0.8:  # a failure with retries left: Ray Tune requeues it at the end
                trial.status = Trial.PENDING
                trials.append(trials.pop(trials.index(trial)))
            elif event < 0.9:
                trial.status = Trial.PAUSED
            else:
                trial.status = Trial.RUNNING
        expected = ray_fifo.choose_trial_to_run(controller)
        assert ours.choose_trial_to_run(controller) is expected, step
        if expected is not None and rng.random() < 0.5:
            expected.status = Trial.RUNNING  # started


def test_a_long_study_reads_each_ended_trial_once():
    trials = [Counted(Trial.TERMINATED) for _ in range(10_000)] + [Counted(), Counted()]
    scheduler, controller = AshaScheduler(time_attr="epoch", max_t=2), Controller(trials)
    assert scheduler.choose_trial_to_run(controller) is trials[10_000]
    Counted.reads = 0
    for _ in range(100):  # the steps that follow start where the ended trials stop
        assert scheduler.choose_trial_to_run(controller) is trials[10_000]
    assert Counted.reads <= 100 * 2


def test_a_restored_study_scans_from_the_start():
    """Ray Tune's restore makes a new trial list (errored trials PENDING again with
    --retry-errored) and a new scheduler from its pickle: nothing of the old position."""
    trials = [Counted(Trial.ERROR), Counted(Trial.TERMINATED), Counted()]
    scheduler = AshaScheduler(time_attr="epoch", max_t=2)
    assert scheduler.choose_trial_to_run(Controller(trials)) is trials[2]
    assert b"Counted" not in pickle.dumps(vars(scheduler))  # ASHA saves its __dict__
    restored_trials = [Counted(Trial.PENDING), Counted(Trial.TERMINATED), Counted()]
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.choose_trial_to_run(Controller(restored_trials)) is restored_trials[0]
    assert scheduler.choose_trial_to_run(Controller(restored_trials)) is restored_trials[0]
