"""The answer of a search from a table of trials: ranking, counts, text, CSV and plots."""

from __future__ import annotations

import csv
import io
import math

import pytest

from studies.analysis.search import (
    DIVERGED,
    ERRORED,
    FINISHED,
    STOPPED,
    UNFINISHED,
    format_answer,
    is_search,
    summarize,
    to_csv,
    to_markdown,
    trial_state,
)
from studies.analysis.search_outputs import answer_values
from studies.analysis.search_plots import history_figure, plotted_paths, slice_figure
from studies.analysis.trials import TrialHistory
from studies.config.space import arm_label
from studies.trial.validation import load_spec

OPTUNA = [
    "enorm.c=0",
    "baseline=null",
    "seeds=[1]",
    "train.epochs=2",
    "sweep={optimizer.lr: {loguniform: [0.001, 1.0]}, optimizer.momentum: {uniform: [0, 0.95]}}",
    "search={name: optuna, num_samples: 8}",
]
GRID = ["enorm.c=0", "baseline=null", "seeds=[1, 2, 3]", "train.epochs=2",
        "sweep={optimizer.lr: {grid: [0.001, 0.01, 0.1]}}"]  # fmt: skip


def trial(trial_id: str, values: dict, accs: list[float], seed: int = 1,
          diverged: bool = False) -> TrialHistory:  # fmt: skip
    """A trial that reported ``accs`` as val_acc at epochs 1, 2, ..."""
    history = {"val_acc": dict(enumerate(accs, 1)), "val_loss": {e: 1 - a for e, a in
               enumerate(accs, 1)}}  # fmt: skip
    if diverged:
        history["diverged"] = {len(accs): 1.0}
    status = "diverged" if diverged else "finished" if len(accs) >= 2 else "incomplete"
    return TrialHistory(trial_id, arm_label(values), values, seed, False, status, history)


def lr(value: float, momentum: float = 0.5) -> dict:
    return {"optimizer.lr": value, "optimizer.momentum": momentum}


@pytest.fixture(scope="module")
def optuna_spec():
    return load_spec("quickstart", OPTUNA)


def optuna_answer(spec):
    trials = [
        trial("a", lr(0.01, 0.1), [0.5, 0.70]),           # #1
        trial("b", lr(0.1, 0.9), [0.6, 0.90]),            # #2: best
        trial("c", lr(0.5, 0.2), [0.1], diverged=True),   # #3
        trial("d", lr(0.002, 0.3), [0.95]),               # #4: stopped early at epoch 1
        trial("e", lr(0.3, 0.5), [0.2, 0.90]),            # #5: ties with #2, proposed later
        trial("f", lr(0.004, 0.6), [0.3]),                # #6: errored after epoch 1
        trial("g", lr(0.02, 0.7), [0.4]),                 # #7: still running
        trial("h", lr(0.05, 0.8), []),                    # #8: errored before any epoch
    ]
    statuses = {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "TERMINATED",
                "e": "TERMINATED", "f": "ERROR", "g": "RUNNING", "h": "ERROR"}  # fmt: skip
    numbers = {t.trial_id: i for i, t in enumerate(trials, 1)}
    return summarize(trials, spec, statuses, numbers)


def test_states_from_reports_and_ray_statuses():
    finished, short = trial("x", {}, [0.1, 0.2]), trial("y", {}, [0.1])
    assert trial_state(finished, "ERROR") == FINISHED  # it reported every epoch
    assert trial_state(trial("z", {}, [0.1], diverged=True), "TERMINATED") == DIVERGED
    assert [trial_state(short, s) for s in ("TERMINATED", "ERROR", "RUNNING", "PAUSED", None)] \
        == [STOPPED, ERRORED, UNFINISHED, UNFINISHED, STOPPED]


def test_ranking_finished_first_ties_to_the_first_proposed(optuna_spec):
    answer = optuna_answer(optuna_spec)
    assert [c.best_trial.trial_id for c in answer.ranking] == ["b", "e", "a", "d"]
    assert [c.rank for c in answer.ranking] == [1, 2, 3, 4]
    assert [c.mean for c in answer.ranking] == [0.9, 0.9, 0.7, 0.95]
    assert answer.best.values == lr(0.1, 0.9) and answer.best.complete
    assert not answer.ranking[-1].complete  # ASHA's 0.95 at epoch 1 does not beat 0.9 at 2
    assert answer.counts == {FINISHED: 3, STOPPED: 1, DIVERGED: 1, ERRORED: 2, UNFINISHED: 1}
    assert answer.one_trial_each and math.isnan(answer.best.sd)


