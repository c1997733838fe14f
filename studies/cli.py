"""``normstudy``: run, resume, inspect and compare hyperparameter studies.

Exit codes: 0 success, 1 the study ran but trials errored, 2 bad input
(nothing was started or written), 130 interrupted by Ctrl-C / SIGTERM (resume
continues it).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.cli_report import INTERRUPTED, finish, print_comparison
from studies.config.load import catalog_names, read_yaml, resolve_spec_path
from studies.config.space import total_trials
from studies.config.spec import DEFAULT_STORAGE, SpecError, folder_storage
from studies.store.inputs import SOURCE_ENV
from studies.store.layout import (
    SPEC_FILE,
    check_storage,
    default_storage,
    find_study,
    study_folders,
)

if TYPE_CHECKING:  # the CLI starts without torch, Ray or MLflow: these load on use
    from studies.config.spec import StudySpec

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


def storage_arg(value: str) -> str:
    """``--storage``: a folder, never a URI (argparse's exit 2 names the option)."""
    try:
        return folder_storage(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
        p.add_argument("--storage", type=storage_arg,
                       help=f"results directory (default: spec's, {DEFAULT_STORAGE})")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                       "else SQLite in the results directory)")  # fmt: skip
        p.add_argument("--code", metavar="DIR", help="a folder of your own Python packages "
                       "(models, datasets, optimizers, methods): importable here and shipped "
                       "to every Ray worker (default: the spec's code:)")  # fmt: skip

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
    resume.add_argument("--storage", type=storage_arg,
                        help=f"results directory (default {DEFAULT_STORAGE})")
    resume.add_argument("--address", help="Ray cluster address")
    resume.add_argument("--retry-errored", action="store_true",
                        help="also rerun trials that errored (from their last checkpoint)")
    resume.set_defaults(handler=cmd_resume)

    listing = commands.add_parser(
        "list", help="catalog studies and studies in the results directory"
    )
    listing.add_argument("--storage", type=storage_arg, default=default_storage())
    listing.add_argument("--components", action="store_true", help="list the model, dataset, "
                         "optimizer and method names a spec may use, and where each comes from")
    listing.set_defaults(handler=cmd_list)

    ui = commands.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the default store")
    ui.add_argument("--storage", type=storage_arg, default=default_storage())
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)

    compare = commands.add_parser(
        "compare", help="paired t-tests of every arm against the baseline (table, report, plots)"
    )
    compare.add_argument("study", help="study name (under the results directory) or its directory")
    compare.add_argument("more", nargs="*", metavar="STUDY", help="more studies, pooled with "
                         "the first: each study is one setting (they share metric and arms)")
    compare.add_argument("--metric", help="metric to compare (default: the spec's metric)")
    compare.add_argument("--alpha", type=float, default=0.05,
                         help="significance level after Holm correction (default 0.05)")
    compare.add_argument("--select", default="final", metavar="{final,best_val}",
                         help="final: the metric at the last epoch (default); best_val: the test "
                         "metric at the epoch of the best validation metric")
    compare.add_argument("--source", default="results", metavar="{results,mlflow}",
                         help="read trials from the results directory (default) or from MLflow")
    compare.add_argument("--storage", type=storage_arg,
                         help=f"results directory (default {DEFAULT_STORAGE})")
    compare.add_argument("--no-log", action="store_true",
                         help="do not log the report and plots to the MLflow parent run")
    compare.set_defaults(handler=cmd_compare)

    best = commands.add_parser("best", help="a search's answer: the best configuration, the "
                               "top trials, what mattered (report, plots, MLflow)")  # fmt: skip
    best.add_argument("study", help="study name (under the results directory) or its directory")
    best.add_argument("--top", type=int, default=10, help="configurations shown (default 10)")
    best.add_argument("--storage", type=storage_arg,
                      help=f"results directory (default {DEFAULT_STORAGE})")
    best.add_argument("--no-log", action="store_true",
                      help="do not log the answer, report and plots to the MLflow parent run")
    best.set_defaults(handler=cmd_best)

    sync = commands.add_parser(
        "sync", help="upload to MLflow what it lacks of a study (after a tracking outage)"
    )
    sync.add_argument("study", help="study name (under the results directory) or its directory")
    sync.add_argument("--storage", type=storage_arg,
                      help=f"results directory (default {DEFAULT_STORAGE})")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's)")
    sync.set_defaults(handler=cmd_sync)
    return parser


