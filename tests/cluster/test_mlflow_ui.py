"""Browse a finished study in the MLflow UI with a real headless Chromium (Debian's package)."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.cluster

CHROMIUM = Path("/usr/bin/chromium")  # apt-get install chromium; never a browser download
NAME_CELL = '.ag-row [col-id="attributes.`Run Name`"]'


NO_CHROMIUM = ("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; "
               ".ci/run installs it where apt-get works)")  # fmt: skip


@pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)
def test_mlflow_ui_shows_the_study_its_runs_and_metrics(finished_study, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev)")
    uri = finished_study.cluster.mlflow_uri
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(finished_study.name)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags["normstudy.role"] == "study")
    children = [r for r in runs if r is not parent]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            page.goto(f"{uri}/#/experiments/{experiment.experiment_id}/runs", timeout=120_000)
            page.get_by_text(finished_study.name, exact=True).first.wait_for(timeout=120_000)
            names = page.locator(NAME_CELL)
            row = names.filter(has_text=finished_study.name)
            row.wait_for(timeout=60_000)
            row.locator("button").first.click()  # expand the parent: its child runs appear
            for child in children:
                page.get_by_text(child.info.run_name, exact=True).wait_for(timeout=60_000)
            shown = " ".join(names.all_inner_texts())
            page.screenshot(path=str(tmp_path / "experiment.png"))
            assert all(c.info.run_name in shown for c in children), shown

            child = children[0]
            page.goto(f"{uri}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}")
            page.get_by_text("val_acc", exact=True).first.wait_for(timeout=120_000)
            page.get_by_text(child.info.run_name).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "child-run.png"), full_page=True)
        finally:
            browser.close()
    for metric in ("val_acc", "test_acc", "train_loss"):
        assert metric in text
    value = child.data.metrics["val_acc"]
    assert str(value)[:6] in text, f"val_acc {value} not on the run page"
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
