"""Can a trial run on the cluster: its nodes and autoscaler node types checked at the start,
the waiting line, the stop after ``resources.wait_s``, and the data root warning of cluster
runs. Ray's answers are replaced by dictionaries: no Ray starts."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from studies.config.spec import CannotStart
from studies.run import progress, resources
from studies.run.progress import ProgressCallback
from studies.run.resources import (
    ResourceWatch,
    check_cluster,
    data_root_warnings,
)
from studies.trial.validation import load_spec

GIB = 2**30


def spec_with(*overrides: str):
    return load_spec("quickstart", list(overrides))


def refused(spec, check) -> str:
    with pytest.raises(CannotStart) as err:
        check(spec)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot start the study: ")
    return message.removeprefix("cannot start the study: ")


def cluster(monkeypatch, nodes: list[dict], types: list[dict] | None) -> None:
    monkeypatch.setattr(resources, "alive_nodes", lambda: [{"Resources": n} for n in nodes])
    monkeypatch.setattr(resources, "node_types", lambda: types)


def test_a_cluster_trial_must_fit_one_node_now_or_one_autoscaler_node_type(
    monkeypatch, capsys
):
    spec = spec_with("resources.gpu=1", "resources.cpu=2", "resources.wait_s=90")
    cpu_nodes = [{"CPU": 2.0, "memory": 8.0 * GIB}, {"CPU": 4.0}]
    cluster(monkeypatch, [*cpu_nodes, {"CPU": 1.0, "GPU": 1.0}], None)
    check_cluster(spec, local=False)  # a GPU node with 1 CPU, a 2-CPU node without GPU
    line = capsys.readouterr().out
    assert "[normstudy] waiting for resources: 2 CPUs, 1 GPU per trial on one node" in line
    cluster(monkeypatch, cpu_nodes, None)  # no autoscaler reported: a node may be started
    check_cluster(spec, local=False)
    assert capsys.readouterr().out == (
        "[normstudy] waiting for resources: 1 GPU per trial, the cluster has 0 now; the study "
        "stops after 90s (resources.wait_s) if no trial can start, and `normstudy resume` "
        "continues it\n")  # fmt: skip
    cluster(monkeypatch, cpu_nodes, [{"CPU": 8.0, "GPU": 1.0}])  # the autoscaler can add one
    check_cluster(spec, local=False)
    assert "waiting for resources: 1 GPU per trial" in capsys.readouterr().out
    cluster(monkeypatch, cpu_nodes, [{"CPU": 1.0, "GPU": 4.0}, {"CPU": 1.5}])
    message = refused(spec, lambda s: check_cluster(s, local=False))
    assert message.startswith("resources.cpu: a trial asks for 2 CPUs, the biggest node type "
                              "of the cluster's autoscaler has 1.5;")  # fmt: skip
    cluster(monkeypatch, cpu_nodes, [{"CPU": 8.0}])
    message = refused(spec, lambda s: check_cluster(s, local=False))
    assert message.startswith("resources.gpu: a trial asks for 1 GPU, the biggest node type "
                              "of the cluster's autoscaler has 0;")  # fmt: skip
    cluster(monkeypatch, cpu_nodes, [{"CPU": 8.0}, {"CPU": 1.0, "GPU": 1.0}])
    message = refused(spec, lambda s: check_cluster(s, local=False))
    assert message.startswith("resources: a trial asks for 2 CPUs, 1 GPU on one node; no node "
                              "type of the cluster's autoscaler has all of it")  # fmt: skip
    cluster(monkeypatch, cpu_nodes, None)
    message = refused(spec, lambda s: check_cluster(s, local=True))  # this run's own Ray
    assert message.startswith("resources.gpu: a trial asks for 1 GPU, this machine's Ray has 0;")


def trial(i: int, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"t{i}", status=status, last_result={}, error_file=None)


def test_a_study_waiting_longer_than_wait_s_stops_like_ctrl_c(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    monkeypatch.setattr(ResourceWatch, "text", lambda self, nodes=None: "waiting for resources: "
                        "1 GPU per trial, the cluster has 0 now")  # fmt: skip
    signals = []
    monkeypatch.setattr(progress.os, "kill", lambda pid, sig: signals.append(sig))
    out = io.StringIO()
    callback = ProgressCallback(2, every=10, stream=out, watch=ResourceWatch({"GPU": 1}, 30))
    trials = [trial(0), trial(1)]
    callback.on_step_end(0, trials)  # nothing runs: the clock starts
    now[0] += 11
    callback.on_step_end(1, trials)
    assert "0/2 done, 0 running, 2 pending; waiting for resources: 1 GPU per trial, the " \
           "cluster has 0 now (stops in 19s if none can start)" in out.getvalue()  # fmt: skip
    callback.on_trial_start(2, trials, trials[0])  # a node joined: the clock stops
    now[0] += 60
    callback.on_step_end(3, trials)
    assert signals == []
    callback.on_trial_complete(4, trials, trials[0])
    callback.on_step_end(5, trials)  # idle again from here
    now[0] += 29
    callback.on_step_end(6, trials)
    assert signals == []
    now[0] += 2
    callback.on_step_end(7, trials)
    callback.on_step_end(8, trials)
    assert signals == [progress.signal.SIGINT]  # once: Ray Tune saves its state and stops
    assert "no trial could start for 30s (resources.wait_s; waiting for resources" in \
        out.getvalue()  # fmt: skip
    restored = ProgressCallback.__new__(ProgressCallback)
    restored.__setstate__(callback.__getstate__())  # pickled in the experiment state
    assert restored.watch == ResourceWatch({"GPU": 1}, 30) and not restored.stopped_waiting


def test_an_errored_trials_line_carries_its_cause(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text(
        "Failure # 1 (occurred at x)\n\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1)\n"
        "  File \"t.py\", line 3, in f\n    raise X\nstudies.trial.data.DatasetMissing: "
        "dataset 'mnist': /d/MNIST/raw/x not found on host 'n1'\n"
    )
    out = io.StringIO()
    callback = ProgressCallback(1, stream=out)
    failed = SimpleNamespace(trial_id="t0", status="ERROR", last_result={}, error_file=str(error))
    callback.on_trial_error(0, [failed], failed)
    assert "trial t0 ERRORED (): DatasetMissing: dataset 'mnist': /d/MNIST/raw/x not found on " \
           "host 'n1'" in out.getvalue()  # fmt: skip
    callback.on_trial_recover(1, [failed], failed)
    assert "trial t0 failed: DatasetMissing: dataset 'mnist'" in out.getvalue()


def test_a_data_root_on_a_local_disk_is_a_warning_when_other_hosts_run_trials(
    monkeypatch, tmp_path
):
    spec = load_spec("quickstart", [f"dataset={{name: mnist, root: {tmp_path}}}"],
                     data_here=False)  # a cluster run: the files are looked for on the nodes
    monkeypatch.setattr(resources, "filesystem_type", lambda path: "ext4")
    assert data_root_warnings(spec, ["here", "here"], here="here") == []  # one host: one disk
    [warning] = data_root_warnings(spec, ["here", "gpu-1"], here="here")
    assert warning == (f"dataset.root {tmp_path} is on a local disk of here (ext4); trials on "
                       "gpu-1 read the same path there: put the data on storage every node "
                       "mounts, or copy it to each node")  # fmt: skip
    monkeypatch.setattr(resources, "filesystem_type", lambda path: "nfs4")
    assert data_root_warnings(spec, ["here", "gpu-1"], here="here") == []


def test_filesystem_type_is_the_deepest_mount(tmp_path, monkeypatch):
    mounts = "rootfs / ext4 rw 0 0\nserver:/x /mnt/shared nfs4 rw 0 0\n"
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: mounts
                        if str(self) == "/proc/mounts" else real_read(self, *a, **k))  # fmt: skip
    assert resources.filesystem_type(Path("/mnt/shared/data")) == "nfs4"
    assert resources.filesystem_type(Path("/mnt/sharedx")) == "ext4"


def test_a_cluster_runs_preflight_warns_of_files_missing_here(tmp_path, capsys):
    spec = load_spec("quickstart", [f"dataset={{name: mnist, root: {tmp_path}}}"],
                     data_here=False)  # fmt: skip
    resources.preflight(spec, "127.0.0.1:6379")  # no machine check: the cluster's nodes run it
    err = capsys.readouterr().err
    missing = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert err.startswith("normstudy: warning: on this machine (the cluster's trials read the "
                          "data on their nodes, whose disks the driver cannot look at): dataset "
                          f"'mnist': {missing} does not exist")
