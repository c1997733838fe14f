"""The trials table of a study: one row per trial, from the results directory or MLflow.

Both sources give the same table: one :class:`TrialHistory` per trial with its arm (the
swept values, the seed excluded), seed, baseline flag, outcome and per-epoch metric
history.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.config.secrets import redact
from studies.config.space import (
    arm_label,
    arm_of,
    has_arms,
    is_baseline,
    resolve_arm,
    setting_label,
    setting_of,
)
from studies.config.spec import METRICS, TRIAL_SECTIONS, SpecError, StudySpec
from studies.store.layout import tracking_uri
from studies.store.queries import TRIAL_ID, search_all, study_filter
from studies.store.results import trial_outcome, trial_records

SOURCES = ("results", "mlflow")
HISTORY_KEYS = (*METRICS, "diverged")


@dataclass
class TrialHistory:
    """One trial of a study: which arm and seed, how it ended, what it measured per epoch.

    ``history`` maps a metric name (``val_acc``, ``diverged``, ...) to ``{epoch: value}``;
    only finite values are kept (MLflow does not store NaN, so neither does the results
    loader). ``status`` is ``diverged`` if any epoch reported ``diverged = 1``, ``finished``
    if it reached ``spec.train.epochs``, else ``incomplete`` (errored, stopped early by ASHA,
    or still running).
    """

    trial_id: str
    arm: str
    arm_values: dict[str, Any]
    seed: int | None
    baseline: bool
    status: str
    history: dict[str, dict[int, float]] = field(default_factory=dict)
    setting: str = ""  # its values at the ``across`` paths (setting_label); "" without across
    setting_values: dict[str, Any] = field(default_factory=dict)

    @property
    def last_epoch(self) -> int:
        return max((max(h) for h in self.history.values() if h), default=0)


def _outcome(history: dict[str, dict[int, float]], epochs: int) -> str:
    diverged = any(value >= 0.5 for value in history.get("diverged", {}).values())
    last = max((max(h) for h in history.values() if h), default=0)
    return trial_outcome(last, diverged, epochs)


def _make_trial(
    trial_id: str, config: dict[str, Any], history: dict[str, dict[int, float]], spec: StudySpec
) -> TrialHistory:
    config = resolve_arm(config)
    trial_config = {k: config[k] for k in (*TRIAL_SECTIONS, "seed") if k in config}
    try:
        values = arm_of(trial_config, spec)
    except KeyError:
        values = {}
    try:
        setting = setting_of(trial_config, spec)
    except KeyError:
        setting = {}
    seed = config.get("seed")
    history = {key: dict(sorted(h.items())) for key, h in sorted(history.items()) if h}
    return TrialHistory(
        trial_id=str(trial_id),
        arm=arm_label(values) if has_arms(spec) else "default",
        arm_values=values,
        seed=int(seed) if seed is not None else None,
        baseline=is_baseline(trial_config, spec),
        status=_outcome(history, spec.train.epochs),
        history=history,
        setting=setting_label(setting),
        setting_values=setting,
    )


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def trials_from_results(folder: str | Path, spec: StudySpec) -> list[TrialHistory]:
    """The trials table from a study directory (:func:`studies.store.results.trial_records`)."""
    trials = []
    for record in trial_records(folder):
        history: dict[str, dict[int, float]] = {}
        for epoch, row in record.rows.items():
            for key in HISTORY_KEYS:
                value = _finite_number(row.get(key))
                if value is not None:
                    history.setdefault(key, {})[epoch] = value
        trials.append(_make_trial(record.trial_id, record.config, history, spec))
    return sorted(trials, key=lambda t: t.trial_id)


def _parse_param(text: str) -> Any:
    """A flattened MLflow param (``str(value)``) back to the Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path, text in params.items():
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = _parse_param(text)
    return config


def _experiment(client: Any, spec: StudySpec, uri: str) -> Any:
    """The study's MLflow experiment, or SpecError naming --source."""
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        raise SpecError(
            [("--source", f"no MLflow experiment {spec.experiment_name!r} at {redact(uri)}")]
        )
    return experiment


def trials_from_mlflow(spec: StudySpec, uri: str) -> list[TrialHistory]:
    """The trials table from the study's MLflow trial runs (params = flattened trial config,
    metrics per epoch with step = epoch)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = _experiment(client, spec, uri)
    trials = []
    for run in search_all(client, experiment.experiment_id, study_filter(spec.name, "trial")):
        config = _unflatten(run.data.params)
        history: dict[str, dict[int, float]] = {}
        for key in HISTORY_KEYS:
            if key not in run.data.metrics:
                continue
            points = sorted(client.get_metric_history(run.info.run_id, key),
                            key=lambda m: (m.step, m.timestamp))  # fmt: skip
            for point in points:
                value = _finite_number(point.value)
                if value is not None:
                    history.setdefault(key, {})[int(point.step)] = value
        trials.append(_make_trial(run.data.tags[TRIAL_ID], config, history, spec))
    return sorted(trials, key=lambda t: t.trial_id)


def load_trials(folder: Path, spec: StudySpec, source: str = "results") -> list[TrialHistory]:
    if source == "results":
        return trials_from_results(folder, spec)
    if source == "mlflow":
        return trials_from_mlflow(spec, tracking_uri(spec))
    raise SpecError([("--source", f"unknown source {source!r}; valid: results, mlflow")])
