"""A sequential study run for real (Ray Tune + MLflow) on digits, and resumed after kill -9.

Arms against a baseline that cannot learn (lr 1e-6): ``optimizer.lr=0.1`` learns, so it
stops for efficacy early; the null arm differs only in ``train.eval_batch_size`` and so
matches the baseline seed for seed (every difference 0, t = 0): with ``futility: none`` it
never crosses and runs to the last look. Looks [2, 3, 4], Pocock spending.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from normlib.stats import SequentialDesign

pytestmark = pytest.mark.integration

NULL, BASE, LEARNS = ("optimizer.lr=1e-06 train.eval_batch_size=512", "optimizer.lr=1e-06",
                      "optimizer.lr=0.1")  # fmt: skip
SPEC = {
    "name": "seqrun",
    "dataset": {"name": "digits", "val_fraction": 0.1},
    "model": {"name": "fully_connected", "n_layers": 2, "width": 16},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 2, "batch_size": 64, "steps_per_epoch": 6},
    "arms": [{"optimizer.lr": 1e-6, "train.eval_batch_size": 512}, {"optimizer.lr": 1e-6},
             {"optimizer.lr": 0.1}],  # fmt: skip
    "baseline": {"optimizer.lr": 1e-6, "train.eval_batch_size": 1024},
    "sequential": {"looks": [2, 3, 4], "spending": "pocock", "futility": "none"},
    "metric": {"name": "val_acc", "mode": "max"},
    "resources": {"cpu": 1},
}
NORMSTUDY = Path(sys.executable).parent / "normstudy"


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    spec = tmp_path / "seqrun.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    log = open(tmp_path / f"{args[0]}.log", "a")  # noqa: SIM115 - the process owns it
    command = [str(NORMSTUDY), *args]
    if args[0] == "run":
        command += [str(spec), "--storage", str(tmp_path / "results")]
    else:
        command += ["seqrun", "--storage", str(tmp_path / "results")]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log,
                            start_new_session=True)  # fmt: skip


def check_accounting(tmp_path: Path, study_runs) -> dict:
    """Per arm: seeds run; decisions recomputed by normlib; MLflow 1 parent + 1 run per trial."""
    folder = tmp_path / "results" / "seqrun"
    state = json.loads((folder / "sequential.json").read_text())
    seeds: dict[str, list[int]] = {}
    values: dict[str, dict[int, float]] = {}
    trial_ids = []
    for params in sorted(folder.glob("look-*/trial_*/params.json")):
        config = json.loads(params.read_text())
        arm = config["arm"]
        label = " ".join(f"{k}={v}" for k, v in arm.items())
        seeds.setdefault(label, []).append(config["seed"])
        rows = [json.loads(x) for x in (params.parent / "result.json").read_text().splitlines()]
        values.setdefault(label, {})[config["seed"]] = rows[-1]["val_acc"]
        trial_ids.append(params.parent.name.removeprefix("trial_"))
    for label in seeds:  # no seed twice, none skipped
        assert sorted(seeds[label]) == list(range(1, len(seeds[label]) + 1)), seeds
    arms = {a["arm"]: a for a in state["arms"]}
    assert (arms[NULL]["action"], arms[NULL]["look"], arms[NULL]["n"]) == ("max_seeds", 3, 4)
    assert len(seeds[NULL]) == 4 and len(seeds[BASE]) == 4
    learns = arms[LEARNS]
    assert learns["action"] == "efficacy" and learns["look"] in (1, 2)
    assert len(seeds[LEARNS]) == learns["n"] == [2, 3][learns["look"] - 1]
    design = SequentialDesign((2, 3, 4), 0.025, "pocock", 0.01, None)
    diffs = [values[LEARNS][s] - values[BASE][s] for s in range(1, learns["n"] + 1)]
    assert design.decide(diffs, learns["look"] - 1).action == "efficacy"
    if learns["look"] == 2:
        assert design.decide(diffs[:2], 0).action == "continue"
    assert state["completed_looks"] == 3 and state["done"]
    _, parents, children = study_runs(tmp_path / "results", "seqrun")
    assert len(parents) == 1
    assert Counter(r.data.tags["normstudy.trial_id"] for r in children) == Counter(trial_ids)
    assert all(r.info.status == "FINISHED" for r in [*parents, *children])
    tags = parents[0].data.tags
    assert tags["normstudy.sequential.optimizer.lr_1e-06 train.eval_batch_size_512"].startswith(
        "max seeds at look 3 (4 seeds)")
    assert tags["normstudy.sequential.looks"] == "2,3,4"
    return {label: len(s) for label, s in seeds.items()}


def wait(proc: subprocess.Popen, timeout: float = 600) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("normstudy ran past its time")


def test_looks_stop_arms_and_account_for_every_trial(tmp_path, study_runs):
    assert wait(start(tmp_path, "run")) == 0, (tmp_path / "run.log").read_text()
    log = (tmp_path / "run.log").read_text()
    assert "max seeds at look 3 (4 seeds)" in log and "efficacy at look" in log
    assert "## Sequential confirmation" in (
        tmp_path / "results" / "seqrun" / "comparison" / "report.md").read_text()
    check_accounting(tmp_path, study_runs)


def test_kill_9_between_looks_then_resume(tmp_path, study_runs):
    proc = start(tmp_path, "run")
    state = tmp_path / "results" / "seqrun" / "sequential.json"
    deadline = time.monotonic() + 600
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the study ended before its first look was recorded"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    assert json.loads(state.read_text())["completed_looks"] == 1
    assert wait(start(tmp_path, "resume")) == 0, (tmp_path / "resume.log").read_text()
    check_accounting(tmp_path, study_runs)
