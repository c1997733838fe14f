"""The look loop of a sequential study: run a batch of seeds, judge every arm, repeat.

Look k (1-based) runs the seeds ``seeds[n_{k-1}:n_k]`` of the arms still undecided and of
the baseline (which every undecided arm needs on the same seeds), as its own Ray Tune
experiment ``<study>/look-<k>/`` (:mod:`studies.store.looks`). Its trials are mirrored into
the study's one MLflow parent run, one child run per trial, by the usual callback with the
study's own spec. When the look ends, every arm is judged from all the trials so far
(:mod:`studies.analysis.sequential`); ``sequential.json`` is replaced atomically with the
decisions and the parent run gets them as tags (``normstudy.sequential.<arm>``) and as the
artifact ``sequential.json``. Arms that crossed a boundary stop; the loop ends when no arm
is left or the last look is done.

Resume (``normstudy resume NAME``): the looks recorded in ``sequential.json`` are done; the
next look's experiment is restored by Ray Tune if it saved any state (finished trials are
kept, unfinished ones continue from their checkpoints), else it is started afresh after
removing what a killed driver left of it (its folder and the MLflow runs of trials no
results folder holds). So no seed runs twice and none is skipped.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from studies.analysis.comparison import compare
from studies.analysis.sequential import SequentialResult, analyze
from studies.analysis.trials import trials_from_results
from studies.config.space import arm_label, arms, expected_trials, is_baseline, resolved_config
from studies.config.spec import StudySpec
from studies.run.fit import StudyOutcome, callbacks, fit, make_tuner
from studies.run.tune import has_saved_state, restore_tuner
from studies.store.layout import tracking_uri
from studies.store.looks import completed_looks, look_dir, read_state, write_state
from studies.store.queries import TRIAL_ID, search_all, study_filter
from studies.store.results import DIVERGED, trial_records, trial_statuses
from studies.store.tracker import StudyTracker

TAG = "normstudy.sequential."


def run_looks(spec: StudySpec, folder: Path) -> StudyOutcome:
    """Run a new sequential study's looks (``study.yaml`` is already written)."""
    return _loop(spec, folder, retry_errored=False)


def resume_looks(spec: StudySpec, folder: Path, retry_errored: bool) -> StudyOutcome:
    """Continue a sequential study from its last recorded look."""
    return _loop(spec, folder, retry_errored)


def judge(spec: StudySpec, folder: Path, looks_done: int | None) -> SequentialResult:
    """Every arm's decisions from the study's trials, with ``looks_done`` looks complete."""
    return analyze(compare(trials_from_results(folder, spec), spec), looks_done)


def _loop(spec: StudySpec, folder: Path, retry_errored: bool) -> StudyOutcome:
    started = time.time()
    looks = _looks(spec)
    done = completed_looks(folder)
    result = judge(spec, folder, done)
    while done < len(looks) and result.pending():
        k = done + 1
        stage = look_spec(spec, result, k)
        print(f"[normstudy] look {k} of {len(looks)} ({looks[k - 1]} seeds per arm): seeds "
              f"{stage.seeds} for {len(stage.arms) - 1} undecided arm(s) and the baseline, "
              f"{expected_trials(stage)} trials")  # fmt: skip
        outcome = _run_look(spec, stage, folder, k, retry_errored)
        if outcome.interrupted or outcome.counts.get("errored"):
            return _outcome(spec, folder, started)  # resume continues this look
        done = k
        result = judge(spec, folder, done)
        _record(spec, folder, result, k, [arm_label(v) for v in stage.arms[1:]])
        for arm in result.arms:
            if arm.look == k:
                print(f"[normstudy]   {arm.arm}: {result.reason(arm)}")
    if done and read_state(folder).get("completed_looks") != done:
        _record(spec, folder, result, done, [])  # e.g. a record lost before a resume
    print(f"[normstudy] sequential: ran {result.seeds_run()} of the {result.seeds_fixed()} "
          f"trials of the fixed design with {looks[-1]} seeds per arm")  # fmt: skip
    return _outcome(spec, folder, started)


def baseline_values(spec: StudySpec) -> dict:
    """The baseline arm's values (path -> value) among the spec's arms."""
    return next(v for v in arms(spec) if is_baseline(resolved_config(spec, v), spec))


