"""The driver's cost per trial as a study grows: normstudy against bare Ray Tune.

For each N of ``--trials`` (default 100 1000 3000), a study of N minimal trials (a tiny MLP
on digits, 5 epochs of 2 steps, 1 CPU per trial; N / 5 arms of ``optimizer.lr`` x 5 seeds;
no model logged at the end) runs three ways, each in its own subprocess with its own local Ray:

* ``normstudy run`` (MLflow in SQLite in the results directory, progress, everything);
* bare Ray Tune: a ``Tuner`` over the same trainable (the same ``run_trial``), the same
  param space and Tune settings, Ray's defaults and no callbacks; ``--bare-loggers json``
  keeps only Ray's JSON logger, as normstudy does (default ``ray``: Ray's automatic JSON,
  CSV and TensorBoard loggers);
* ``normstudy compare`` on the normstudy study (results directory, report logged to MLflow).

Printed per N: wall times, the time per 100 trials at the start and at the end of the run
(from the trials' end times: the ``timestamp`` of each trial's last result), normstudy / bare, the
comparison time, and the progress ETA at half-way against the time that was really left.
``--resume N`` (default 1000, 0: skip) also runs a study of N trials, stops it with SIGTERM
at half-way (as Ctrl-C would), resumes it and checks the accounting: no trial lost or run
twice (a trial that had finished reports nothing after the stop, every trial reports every
epoch), MLflow holds 1 parent + N children with every epoch once.

    python bench/scale.py [--trials 100 1000 3000] [--resume 1000] [--skip-bare]
                          [--bare-loggers ray|json] [--checkpoint-every-s S] [--out PATH]

prints a table and writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/scale.py` from anywhere

from bench._common import RESULTS, print_table, write_json  # noqa: E402

NORMSTUDY = str(Path(sys.executable).parent / "normstudy")
SEEDS = [1, 2, 3, 4, 5]
EPOCHS = 5
TRAIN_EXTRA: dict[str, Any] = {}  # --checkpoint-every-s, for every study of the run
STATUS = re.compile(r"(\d+)/(\d+) done, (\d+) running.*\[(\d+)s(?:, ETA (\d+)s)?\]")


def study_spec(name: str, trials: int) -> dict[str, Any]:
    """``trials`` minimal trials: ``trials / 5`` learning rates x 5 seeds."""
    seeds = SEEDS[: min(len(SEEDS), trials)]
    arms = max(1, trials // len(seeds))
    lrs = [round(0.01 + 0.0005 * i, 6) for i in range(arms)]
    return {
        "name": name,
        "description": f"bench/scale.py: {arms * len(seeds)} minimal trials",
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 16},
        "optimizer": {"name": "sgd", "lr": lrs[0], "momentum": 0.9},
        "train": {"epochs": EPOCHS, "batch_size": 32, "steps_per_epoch": 2, **TRAIN_EXTRA},
        "sweep": {"optimizer.lr": {"grid": lrs}},
        "seeds": seeds,
        "baseline": {"optimizer.lr": lrs[0]},
        "resources": {"cpu": 1},
        # the study's end logs each arm's best model (tracking.log_model: best): N / 5 models,
        # ~0.13 s each on this machine, a one-off cost of the arms, not of the driver's loop
        # measured here (bench/tracking.py measures tracking)
        "tracking": {"log_model": "none"},
    }


def env() -> dict[str, str]:
    """A new local Ray per subprocess, unbuffered output, one thread per trial."""
    out = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "local", "OMP_NUM_THREADS": "1"}
    out.pop("MLFLOW_TRACKING_URI", None)
    # Ray kills the newest workers when the *machine* is short of memory, whoever uses it; a
    # shared machine's other processes must not stop the benchmark's trials.
    out.setdefault("RAY_memory_monitor_refresh_ms", "0")
    return out


class Command:
    """A subprocess in its own session whose output lines are kept with their arrival time."""

    def __init__(self, args: list[str], log: Path):
        self.lines: list[tuple[float, str]] = []
        self.log = log.open("w")
        self.started = time.time()
        self.proc = subprocess.Popen(args, cwd=REPO, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))
            self.log.write(line)
        self.log.flush()

    def wait(self) -> float:
        code = self.proc.wait()
        self.reader.join()
        ended = time.time()
        if code != 0:
            tail = "".join(line for _, line in self.lines[-30:])
            raise SystemExit(f"{self.proc.args} exited with {code}:\n{tail}")
        return ended - self.started

    def finished(self) -> int:
        return sum(" finished (" in line for _, line in self.lines)


def end_times(folder: Path) -> list[float]:
    """Each trial's end time (the ``timestamp`` of its last reported epoch), sorted. (Not the
    file's mtime: Ray Tune closes every result file when the experiment ends.)"""
    times = []
    for path in folder.glob("trial_*/result.json"):
        lines = path.read_text().splitlines()
        for line in reversed(lines):
            try:
                times.append(float(json.loads(line)["timestamp"]))
                break
            except (ValueError, KeyError):
                continue
    return sorted(times)


