"""Bad input found by trying the CLI as a hostile user: exit 2, one message naming the field
or path and the fix, no traceback, within seconds, nothing written or lost."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml
from user_shell import wait_for

pytestmark = pytest.mark.acceptance


def refused(ran, *names: str, seconds: float = 20) -> list[str]:
    """The problem lines of a refusal; checks exit 2, no traceback, every name mentioned, and
    that the command used under ``seconds`` of CPU (wall time is what the load makes it)."""
    assert ran.code == 2, ran.text
    assert "Traceback" not in ran.text, ran.text
    assert ran.cpu_seconds < seconds, f"used {ran.cpu_seconds:.0f} CPU seconds"
    for name in names:
        assert name in ran.err, (name, ran.err)
    return [line for line in ran.err.splitlines() if line.startswith("  ")]


def test_an_empty_grid_is_one_line_naming_it(shell):
    ran = shell.run("validate", "quickstart", "--set", "sweep.enorm.c={grid: []}")
    assert refused(ran) == ["  sweep.enorm.c.grid: needs at least one value"]


def test_a_model_too_big_for_memory_is_refused_at_once_with_its_size(shell):
    ran = shell.run("validate", "quickstart", "--set", "model.n_layers=100000000",
                    "--set", "model.width=100000000")  # fmt: skip
    (line,) = refused(ran, "model.n_layers / model.width", "parameters", "GiB", seconds=15)
    assert "make it smaller" in line


def test_a_model_too_deep_to_build_is_refused_within_seconds(shell):
    ran = shell.run("validate", "quickstart", "--set", "model.n_layers=100000000")
    (line,) = refused(ran, "model.n_layers", "modules", seconds=15)


def test_a_batch_larger_than_memory_is_refused(shell):
    ran = shell.run("validate", "quickstart", "--set", "train.batch_size=10000000000",
                    "--set", "resources.memory_gb=2")  # fmt: skip
    (line,) = refused(ran, "train.batch_size", "2.0 GiB")


def test_storage_that_is_a_file_is_refused_before_anything_starts(shell):
    (shell.cwd / "results").write_text("not a folder")
    ran = shell.run("run", "quickstart", "--storage", "results")
    refused(ran, "storage", "is a file")
    assert (shell.cwd / "results").read_text() == "not a folder"


@pytest.mark.parametrize("command", ["resume", "compare", "sync"])
def test_an_unknown_study_is_named(shell, command):
    refused(shell.run(command, "no-such-study"), "no-such-study", "study.yaml")


def test_a_missing_spec_file_is_named(shell):
    refused(shell.run("run", "my-study.yaml"), "my-study.yaml", "does not exist")
    assert not shell.results.exists()


def test_list_survives_a_result_line_cut_short_by_a_crash(shell):
    folder = shell.results / "cut"
    (folder / "trial_a").mkdir(parents=True)
    (folder / "trial_b").mkdir()
    spec = {"name": "cut", "model": {"name": "fully_connected", "n_layers": 2, "width": 8},
            "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 2}}  # fmt: skip
    (folder / "study.yaml").write_text(yaml.safe_dump(spec))
    full = json.dumps({"epoch": 2, "val_acc": 0.5})
    for trial in ("trial_a", "trial_b"):
        (folder / trial / "params.json").write_text(json.dumps({"seed": 1}))
    (folder / "trial_a" / "result.json").write_text(full + "\n")
    first = json.dumps({"epoch": 1, "val_acc": 0.4})
    (folder / "trial_b" / "result.json").write_text(first + "\n" + full[:9])  # disk full
    ran = shell.run("list")
    assert ran.code == 0, ran.text
    line = next(line for line in ran.out.splitlines() if line.strip().startswith("cut "))
    assert "1 finished" in line and "1 incomplete" in line


def test_resume_refuses_a_study_yaml_changed_after_the_start(quickstart, tmp_path):
    user, _ = quickstart
    storage = tmp_path / "copy"
    shutil.copytree(user.results / "quickstart", storage / "quickstart")
    spec_file = storage / "quickstart" / "study.yaml"
    data = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    data["optimizer"]["lr"] = 0.5
    spec_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = sorted(p.relative_to(storage) for p in storage.rglob("*"))
    refused(user.run("resume", "quickstart", "--storage", str(storage)), "study.yaml",
            "was changed after the study started", "--set name=")  # fmt: skip
    assert sorted(p.relative_to(storage) for p in storage.rglob("*")) == before


def test_a_study_folder_deleted_mid_run_stops_the_study_with_one_message(shell):
    log = shell.cwd / "run.log"
    with open(log, "w") as handle:
        proc = shell.start("run", "quickstart", stdout=handle, stderr=handle)
        wait_for(lambda: "finished (" in log.read_text(), 240, "the first finished trial", proc)
        # `rm -rf` races with the trials writing into the folder ("Directory not empty"):
        # what matters is that study.yaml and the results are gone.
        shutil.rmtree(shell.results / "quickstart", ignore_errors=True)
        deleted = time.monotonic()
        assert not (shell.results / "quickstart" / "study.yaml").exists()
        proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode == 2, text[-3000:]
    assert time.monotonic() - deleted < 60
    assert "was deleted while the study ran" in text and "--overwrite" in text
    assert not list(shell.results.glob(".*.lease"))  # the lease is released
