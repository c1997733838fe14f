"""`normstudy ui`: the study's runs in the MLflow UI, on 127.0.0.1 only, stopped by a signal."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.request
from pathlib import Path

import psutil
import pytest
from user_shell import WORKDIRS, free_port, make_shell, study_runs, wait_for

pytestmark = pytest.mark.acceptance

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it
NAME_CELL = '.ag-row [col-id="attributes.`Run Name`"]'


def http_get(url: str, data: dict | None = None) -> tuple[int, bytes]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def serving(url: str):
    def check():
        try:
            return http_get(url)[0] == 200
        except OSError:
            return False

    return check


def non_loopback_addresses() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]  # fmt: skip


def port_free(port: int) -> bool:
    with socket.socket() as sock:  # SO_REUSEADDR as servers bind: TIME_WAIT is not "in use"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_ui(user, port: int):
    log = user.cwd / f"ui-{port}.log"
    handle = open(log, "w")  # noqa: SIM115 - closed by the caller
    proc = user.start("ui", "--port", str(port), stdout=handle, stderr=handle)
    base = f"http://127.0.0.1:{port}"
    wait_for(serving(base + "/"), 120, f"the MLflow UI on {base}", proc)
    return proc, log, handle, base


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_serves_the_study_on_loopback_only_and_a_signal_stops_all_of_it(quickstart, sig):
    user, _ = quickstart
    if ("études" in str(user.cwd)) != (sig == signal.SIGINT):
        pytest.skip("each signal once: SIGTERM in the path with a space, SIGINT in the other")
    port = free_port()
    proc, log, handle, base = start_ui(user, port)
    with handle:
        _, body = http_get(f"{base}/ajax-api/2.0/mlflow/experiments/search", {"max_results": 50})
        names = {e["name"]: e["experiment_id"] for e in json.loads(body)["experiments"]}
        assert "quickstart" in names
        printed = log.read_text()
        assert f"{base}/#/experiments/{names['quickstart']}/runs" in printed
        for address in non_loopback_addresses():
            with socket.socket() as sock, pytest.raises(OSError):
                sock.settimeout(2)
                sock.connect((address, port))
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family, "the MLflow server runs as a child process"
        os.kill(proc.pid, sig)  # to `normstudy ui` alone, as a process manager does
        proc.wait(timeout=30)
    wait_for(lambda: port_free(port), 30, f"port {port} to be free after {sig.name}")
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after {sig.name}: {alive}"
    assert proc.returncode == 0


def test_ui_refuses_a_port_in_use_naming_it(quickstart):
    user, _ = quickstart
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        ran = user.run("ui", "--port", str(port), timeout=60)
    assert ran.code == 2 and f"127.0.0.1:{port} is in use" in ran.err, ran.text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install)")
def test_the_runs_page_shows_the_parent_and_its_named_children(quickstart, tmp_path):
    user, _ = quickstart
    if "études" in str(user.cwd):
        pytest.skip("one browser check is enough; the non-ASCII study is checked over REST")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev)")
    port = free_port()
    proc, log, handle, base = start_ui(user, port)
    shots = Path(os.environ.get("NORMSTUDY_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with handle:
        url = re.search(rf"{re.escape(base)}/#/experiments/\d+/runs", log.read_text()).group(0)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1100})
                page.goto(url, timeout=120_000)
                names = page.locator(NAME_CELL)
                parent = names.filter(has_text="quickstart")
                parent.first.wait_for(timeout=120_000)
                parent.first.locator("button").first.click()  # expand: the children appear
                page.get_by_text("enorm.c=1.2 seed=5", exact=True).wait_for(timeout=60_000)
                shown = names.all_inner_texts()
                page.screenshot(path=str(shots / "runs-page.png"))
            finally:
                browser.close()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    expected = {f"{arm} seed={seed}" for arm in ("enorm.c=0", "enorm.c=1.0", "enorm.c=1.2")
                for seed in range(1, 6)}  # fmt: skip
    assert "quickstart" in " ".join(shown)
    rows = {text.strip().splitlines()[-1] for text in shown}  # a color chip, then the name
    assert expected <= rows, shown
    assert (shots / "runs-page.png").stat().st_size > 20_000


UI_STUDY = """\
name: uitiny
description: the UI test's tiny study (2 arms x 2 seeds, 2 epochs on digits)
dataset: {name: digits, val_fraction: 0.1}
model: {name: fully_connected, n_layers: 3, width: 16}
optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
enorm: {c: 0}
train: {epochs: 2, batch_size: 64}
sweep: {enorm.c: {grid: [0, 1.0]}}
seeds: [1, 2]
baseline: {enorm.c: 0}
resources: {cpu: 1}
"""
SYSTEM_CHARTS = ("cpu_utilization_percentage", "system_memory_usage_megabytes",
                 "system_memory_usage_percentage", "disk_usage_percentage")  # fmt: skip


@pytest.fixture(scope="module")
def ui_study(tmp_path_factory):
    """``normstudy run uitiny.yaml`` (4 tiny trials, the default tracking: best models,
    system metrics) from a user's folder: (shell, what it printed)."""
    user = make_shell(tmp_path_factory.mktemp("ui-user"), WORKDIRS["space"])
    (user.cwd / "uitiny.yaml").write_text(UI_STUDY)
    ran = user.run("run", "uitiny.yaml")
    yield user, ran
    user.close()


