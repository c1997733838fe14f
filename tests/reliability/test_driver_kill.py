"""Promise 1: a driver SIGKILLed at any moment loses and duplicates nothing.

`normstudy run` runs as a subprocess and is SIGKILLed by pid (then the local
Ray it started, as a dead machine would lose it) at three moments: while the
first trial trains, between trials, and during the comparison that follows
the last trial. `normstudy resume` must then finish the study: every trial of
the spec has one result and one MLflow run (none RUNNING), trials finished
before the kill are untouched, and the comparison is the one an uninterrupted
run of the same spec produces. The killed driver's lease is left behind and `resume`
takes it over at once (the holder's process has ended; no timeout waited out).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from reliability_kit import (
    EPOCHS,
    assert_tracked_once,
    driver_env,
    epoch_metrics,
    result_rows,
    sqlite_uri,
    tiny_spec,
    trial_key,
    write_spec,
)

pytestmark = pytest.mark.integration

TRIALS = 4


def _finished(rows: dict[str, list[dict]]) -> set[str]:
    return {name for name, lines in rows.items() if lines and lines[-1]["epoch"] == EPOCHS}


def _moment_reached(moment: str, folder, driver) -> bool:
    rows = result_rows(folder) if folder.exists() else {}
    done = _finished(rows)
    if moment == "first_trial":
        return any(rows.values()) and not done
    if moment == "mid_study":
        return 1 <= len(done) < TRIALS
    return driver.killed.is_set()  # killed by its reader at "done in": the comparison starts


@pytest.mark.parametrize("moment", ["first_trial", "mid_study", "comparison"])
def test_driver_sigkill_then_resume(moment, tmp_path, drivers, reference_study):
    storage = tmp_path / "results"
    spec_file = write_spec(tmp_path, tiny_spec("killme", max_concurrent=1))
    folder = storage / "killme"
    kill_on = "done in" if moment == "comparison" else None
    driver = drivers(["run", str(spec_file), "--storage", str(storage)], kill_on=kill_on)
    deadline = time.time() + 240
    while not _moment_reached(moment, folder, driver):
        assert driver.killed.is_set() or driver.proc.poll() is None, (
            f"the study ended before the kill:\n{driver.output}")
        assert time.time() < deadline, f"never reached {moment}:\n{driver.output[-3000:]}"
        time.sleep(0.02)
    driver.sigkill()

    before = result_rows(folder)
    finished_before = {name: before[name] for name in _finished(before)}
    report_written = (folder / "comparison" / "comparison.csv").exists()
    if moment == "first_trial":
        assert not finished_before and any(before.values())
    elif moment == "mid_study":
        assert 1 <= len(finished_before) < TRIALS
    else:
        assert len(finished_before) == TRIALS and not report_written, "killed too late"

    stale = json.loads((storage / ".killme.lease").read_text())
    assert stale["pid"] == driver.proc.pid  # left behind by the kill

    # A lease timeout of an hour: the takeover must come from the holder having ended.
    resumed = drivers(["resume", "killme", "--storage", str(storage)],
                      driver_env(NORMSTUDY_LEASE_TIMEOUT_S="3600"))  # fmt: skip
    code = resumed.wait(300)
    assert code == 0, resumed.output[-4000:]
    assert f"took over the lease of study 'killme' from host {stale['host']}, pid " \
           f"{stale['pid']}" in resumed.output and "has ended" in resumed.output  # fmt: skip
    assert not (storage / ".killme.lease").exists()  # released at the end
    # The only traceback allowed is one Ray Tune logs and survives: a kill between deleting an
    # old checkpoint (num_to_keep) and saving the experiment state makes the resumed Ray Tune
    # try to delete it again ("Error handling checkpoint ... FileNotFoundError: Path not found").
    known = len(re.findall(r"FileNotFoundError: Path not found: .*checkpoint_\d+\)",
                           resumed.output))  # fmt: skip
    assert resumed.output.count("Traceback") == known, resumed.output[-6000:]

    # Every trial of the spec: exactly one result, finished, each epoch once after restarts.
    after = result_rows(folder)
    configs = {trial_key(folder / name) for name in after}
    assert len(after) == TRIALS and len(configs) == TRIALS
    for name, lines in after.items():
        assert lines[-1]["epoch"] == EPOCHS, (name, lines[-1])
        epochs = [row["epoch"] for row in lines]
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1))
    for name, lines in finished_before.items():  # finished before the kill: untouched
        assert after[name] == lines

    # The same numbers as the uninterrupted run, epoch by epoch, bit for bit.
    assert epoch_metrics(folder) == epoch_metrics(reference_study)

    # MLflow: one parent, one run per trial, none RUNNING, each epoch logged once, and the
    # logged values are those of the results directory.
    logged = assert_tracked_once(sqlite_uri(storage), "killme", TRIALS)
    for name, lines in after.items():
        final = {row["epoch"]: row for row in lines}
        values = logged[name.removeprefix("trial_")]["val_acc"]
        assert values == {e: final[e]["val_acc"] for e in final}

    # The comparison, finished by `resume`, equals the uninterrupted run's.
    csv = folder / "comparison" / "comparison.csv"
    assert csv.is_file(), "resume did not run the comparison:\n" + resumed.output[-2000:]
    assert csv.read_text() == (reference_study / "comparison" / "comparison.csv").read_text()