def _load(args: argparse.Namespace, data_here: bool = True, machine: bool = False) -> StudySpec:
    return _load_checked(args, data_here, machine)[0]


def _load_checked(args: argparse.Namespace, data_here: bool = True,
                  machine: bool = False) -> tuple[StudySpec, bool]:  # fmt: skip
    """The spec, and whether its torch checks passed before (store/spec_checks.py)."""
    from studies.store.spec_checks import load_checked

    overrides = list(args.overrides)
    if args.storage:
        overrides.append(f"storage={args.storage}")
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        overrides.append(f"tracking.uri={uri}")
    if getattr(args, "code", None):
        overrides.append(f"code={Path(args.code).expanduser().resolve()}")
    return load_checked(args.spec, overrides, smoke=args.smoke, data_here=data_here,
                        machine=machine)  # fmt: skip


def cmd_validate(args: argparse.Namespace) -> int:
    spec, checked_before = _load_checked(args)
    print(f"{spec.name}: valid, {trial_count(spec)}")
    if checked_before:  # a spec that names no user component
        return 0
    from studies.trial.components import user_components

    for section, name, origin in user_components(spec):
        print(f"  {section} {name}: {origin}")
    return 0


def trial_count(spec: StudySpec) -> str:
    """``12 trials``, or ``24 search + 15 confirm trials`` for a two-stage study."""
    search, confirm = total_trials(spec)
    if spec.sequential is not None:  # the looks stop arms early: the count is the most
        return f"at most {search} trials (looks at {spec.sequential.looks} seeds per arm)"
    return f"{search} search + {confirm} confirm trials" if confirm else f"{search} trials"


def cmd_run(args: argparse.Namespace) -> int:
    remote = bool(args.address or os.environ.get("RAY_ADDRESS"))
    # a local run: a trial fits this machine; a cluster's nodes read the data, not this one
    spec = _load(args, data_here=not remote, machine=not remote)
    check_storage(spec.storage)  # before Ray starts or anything is written
    os.environ[SOURCE_ENV] = str(resolve_spec_path(args.spec).resolve())  # the runs' Source
    from studies.run.resources import preflight  # lazily, here and below: Ray loads only if needed

    preflight(spec, args.address)  # a trial fits this machine; downloads: exit 2, nothing written
    from studies.run.finished import finish_marked
    from studies.run.runner import run_study
    with study_lease(spec.storage, spec.name, args):  # one driver per study (store/lease.py)
        print(f"[normstudy] study {spec.name!r}: {trial_count(spec)}")
        outcome = run_study(spec, address=args.address, overwrite=args.overwrite)
        return finish_marked(outcome, finish)  # a finished study's mark: resume reads it


def study_lease(storage: str, name: str,
                args: argparse.Namespace) -> AbstractContextManager[Any]:
    """The lease of study ``name`` in the results folder ``storage``, taken now (LeaseHeld:
    exit 2 while another driver holds it)."""
    from studies.store.lease import acquire_lease

    command = f"normstudy {args.command} {getattr(args, 'spec', None) or args.study}"
    folder = Path(storage).expanduser().resolve()
    return acquire_lease(folder, name, command, interrupt_on_loss=True)


def existing_study_lease(args: argparse.Namespace) -> AbstractContextManager[Any]:
    """The lease of the existing study ``args.study`` (both stages share the search stage's);
    none when there is no such study (the command reports that in its own words)."""
    import contextlib

    try:
        folder = find_study(args.study, args.storage)
        name = read_yaml(folder / SPEC_FILE).get("confirm_of") or folder.name
    except SpecError:
        return contextlib.nullcontext()
    return study_lease(str(folder.parent), str(name), args)


def cmd_submit(args: argparse.Namespace) -> int:
    from studies.run.submit import submit_study
    from studies.store.lease import LeaseHeld, read_lease

    spec = _load(args)  # a bad spec stops here: exit 2, nothing submitted
    holder = read_lease(Path(spec.storage).expanduser().resolve(), spec.name)
    if holder is not None and holder.gone() is None:  # seen from here; the job's driver checks
        raise LeaseHeld(holder)
    return submit_study(spec, address=args.address, overwrite=args.overwrite, wait=args.wait)


