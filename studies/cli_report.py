"""What ``normstudy`` prints when a study ends: its outcome, the exit code, the comparison.

Used by ``run`` and ``resume`` (after the trials) and by ``compare`` (the table alone).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studies.config.secrets import redact
from studies.store.layout import default_storage

if TYPE_CHECKING:  # the CLI starts without torch, Ray or MLflow: these load on use
    from studies.analysis.outputs import ComparisonRun
    from studies.analysis.settings_outputs import SettingsRun
    from studies.run.fit import StudyOutcome

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def finish(outcome: StudyOutcome) -> int:
    """Report a study that ended and compare its arms (not after an interruption)."""
    code = report(outcome)
    if code != INTERRUPTED:
        from studies.run.answer import answers_after_run

        answers_after_run(outcome)  # a search's answer: printed, saved, logged; failures warn
        compare_after_run(outcome)  # prints the table; a failure only warns
    return code


def storage_flag(outcome: StudyOutcome) -> str:
    """`` --storage DIR`` unless the study is in the default results directory."""
    default = Path(default_storage()).resolve()
    parent = outcome.folder.parent
    return "" if parent.resolve() == default else f" --storage '{parent}'"


def report(outcome: StudyOutcome) -> int:
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
    print(f"[normstudy] MLflow:  {redact(outcome.tracking_uri)} (experiment {experiment!r})")
    from studies.store.queries import study_runs_page

    page = study_runs_page(outcome.tracking_uri, experiment)
    if outcome.tracking_uri.startswith("sqlite:"):
        print(f"[normstudy] browse:  normstudy ui --storage '{outcome.folder.parent}', then")
        print(f"[normstudy]          {page or 'http://127.0.0.1:5000'}")
    elif page:
        print(f"[normstudy] browse:  {page}")
    if outcome.counts.get("errored"):
        from studies.store.results import error_summaries

        name = outcome.spec.name
        for line in error_summaries(outcome.folder):
            print(f"[normstudy] {line}")
        print(f"[normstudy] rerun errored trials: normstudy resume {name} --retry-errored")
        return 1
    return 0


def print_comparison(result: ComparisonRun | SettingsRun) -> None:
    """The comparison table (and the sequential looks), then where the report went."""
    from studies.analysis.outputs import ARTIFACT_DIR, OUTPUT_DIR, REPORT_FILE
    from studies.analysis.report import format_table
    from studies.analysis.settings_outputs import SettingsRun, settings_text

    if isinstance(result, SettingsRun):  # across settings (analysis/settings_outputs.py)
        print(settings_text(result))
        return
    print(format_table(result.comparison))
    if result.comparison.sequential is not None:
        from studies.analysis.sequential_report import format_sequential

        print()
        print(format_sequential(result.comparison.sequential, result.comparison.scored_metric))
    print(f"[normstudy] report: {result.folder / OUTPUT_DIR / REPORT_FILE}")
    if result.run_id:
        print(f"[normstudy] logged to MLflow run {result.run_id} (artifacts/{ARTIFACT_DIR})")


def compare_after_run(outcome: StudyOutcome) -> None:
    """After ``run`` / ``resume``: compare and print; a failure only warns (the study is safe)."""
    from studies.analysis.outputs import run_comparison

    if outcome.spec.baseline is None:
        return
    try:
        print()
        print_comparison(run_comparison(outcome.folder))
    except Exception as err:  # the study itself is safe; only its comparison failed
        print(f"[normstudy] warning: the comparison failed ({type(err).__name__}: {err}); "
              f"the study is saved, retry with `normstudy compare {outcome.folder}`",
              file=sys.stderr)  # fmt: skip