def test_a_loss_ranks_lowest_first(optuna_spec):
    trials = [trial("a", lr(0.01), [0.5, 0.7]), trial("b", lr(0.1), [0.6, 0.9])]
    answer = summarize(trials, optuna_spec, {}, {}, metric="val_loss")
    assert answer.mode == "min"
    assert [c.best_trial.trial_id for c in answer.ranking] == ["b", "a"]
    assert answer.ranking[0].mean == pytest.approx(0.1)


def test_configurations_over_seeds_rank_by_their_mean():
    spec = load_spec("quickstart", GRID)
    trials, number = [], 0
    for value, accs in ((0.001, [0.50, 0.54, 0.52]), (0.01, [0.80, 0.90, 0.85]),
                        (0.1, [0.95, 0.97, None])):  # fmt: skip
        for seed, acc in enumerate(accs, 1):
            number += 1
            diverged = acc is None
            trials.append(trial(f"t{number}", {"optimizer.lr": value},
                                [0.1] if diverged else [0.3, acc], seed, diverged))  # fmt: skip
    answer = summarize(trials, spec, {}, {t.trial_id: i for i, t in enumerate(trials, 1)})
    best = answer.best
    assert best.values == {"optimizer.lr": 0.1} and best.mean == pytest.approx(0.96)
    assert [t.seed for t in best.trials] == [2, 1]  # its best seed first
    assert best.failed == [("t9", DIVERGED)]
    assert [c.values["optimizer.lr"] for c in answer.ranking] == [0.1, 0.01, 0.001]
    assert answer.ranking[1].sd == pytest.approx(0.05)
    assert not answer.one_trial_each
    text = format_answer(answer)
    assert "96.00% ± 1.41 (2 seeds)" in text
    assert "finished; 1 seed(s) diverged" in text


def test_the_printed_answer_names_the_best_trial_and_its_values(optuna_spec):
    text = format_answer(optuna_answer(optuna_spec), top=3)
    lines = text.splitlines()
    assert lines[0] == ("Search 'quickstart': 8 of 8 trials: 3 finished, 1 stopped early, "
                        "1 diverged, 2 errored, 1 unfinished.")  # fmt: skip
    assert lines[1].startswith("Best configuration (val_acc at each trial's last epoch, higher "
                               "is better): trial b (#2), val_acc 90.00% at epoch 2")
    assert lines[2:4] == ["  optimizer.lr = 0.1", "  optimizer.momentum = 0.9"]
    table = lines[lines.index("Top 3 of 4 configurations:") + 1:]
    assert table[0].split() == ["rank", "#", "trial", "val_acc", "optimizer.lr",
                                "optimizer.momentum", "epoch", "status"]  # fmt: skip
    assert [row.split()[:4] for row in table[2:5]] == [
        ["1", "2", "b", "90.00%"], ["2", "5", "e", "90.00%"], ["3", "1", "a", "70.00%"]]


def test_csv_holds_every_ranked_trial_in_raw_units(optuna_spec):
    rows = list(csv.DictReader(io.StringIO(to_csv(optuna_answer(optuna_spec)))))
    assert [(r["rank"], r["trial"], r["number"], r["val_acc"], r["state"]) for r in rows] == [
        ("1", "b", "2", "0.9", FINISHED), ("2", "e", "5", "0.9", FINISHED),
        ("3", "a", "1", "0.7", FINISHED), ("4", "d", "4", "0.95", STOPPED)]  # fmt: skip
    assert float(rows[0]["optimizer.lr"]) == 0.1


def test_report_lists_the_ranking_the_plots_and_the_failures(optuna_spec):
    text = to_markdown(optuna_answer(optuna_spec), ["history.png"])
    assert "**Best configuration:** trial b (#2), val_acc 90.00% at epoch 2." in text
    assert "- `optimizer.lr` = 0.1" in text and "![history.png](history.png)" in text
    assert "| c | diverged |" in text and "| f | errored |" in text and "| g | unfinished |" in text


