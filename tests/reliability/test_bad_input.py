"""Promise 6: bad input is refused before anything starts.

Each case is a malformed spec or CLI call. `normstudy` must exit with code 2
and print one paragraph (no blank line, no traceback) that names the problem
(the expected words below) and how to fix it, start nothing (no Ray) and
write nothing (the results directory and the working directory stay as they
were). Most cases run in-process through ``studies.cli.main``; a few run the
installed `normstudy` as a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess

import pytest
from reliability_kit import NORMSTUDY, tiny_spec, tree_snapshot, write_spec

pytestmark = pytest.mark.integration


def _spec(tmp, **changes):
    return str(write_spec(tmp, tiny_spec("bad", **changes)))


def _raw(tmp, text: str, name: str = "raw.yaml"):
    path = tmp / name
    path.write_text(text)
    return str(path)


def _study_without_pairs(tmp):
    """A study directory whose trials never finished: compare has nothing to pair."""
    from studies.config.load import dump_spec
    from studies.trial.validation import parse_spec

    folder = tmp / "results" / "unpaired"
    spec = parse_spec(tiny_spec("unpaired", storage=str(tmp / "results")))
    (folder / "trial_x_00000").mkdir(parents=True)
    (folder / "study.yaml").write_text(dump_spec(spec))
    params = {**spec.trial_config(), "seed": 1}
    (folder / "trial_x_00000" / "params.json").write_text(json.dumps(params))
    row = {"epoch": 1, "val_acc": 0.5, "trial_id": "x_00000"}
    (folder / "trial_x_00000" / "result.json").write_text(json.dumps(row) + "\n")
    return "unpaired"


def _not_a_directory(tmp):
    (tmp / "a-file").write_text("not a folder")
    return str(tmp / "a-file" / "results")


# (case id, argv builder(tmp) -> list[str], words the message must contain)
CASES = [
    # YAML syntax and shape
    ("yaml-syntax", lambda t: ["run", _raw(t, "name: x\nmodel: {name: [\n")], ["not valid YAML"]),
    ("yaml-tabs", lambda t: ["run", _raw(t, "name: x\n\tmodel: 1\n")], ["not valid YAML"]),
    ("yaml-list", lambda t: ["run", _raw(t, "- a\n- b\n")], ["mapping"]),
    ("yaml-empty", lambda t: ["validate", _raw(t, "")], ["mapping"]),
    ("yaml-scalar", lambda t: ["validate", _raw(t, "just text\n")], ["mapping"]),
    ("missing-file", lambda t: ["run", str(t / "nope.yaml")], ["does not exist"]),
    ("unknown-catalog", lambda t: ["run", "no-such-study"], ["neither", "catalog"]),
    # wrong types
    ("epochs-string", lambda t: ["run", _spec(t, train__epochs="ten")], ["train.epochs"]),
    ("lr-list", lambda t: ["run", _spec(t, optimizer__lr=[0.1])], ["optimizer.lr"]),
    ("seeds-string", lambda t: ["run", _spec(t, seeds="1,2")], ["seeds"]),
    ("model-not-mapping", lambda t: ["run", _spec(t, model="mlp")], ["model"]),
    ("sweep-not-mapping", lambda t: ["run", _spec(t, sweep=[1, 2])], ["sweep"]),
    ("nesterov-word", lambda t: ["run", _spec(t, optimizer__nesterov="maybe")], ["nesterov"]),
    ("resources-cpu-str", lambda t: ["run", _spec(t, resources__cpu="all")], ["resources.cpu"]),
    # unknown names
    ("unknown-dataset", lambda t: ["run", _spec(t, dataset__name="imagenet")],
     ["imagenet", "valid"]),  # fmt: skip
    ("unknown-model", lambda t: ["run", _spec(t, model__name="transformer")],
     ["transformer", "valid"]),  # fmt: skip
    ("unknown-optimizer", lambda t: ["run", _spec(t, optimizer__name="lion")],
     ["optimizer", "valid"]),  # fmt: skip
    ("unknown-field", lambda t: ["run", _spec(t, bogus=1)], ["bogus", "unknown field"]),
    ("unknown-train-field", lambda t: ["run", _spec(t, train__epocs=3)], ["train.epocs"]),
    ("unknown-model-arg", lambda t: ["run", _spec(t, model__depthh=3)], ["model.depthh", "valid"]),
    ("unknown-schedule", lambda t: ["run", _spec(t, schedule={"name": "cyclic"})],
     ["schedule.name"]),  # fmt: skip
    ("unknown-metric", lambda t: ["run", _spec(t, metric={"name": "f1"})], ["metric.name"]),
    ("unknown-search", lambda t: ["run", _spec(t, search={"name": "bayes"})], ["search.name"]),
    ("unknown-sweep-kind", lambda t: ["run", _spec(t, sweep={"enorm.c": {"range": [0, 1]}})],
     ["grid"]),  # fmt: skip
    ("sweep-path-missing", lambda t: ["run", _spec(t, sweep={"enorm.q": {"grid": [1]}})],
     ["sweep.enorm.q", "no such path"]),  # fmt: skip
    ("sweep-seed", lambda t: ["run", _spec(t, sweep={"seed": {"grid": [1, 2]}})], ["sweep.seed"]),
    # out-of-range numbers
    ("lr-negative", lambda t: ["run", _spec(t, optimizer__lr=-1)], ["optimizer.lr", "greater"]),
    ("epochs-zero", lambda t: ["run", _spec(t, train__epochs=0)], ["train.epochs"]),
    ("momentum-one", lambda t: ["run", _spec(t, optimizer__momentum=1.0)], ["optimizer.momentum"]),
    ("val-fraction", lambda t: ["run", _spec(t, dataset__val_fraction=1.5)],
     ["dataset.val_fraction"]),  # fmt: skip
    ("batch-zero", lambda t: ["run", _spec(t, train__batch_size=0)], ["train.batch_size"]),
    ("enorm-c-negative", lambda t: ["run", _spec(t, enorm__c=-1, sweep={})], ["enorm.c"]),
    ("gpu-negative", lambda t: ["run", _spec(t, resources__gpu=-0.5)], ["resources.gpu"]),
    ("sweep-value-invalid", lambda t: ["run", _spec(t, sweep={"optimizer.lr": {"grid": [1, -2]}})],
     ["sweep.optimizer.lr", "-2"]),  # fmt: skip
    ("duplicate-seeds", lambda t: ["run", _spec(t, seeds=[1, 1])], ["seeds", "distinct"]),
    ("bad-name", lambda t: ["run", _spec(t, name="../escape")], ["name"]),
    ("uniform-in-grid", lambda t: ["run", _spec(t, sweep={"optimizer.lr": {"uniform": [1, 2]}})],
     ["sweep.optimizer.lr"]),  # fmt: skip
    # semantics
    ("baseline-no-arm", lambda t: ["run", _spec(t, baseline={"enorm.c": 7})],
     ["baseline", "matches no arm"]),  # fmt: skip
    ("baseline-bad-path", lambda t: ["run", _spec(t, baseline={"enorm.q": 0})],
     ["baseline.enorm.q"]),  # fmt: skip
    ("empty-sweep-grid", lambda t: ["run", _spec(t, sweep={"enorm.c": {"grid": []}})],
     ["sweep.enorm.c"]),  # fmt: skip
    ("enorm-with-adamg", lambda t: ["run", _spec(t, optimizer={"name": "adamg", "lr": 0.1,
                                                              "lrg": 0.1})],
     ["enorm", "sgd"]),  # fmt: skip
    ("milestone-after-end", lambda t: ["run", _spec(t, schedule={"name": "step",
                                                                 "milestones": [9]})],
     ["milestone"]),  # fmt: skip
    ("missing-dataset-files", lambda t: ["run", _spec(t, dataset={"name": "cifar10",
                                                                  "root": str(t / "nodata")})],
     ["dataset", "download"]),  # fmt: skip
    # CLI calls
    ("set-no-equals", lambda t: ["run", _spec(t), "--set", "train.epochs"], ["--set"]),
    ("set-bad-yaml", lambda t: ["run", _spec(t), "--set", "seeds=[1, 2"], ["seeds"]),
    ("storage-not-a-dir", lambda t: ["run", _spec(t), "--storage", _not_a_directory(t)],
     ["storage", "writable"]),  # fmt: skip
    ("storage-under-proc", lambda t: ["run", _spec(t), "--storage", "/proc/normstudy-results"],
     ["storage"]),  # fmt: skip
    ("resume-not-a-study", lambda t: ["resume", str(t), "--storage", str(t / "results")],
     ["no study"]),  # fmt: skip
    ("resume-unknown-name", lambda t: ["resume", "ghost", "--storage", str(t / "results")],
     ["ghost"]),  # fmt: skip
    ("compare-not-a-study", lambda t: ["compare", "ghost", "--storage", str(t / "results")],
     ["ghost"]),  # fmt: skip
    ("compare-bad-alpha", lambda t: ["compare", "ghost", "--alpha", "2"], ["alpha"]),
    ("compare-bad-select", lambda t: ["compare", "ghost", "--select", "best"], ["select"]),
    ("compare-bad-source", lambda t: ["compare", "ghost", "--source", "s3"], ["source"]),
    ("compare-no-pairs", lambda t: ["compare", _study_without_pairs(t), "--storage",
                                    str(t / "results")], ["pair"]),  # fmt: skip
    ("sync-not-a-study", lambda t: ["sync", "ghost", "--storage", str(t / "results")], ["ghost"]),
    ("ui-no-store", lambda t: ["ui", "--storage", str(t / "results")], ["no MLflow store"]),
    ("unknown-command", lambda t: ["launch", "x"], ["invalid choice"]),
    ("alpha-not-number", lambda t: ["compare", "x", "--alpha", "high"], ["--alpha"]),
    ("run-without-spec", lambda t: ["run"], ["spec"]),
]


def _call(argv: list[str]) -> tuple[int, str, str]:
    from studies.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def _check_message(message: str, words: list[str]) -> None:
    assert message.strip(), "no message"
    assert "Traceback" not in message
    assert "\n\n" not in message.strip(), f"more than one paragraph:\n{message}"
    assert len(message) < 2500, message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not named in:\n{message}"


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_in_process(case, argv, words, tmp_path, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    (tmp_path / "results").mkdir(exist_ok=True)
    before = tree_snapshot(tmp_path)
    code, out, err = _call(args)
    assert code == 2, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    _check_message(err, words)
    assert tree_snapshot(tmp_path) == before, "files were written"
    assert not ray.is_initialized(), "Ray was started"


SUBPROCESS_CASES = ["yaml-syntax", "storage-not-a-dir", "resume-not-a-study"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_installed_command(case, tmp_path):
    argv = dict((c[0], c[1]) for c in CASES)[case]
    words = dict((c[0], c[2]) for c in CASES)[case]
    args = argv(tmp_path)
    (tmp_path / "results").mkdir(exist_ok=True)
    before = tree_snapshot(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": "local"}
    done = subprocess.run([NORMSTUDY, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    _check_message(done.stderr, words)
    assert tree_snapshot(tmp_path) == before
    assert "ray" not in done.stdout.lower()


def test_corpus_size():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
