"""Trial checkpoints through Ray Tune's checkpoint API.

A checkpoint is one ``state.pt`` (model, optimizer, scheduler, RNG states,
epoch) in a Ray Tune checkpoint directory, so it travels to shared storage
the way Ray Tune moves checkpoints between nodes. Loading uses
``weights_only=True``: a checkpoint can never unpickle arbitrary objects.

Damage is survivable. A checkpoint that cannot be read (truncated, corrupted,
or holding anything but tensors and plain data) is reported, and the trial
restarts from the previous checkpoint Ray Tune kept (``num_to_keep``); only
if none is usable does the trial fail, with a message saying how to retrain
it. Writing goes to a temporary name first, so a full disk leaves a clear
error and the earlier checkpoints as they were.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # Ray loads lazily (validation and the CLI import this module)
    from ray.tune import Checkpoint

STATE_FILE = "state.pt"
REQUIRED = ("model", "optimizer", "scheduler", "data_rng", "torch_rng", "epoch", "step")
# Testing aid (like train.fail_at_epoch): "EPOCH" or "EPOCH@TEXT" makes the checkpoint write of
# that epoch fail as if the disk were full, after writing half of the file (with @TEXT: only in
# trials whose directory contains TEXT).
FAULT_ENV = "NORMSTUDY_FAULT_DISK_FULL_AT_EPOCH"
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or written; the message says what to do."""


def load_state(folder: str | Path) -> dict[str, Any]:
    """The trial state in a checkpoint directory (tensors and plain data only)."""
    path = Path(folder) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing its {STATE_FILE}") from None
    except Exception as err:  # truncated zip, bad pickle, forbidden global, ...
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {detail}); it is "
            "truncated or corrupted, or holds more than tensors and plain data (checkpoints "
            "load with weights_only=True)"
        ) from None
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a normstudy trial state "
                              f"(missing {', '.join(missing)})")  # fmt: skip
    return state


def _index(path: str) -> int | None:
    match = _CHECKPOINT_DIR.match(posixpath.basename(path.rstrip("/")))
    return int(match.group(1)) if match else None


def _siblings(checkpoint: Checkpoint) -> list[str]:
    """The paths of the trial's checkpoint directories beside ``checkpoint``, newest first."""
    from pyarrow import fs

    parent = posixpath.dirname(checkpoint.path.rstrip("/"))
    if checkpoint.filesystem is None:  # Ray gives every checkpoint one
        return []
    try:
        infos = checkpoint.filesystem.get_file_info(fs.FileSelector(parent))
    except OSError:
        return []
    paths = [info.path for info in infos
             if info.type == fs.FileType.Directory and _index(info.path) is not None]  # fmt: skip
    return sorted(paths, key=lambda p: _index(p) or 0, reverse=True)  # each has an index


def fallbacks(checkpoint: Checkpoint) -> list[Checkpoint]:
    """The checkpoints to try, newest first: ``checkpoint`` (the one the experiment state Ray
    Tune saved last names), then the older ones Ray Tune kept. Never a newer one: the driver
    may have died before it recorded that epoch's result, which would then be lost."""
    from ray import tune

    latest = _index(checkpoint.path)
    if latest is None:
        return [checkpoint]
    older = [tune.Checkpoint(p, filesystem=checkpoint.filesystem)
             for p in _siblings(checkpoint) if (_index(p) or 0) < latest]  # fmt: skip
    return [checkpoint, *older]


def restore_checkpoint(checkpoint: Checkpoint) -> tuple[dict[str, Any], list[str]]:
    """The newest readable state among ``checkpoint`` and its predecessors, and a warning per
    unreadable one. Raises :class:`CheckpointError` if none can be read."""
    problems: list[str] = []
    for candidate in fallbacks(checkpoint):
        try:
            with candidate.as_directory() as folder:
                state = load_state(folder)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            problems[-1] += (f"; restarting from the previous checkpoint "
                             f"{posixpath.basename(candidate.path)} (epoch {state['epoch']})")
        return state, problems
    raise CheckpointError(
        "no usable checkpoint for this trial: " + "; ".join(problems) + ". To retrain it from "
        "epoch 1, delete its checkpoint_* folders and run `normstudy resume STUDY --retry-errored`"
    )


def _fault_armed(epoch: int) -> bool:
    at, _, where = os.environ.get(FAULT_ENV, "").partition("@")
    if at.strip() != str(epoch):
        return False
    if not where:
        return True
    from ray import tune

    return where in str(tune.get_context().get_trial_dir())


def write_state(state: dict[str, Any], folder: Path, epoch: int, fail: bool = False) -> Path:
    """Save ``state`` as ``folder/state.pt`` via a temporary name (no half-written state.pt).
    ``fail`` injects a disk-full error (testing aid)."""
    target, partial = folder / STATE_FILE, folder / f"{STATE_FILE}.partial"
    try:
        if fail:
            with open(partial, "wb") as handle:
                handle.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, f"No space left on device (injected by {FAULT_ENV})")
        torch.save(state, partial)
        os.replace(partial, target)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise CheckpointError(_write_error(epoch, err)) from None
    return target


def _write_error(epoch: int, err: OSError) -> str:
    reason = os.strerror(err.errno) if err.errno else str(err)
    hint = " (is the disk full?)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return (f"could not write the checkpoint of epoch {epoch}: {reason}{hint}: {err}. The "
            "earlier checkpoints are intact; free space, then `normstudy resume STUDY "
            "--retry-errored` continues this trial from its last checkpoint")  # fmt: skip


class TuneSession:
    """The :class:`studies.trial.trainable.Session` of a Ray Tune trial.

    Every report also carries ``node_id``, the Ray node the trial ran on; the first
    report after a restore carries ``restored_from_epoch`` (and ``checkpoint_warning``
    when a damaged checkpoint was skipped).
    """

    def __init__(self) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self._notes: dict[str, Any] = {}

    def restore(self) -> dict[str, Any] | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        state, problems = restore_checkpoint(checkpoint)
        self._notes = {"restored_from_epoch": int(state["epoch"])}
        if problems:
            warning = "; ".join(problems)
            print(f"[normstudy] warning: {warning}", file=sys.stderr, flush=True)
            self._notes["checkpoint_warning"] = warning
        return state

    def report(self, metrics: dict[str, Any], state: Callable[[], dict] | None) -> None:
        from ray import tune

        metrics = {**metrics, **self._notes, "node_id": self.node_id}
        self._notes = {}
        if state is None:
            tune.report(metrics)
            return
        epoch = int(metrics.get("epoch", 0))
        with tempfile.TemporaryDirectory() as folder:
            write_state(state(), Path(folder), epoch, fail=_fault_armed(epoch))
            try:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            except OSError as err:  # copying into the results directory failed
                raise CheckpointError(_write_error(epoch, err)) from None
