"""The comparison of a study, end to end: find it, compare, write ``comparison/`` and log it
to the study's MLflow parent run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studies.analysis.comparison import Comparison, check_options, compare
from studies.analysis.report import to_csv, to_markdown
from studies.analysis.sequential import analyze, apply_verdicts
from studies.analysis.sequential_report import markdown_section
from studies.analysis.settings_outputs import SettingsRun, settings_of_study
from studies.analysis.summary import log_summary
from studies.analysis.trials import SOURCES, load_trials
from studies.config.space import confirm_name
from studies.config.spec import SpecError, StudySpec
from studies.store.layout import find_study, load_study_spec, tracking_uri
from studies.store.looks import SEQUENTIAL_FILE, completed_looks
from studies.store.queries import parent_run_id

OUTPUT_DIR = ARTIFACT_DIR = "comparison"
CSV_FILE, REPORT_FILE = "comparison.csv", "report.md"
PLOTS_RECORD = ".plots.json"  # what the plots in comparison/ were drawn from: a digest, names
PLOTS_SOURCE = Path(__file__).with_name("plots.py")


def write_outputs(comparison: Comparison, folder: str | Path) -> list[Path]:
    """``comparison.csv``, ``report.md`` and the PNG plots into ``folder/comparison/``."""
    out = Path(folder) / OUTPUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_files(comparison, out)
    (out / CSV_FILE).write_text(to_csv(comparison))
    sections = []
    if comparison.sequential is not None:
        sections.append(markdown_section(comparison.sequential, comparison.scored_metric))
    (out / REPORT_FILE).write_text(to_markdown(comparison, plots, sections))
    return [out / CSV_FILE, out / REPORT_FILE, *(out / name for name in plots)]


def plots_digest(comparison: Comparison) -> str | None:
    """BLAKE2b of what the plots are drawn from: the comparison (pickled, its spec as JSON: a
    spec's pickle holds sets, whose order varies between processes), plots.py and matplotlib's
    version; None where something of the comparison does not pickle."""
    import hashlib
    import pickle
    from importlib.metadata import version

    try:
        drawn = pickle.dumps({key: value for key, value in vars(comparison).items()
                              if key != "spec"})  # fmt: skip
    except Exception:
        return None
    return hashlib.blake2b(drawn + comparison.spec.model_dump_json().encode()
                           + PLOTS_SOURCE.read_bytes() + version("matplotlib").encode()
                           ).hexdigest()  # fmt: skip


def plot_files(comparison: Comparison, out: Path) -> list[str]:
    """The plots of ``comparison`` in ``out``, drawn only when what they show changed.

    Drawing is most of a ``compare`` (matplotlib's import and layout), and a compare of a
    study whose trials did not change would redraw the same pixels: ``.plots.json`` keeps the
    names drawn and :func:`plots_digest`; the plots are drawn again when the digest differs
    or a file is gone.
    """
    import json

    record, digest = out / PLOTS_RECORD, plots_digest(comparison)
    try:
        saved = json.loads(record.read_text())
        if digest is not None and saved["digest"] == digest and all(
                (out / name).is_file() for name in saved["plots"]):  # fmt: skip
            return list(saved["plots"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from studies.analysis.plots import draw_plots  # matplotlib loads only to draw

    record.unlink(missing_ok=True)
    plots = draw_plots(comparison, out)
    if digest is not None:
        temporary = record.with_suffix(".tmp")
        temporary.write_text(json.dumps({"digest": digest, "plots": plots}))
        temporary.replace(record)
    return plots


def log_outputs(paths: list[Path], spec: StudySpec, uri: str,
                comparison: Comparison | None = None) -> str | None:
    """Log the files to the parent run under ``comparison/`` and the comparison's summary as its
    metrics and tags (:mod:`studies.analysis.summary`); its status and times are left alone."""
    from mlflow import MlflowClient

    run_id = parent_run_id(spec, uri)
    if run_id is None:
        return None
    client = MlflowClient(tracking_uri=uri)
    for path in paths:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    if comparison is not None:
        log_summary(client, run_id, comparison)
    return run_id


@dataclass
class ComparisonRun:
    comparison: Comparison
    folder: Path
    files: list[Path]
    run_id: str | None


def run_comparison(
    study: str | Path,
    metric: str | None = None,
    select: str = "final",
    alpha: float = 0.05,
    source: str = "results",
    storage: str | None = None,
    log: bool = True,
    require_pairs: bool = False,
) -> ComparisonRun | SettingsRun:
    """Find the study, compare, write ``<study>/comparison/`` and log it to MLflow.

    With ``require_pairs`` a study with no arm that has two finished pairs of trials to test
    is refused (SpecError) before anything is written. A study with ``across`` is compared
    setting by setting and pooled (a :class:`SettingsRun`, :mod:`.settings_outputs`).
    """
    if source not in SOURCES:
        raise SpecError([("--source", f"unknown source {source!r}; valid: results, mlflow")])
    check_options(metric or "val_acc", select, alpha)  # fail before reading anything
    try:
        folder = find_study(str(study), storage)
    except SpecError as err:
        raise SpecError([("study", message) for _, message in err.problems]) from None
    spec = load_study_spec(folder, check=False)  # it ran: what it left is read
    if spec.confirm is not None:  # a two-stage study is judged on its confirm stage
        confirm = folder.parent / confirm_name(spec)
        if not confirm.is_dir():
            raise SpecError([("study", f"{spec.name!r} is the search stage of a two-stage "
                              f"study and its confirm stage has not started; finish it with "
                              f"`normstudy resume {spec.name}`")])  # fmt: skip
        folder, spec = confirm, load_study_spec(confirm, check=False)
    if spec.across:  # settings: compared within each, then pooled (analysis/settings.py)
        return settings_of_study(folder, spec, metric, select, alpha, source, log, require_pairs)
    comparison = compare(load_trials(folder, spec, source), spec, metric, select, alpha)
    if spec.sequential is not None and comparison.metric == spec.metric.name and select == "final":
        # the looks' decisions, as the runner made them (looks recorded in sequential.json)
        looks = completed_looks(folder) if (folder / SEQUENTIAL_FILE).is_file() else None
        apply_verdicts(comparison, analyze(comparison, looks))
    if require_pairs and not any(row.enough for row in comparison.rows):
        raise SpecError([("study", f"{spec.name!r} has no arm with two finished pairs of "
                          "trials (arm and baseline on the same seed) to test; let it finish "
                          f"with `normstudy resume {spec.confirm_of or spec.name}` (add "
                          "--retry-errored to rerun errored trials), then compare again")])
    files = write_outputs(comparison, folder)
    run_id = log_outputs(files, spec, tracking_uri(spec), comparison) if log else None
    if log and run_id is None:
        comparison.warnings.append("no MLflow parent run found: outputs not logged to MLflow")
    return ComparisonRun(comparison, folder, files, run_id)
