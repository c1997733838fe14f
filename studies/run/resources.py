"""Can a trial run here? Checked before a study starts, watched while it waits.

* **Local runs** (no ``--address``): before Ray starts, a trial's ``resources`` are compared
  with this machine (:func:`studies.trial.hardware.check_machine`: CPUs this process may use,
  GPUs as torch sees them, memory); after Ray starts, with what Ray offers. A trial that cannot
  fit stops the study with exit 2 (one line naming the field, what the machine has, and the
  ways out), nothing written, no Ray left running.
* **Cluster runs** (``--address``): a trial must fit on one node. One that no node can hold
  now, nor any node type of the cluster's autoscaler (where Ray reports them), exits 2 the
  same way; one that fits a node type, or joins a cluster that reports none (a node may be
  started by hand), waits: the progress line says so (:class:`ResourceWatch`) and the study
  stops like Ctrl-C after ``resources.wait_s`` seconds with no trial running (exit 130,
  ``normstudy resume`` continues once the cluster can hold a trial).
* **Data**: the driver downloads the datasets of ``download: true`` once, before any trial
  (:func:`studies.trial.data.fetch_study_data`); for a cluster run it warns when a data root
  is on a local disk while the cluster has nodes on other hosts.

Ray is imported inside the functions that talk to it: the CLI loads Ray only for a run.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studies.config.spec import CannotStart, StudySpec
from studies.trial.hardware import (
    amount,
    check_machine,
    fits,
    quantity,
    refusal,
    shortfall,
    trial_needs,
)
from studies.trial.study_data import fetch_study_data
from studies.trial.validation import missing_data

NETWORK_FILESYSTEMS = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
    "afs", "ocfs2", "panfs", "wekafs", "virtiofs", "9p",
)  # fmt: skip


def preflight(spec: StudySpec, address: str | None,
              say: Callable[[str], None] = print) -> None:  # fmt: skip
    """Before anything is written: a local run's trial fits this machine (a cluster run is
    warned of dataset files missing here: its nodes read them); the datasets of
    ``download: true`` are fetched (or found) once, here (CannotStart: exit 2)."""
    if not remote_run(address):
        check_machine(spec)
    else:
        for problem in missing_data(spec):
            print("normstudy: warning: on this machine (the cluster's trials read the data on "
                  f"their nodes, whose disks the driver cannot look at): {problem}",
                  file=sys.stderr)  # fmt: skip
    fetch_study_data(spec, say=lambda line: say(f"[normstudy] {line}"))


def remote_run(address: str | None) -> bool:
    """Whether the trials run on a Ray cluster (``--address``, RAY_ADDRESS) rather than on a
    Ray this run starts here; a Ray already connected in this process (a study run from
    Python) counts as a cluster: this run did not size it."""
    ray = sys.modules.get("ray")
    connected = ray is not None and ray.is_initialized()
    return bool(address or os.environ.get("RAY_ADDRESS") or connected)


def alive_nodes() -> list[dict]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def cluster_hosts() -> list[str]:
    """The host names of the cluster's alive nodes."""
    return [str(node.get("NodeManagerHostname") or "") for node in alive_nodes()]


def node_types() -> list[dict[str, float]] | None:
    """The resources of each node type the cluster's autoscaler may start (max count not 0),
    or None where Ray reports no autoscaler config (a cluster started by hand, a local Ray)."""
    try:  # Ray reports them only here (Ray Train checks a worker group the same way)
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # an older Ray, a client connection: no autoscaler information
        return None
    if config is None or not config.node_group_configs:
        return None
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def check_cluster(spec: StudySpec, local: bool) -> None:
    """After Ray started (or joined a cluster): SpecError (exit 2) if no node, and no node type
    the autoscaler could start, can hold a trial; the waiting line if none can now."""
    import ray

    needs = trial_needs(spec)
    nodes = [node["Resources"] for node in alive_nodes()]
    if any(fits(needs, node) for node in nodes):
        return
    short = shortfall(needs, nodes) or next(iter(needs))
    most = max((node.get(short, 0.0) for node in nodes), default=0.0)
    if local:
        ray.shutdown()  # the local Ray this run started: nothing left behind
        raise refusal(short, needs[short], most, "this machine's Ray")
    types = node_types()
    if types is not None and not any(fits(needs, kind) for kind in types):
        ray.shutdown()
        lacking = shortfall(needs, types)
        if lacking is None:  # each resource alone fits some node type, all of them none
            asks = ", ".join(amount(key, value) for key, value in needs.items())
            raise CannotStart("resources", f"a trial asks for {asks} on one node; no node type "
                              "of the cluster's autoscaler has all of it: ask for less, or add "
                              "a node type that has")  # fmt: skip
        biggest = max((kind.get(lacking, 0.0) for kind in types), default=0.0)
        raise refusal(lacking, needs[lacking], biggest,
                      "the biggest node type of the cluster's autoscaler")
    print(f"[normstudy] {watch_of(spec).text(nodes)}; the study stops after "
          f"{spec.resources.wait_s:g}s (resources.wait_s) if no trial can start, and `normstudy "
          "resume` continues it", flush=True)  # fmt: skip


def watch_of(spec: StudySpec) -> ResourceWatch:
    return ResourceWatch(trial_needs(spec), spec.resources.wait_s)


@dataclass
class ResourceWatch:
    """What a trial needs and how long a study may wait with no trial running (pickled with
    the progress callback into Ray Tune's experiment state)."""

    needs: dict[str, float]
    wait_s: float

    def text(self, nodes: list[dict[str, float]] | None = None) -> str:
        """``waiting for resources: 1 GPU per trial, the cluster has 0 now``."""
        if nodes is None:
            try:
                nodes = [node["Resources"] for node in alive_nodes()]
            except Exception:  # the cluster did not answer: say what is asked only
                nodes = []
        short = shortfall(self.needs, nodes)
        if short is None:  # each alone fits some node, or the nodes are busy
            asks = ", ".join(amount(key, value) for key, value in self.needs.items())
            return f"waiting for resources: {asks} per trial on one node, none free now"
        total = sum(node.get(short, 0.0) for node in nodes)
        return (f"waiting for resources: {amount(short, self.needs[short])} per trial, the "
                f"cluster has {quantity(short, total)} now")  # fmt: skip


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem ``path`` lies on (/proc/mounts), None where unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target, best, kind = str(Path(path).absolute()), "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def data_root_warnings(spec: StudySpec, hosts: list[str], here: str | None = None) -> list[str]:
    """For a cluster run: a warning per data root on a local disk of this machine while the
    cluster has nodes on other ``hosts`` (the driver cannot look at their disks)."""
    here = here or socket.gethostname()
    others = sorted({host for host in hosts if host and host != here})
    root = spec.dataset.root
    if not others or not root or "://" in root:
        return []
    kind = filesystem_type(Path(root))
    if kind is None or kind in NETWORK_FILESYSTEMS or kind.startswith("fuse."):
        return []
    return [f"dataset.root {root} is on a local disk of {here} ({kind}); trials on "
            f"{', '.join(others[:3])}{' ...' if len(others) > 3 else ''} read the same path "
            "there: put the data on storage every node mounts, or copy it to each node"]