def test_which_studies_end_with_an_answer(optuna_spec):
    assert is_search(optuna_spec)
    assert is_search(load_spec("quickstart", GRID))  # arms and no baseline
    assert not is_search(load_spec("quickstart"))  # a grid with a baseline: a comparison
    assert not is_search(load_spec("quickstart", ["sweep={}", "baseline=null"]))


def test_slice_panels_use_a_log_axis_for_a_loguniform_domain(optuna_spec):
    answer = optuna_answer(optuna_spec)
    fig = slice_figure(answer)
    lr_ax, momentum_ax = fig.axes[:2]
    assert (lr_ax.get_xscale(), momentum_ax.get_xscale()) == ("log", "linear")
    assert lr_ax.get_xlabel() == "optimizer.lr (log scale)"
    xs = sorted(x for c in lr_ax.collections for x, _ in c.get_offsets())
    assert xs == [0.002, 0.01, 0.1, 0.3]  # the 4 ranked trials
    assert fig.axes[-1].get_ylabel() == "trial number"  # the colour bar


def test_slice_shows_the_spread_of_each_configuration_over_seeds():
    spec = load_spec("quickstart", GRID)
    trials = [trial(f"{v}-{s}", {"optimizer.lr": v}, [0.2, 0.5 + v + 0.01 * s], s)
              for v in (0.001, 0.01, 0.1) for s in (1, 2, 3)]  # fmt: skip
    answer = summarize(trials, spec, {}, {})
    assert plotted_paths(answer) == ["optimizer.lr"]
    ax = slice_figure(answer).axes[0]
    assert ax.get_xscale() == "log"  # a log-spaced grid
    bars = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    assert len(bars) == 3  # mean ± sd of each configuration
    means = sorted(bar.lines[0].get_ydata()[0] for bar in bars)
    assert means == pytest.approx([52.1, 53.0, 62.0])


def test_history_orders_trials_as_proposed_and_marks_the_best_so_far(optuna_spec):
    ax = history_figure(optuna_answer(optuna_spec)).axes[0]
    step = next(line for line in ax.lines if line.get_drawstyle() == "steps-post")
    assert list(step.get_xdata()) == [1, 2, 4, 5]  # from the first finished trial on
    assert list(step.get_ydata()) == pytest.approx([70.0, 90.0, 90.0, 90.0])
    failed = next(line for line in ax.lines if line.get_marker() == "x")
    assert list(failed.get_xdata()) == [3, 6, 8]  # diverged, errored, errored


def test_a_trial_folder_the_experiment_state_does_not_know_is_left_out(optuna_spec):
    trials = [trial("a", lr(0.01), [0.5, 0.7]), trial("orphan", lr(0.1), [0.6, 0.99])]
    answer = summarize(trials, optuna_spec, {"a": "TERMINATED"}, {"a": 1})
    assert [c.best_trial.trial_id for c in answer.ranking] == ["a"]
    assert sum(answer.counts.values()) == 1


def test_mlflow_values_params_only_once_the_search_is_over(optuna_spec):
    metrics, tags, params = answer_values(optuna_answer(optuna_spec))  # errored, unfinished
    assert metrics["best.val_acc"] == 0.9 and metrics["best.optimizer.lr"] == 0.1
    assert metrics["trials.stopped_early"] == 1 and metrics["trials.errored"] == 2
    assert tags["normstudy.best.trial"] == "b" and tags["normstudy.best.optimizer.lr"] == "0.1"
    assert params == {}
    over = summarize([trial("a", lr(0.01, 0.2), [0.5, 0.7]), trial("b", lr(0.1, 0.9), [0.6, 0.9])],
                     optuna_spec.model_copy(update={"search": optuna_spec.search.model_copy(
                         update={"num_samples": 2})}), {"a": "TERMINATED", "b": "TERMINATED"},
                     {"a": 1, "b": 2})  # fmt: skip
    _, _, params = answer_values(over)
    assert params == {"best.optimizer.lr": "0.1", "best.optimizer.momentum": "0.9"}
