"""Trial checkpoints through Ray Tune's checkpoint API.

A checkpoint is one ``state.pt`` (model, optimizer, scheduler, RNG states,
epoch) in a Ray Tune checkpoint directory, so it travels to shared storage
the way Ray Tune moves checkpoints between nodes. Loading uses
``weights_only=True``: a checkpoint can never unpickle arbitrary objects.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"


class TuneSession:
    """The :class:`studies.trainable.Session` of a Ray Tune trial.

    Every report also carries ``node_id``, the Ray node the trial ran on.
    """

    def __init__(self) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()

    def restore(self) -> dict[str, Any] | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict[str, float], state: Callable[[], dict] | None) -> None:
        from ray import tune

        metrics = {**metrics, "node_id": self.node_id}
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
