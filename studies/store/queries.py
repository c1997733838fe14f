"""Finding a study's runs in MLflow: the tags that name them, filters, paging, UI pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studies.config.secrets import redact
from studies.config.spec import StudySpec

if TYPE_CHECKING:  # mlflow loads on first use (CLI start-up)
    from mlflow import MlflowClient

ROLE, STUDY, TRIAL_ID = "normstudy.role", "normstudy.study", "normstudy.trial_id"


def study_filter(name: str, role: str | None = None) -> str:
    """The MLflow filter for a study's runs (``role``: study = the parent, trial = children)."""
    query = f"tags.`{STUDY}` = '{name}'"
    return f"tags.`{ROLE}` = '{role}' and {query}" if role else query


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    """Every run of an experiment that matches, page by page."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string,
                                  max_results=1000, page_token=token)  # fmt: skip
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def parent_run_id(spec: StudySpec, uri: str) -> str | None:
    """The study's parent run, found by its tags (None if there is none)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return None
    runs = search_all(client, experiment.experiment_id, study_filter(spec.name, "study"))
    return runs[0].info.run_id if runs else None


def runs_page(base_url: str, experiment_id: str) -> str:
    """The MLflow UI page that lists an experiment's runs."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def study_runs_page(uri: str, experiment: str) -> str | None:
    """The runs page of a study's experiment in the MLflow UI (``normstudy ui``'s address for
    the embedded store); None when MLflow cannot say."""
    from mlflow import MlflowClient

    try:
        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - an unreachable server only loses the hint
        return None
    if found is None:
        return None
    base = redact(uri) if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return runs_page(base, found.experiment_id)
