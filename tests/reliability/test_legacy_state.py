"""A study whose Ray Tune state was written by normstudy before studies/ moved into layers
(flat modules: studies.spec, studies.tracking, studies.progress, pickled into tuner.pkl)
resumes with the code of today: the old import paths still resolve."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from reliability_kit import (
    EPOCHS,
    Driver,
    assert_tracked_once,
    driver_env,
    result_rows,
    run_cli,
    sqlite_uri,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BEFORE_LAYERS = "da69f02d5ba34604b8258cd2067c05449ac7533d"  # the last flat studies/ package


def old_code(folder: Path) -> Path:
    """studies/ and normlib/ as they were at BEFORE_LAYERS, from the git history."""
    command = ["git", "-C", str(REPO), "archive", BEFORE_LAYERS, "studies", "normlib"]
    archive = subprocess.run(command, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"needs the git history with {BEFORE_LAYERS[:10]} (a full clone)")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    # The old code counted torch's lazy imports (seconds on a loaded machine) into its 3 s
    # wall-clock budget for building the model on the meta device and then refused the tiny
    # model as "too big"; today's code starts a CPU clock after them. Not what this test is
    # about: the old `normstudy` driver (only it: Ray's own Python processes start with this
    # PYTHONPATH too, and must start fast) gets a longer budget.
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "if sys.argv and sys.argv[0].endswith('normstudy'):\n"
        "    import studies.recipes\n"
        "    studies.recipes.BUILD_SECONDS = 120.0\n")
    return folder


def test_a_study_interrupted_by_the_flat_layout_resumes_after_the_move(tmp_path):
    old = old_code(tmp_path / "old")
    storage = tmp_path / "results"
    # Two trials whose epochs take about 2 s (a 2048-wide net, a whole pass over digits): the
    # Ctrl-C below, sent once the first trial's epoch 1 shows in storage, lands while that
    # trial still runs. (With the tiny spec's 0.1 s epochs it once fell between two trials.)
    spec = tiny_spec("legacy", max_concurrent=1, seeds=[1], model__width=2048,
                     train__steps_per_epoch=None)  # fmt: skip
    del spec["train"]["checkpoint_every_s"]  # the old code predates the field
    spec_file = write_spec(tmp_path, spec)
    driver = Driver(["run", str(spec_file), "--storage", str(storage)],
                    # result files reach storage at Ray Tune's state saves: often, to see
                    # the first trial report while it runs
                    env=driver_env(PYTHONPATH=str(old),
                                   TUNE_GLOBAL_CHECKPOINT_S="0.5"))  # fmt: skip
    try:
        deadline = time.time() + 240
        # Interrupted while its first trial runs: the old code called a study "done" (exit 0)
        # when a Ctrl-C fell between two trials, before the next one was created.
        while not any(result_rows(storage / "legacy").values()):
            assert driver.proc.poll() is None, driver.output[-3000:]
            assert time.time() < deadline, driver.output[-3000:]
            time.sleep(0.1)
        os.kill(driver.proc.pid, signal.SIGINT)
        assert driver.wait(60) == 130, driver.output[-3000:]
    finally:
        driver.close()
    pickled = (storage / "legacy" / "tuner.pkl").read_bytes()
    assert b"studies.tracking" in pickled and b"studies.spec" in pickled  # the old paths

    resumed = run_cli(["resume", "legacy", "--storage", str(storage)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert_tracked_once(sqlite_uri(storage), "legacy", trials=2)
    # its Tuner, pickled with Ray's automatic loggers on, got a JSON logger: the trials that
    # ran after the resume wrote their result rows
    last_epochs = [rows[-1]["epoch"] for rows in result_rows(storage / "legacy").values()]
    assert last_epochs == [EPOCHS] * 2
