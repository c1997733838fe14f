"""``normstudy sync``: bring a study's MLflow runs in line with its Ray Tune results.

The results directory is the record: every trial has ``params.json`` (its
config) and ``result.json`` (one line per reported epoch), and the newest
``experiment_state-*.json`` holds each trial's status. Syncing creates the
runs that are missing, logs the epochs a run lacks (step = epoch, with the
epoch's own timestamp, so syncing twice adds nothing), sets each run's
status from the trial's, and uploads the comparison report if there is one.
Use it after a study ended while the tracking server was unreachable; the
end of every study also runs :func:`reconcile`, so a killed driver leaves
nothing behind either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.tracking import StudyTracker, metric_batch

# Ray Tune trial status -> MLflow run status (unknown or unfinished: KILLED, resumable)
RUN_STATUS = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


@dataclass
class TrialRecord:
    trial_id: str
    config: dict[str, Any]
    rows: dict[int, dict[str, Any]]  # epoch -> the last line reported for it
    errored: bool


@dataclass
class SyncReport:
    trials: int = 0
    runs_created: int = 0
    epochs_logged: int = 0
    statuses_set: int = 0
    artifacts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.trials} trial(s): {self.runs_created} run(s) created, "
                f"{self.epochs_logged} epoch(s) uploaded, {self.statuses_set} status(es) set, "
                f"{len(self.artifacts)} artifact(s) uploaded")  # fmt: skip


def trial_records(folder: Path) -> list[TrialRecord]:
    """Every trial of a Ray Tune study directory, with its reported epochs."""
    records = []
    for trial_dir in sorted(p for p in Path(folder).glob("trial_*") if p.is_dir()):
        params = trial_dir / "params.json"
        if not params.is_file():
            continue
        config = json.loads(params.read_text())
        trial_id = trial_dir.name.removeprefix("trial_")
        rows: dict[int, dict[str, Any]] = {}
        result = trial_dir / "result.json"
        for line in result.read_text().splitlines() if result.is_file() else []:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(row, dict) and "epoch" in row:
                trial_id = str(row.get("trial_id", trial_id))
                rows[int(row["epoch"])] = row
        errored = (trial_dir / "error.txt").is_file()
        records.append(TrialRecord(trial_id, config, rows, errored))
    return records


def trial_statuses(folder: Path) -> dict[str, str]:
    """Trial id -> Ray Tune status from the newest experiment state (empty if none)."""
    states = sorted(Path(folder).glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    statuses = {}
    for entry in data.get("trial_data", []):
        try:
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            statuses[str(trial["trial_id"])] = str(trial["status"])
        except (KeyError, IndexError, TypeError, json.JSONDecodeError):
            continue
    return statuses


def _status(record: TrialRecord, ray_status: str | None, epochs: int) -> str:
    if ray_status in RUN_STATUS:
        return RUN_STATUS[ray_status]
    if ray_status is None:  # no experiment state: judge by the results
        last = max(record.rows, default=0)
        if record.rows and (last >= epochs or record.rows[last].get("diverged")):
            return "FINISHED"
        if record.errored:
            return "FAILED"
    return "KILLED"


def reconcile(tracker: StudyTracker, folder: Path, statuses: dict[str, str]) -> SyncReport:
    """Create missing runs, log missing epochs and set statuses from the results."""
    report = SyncReport()
    tracker.start_study(running=False)
    for record in trial_records(folder):
        report.trials += 1
        known = record.trial_id in tracker._runs
        run_id = tracker.run_id(record.trial_id, record.config)
        report.runs_created += not known
        logged = tracker.logged_epochs(run_id) if known else set()
        metrics = []
        for epoch, row in sorted(record.rows.items()):
            if epoch not in logged:
                metrics += metric_batch(row, int(row.get("timestamp", 0)) * 1000)
                report.epochs_logged += 1
        for start in range(0, len(metrics), 500):
            tracker.client.log_batch(run_id, metrics=metrics[start : start + 500])
        if record.rows:
            tracker._last_epoch[record.trial_id] = max(record.rows)
        status = _status(record, statuses.get(record.trial_id), tracker.spec.train.epochs)
        info = tracker.client.get_run(run_id).info
        if info.status != status or (status != "RUNNING" and not info.end_time):
            last = record.rows.get(max(record.rows, default=-1), {})
            end = int(last["timestamp"]) * 1000 if "timestamp" in last else None
            tracker.set_status(run_id, status, end)
            report.statuses_set += 1
    return report


def study_status(statuses: dict[str, str]) -> str:
    values = set(statuses.values())
    if values and values <= {"TERMINATED"}:
        return "FINISHED"
    return "FAILED" if "ERROR" in values else "KILLED"


def sync_study(study: str, storage: str | None = None, uri: str | None = None) -> SyncReport:
    """Upload what MLflow lacks of a study (by name under the results directory, or a path)."""
    from studies.compare import study_tracking_uri
    from studies.runner import find_study, load_study_spec

    folder = find_study(study, storage)
    spec = load_study_spec(folder)
    spec = spec.model_copy(update={"storage": str(folder.parent)})
    tracker = StudyTracker(spec, uri or study_tracking_uri(spec, folder))
    statuses = trial_statuses(folder)
    report = reconcile(tracker, folder, statuses)
    status = study_status(statuses)
    info = tracker.client.get_run(tracker.parent_id).info
    if info.status != status or not info.end_time:
        tracker.set_status(tracker.parent_id, status)
        report.statuses_set += 1
    comparison = folder / "comparison"
    if comparison.is_dir():
        have = {a.path for a in tracker.client.list_artifacts(tracker.parent_id, "comparison")}
        for path in sorted(p for p in comparison.iterdir() if p.is_file()):
            if f"comparison/{path.name}" not in have:
                tracker.log_artifact(path, "comparison")
                report.artifacts.append(path.name)
    return report
