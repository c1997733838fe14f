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

from dataclasses import dataclass, field
from pathlib import Path

from studies.store.layout import find_study, load_study_spec, tracking_uri
from studies.store.results import INCOMPLETE, TrialRecord, trial_records, trial_statuses
from studies.store.tracker import StudyTracker, metric_batch

# Ray Tune trial status -> MLflow run status (unknown or unfinished: KILLED, resumable)
RUN_STATUS = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


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


def _status(record: TrialRecord, ray_status: str | None, epochs: int) -> str:
    """The MLflow status of a trial's run: Ray Tune's status, else (no experiment state)
    judged by the results."""
    if ray_status in RUN_STATUS:
        return RUN_STATUS[ray_status]
    if ray_status is None:
        if record.rows and record.outcome(epochs) != INCOMPLETE:
            return "FINISHED"
        if record.errored:
            return "FAILED"
    return "KILLED"


def reconcile(tracker: StudyTracker, folder: Path, statuses: dict[str, str]) -> SyncReport:
    """Create missing runs, log missing epochs and set statuses from the results."""
    report = SyncReport()
    tracker.start_study(running=False)
    # One paged search reads every run's status, end time and latest epoch (N / 1,000
    # queries); a run's metric history is read only when it lacks the trial's last epoch, or
    # when the trial continued from a checkpoint: an epoch reported just before a driver died
    # may never have reached MLflow, while the later epochs did.
    runs = tracker.trial_runs()
    for record in trial_records(folder):
        report.trials += 1
        found = runs.get(record.trial_id)
        known = tracker.known_run(record.trial_id) is not None
        run_id = tracker.run_id(record.trial_id, record.config)
        report.runs_created += not known
        if found is not None and found.info.run_id != run_id:
            found = None
        latest = int(found.data.metrics.get("epoch") or 0) if found is not None else -1
        if known and latest >= record.last_epoch and not record.restored:
            logged = set(record.rows)  # epochs are logged in order: it holds all of them
        else:
            logged = tracker.logged_epochs(run_id) if known else set()
        metrics = []
        for epoch, row in sorted(record.rows.items()):
            if epoch not in logged:
                metrics += metric_batch(row, int(row.get("timestamp", 0)) * 1000)
                report.epochs_logged += 1
        for start in range(0, len(metrics), 500):
            tracker.client.log_batch(run_id, metrics=metrics[start : start + 500])
        if record.rows:
            tracker.note_logged(record.trial_id, record.last_epoch)
        status = _status(record, statuses.get(record.trial_id), tracker.spec.train.epochs)
        info = found.info if found is not None else tracker.client.get_run(run_id).info
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
    folder = find_study(study, storage)
    spec = load_study_spec(folder)
    tracker = StudyTracker(spec, uri or tracking_uri(spec))
    statuses = trial_statuses(folder)
    report = reconcile(tracker, folder, statuses)
    status = study_status(statuses)
    parent_id = tracker.start_study(running=False)  # known once reconcile has run
    info = tracker.client.get_run(parent_id).info
    if info.status != status or not info.end_time:
        tracker.set_status(parent_id, status)
        report.statuses_set += 1
    comparison = folder / "comparison"
    if comparison.is_dir():
        have = {a.path for a in tracker.client.list_artifacts(parent_id, "comparison")}
        for path in sorted(p for p in comparison.iterdir() if p.is_file()):
            if f"comparison/{path.name}" not in have:
                tracker.log_artifact(path, "comparison")
                report.artifacts.append(path.name)
    return report