def per_hundred(times: list[float], started: float) -> list[float]:
    """Seconds each successive 100 trials took to end (the first from the driver's start)."""
    marks = [started, *times[99::100]]
    if len(times) % 100:
        marks.append(times[-1])
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def eta_at_half(lines: list[tuple[float, str]], trials: int) -> dict[str, Any]:
    """The first progress ETA printed at or after half-way, against the time that was really
    left until the last trial ended (both from the progress lines' own elapsed times)."""
    found = [STATUS.search(line) for _, line in lines]
    found = [m for m in found if m]
    half = next((m for m in found if int(m[1]) >= trials // 2 and m[5]), None)
    last = found[-1] if found else None  # the last trial's end (or the one before it)
    if half is None or last is None:
        return {}
    eta, left = float(half[5]), float(last[4]) - float(half[4])
    return {"done": int(half[1]), "eta_s": eta, "left_s": left,
            "eta_error": (eta - left) / left if left > 0 else None}  # fmt: skip


def run_normstudy(work: Path, trials: int, tag: str = "") -> dict[str, Any]:
    name = f"scale{tag}-{trials}"
    spec_file = work / f"{name}.yaml"
    spec_file.write_text(yaml.safe_dump(study_spec(name, trials), sort_keys=False))
    storage = work / "results"
    cmd = Command([NORMSTUDY, "run", str(spec_file), "--storage", str(storage), "--overwrite"],
                  work / f"{name}.log")  # fmt: skip
    wall = cmd.wait()
    times = end_times(storage / name)
    hundreds = per_hundred(times, cmd.started)
    row = {"N": trials, "normstudy_s": wall, "first_100_s": hundreds[0],
           "last_100_s": hundreds[-1], "per_100_s": hundreds,
           "eta": eta_at_half(cmd.lines, trials)}  # fmt: skip
    if len(hundreds) > 2:  # the first hundred also holds Ray's start: compare the 2nd
        row["flat_ratio"] = hundreds[-1] / hundreds[1]
    started = time.time()
    compare = Command([NORMSTUDY, "compare", name, "--storage", str(storage)],
                      work / f"{name}-compare.log")  # fmt: skip
    row["compare_s"] = compare.wait()
    row["compare_in_process_s"] = time.time() - started
    return row


def run_bare(work: Path, trials: int, loggers: str) -> dict[str, Any]:
    name = f"bare-{trials}"
    spec_file = work / f"{name}.yaml"
    spec_file.write_text(yaml.safe_dump(study_spec(name, trials), sort_keys=False))
    cmd = Command([sys.executable, __file__, "--bare-worker", str(spec_file),
                   "--storage", str(work / "bare"), "--bare-loggers", loggers],
                  work / f"{name}.log")  # fmt: skip
    wall = cmd.wait()
    hundreds = per_hundred(end_times(work / "bare" / name), cmd.started)
    return {"bare_s": wall, "bare_first_100_s": hundreds[0], "bare_last_100_s": hundreds[-1],
            "bare_per_100_s": hundreds}  # fmt: skip


def bare_worker(spec_file: Path, storage: Path, loggers: str) -> None:
    """The same trials under a plain Ray Tune ``Tuner``: no normstudy callbacks, no MLflow,
    Ray's own defaults (keep every checkpoint, the old console output, quiet); with
    ``loggers="json"`` only the JSON logger."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1" if loggers == "json" else "0"
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from studies.run.tune import connect_ray, param_space, reuse_actors, trainable_with_resources
    from studies.trial.validation import load_spec

    spec = load_spec(spec_file, [])
    connect_ray(None)
    tuner = tune.Tuner(
        trainable_with_resources(spec),
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.metric.name, mode=spec.metric.mode,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
                                    reuse_actors=reuse_actors()),  # fmt: skip
        run_config=tune.RunConfig(name=spec.name, storage_path=str(storage.resolve()),
                                  verbose=0, callbacks=[JsonLoggerCallback()]),  # fmt: skip
    )
    tuner.fit()


def trial_rows(folder: Path) -> dict[str, list[int]]:
    """Trial directory -> the epochs its ``result.json`` reported, in order."""
    rows = {}
    for path in folder.glob("trial_*/result.json"):
        epochs = []
        for line in path.read_text().splitlines():
            try:
                epochs.append(int(json.loads(line)["epoch"]))
            except (ValueError, KeyError):
                continue
        rows[path.parent.name] = epochs
    return rows


def mlflow_accounting(storage: Path, name: str, trials: int) -> dict[str, Any]:
    from mlflow import MlflowClient

    from studies.store.queries import search_all, study_filter

    client = MlflowClient(tracking_uri=f"sqlite:///{storage / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)  # a study's experiment: its name
    parents = search_all(client, experiment.experiment_id, study_filter(name, "study"))
    children = search_all(client, experiment.experiment_id, study_filter(name, "trial"))
    trial_ids = [run.data.tags["normstudy.trial_id"] for run in children]
    bad = []
    for run in children:
        for key in ("epoch", "val_acc", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            if sorted(steps) != list(range(1, EPOCHS + 1)):
                bad.append((run.data.tags["normstudy.trial_id"], key, steps))
    return {"parents": len(parents), "children": len(children),
            "distinct_trial_ids": len(set(trial_ids)),
            "unfinished_runs": sum(run.info.status != "FINISHED" for run in children),
            "runs_with_wrong_epochs": len(bad), "examples": bad[:3],
            "ok": len(parents) == 1 and len(children) == len(set(trial_ids)) == trials
            and not bad}  # fmt: skip


def run_resume(work: Path, trials: int) -> dict[str, Any]:
    """Stop a study with SIGTERM at half-way, resume it, check that nothing was lost or
    run twice."""
    name = f"resume-{trials}"
    spec_file = work / f"{name}.yaml"
    spec_file.write_text(yaml.safe_dump(study_spec(name, trials), sort_keys=False))
    storage = work / "results"
    first = Command([NORMSTUDY, "run", str(spec_file), "--storage", str(storage), "--overwrite"],
                    work / f"{name}-1.log")  # fmt: skip
    while first.proc.poll() is None and first.finished() < trials // 2:
        time.sleep(0.2)
    stopped_at = time.time()
    os.kill(first.proc.pid, signal.SIGTERM)
    first.proc.wait()
    first.reader.join()
    stop_s = time.time() - stopped_at
    folder = storage / name
    before = trial_rows(folder)
    sys.path.insert(0, str(REPO))
    from studies.store.results import trial_statuses

    done = {f"trial_{t}" for t, s in trial_statuses(folder).items() if s == "TERMINATED"}
    second = Command([NORMSTUDY, "resume", name, "--storage", str(storage)],
                     work / f"{name}-2.log")  # fmt: skip
    while second.proc.poll() is None and not second.finished():
        time.sleep(0.05)
    restore_s = (second.lines[-1][0] if second.lines else time.time()) - second.started
    resume_s = second.wait()
    after = trial_rows(folder)
    rerun = sorted(t for t in done if after.get(t) != before.get(t))
    incomplete = sorted(t for t, e in after.items() if set(e) != set(range(1, EPOCHS + 1)))
    return {"N": trials, "finished_at_stop": len(done), "stop_s": stop_s,
            "restore_to_first_trial_end_s": restore_s, "resume_wall_s": resume_s,
            "trials": len(after), "finished_trials_rerun": len(rerun),
            "trials_missing_epochs": len(incomplete),
            "mlflow": mlflow_accounting(storage, name, trials)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--resume", type=int, default=1000, help="0: skip the resume check")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--bare-loggers", choices=("ray", "json"), default="ray",
                        help="bare Ray Tune with Ray's automatic loggers (JSON, CSV, "
                        "TensorBoard) or only the JSON logger, as normstudy runs")
    parser.add_argument("--work", type=Path, default=None, help="keep the studies here")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--checkpoint-every-s", type=float, default=None,
                        help="train.checkpoint_every_s of the studies (default: the spec's); "
                        "0 checkpoints every epoch, as normstudy did before issue 19")
    parser.add_argument("--bare-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--storage", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        return bare_worker(args.bare_worker, args.storage, args.bare_loggers)
    if args.checkpoint_every_s is not None:
        TRAIN_EXTRA["checkpoint_every_s"] = args.checkpoint_every_s
    work = args.work or Path(tempfile.mkdtemp(prefix="normstudy-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"studies and logs in {work}", flush=True)
    rows, resume = [], None
    for trials in args.trials:
        row = run_normstudy(work, trials)
        print(json.dumps(row), flush=True)
        if not args.skip_bare:
            row.update(run_bare(work, trials, args.bare_loggers))
            row["overhead"] = row["normstudy_s"] / row["bare_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.resume:
        resume = run_resume(work, args.resume)
        print(json.dumps(resume), flush=True)
    columns = [("N", "d"), ("normstudy_s", ".0f"), ("first_100_s", ".1f"), ("last_100_s", ".1f"),
               ("flat_ratio", ".2f"), ("bare_s", ".0f"), ("overhead", ".2f"),
               ("compare_s", ".1f"), ("eta_error", "+.0%")]  # fmt: skip
    table = [{**row, "eta_error": row["eta"].get("eta_error")} for row in rows]
    print_table(columns, table)
    if resume:
        restore = resume["restore_to_first_trial_end_s"]
        print(f"resume of {resume['N']}: first trial end {restore:.1f} s after `resume` started;"
              f" rerun {resume['finished_trials_rerun']}, missing "
              f"epochs {resume['trials_missing_epochs']}, MLflow {resume['mlflow']['parents']} "
              f"parent + {resume['mlflow']['children']} children, ok={resume['mlflow']['ok']}")
    import torch

    settings = {"epochs": EPOCHS, "steps_per_epoch": 2, "work": str(work),
                "bare_loggers": args.bare_loggers, **TRAIN_EXTRA}
    write_json("scale", torch.device("cpu"), {"settings": settings, "resume": resume}, rows,
               args.out or RESULTS / "scale.json")  # fmt: skip


if __name__ == "__main__":
    main()
