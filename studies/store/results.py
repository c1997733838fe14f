"""The one reader of a results directory (Ray Tune's experiment directory of a study).

Every trial has ``trial_<id>/params.json`` (its config) and ``result.json`` (one JSON line
per reported epoch; a restarted trial may report an epoch again, and a crash or a full
disk may cut the last line short: the last complete line of each epoch counts), and
``error.txt`` if it raised. The newest ``experiment_state-*.json`` holds each trial's
Ray Tune status. What counts as finished is decided once, by :func:`trial_outcome`.
A sequential study (:mod:`studies.run.sequential`) runs each look as its own Ray Tune
experiment in ``look-<k>/`` inside the study directory; its trials count as the study's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINISHED, DIVERGED, INCOMPLETE = "finished", "diverged", "incomplete"
LOOK_PREFIX = "look-"  # look k of a sequential study: <study>/look-<k>/
RESULT_FILE = "result.json"  # Ray Tune's JSON logger writes it: one line per reported epoch


def experiment_dirs(folder: str | Path) -> list[Path]:
    """The Ray Tune experiment directories of a study: itself, then its looks in order."""
    folder = Path(folder)
    looks = [p for p in folder.glob(f"{LOOK_PREFIX}*") if p.is_dir()
             and p.name.removeprefix(LOOK_PREFIX).isdigit()]  # fmt: skip
    return [folder, *sorted(looks, key=lambda p: int(p.name.removeprefix(LOOK_PREFIX)))]


def trial_outcome(last_epoch: int, diverged: bool, epochs: int) -> str:
    """``diverged`` if any epoch reported a non-finite loss, ``finished`` if the trial reached
    the study's last epoch, else ``incomplete`` (errored, stopped early by ASHA, or running)."""
    if diverged:
        return DIVERGED
    return FINISHED if last_epoch >= epochs else INCOMPLETE


@dataclass
class TrialRecord:
    """One trial as the results directory holds it."""

    trial_id: str
    config: dict[str, Any]
    rows: dict[int, dict[str, Any]]  # epoch -> the last line reported for it
    errored: bool

    @property
    def last_epoch(self) -> int:
        return max(self.rows, default=0)

    @property
    def restored(self) -> bool:
        """Whether the trial continued from a checkpoint (Ray Tune counts its iterations
        since the restore)."""
        return any(row.get("iterations_since_restore", epoch) < epoch
                   for epoch, row in self.rows.items())  # fmt: skip

    def outcome(self, epochs: int) -> str:
        diverged = any(_flag(row.get("diverged")) for row in self.rows.values())
        return trial_outcome(self.last_epoch, diverged, epochs)


def _flag(value: Any) -> bool:
    """A ``diverged`` value reported as 1 / 1.0 / true."""
    return value is True or (isinstance(value, (int, float)) and value >= 0.5)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete JSON-object lines of a ``result.json`` (a cut-off line is skipped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def trial_records(folder: str | Path) -> list[TrialRecord]:
    """Every trial of a study directory with its reported epochs, by trial id."""
    records = []
    dirs = [p for d in experiment_dirs(folder) for p in d.glob("trial_*") if p.is_dir()]
    for trial_dir in sorted(dirs, key=lambda p: p.name):
        params = trial_dir / "params.json"
        if not params.is_file():
            continue
        try:
            config = json.loads(params.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # written at the trial's start; a crash in that instant leaves no trial
        trial_id = trial_dir.name.removeprefix("trial_")
        rows: dict[int, dict[str, Any]] = {}
        for row in read_rows(trial_dir / RESULT_FILE):
            trial_id = str(row.get("trial_id", trial_id))
            if "epoch" in row:
                rows[int(row["epoch"])] = row
        records.append(TrialRecord(trial_id, config, rows, (trial_dir / "error.txt").is_file()))
    return sorted(records, key=lambda r: r.trial_id)


def trial_statuses(folder: str | Path) -> dict[str, str]:
    """Trial id -> Ray Tune status from the newest experiment state of the study (and of
    each of its looks); empty if none."""
    statuses: dict[str, str] = {}
    for directory in experiment_dirs(folder):
        statuses.update(_statuses(directory))
    return statuses


def _state_trials(folder: Path) -> list[dict[str, Any]]:
    """The trials of the newest experiment state in ``folder`` (Ray Tune's own fields)."""
    states = sorted(folder.glob("experiment_state-*.json"))
    if not states:
        return []
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return []
    trials = []
    for entry in data.get("trial_data", []):
        try:
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        except (IndexError, TypeError, json.JSONDecodeError):
            continue
        if isinstance(trial, dict) and "trial_id" in trial:
            trials.append(trial)
    return trials


def _statuses(folder: Path) -> dict[str, str]:
    return {str(t["trial_id"]): str(t.get("status")) for t in _state_trials(folder)}


def trial_numbers(folder: str | Path) -> dict[str, int]:
    """Trial id -> its number in the order Ray Tune created the study's trials (1, 2, ...;
    the order a searcher proposed them), from the experiment state: Ray Tune's
    ``experiment_tag`` starts with its counter (from 0 or 1, by searcher), which a resumed
    experiment goes on counting."""
    counters: dict[str, int] = {}
    for trial in _state_trials(Path(folder)):
        head = str(trial.get("experiment_tag", "")).split("_", 1)[0]
        if head.isdigit():
            counters[str(trial["trial_id"])] = int(head)
    ordered = sorted(counters, key=lambda trial_id: (counters[trial_id], trial_id))
    return {trial_id: number for number, trial_id in enumerate(ordered, 1)}


def outcome_counts(folder: str | Path, epochs: int) -> dict[str, int]:
    """How many trials of a study are finished, diverged or incomplete."""
    return dict(Counter(record.outcome(epochs) for record in trial_records(folder)))


def error_summaries(folder: Path, limit: int = 10) -> list[str]:
    """One line per errored trial: the cause (:func:`error_cause`) and where the traceback is."""
    lines = []
    for path in sorted(folder.glob("trial_*/error.txt"))[:limit]:
        cause = error_cause(path.read_text(errors="replace"))
        lines.append(f"{path.parent.name} errored: {cause} (traceback: {path})")
    return lines


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)(?:\(\w+\))?:( .*)?$")


def _exception_name(name: str) -> bool:
    """``ValueError``, ``pkg.module.DatasetMissing``: what a traceback's last line starts with
    (a message line such as ``Hint: ...`` is none)."""
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper() and ("." in name or last.endswith(_EXCEPTION_ENDINGS))


_EXCEPTION_ENDINGS = ("Error", "Exception", "Warning", "Exit", "Interrupt", "Iteration")


def error_cause(text: str, limit: int = 300) -> str:
    """The cause of a trial's last failure in a Ray Tune ``error.txt`` (one traceback per
    failure): the final exception as ``Type: its first non-empty message line``."""
    text = _ANSI.sub("", text)
    failures = re.split(r"^Failure # \d+.*$", text, flags=re.MULTILINE)
    lines = failures[-1].splitlines()
    for i in range(len(lines) - 1, -1, -1):
        found = _RAISED.match(lines[i])
        if found is None or not _exception_name(found.group(1)):
            continue
        kind = found.group(1).rsplit(".", 1)[-1]
        message = (found.group(2) or "").strip()
        if not message:  # the message starts on the next line
            message = next((line.strip() for line in lines[i + 1 :] if line.strip()), "")
        return f"{kind}: {message}"[:limit] if message else kind
    last = next((line.strip() for line in reversed(lines) if line.strip()), "unknown error")
    return last[:limit]
