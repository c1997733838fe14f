"""A search's answer on disk and in MLflow: ``<study>/search/`` and the parent run.

``<study>/search/`` holds ``report.md``, ``trials.csv`` (every ranked trial) and the plots
``history.png``, ``slice.png`` and, with importances, ``importance.png``. The study's MLflow
parent run gets them as artifacts under ``search/``, and the answer itself:

* metrics ``best.<metric>`` (the best configuration's score), ``best.<path>`` (each numeric
  swept value of it), ``importance.<path>`` and ``trials.<state>`` (how many trials
  finished, stopped early, diverged, errored, are unfinished): metrics, because a resumed
  search may find a better configuration and a metric takes the newest value;
* tags ``normstudy.best.trial`` and ``normstudy.best.<path>`` (every best value as text);
* params ``best.<path>`` once the search is over (every trial ended, none errored): an
  MLflow param cannot change, and from then on the answer does not.
"""

from __future__ import annotations

import time
from pathlib import Path

from studies.analysis.search import (
    ERRORED,
    STATES,
    UNFINISHED,
    SearchAnswer,
    format_param,
    to_csv,
    to_markdown,
)
from studies.analysis.search_plots import history_plot, importance_plot, slice_plot
from studies.config.secrets import mask_config, redact
from studies.config.space import swept_paths
from studies.store.queries import parent_run_id

OUTPUT_DIR = ARTIFACT_DIR = "search"
REPORT_FILE, CSV_FILE = "report.md", "trials.csv"
HISTORY_PLOT, SLICE_PLOT, IMPORTANCE_PLOT = "history.png", "slice.png", "importance.png"
BEST_TAG = "normstudy.best."


def write_search_outputs(answer: SearchAnswer, folder: str | Path) -> list[Path]:
    """``report.md``, ``trials.csv`` and the plots into ``folder/search/``; their paths."""
    out = Path(folder) / OUTPUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if answer.ranking:
        history_plot(answer, out / HISTORY_PLOT)
        plots.append(HISTORY_PLOT)
    if slice_plot(answer, out / SLICE_PLOT) is not None:
        plots.append(SLICE_PLOT)
    if importance_plot(answer, out / IMPORTANCE_PLOT) is not None:
        plots.append(IMPORTANCE_PLOT)
    for stale in {HISTORY_PLOT, SLICE_PLOT, IMPORTANCE_PLOT} - set(plots):
        (out / stale).unlink(missing_ok=True)  # from an earlier answer of this study
    (out / CSV_FILE).write_text(to_csv(answer))
    (out / REPORT_FILE).write_text(to_markdown(answer, plots))
    return [out / REPORT_FILE, out / CSV_FILE, *(out / name for name in plots)]


def is_over(answer: SearchAnswer) -> bool:
    """Every trial of the search ended and none errored: its answer will not change."""
    c = answer.counts
    return not c[UNFINISHED] and not c[ERRORED] and sum(c.values()) >= answer.expected


def answer_values(answer: SearchAnswer) -> tuple[dict[str, float], dict[str, str],
                                                  dict[str, str]]:  # fmt: skip
    """(metrics, tags, params) of the answer for the parent run (secrets masked)."""
    metrics = {f"trials.{state.replace(' ', '_')}": float(answer.counts[state])
               for state in STATES}  # fmt: skip
    for path, value in (answer.importances or {}).items():
        metrics[f"importance.{path}"] = float(value)
    tags: dict[str, str] = {}
    params: dict[str, str] = {}
    best = answer.best
    if best is None:
        return metrics, tags, params
    metrics[f"best.{answer.metric}"] = float(best.mean)
    tags[f"{BEST_TAG}trial"] = best.best_trial.trial_id
    values = mask_config({path: best.values.get(path) for path in swept_paths(answer.spec)})
    for path, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[f"best.{path}"] = float(value)
        tags[f"{BEST_TAG}{path}"] = redact(format_param(value))[:5000]
        params[f"best.{path}"] = redact(str(value))[:6000]
    return metrics, tags, params if is_over(answer) else {}


def log_search(answer: SearchAnswer, files: list[Path], uri: str) -> str | None:
    """Log the answer and its files to the study's parent run; its id (None: no parent run)."""
    from mlflow import MlflowClient  # lazily: MLflow loads only when an answer is logged
    from mlflow.entities import Metric, Param, RunTag

    run_id = parent_run_id(answer.spec, uri)
    if run_id is None:
        return None
    client = MlflowClient(tracking_uri=uri)
    metrics, tags, params = answer_values(answer)
    logged = client.get_run(run_id).data.params
    params = {k: v for k, v in params.items() if k not in logged}  # a param is set once
    stamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])  # fmt: skip
    for path in files:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return run_id
