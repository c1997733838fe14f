"""The user's own code travels with the study (issue 17): a package that exists only in a
temporary folder on the driver's side (not installed, not in the driver's working directory)
trains on the worker node of the local two-node cluster, shipped by ``--code`` as Ray
``py_modules``."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

pytestmark = pytest.mark.cluster

NETS = """
from torch import nn


class Wide(nn.Module):
    def __init__(self, in_features, num_classes, width=1024):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)
"""

HOOKS = """
import json
import os
from pathlib import Path

import ray


class WhereAmI:
    '''Records, once per trial, the Ray node and the file this module was imported from.'''

    def __init__(self, model, optimizer, log_dir):
        record = {"node_id": ray.get_runtime_context().get_node_id(), "file": __file__}
        Path(log_dir, f"{os.getpid()}-{id(self)}.json").write_text(json.dumps(record))

    def step(self):
        pass
"""


def test_a_package_only_on_the_driver_side_trains_on_the_worker_node(local_cluster, tmp_path,
                                                                   results_of):
    code = tmp_path / "driver-only"
    (code / "ownpkg17").mkdir(parents=True)
    (code / "ownpkg17" / "nets.py").write_text(textwrap.dedent(NETS))
    (code / "ownpkg17" / "hooks.py").write_text(textwrap.dedent(HOOKS))
    log_dir = tmp_path / "where"
    log_dir.mkdir()
    spec = {
        "name": "own-code-cluster",
        "dataset": {"name": "digits"},
        "model": {"name": "ownpkg17.nets:Wide", "width": 1024},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "method": {"name": "ownpkg17.hooks:WhereAmI", "log_dir": str(log_dir)},
        "train": {"epochs": 2, "batch_size": 16},
        "sweep": {"optimizer.lr": {"grid": [0.05, 0.02]}},
        "seeds": [1, 2],
        "baseline": {"optimizer.lr": 0.05},
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(spec))
    storage = tmp_path / "results"
    done = local_cluster.normstudy(
        "run", str(tmp_path / "own.yaml"), "--code", str(code), "--storage", str(storage),
        "--address", local_cluster.ray_address, "--tracking-uri", local_cluster.mlflow_uri,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "4 finished" in output

    nodes = local_cluster.nodes()
    worker = next(node for node, head in nodes.items() if not head)
    rows = results_of(storage / "own-code-cluster")
    assert len(rows) == 4 and all([r["epoch"] for r in t] == [1, 2] for t in rows.values())
    on_worker = [name for name, trial in rows.items() if trial[-1]["node_id"] == worker]
    print(f"trials on the worker node {worker[:12]}: {on_worker}")
    assert on_worker, f"no trial finished on the worker node; nodes: {nodes}"

    records = [json.loads(p.read_text()) for p in log_dir.glob("*.json")]
    assert {r["node_id"] for r in records} >= {worker}
    for record in records:  # imported from Ray's copy of the package, not the driver's folder
        assert not record["file"].startswith(str(code)), record
        assert "runtime_resources" in record["file"] and record["file"].endswith(
            "ownpkg17/hooks.py"), record
