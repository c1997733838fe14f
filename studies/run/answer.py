"""The answer of a search study, end to end: read its trials, rank them, compute the
importances, write ``<study>/search/``, log it to the MLflow parent run, print it.

``normstudy best NAME`` calls :func:`search_answer`; ``normstudy run`` and ``resume`` call
:func:`answers_after_run` when a study ends: a search study (and the search stage of a
two-stage study, whose confirm stage then prints its comparison) ends with its answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from studies.analysis.search import SearchAnswer, format_answer, is_search, summarize
from studies.analysis.search_outputs import ARTIFACT_DIR, REPORT_FILE, log_search
from studies.analysis.search_outputs import write_search_outputs as write_outputs
from studies.analysis.trials import trials_from_results
from studies.config.secrets import redact
from studies.config.space import has_arms
from studies.config.spec import SpecError
from studies.run.importance import param_importances
from studies.store.layout import find_study, load_study_spec, tracking_uri
from studies.store.results import trial_numbers, trial_statuses


def search_answer(study: str | Path, storage: str | None = None, log: bool = True,
                  folder: Path | None = None) -> SearchAnswer:  # fmt: skip
    """The answer of the study ``study`` (a name under ``storage`` or a folder; or the
    study in ``folder``), written to ``<study>/search/`` and, with ``log``, to MLflow."""
    if folder is None:
        try:
            folder = find_study(str(study), storage)
        except SpecError as err:
            raise SpecError([("study", message) for _, message in err.problems]) from None
    spec = load_study_spec(folder, check=False)  # it ran: what it left is read
    if not has_arms(spec):
        raise SpecError([("study", f"{spec.name!r} sweeps nothing: all its trials share one "
                          "configuration, so there is no best one to find (add a sweep)")])
    answer = summarize(trials_from_results(folder, spec), spec, trial_statuses(folder),
                       trial_numbers(folder))  # fmt: skip
    answer.folder = folder
    answer.importances, answer.importance_note = param_importances(answer)
    answer.files = write_outputs(answer, folder)
    if log:
        try:
            answer.run_id = log_search(answer, answer.files, tracking_uri(spec))
        except Exception as err:  # the answer stands without MLflow (a server away)
            cause = redact(str(err)).splitlines()[0][:200] if str(err) else ""
            answer.log_warning = f"not logged to MLflow ({type(err).__name__}: {cause})"
        if answer.run_id is None and not answer.log_warning:
            answer.log_warning = "not logged to MLflow: the study has no parent run there"
    return answer


def answer_text(answer: SearchAnswer, top: int = 10) -> str:
    """What the terminal shows: the answer, then where its report and MLflow run are."""
    lines = [format_answer(answer, top)]
    if answer.folder is not None:
        plots = ", ".join(p.name for p in answer.files if p.suffix == ".png")
        report = answer.folder / ARTIFACT_DIR / REPORT_FILE
        lines.append(f"[normstudy] report: {report}" + (f" (plots: {plots})" if plots else ""))
    if answer.run_id:
        lines.append(f"[normstudy] logged to MLflow run {answer.run_id} (metrics best.*, "
                     f"artifacts/{ARTIFACT_DIR})")  # fmt: skip
    if answer.log_warning:
        lines.append(f"[normstudy] warning: {answer.log_warning}; `normstudy best "
                     f"{answer.spec.name}` logs it later")  # fmt: skip
    return "\n".join(lines)


def answer_folders(outcome: Any) -> list[Path]:
    """The studies whose answer a finished run prints: the search stage of a two-stage study
    (its confirm stage just ended), or the study itself when it is a search."""
    spec, folders = outcome.spec, []
    if spec.confirm_of:
        folders.append(outcome.folder.parent / spec.confirm_of)
    elif is_search(spec):
        folders.append(outcome.folder)
    return folders


def answers_after_run(outcome: Any) -> None:
    """After ``run`` / ``resume``: print (and save, and log) each answer; a failure only
    warns (the study itself is safe)."""
    for folder in answer_folders(outcome):
        try:
            answer = search_answer(folder.name, folder=folder)
        except Exception as err:  # the study is saved; only its answer failed
            print(f"[normstudy] warning: the search's answer failed ({type(err).__name__}: "
                  f"{err}); the study is saved, retry with `normstudy best {folder}`",
                  file=sys.stderr)  # fmt: skip
            continue
        print()
        print(answer_text(answer))