def cmd_resume(args: argparse.Namespace) -> int:
    folder = find_study(args.study, args.storage)  # an unknown study is named before Ray loads
    from studies.store.finished import read_mark

    with existing_study_lease(args):
        printed = read_mark(folder)  # every stage finished: nothing to resume, no Ray
        if printed is not None:
            print(f"[normstudy] study {folder.name!r} has finished; nothing to resume. "
                  "Its end printed:")  # fmt: skip
            print(printed, end="")
            return 0
        from studies.run.finished import finish_marked
        from studies.run.runner import resume_study

        outcome = resume_study(args.study, address=args.address,
                               retry_errored=args.retry_errored, storage=args.storage)  # fmt: skip
        return finish_marked(outcome, finish)


def cmd_list(args: argparse.Namespace) -> int:
    if args.components:
        return list_components()
    from studies.store.cache import cached
    from studies.store.lease import read_lease
    from studies.store.results import outcome_counts

    print("Catalog studies (normstudy run NAME; GPU-h: estimated H100 hours, "
          "studies/analysis/costs.py):")
    print(f"  {'study':<28} {'trials':>6} {'GPU-h':>7}  description")
    for name in catalog_names():
        path = resolve_spec_path(name)
        data = read_yaml(path)
        description = " ".join(str(data.get("description", "")).split())
        trials, hours = cached("catalog-row", [name, path.read_text(encoding="utf-8")],
                               functools.partial(catalog_row, name))  # fmt: skip
        print(f"  {name:<28} {trials:>6} {hours:>7}  {description[:80]}")
    storage = Path(args.storage)
    studies = study_folders(storage)
    print(f"\nStudies in {storage}:" if studies else f"\nNo studies in {storage} yet.")
    for folder in studies:
        data = read_yaml(folder / SPEC_FILE)
        states = outcome_counts(folder, (data.get("train") or {}).get("epochs") or 0)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials yet"
        name = data.get("confirm_of") or folder.name
        holder = read_lease(folder.parent, str(name))
        if holder is not None and holder.gone() is None:
            summary = f"running ({holder.host}, pid {holder.pid}); {summary}"
        print(f"  {folder.name:<28} {summary}")
    return 0


def catalog_row(name: str) -> tuple[str, str]:
    """A catalog study's trial count and estimated GPU-hours ("?" where its spec does not
    validate here); torch builds the model, so `list` reads it from the cache when it can."""
    from studies.analysis.costs import gpu_hours
    from studies.trial.validation import load_spec

    try:
        spec = load_spec(name)
    except SpecError:
        return "?", "?"
    search, confirm = total_trials(spec)
    return (f"{search}+{confirm}" if confirm else str(search)), f"{gpu_hours(spec):.1f}"


def list_components() -> int:
    from studies.trial.components import list_components as rows

    print("Components a spec may name (or any import path 'package.module:attribute'):")
    for kind, name, origin in rows():
        print(f"  {kind:<10} {name:<24} {origin}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import contextlib

    from studies.analysis.outputs import run_comparison
    from studies.analysis.settings_outputs import run_pooled_comparison as pool

    if args.more:  # studies pooled as settings (analysis/settings_outputs.py)
        print_comparison(pool([args.study, *args.more], args.metric, args.select, args.alpha,
                              args.source, args.storage))  # fmt: skip
        return 0
    with contextlib.nullcontext() if args.no_log else existing_study_lease(args):
        result = run_comparison(
            args.study, metric=args.metric, select=args.select, alpha=args.alpha,
            source=args.source, storage=args.storage, log=not args.no_log, require_pairs=True,
        )  # fmt: skip
        print_comparison(result)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    import contextlib

    from studies.run.answer import answer_text, search_answer

    with contextlib.nullcontext() if args.no_log else existing_study_lease(args):
        answer = search_answer(args.study, storage=args.storage, log=not args.no_log)
    print(answer_text(answer, top=args.top))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI of the default store on 127.0.0.1 until Ctrl-C or SIGTERM."""
    from studies.run.ui import serve_ui

    return serve_ui(Path(args.storage), args.port)


def cmd_sync(args: argparse.Namespace) -> int:
    from studies.run.sync import sync_study

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with existing_study_lease(args):
            result = sync_study(args.study, storage=args.storage, uri=uri)
    except SpecError:
        raise
    except Exception as err:  # the server is still away: say so, no traceback
        from studies.config.secrets import redact

        print(f"normstudy: sync of {args.study!r} failed ({type(err).__name__}: "
              f"{redact(str(err)).splitlines()[0][:300] if str(err) else ''}); is the MLflow "
              "server up? Nothing was lost; run the same command again once it is.",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"[normstudy] synced {args.study!r}: {result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