def _looks(spec: StudySpec) -> list[int]:
    """The seed counts of the looks of a sequential study."""
    if spec.sequential is None:
        raise ValueError(f"study {spec.name!r} has no sequential design")
    return spec.sequential.looks


def look_spec(spec: StudySpec, result: SequentialResult, k: int) -> StudySpec:
    """The trials of look k: the baseline and the undecided arms (explicit arms, no sweep) on
    the look's seeds. Not validated again: every arm and seed comes from the valid spec."""
    looks = _looks(spec)
    start = looks[k - 2] if k > 1 else 0
    pending = set(result.pending())
    values = [v for v in arms(spec) if arm_label(v) in pending]
    return spec.model_copy(update={
        "arms": [baseline_values(spec), *values], "sweep": {},
        "seeds": list(spec.seeds[start:looks[k - 1]]), "sequential": None,
    })  # fmt: skip


def _run_look(spec: StudySpec, stage: StudySpec, folder: Path, k: int,
              retry_errored: bool) -> StudyOutcome:  # fmt: skip
    directory = look_dir(folder, k)
    if has_saved_state(directory):
        return fit(restore_tuner(directory, stage, retry_errored), stage, directory)
    if directory.exists():  # killed before Ray Tune saved the look's state: start it over
        shutil.rmtree(directory)
        dropped = drop_orphan_runs(spec, folder)
        if dropped:
            print(f"[normstudy] look {k} restarts: {dropped} MLflow run(s) of its lost trials "
                  "removed")  # fmt: skip
    hooks = callbacks(spec, expected_trials(stage))  # the study's parent run and arm labels
    return fit(make_tuner(stage, folder, directory.name, hooks), stage, directory)


def drop_orphan_runs(spec: StudySpec, folder: Path) -> int:
    """Delete the study's MLflow trial runs whose trial no results folder holds."""
    kept = {record.trial_id for record in trial_records(folder)}
    try:
        tracker = StudyTracker(spec, tracking_uri(spec))
        tracker.start_study(running=False)
        runs = search_all(tracker.client, tracker.known_experiment_id(),
                          study_filter(spec.name, "trial"))
        orphans = [r for r in runs if r.data.tags.get(TRIAL_ID) not in kept]
        for run in orphans:
            tracker.client.delete_run(run.info.run_id)
    except Exception as err:  # noqa: BLE001 - MLflow away: `normstudy sync` repairs later
        print(f"[normstudy] warning: could not check MLflow for runs of lost trials ({err})")
        return 0
    return len(orphans)


def _record(spec: StudySpec, folder: Path, result: SequentialResult, k: int,
            ran: list[str]) -> None:  # fmt: skip
    """``sequential.json`` (atomically), then the parent run's tags and artifact."""
    state = read_state(folder)
    history = [h for h in state.get("history", []) if h.get("look") != k]
    if ran:
        history.append({"look": k, "arms": ran, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    data = {**result.to_json(), "history": history}
    path = write_state(folder, data)
    try:
        tracker = StudyTracker(spec, tracking_uri(spec))
        parent = tracker.start_study(running=False)
        tags = {f"{TAG}looks": ",".join(map(str, result.looks)),
                f"{TAG}completed_looks": str(result.completed_looks)}  # fmt: skip
        for arm in result.arms:
            tags[TAG + re.sub(r"[^\w.\- /]", "_", arm.arm)[:200]] = result.reason(arm)
        for key, value in tags.items():
            tracker.client.set_tag(parent, key, value)
        tracker.client.log_artifact(parent, str(path))
    except Exception as err:  # noqa: BLE001 - the record on disk is what counts
        print(f"[normstudy] warning: the look's decisions are in {path} but not in MLflow "
              f"({type(err).__name__}: {err})")  # fmt: skip


def _outcome(spec: StudySpec, folder: Path, started: float) -> StudyOutcome:
    """Counts over every look: finished, diverged, errored, unfinished."""
    statuses = trial_statuses(folder)
    counts: dict[str, int] = {}
    for record in trial_records(folder):
        status = statuses.get(record.trial_id)
        state = {"TERMINATED": "finished", "ERROR": "errored"}.get(status or "", "unfinished")
        if state == "finished" and record.outcome(spec.train.epochs) == DIVERGED:
            state = "diverged"
        counts[state] = counts.get(state, 0) + 1
    return StudyOutcome(spec, folder, counts, tracking_uri(spec), time.time() - started)
