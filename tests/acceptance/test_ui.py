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
from user_shell import free_port, wait_for

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