def column_cells(page, column: str) -> dict[str, str]:
    """Row index -> the text of the runs table's cell in ``column`` (the grid draws the pinned
    name column and the others in separate containers: rows match by their index)."""
    cells = page.locator(f'.ag-row [col-id="attributes.`{column}`"]').evaluate_all(
        "cells => cells.map(c => [c.closest('.ag-row').getAttribute('row-index'), c.innerText])")
    return {index: text.strip() for index, text in cells}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install)")
def test_the_runs_table_and_a_trial_page_show_dataset_source_models_and_system_metrics(
        ui_study, tmp_path):  # fmt: skip
    """What a user sees of issue 27 in Chromium: the runs table's Dataset (name and digest),
    Source (the study file) and Models (each arm's best trial) columns filled, and a best
    trial's page with its dataset, source, registered model version and system metric charts.
    The screenshots are kept in the test's folder (or NORMSTUDY_SCREENSHOTS)."""
    from studies.store.inputs import user_name
    from studies.store.models import MODEL_TAG, alias_of

    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev)")
    user, ran = ui_study
    assert ran.code == 0, ran.text
    assert "MLflow models: models:/uitiny@" in ran.err and "warning" not in ran.text.lower()
    assert not (user.cwd / "mlruns").exists()  # the models' files are in the study's store
    client, experiment, parents, children = study_runs(user, "uitiny")
    digest = children[0].inputs.dataset_inputs[0].dataset.digest
    modelled = {r.info.run_name for r in children if MODEL_TAG in r.data.tags}
    assert len(children) == 4 and len(modelled) == 2  # log_model: best, one per arm
    best = next(r for r in children if r.info.run_name in modelled)
    version = client.get_model_version_by_alias("uitiny", alias_of(best.data.tags["arm"]))
    assert version.run_id == best.info.run_id
    for run in children:  # the Duration column: the trial's start to its end, however late
        stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert run.info.start_time <= min(stamps) and run.info.end_time >= max(stamps)
    shots = Path(os.environ.get("NORMSTUDY_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc, log, handle, base = start_ui(user, port)
    runs_url = f"{base}/#/experiments/{experiment.experiment_id}/runs"
    with handle, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1100})
            page.goto(runs_url, timeout=120_000)
            names = page.locator(NAME_CELL)
            names.filter(has_text="uitiny").first.wait_for(timeout=120_000)
            names.filter(has_text="uitiny").first.locator("button").first.click()  # expand
            for run in children:
                page.get_by_text(run.info.run_name, exact=True).wait_for(timeout=60_000)
            page.get_by_text("model", exact=True).first.wait_for(timeout=60_000)
            table = {column: column_cells(page, column)
                     for column in ("Run Name", "Dataset", "Source", "Models")}  # fmt: skip
            page.screenshot(path=str(shots / "runs-table.png"))

            page.goto(f"{runs_url}/{best.info.run_id}", timeout=120_000)
            page.get_by_text("About this run").wait_for(timeout=120_000)
            page.get_by_role("heading", name="Registered models").wait_for(timeout=60_000)
            page.get_by_text(f"v{version.version}", exact=True).first.wait_for(timeout=60_000)
            overview = page.inner_text("body")
            page.screenshot(path=str(shots / "trial-overview.png"), full_page=True)

            page.get_by_role("tab", name="System metrics").click()
            page.get_by_text(SYSTEM_CHARTS[0], exact=True).first.wait_for(timeout=120_000)
            charts = page.locator(".js-plotly-plot")
            charts.nth(5).wait_for(timeout=60_000)
            system = page.inner_text("body")
            chart_count = charts.count()
            page.screenshot(path=str(shots / "system-metrics.png"), full_page=True)
        finally:
            browser.close()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    rows = {index: text.splitlines()[-1] for index, text in table["Run Name"].items()}
    assert sorted(rows.values()) == sorted(["uitiny", *(r.info.run_name for r in children)])
    for index, name in rows.items():
        source, dataset, models = (table[c][index] for c in ("Source", "Dataset", "Models"))
        assert source == "uitiny.yaml", (name, source)
        if name == "uitiny":  # the parent: no data of its own, no model
            assert dataset == "-" and models == "-"
            continue
        assert dataset.splitlines()[:2] == [f"digits ({digest})", "Training"], (name, dataset)
        assert models == ("model" if name in modelled else "-"), (name, models)
    for text in (best.info.run_name, "uitiny.yaml", f"digits ({digest})", "Registered models",
                 f"v{version.version}", user_name()):  # fmt: skip
        assert text in overview, text
    shown = int(re.search(r"System metrics\s*\((\d+)\)", system).group(1))
    assert shown == chart_count >= 6, system  # CPU, memory (2), disk (3), GPUs where there are
    for chart in SYSTEM_CHARTS:
        assert chart in system
    assert "network" not in system
    for shot in ("runs-table.png", "trial-overview.png", "system-metrics.png"):
        assert (shots / shot).stat().st_size > 20_000, shot
