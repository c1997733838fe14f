"""The study's result on its MLflow parent run: per arm the mean difference from the baseline,
p (Holm), the seeds needed as metrics and the verdict as a tag, so the MLflow UI can sort and
chart studies by their result (issue 27)."""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING

from studies.analysis.comparison import Comparison
from studies.config.secrets import redact

if TYPE_CHECKING:  # mlflow loads on first use (CLI start-up)
    from mlflow import MlflowClient

SIGNIFICANT = "significant"


def metric_key(label: str) -> str:
    """An arm label as an MLflow metric/tag key part (only ``[/\\w.\\- ]`` are allowed;
    ``enorm.c=1.0`` -> ``enorm.c_1.0``)."""
    return re.sub(r"[^\w.\- ]", "_", redact(label)).strip() or "arm"


def summary(comparison: Comparison) -> tuple[dict[str, float], dict[str, str]]:
    """The parent run's summary metrics and tags of a comparison. Per arm ``<arm>/mean_diff``,
    ``<arm>/p_holm``, ``<arm>/seeds_needed`` (the ones that are numbers) and the tag
    ``verdict/<arm>``; study-wide ``arms_significant`` and ``best_mean_diff`` (the largest
    improvement in the metric's direction, signed as the metric)."""
    metrics: dict[str, float] = {}
    tags = {"summary.metric": comparison.scored_metric,
            "summary.baseline": redact(comparison.baseline)}
    improvements = []
    for row in comparison.rows:
        key = metric_key(row.arm)
        values = {"mean_diff": row.mean_diff, "p_holm": row.p_holm,
                  "seeds_needed": row.seeds_needed}  # fmt: skip
        for name, value in values.items():
            if value is not None and math.isfinite(float(value)):
                metrics[f"{key}/{name}"] = float(value)
        tags[f"verdict/{key}"] = row.verdict
        if math.isfinite(row.mean_diff):
            improvements.append(row.mean_diff)
    metrics["arms_significant"] = float(sum(row.verdict == SIGNIFICANT for row in comparison.rows))
    if improvements:
        pick = max if comparison.mode == "max" else min
        metrics["best_mean_diff"] = float(pick(improvements))
    return metrics, tags


def log_summary(client: MlflowClient, run_id: str, comparison: Comparison) -> None:
    """Write :func:`summary` to the parent run in one ``log_batch`` (a new comparison replaces
    the values: the UI shows each metric's latest)."""
    from mlflow.entities import Metric, RunTag

    metrics, tags = summary(comparison)
    stamp = int(time.time() * 1000)
    points = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
    labels = [RunTag(k, v) for k, v in tags.items()]
    while points or labels:  # MLflow takes at most 1,000 metrics and 100 tags per call
        client.log_batch(run_id, metrics=points[:900], tags=labels[:100])
        points, labels = points[900:], labels[100:]
