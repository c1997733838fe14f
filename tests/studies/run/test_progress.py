"""The progress ETA follows the recent rate of trial ends (synthetic completion times)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from studies.run import progress
from studies.run.progress import ProgressCallback, RecentRate


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "time", clock)
    return clock


def test_recent_rate_follows_a_change_of_pace():
    rate = RecentRate(window=20)
    now = 0.0
    for _ in range(100):  # one end a second ...
        now += 1.0
        rate.add(now)
    for _ in range(100):  # ... then one every 2 s
        now += 2.0
        rate.add(now)
    assert rate.per_second(now) == pytest.approx(0.5)
    assert rate.seconds_left(100, now) == pytest.approx(200.0)
    assert 200 / now == pytest.approx(0.667, abs=0.01)  # the average since start: 25% too fast


def test_recent_rate_counts_a_long_silence():
    rate = RecentRate(window=10)
    for at in range(10):
        rate.add(float(at))
    assert rate.per_second(9.0) == pytest.approx(1.0)
    assert rate.per_second(9.5) == pytest.approx(1.0)  # within the usual gap
    assert rate.per_second(27.0) == pytest.approx(9 / 27)  # nothing ended for 18 s
    assert RecentRate().seconds_left(5) is None  # no end yet: no ETA


def trial(i: int, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"t{i:04d}", status=status, last_result={"epoch": 5})


def statuses(text: str) -> list[tuple[int, float | None]]:
    """(done, ETA) of each status line."""
    found = re.findall(r"(\d+)/\d+ done, .*?\[\d+s(?:, ETA (\d+)s)?\]", text)
    return [(int(done), float(eta) if eta else None) for done, eta in found]


def run_study(clock, gaps: list[float], finished_before: int = 0, running: int = 2):
    """Trials end ``gaps`` seconds apart (``running`` at once); returns the output and the
    time each trial ended."""
    n = finished_before + len(gaps)
    trials = [trial(i, "TERMINATED" if i < finished_before else "PENDING") for i in range(n)]
    out = io.StringIO()
    callback = ProgressCallback(n, every=1e9, stream=out)
    callback.on_step_begin(0, trials)
    ends = []
    upcoming = iter(range(finished_before, n))
    active = []
    for _ in range(running):
        index = next(upcoming)
        trials[index].status = "RUNNING"
        callback.on_trial_start(0, trials, trials[index])
        active.append(index)
    for gap in gaps:
        clock.now += gap
        index = active.pop(0)
        trials[index].status = "TERMINATED"
        callback.on_trial_complete(0, trials, trials[index])
        ends.append(clock.now)
        following = next(upcoming, None)
        if following is not None:
            trials[following].status = "RUNNING"
            callback.on_trial_start(0, trials, trials[following])
            active.append(following)
        callback.on_step_end(0, trials)
    return out.getvalue(), ends


def test_eta_at_half_way_within_25_percent_when_trials_slow_down(clock):
    # 1,000 trials whose gaps grow from 0.2 s to 0.6 s (a driver that gets slower): the
    # average since the start says far too little at half-way, the recent rate does not.
    gaps = [0.2 + 0.4 * i / 999 for i in range(1000)]
    text, ends = run_study(clock, gaps)
    lines = statuses(text)
    done, eta = next((d, e) for d, e in lines if d >= 500)
    actual = ends[-1] - ends[done - 1]
    assert abs(eta - actual) / actual < 0.25, (eta, actual)
    mean_since_start = (ends[done - 1] - ends[0] + gaps[0]) / done
    assert mean_since_start * (1000 - done) < 0.75 * actual  # what the old ETA would say


def test_eta_exact_at_a_steady_pace_and_counts_kept(clock):
    text, ends = run_study(clock, [0.5] * 200)
    lines = statuses(text)
    assert [d for d, _ in lines] == list(range(1, 201))
    assert lines[0][1] is None  # one end: no rate yet
    for done, eta in lines[1:-1]:
        assert eta == pytest.approx(0.5 * (200 - done), abs=1.0)
    assert "200/200 done, 0 running, 0 pending" in text


def test_resumed_study_counts_earlier_trials_but_times_only_its_own(clock):
    text, _ = run_study(clock, [1.0] * 20, finished_before=80)
    lines = statuses(text)
    assert lines[0] == (81, None)
    assert lines[-1][0] == 100
    assert lines[5][1] == pytest.approx(100 - lines[5][0], abs=1.0)
    assert "100/100 done, 0 running, 0 pending" in text


def test_errors_and_retries_counted(clock):
    trials = [trial(i) for i in range(3)]
    out = io.StringIO()
    callback = ProgressCallback(3, every=1e9, stream=out)
    callback.on_step_begin(0, trials)
    for t in trials:
        t.status = "RUNNING"
        callback.on_trial_start(0, trials, t)
    callback.on_trial_recover(0, trials, trials[0])  # pending again
    trials[1].status = "ERROR"
    callback.on_trial_error(0, trials, trials[1])
    assert "1/3 done, 1 running, 1 pending, 1 errored" in out.getvalue()
