"""``normstudy``: run, resume, inspect and compare hyperparameter studies.

Exit codes: 0 success, 1 the study ran but trials errored, 2 bad input
(nothing was started or written), 130 interrupted by Ctrl-C / SIGTERM (resume
continues it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from studies.spec import DEFAULT_STORAGE, SpecError, catalog_names, load_spec, read_yaml

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
EPILOG = """examples:
  normstudy run quickstart                      # the offline ENorm study (3 min on a laptop)
  normstudy run my-study.yaml --set train.epochs=5 --set 'seeds=[1,2]'
  normstudy run enorm-fc-cifar10 --smoke        # any study, shrunk to a 1-minute check
  normstudy resume quickstart                   # continue after a crash or Ctrl-C
  normstudy ui                                  # browse every study in MLflow
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        return args.handler(args)
    except SpecError as err:
        print(f"normstudy: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("normstudy: interrupted; continue with `normstudy resume NAME`", file=sys.stderr)
        return INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normstudy",
        description="Hyperparameter studies of normalization and optimization methods "
        "on Ray Tune, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def spec_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", help="a study YAML file or a catalog name (see `normstudy list`)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                       help="override a field, e.g. --set optimizer.lr=0.05 (YAML value)")
        p.add_argument("--smoke", action="store_true",
                       help="shrink the study to a quick offline check (1-2 epochs, tiny model)")
        p.add_argument("--storage", help=f"results directory (default: spec's, {DEFAULT_STORAGE})")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                       "else SQLite in the results directory)")  # fmt: skip

    run = commands.add_parser("run", help="run a study")
    spec_args(run)
    run.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); default: "
                     "RAY_ADDRESS, else a local Ray")  # fmt: skip
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing study of that name"
    )
    run.set_defaults(handler=cmd_run)

    submit = commands.add_parser(
        "submit", help="run a study as a Ray job: the driver runs on the cluster's head node"
    )
    spec_args(submit)
    submit.add_argument("--address", help="Ray job API (dashboard) address; default: "
                        "RAY_API_SERVER_ADDRESS, else http://127.0.0.1:8265")  # fmt: skip
    submit.add_argument("--overwrite", action="store_true",
                        help="replace an existing study of that name on the cluster")
    submit.add_argument("--wait", action="store_true", help="follow the job's log to the end; "
                        "exit 0 SUCCEEDED, 1 FAILED, 3 STOPPED")  # fmt: skip
    submit.set_defaults(handler=cmd_submit)

    validate = commands.add_parser("validate", help="check a spec without running it")
    spec_args(validate)
    validate.set_defaults(handler=cmd_validate)

    resume = commands.add_parser("resume", help="continue an interrupted study")
    resume.add_argument("study", help="study name (under the results directory) or its directory")
    resume.add_argument("--storage", help=f"results directory (default {DEFAULT_STORAGE})")
    resume.add_argument("--address", help="Ray cluster address")
    resume.add_argument("--retry-errored", action="store_true",
                        help="also rerun trials that errored (from their last checkpoint)")
    resume.set_defaults(handler=cmd_resume)

    listing = commands.add_parser(
        "list", help="catalog studies and studies in the results directory"
    )
    listing.add_argument("--storage", default=os.environ.get("NORMSTUDY_STORAGE", DEFAULT_STORAGE))
    listing.set_defaults(handler=cmd_list)

    ui = commands.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the default store")
    ui.add_argument("--storage", default=os.environ.get("NORMSTUDY_STORAGE", DEFAULT_STORAGE))
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)

    compare = commands.add_parser(
        "compare", help="paired t-tests of every arm against the baseline (table, report, plots)"
    )
    compare.add_argument("study", help="study name (under the results directory) or its directory")
    compare.add_argument("--metric", help="metric to compare (default: the spec's metric)")
    compare.add_argument("--alpha", type=float, default=0.05,
                         help="significance level after Holm correction (default 0.05)")
    compare.add_argument("--select", default="final", metavar="{final,best_val}",
                         help="final: the metric at the last epoch (default); best_val: the test "
                         "metric at the epoch of the best validation metric")
    compare.add_argument("--source", default="results", metavar="{results,mlflow}",
                         help="read trials from the results directory (default) or from MLflow")
    compare.add_argument("--storage", help=f"results directory (default {DEFAULT_STORAGE})")
    compare.add_argument("--no-log", action="store_true",
                         help="do not log the report and plots to the MLflow parent run")
    compare.set_defaults(handler=cmd_compare)

    sync = commands.add_parser(
        "sync", help="upload to MLflow what it lacks of a study (after a tracking outage)"
    )
    sync.add_argument("study", help="study name (under the results directory) or its directory")
    sync.add_argument("--storage", help=f"results directory (default {DEFAULT_STORAGE})")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's)")
    sync.set_defaults(handler=cmd_sync)
    return parser


def _load(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.storage:
        overrides.append(f"storage={args.storage}")
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        overrides.append(f"tracking.uri={uri}")
    return load_spec(args.spec, overrides, smoke=args.smoke)


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load(args)
    print(f"{spec.name}: valid, {trial_count(spec)}")
    return 0


def trial_count(spec) -> str:
    """``12 trials``, or ``24 search + 15 confirm trials`` for a two-stage study."""
    from studies.stages import total_trials

    search, confirm = total_trials(spec)
    return f"{search} search + {confirm} confirm trials" if confirm else f"{search} trials"


def cmd_run(args: argparse.Namespace) -> int:
    from studies.runner import run_study

    spec = _load(args)
    check_storage(spec.storage)  # before Ray starts or anything is written
    with study_lease(spec.storage, spec.name, args):  # one driver per study (studies/lease.py)
        print(f"[normstudy] study {spec.name!r}: {trial_count(spec)}")
        outcome = run_study(spec, address=args.address, overwrite=args.overwrite)
        return finish(outcome)


def study_lease(storage: str, name: str, args: argparse.Namespace):
    """The lease of study ``name`` in the results folder ``storage``, taken now (LeaseHeld:
    exit 2 while another driver holds it); none for a URI storage."""
    import contextlib

    from studies.lease import acquire_lease

    if "://" in storage:
        return contextlib.nullcontext()
    command = f"normstudy {args.command} {getattr(args, 'spec', None) or args.study}"
    folder = Path(storage).expanduser().resolve()
    return acquire_lease(folder, name, command, interrupt_on_loss=True)


def existing_study_lease(args: argparse.Namespace):
    """The lease of the existing study ``args.study`` (both stages share the search stage's);
    none when there is no such study (the command reports that in its own words)."""
    import contextlib

    from studies.runner import find_study

    try:
        folder = find_study(args.study, args.storage)
        name = read_yaml(folder / "study.yaml").get("confirm_of") or folder.name
    except SpecError:
        return contextlib.nullcontext()
    return study_lease(str(folder.parent), str(name), args)


def cmd_submit(args: argparse.Namespace) -> int:
    from studies.lease import LeaseHeld, read_lease
    from studies.submit import submit_study

    spec = _load(args)  # a bad spec stops here: exit 2, nothing submitted
    storage = Path(spec.storage).expanduser().resolve() if "://" not in spec.storage else None
    holder = read_lease(storage, spec.name) if storage else None
    if holder is not None and holder.gone() is None:  # seen from here; the job's driver checks
        raise LeaseHeld(holder)
    return submit_study(spec, address=args.address, overwrite=args.overwrite, wait=args.wait)


def cmd_resume(args: argparse.Namespace) -> int:
    from studies.runner import resume_study

    with existing_study_lease(args):
        outcome = resume_study(args.study, address=args.address,
                               retry_errored=args.retry_errored, storage=args.storage)  # fmt: skip
        return finish(outcome)


def finish(outcome) -> int:
    """Report a study that ended and compare its arms (not after an interruption)."""
    code = report(outcome)
    if code != INTERRUPTED:
        from studies.compare import compare_after_run

        compare_after_run(outcome)  # prints the table; a failure only warns
    return code


def storage_flag(outcome) -> str:
    """`` --storage DIR`` unless the study is in the default results directory."""
    default = Path(os.environ.get("NORMSTUDY_STORAGE", DEFAULT_STORAGE)).resolve()
    parent = outcome.folder.parent
    return "" if parent.resolve() == default else f" --storage '{parent}'"


def report(outcome) -> int:
    """Print the outcome; the exit code: 0 done, 1 trials errored, 130 interrupted."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(outcome.counts.items()))
    if outcome.interrupted:
        print(f"[normstudy] study {outcome.spec.name!r} interrupted after "
              f"{outcome.seconds:.0f}s: {counts}", file=sys.stderr)  # fmt: skip
        print(f"[normstudy] nothing is lost; continue with `normstudy resume "
              f"{outcome.spec.confirm_of or outcome.spec.name}{storage_flag(outcome)}`",
              file=sys.stderr)  # fmt: skip
        return INTERRUPTED
    print(f"[normstudy] study {outcome.spec.name!r} done in {outcome.seconds:.0f}s: {counts}")
    print(f"[normstudy] results: {outcome.folder}")
    experiment = outcome.spec.experiment_name
    print(f"[normstudy] MLflow:  {outcome.tracking_uri} (experiment {experiment!r})")
    page = study_runs_page(outcome.tracking_uri, experiment)
    if outcome.tracking_uri.startswith("sqlite:"):
        print(f"[normstudy] browse:  normstudy ui --storage '{outcome.folder.parent}', then")
        print(f"[normstudy]          {page or 'http://127.0.0.1:5000'}")
    elif page:
        print(f"[normstudy] browse:  {page}")
    if outcome.counts.get("errored"):
        name = outcome.spec.name
        print(f"[normstudy] rerun errored trials: normstudy resume {name} --retry-errored")
        return 1
    return 0


def study_runs_page(uri: str, experiment: str) -> str | None:
    """The runs page of a study's experiment in the MLflow UI (``normstudy ui``'s address for
    the embedded store); None when MLflow cannot say."""
    from mlflow import MlflowClient

    from studies.secrets import redact
    from studies.tracking import runs_page

    try:
        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - an unreachable server only loses the hint
        return None
    if found is None:
        return None
    base = redact(uri) if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return runs_page(base, found.experiment_id)


def cmd_list(args: argparse.Namespace) -> int:
    from studies.costs import gpu_hours
    from studies.lease import read_lease
    from studies.spec import resolve_spec_path
    from studies.stages import total_trials

    print("Catalog studies (normstudy run NAME; GPU-h: estimated H100 hours, studies/costs.py):")
    print(f"  {'study':<28} {'trials':>6} {'GPU-h':>7}  description")
    for name in catalog_names():
        data = read_yaml(resolve_spec_path(name))
        description = " ".join(str(data.get("description", "")).split())
        try:
            spec = load_spec(name)
            search, confirm = total_trials(spec)
            trials = f"{search}+{confirm}" if confirm else str(search)
            hours = f"{gpu_hours(spec):.1f}"
        except SpecError:
            trials, hours = "?", "?"
        print(f"  {name:<28} {trials:>6} {hours:>7}  {description[:80]}")
    storage = Path(args.storage)
    studies = sorted(p.parent for p in storage.glob("*/study.yaml")) if storage.is_dir() else []
    print(f"\nStudies in {storage}:" if studies else f"\nNo studies in {storage} yet.")
    for folder in studies:
        states = trial_states(folder)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials yet"
        name = read_yaml(folder / "study.yaml").get("confirm_of") or folder.name
        holder = read_lease(folder.parent, str(name))
        if holder is not None and holder.gone() is None:
            summary = f"running ({holder.host}, pid {holder.pid}); {summary}"
        print(f"  {folder.name:<28} {summary}")
    return 0


def trial_states(folder: Path) -> dict[str, int]:
    """Count trials by their last reported result: finished, diverged, incomplete. A last line
    cut short by a crash or a full disk counts as incomplete."""
    spec_epochs = (read_yaml(folder / "study.yaml").get("train") or {}).get("epochs")
    states: dict[str, int] = {}
    for result_file in folder.glob("*/result.json"):
        try:
            lines = result_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            last = json.loads(lines[-1]) if lines else {}
        except (OSError, json.JSONDecodeError):
            last = {}
        last = last if isinstance(last, dict) else {}
        if last.get("diverged"):
            state = "diverged"
        elif last.get("epoch") == spec_epochs or last.get("done"):
            state = "finished"
        else:
            state = "incomplete"
        states[state] = states.get(state, 0) + 1
    return states


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI of the default store on 127.0.0.1 until Ctrl-C or SIGTERM, which
    stop the server and every process it started (its own process group)."""
    from studies.tracking import default_tracking_uri, runs_page

    storage = Path(args.storage)
    if not (storage / "mlflow.db").is_file():
        raise SpecError([("--storage", f"no MLflow store in {storage} (run a study first)")])
    check_port_free(args.port)
    uri = default_tracking_uri(storage)
    base = f"http://127.0.0.1:{args.port}"
    print(f"[normstudy] MLflow UI at {base} (store {uri}); Ctrl-C to stop", flush=True)
    for name, experiment_id in study_experiments(uri):
        print(f"[normstudy]   {name}: {runs_page(base, experiment_id)}", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port)]  # fmt: skip
    server = subprocess.Popen(command, start_new_session=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(server)


def study_experiments(uri: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments in a store, oldest first; the Default one left out."""
    from mlflow import MlflowClient

    experiments = MlflowClient(tracking_uri=uri).search_experiments()
    return [(e.name, e.experiment_id) for e in sorted(experiments, key=lambda e: e.creation_time)
            if e.name != "Default"]  # fmt: skip


def check_port_free(port: int) -> None:
    if not 0 < port < 65536:
        raise SpecError([("--port", f"{port} is not a TCP port (1-65535)")])
    with socket.socket() as sock:  # as the server will bind: TIME_WAIT is not "in use"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise SpecError([("--port", f"127.0.0.1:{port} is in use; pass --port with a free "
                              "port, e.g. --port 5001")]) from None  # fmt: skip


def stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM a process started in its own session, and all it started; SIGKILL stragglers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + grace_s  # the leader is gone; wait for its group
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def check_storage(storage: str) -> None:
    """SpecError unless the results directory exists or can be created, and takes files."""
    import tempfile

    if "://" in storage:
        return  # a URI (s3://...): Ray Tune checks it
    path = Path(storage).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    else:
        try:  # os.access says yes to root everywhere; only a real write tells
            Path(tempfile.mkdtemp(prefix=".normstudy-probe-", dir=existing)).rmdir()
        except OSError as err:
            problem = f"{existing} does not take new files ({err.strerror or err})"
    if problem:
        raise SpecError([("storage", f"results directory {str(path)!r} is not writable: "
                          f"{problem}; pass --storage with a writable folder (or set "
                          "`storage:` in the spec)")])  # fmt: skip


def check_pairs(args: argparse.Namespace) -> None:
    """SpecError if the study has no arm with a finished pair to test (nothing is written)."""
    from studies.compare import SOURCES, check_options, compare, load_trials
    from studies.runner import find_study, load_study_spec

    try:
        check_options(args.metric or "val_acc", args.select, args.alpha)
        folder = find_study(args.study, args.storage)
    except SpecError:
        return  # run_comparison reports these in its own words
    spec = load_study_spec(folder)
    if args.source not in SOURCES or spec.baseline is None:
        return
    comparison = compare(load_trials(folder, spec, args.source), spec, args.metric,
                         args.select, args.alpha)  # fmt: skip
    if not any(row.enough for row in comparison.rows):
        raise SpecError([("study", f"{spec.name!r} has no arm with two finished pairs of "
                          "trials (arm and baseline on the same seed) to test; let it finish "
                          f"with `normstudy resume {spec.name}` (add --retry-errored to rerun "
                          "errored trials), then compare again")])  # fmt: skip


def cmd_compare(args: argparse.Namespace) -> int:
    import contextlib

    from studies.compare import print_comparison, run_comparison

    with contextlib.nullcontext() if args.no_log else existing_study_lease(args):
        check_pairs(args)
        result = run_comparison(
            args.study, metric=args.metric, select=args.select, alpha=args.alpha,
            source=args.source, storage=args.storage, log=not args.no_log,
        )  # fmt: skip
        print_comparison(result)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from studies.sync import sync_study

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with existing_study_lease(args):
            result = sync_study(args.study, storage=args.storage, uri=uri)
    except SpecError:
        raise
    except Exception as err:  # the server is still away: say so, no traceback
        from studies.secrets import redact

        print(f"normstudy: sync of {args.study!r} failed ({type(err).__name__}: "
              f"{redact(str(err)).splitlines()[0][:300] if str(err) else ''}); is the MLflow "
              "server up? Nothing was lost; run the same command again once it is.",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"[normstudy] synced {args.study!r}: {result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
