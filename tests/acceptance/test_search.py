"""README's search study, from a fresh folder: `normstudy run lr-search.yaml` ends with its
answer, and the answer is what the results and MLflow hold: the printed best trial is the
trial with the best val_acc at its last epoch, its printed values are the ones it ran with,
the report and plots are written, and the MLflow parent run carries the same best values.
A search that cannot work exits 2 naming the field, with nothing written."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from user_shell import study_runs

pytestmark = pytest.mark.acceptance

README = Path(__file__).resolve().parents[2] / "README.md"
NAME, TRIALS, EPOCHS = "lr-search", 12, 2
PNG = b"\x89PNG\r\n\x1a\n"
BEST = re.compile(r"^Best configuration \(val_acc at each trial's last epoch, higher is better\): "
                  r"trial (\w+) \(#(\d+)\), val_acc ([\d.]+)% at epoch (\d+)$", re.M)  # fmt: skip


def readme_spec() -> str:
    """The README's ``lr-search.yaml`` block, as a user copies it."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    (block,) = [b for b in blocks if b.startswith(f"# {NAME}.yaml\n")]
    return block


def last_epoch_rows(folder: Path) -> dict[str, dict]:
    """Trial id -> (its config, the result row of its last epoch)."""
    found = {}
    for trial in folder.glob("trial_*"):
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        config = json.loads((trial / "params.json").read_text())
        found[trial.name.removeprefix("trial_")] = {"config": config, "last": rows[-1]}
    return found


def test_readme_search_prints_its_answer_and_the_results_agree(shell):
    (shell.cwd / f"{NAME}.yaml").write_text(readme_spec())
    ran = shell.run("run", f"{NAME}.yaml", timeout=600)
    assert ran.code == 0, ran.text[-3000:]
    print(f"normstudy run {NAME}.yaml: {ran.seconds:.1f}s")
    out = ran.out
    assert f"Search '{NAME}': {TRIALS} of {TRIALS} trials: {TRIALS} finished" in out

    # The printed best trial is the best of the result rows, with the values it ran with.
    found = BEST.search(out)
    assert found, out[-3000:]
    best_id, number, printed, epoch = found.group(1), int(found.group(2)), *found.group(3, 4)
    folder = shell.results / NAME
    trials = last_epoch_rows(folder)
    assert len(trials) == TRIALS and all(t["last"]["epoch"] == EPOCHS for t in trials.values())
    top = max(t["last"]["val_acc"] for t in trials.values())
    assert trials[best_id]["last"]["val_acc"] == top and printed == f"{100 * top:.2f}"
    assert int(epoch) == EPOCHS and 1 <= number <= TRIALS
    optimizer = trials[best_id]["config"]["optimizer"]
    assert f"  optimizer.lr = {optimizer['lr']:.4g}\n" in out
    assert f"  optimizer.momentum = {optimizer['momentum']:.4g}\n" in out

    # The top-10 table: 10 rows, best first, values from the results.
    table = out[out.index("Top 10 of 12 configurations:"):].splitlines()[3:13]
    assert [row.split()[0] for row in table] == [str(rank) for rank in range(1, 11)]
    shown = [float(row.split()[3].rstrip("%")) for row in table]
    assert shown == sorted(shown, reverse=True) and table[0].split()[2] == best_id
    for row in table:
        trial_id, value = row.split()[2], row.split()[3]
        assert value == f"{100 * trials[trial_id]['last']['val_acc']:.2f}%"
    assert "What mattered (fANOVA importance): optimizer." in out

    # The report, the table and the plots (real PNGs) are written.
    out_dir = folder / "search"
    report = (out_dir / "report.md").read_text()
    assert f"trial {best_id} (#{number}), val_acc {printed}% at epoch {EPOCHS}" in report
    rows = list(csv.DictReader((out_dir / "trials.csv").open()))
    assert len(rows) == TRIALS and rows[0]["trial"] == best_id
    for plot in ("history.png", "slice.png", "importance.png"):
        data = (out_dir / plot).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, plot

    # MLflow's parent run holds the same answer: metrics, tags, params and artifacts.
    client, _, parents, children = study_runs(shell, NAME)
    (parent,) = parents
    assert len(children) == TRIALS
    metrics, tags, params = parent.data.metrics, parent.data.tags, parent.data.params
    assert metrics["best.val_acc"] == top and tags["normstudy.best.trial"] == best_id
    assert metrics["best.optimizer.lr"] == optimizer["lr"]
    assert float(params["best.optimizer.momentum"]) == optimizer["momentum"]
    assert metrics["trials.finished"] == TRIALS and metrics["trials.errored"] == 0
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "search")}
    assert logged == {"report.md", "trials.csv", "history.png", "slice.png", "importance.png"}

    # `normstudy best` says the same again; `compare` points to it (no baseline).
    again = shell.run("best", NAME, "--top", "3", "--no-log", timeout=120)
    assert again.code == 0 and BEST.search(again.out).group(0) == found.group(0)
    assert "Top 3 of 12 configurations:" in again.out
    compared = shell.run("compare", NAME, timeout=120)
    assert compared.code == 2 and f"`normstudy best {NAME}`" in compared.err


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("sweep={optimizer.lr: {grid: [0.01, 0.1]}}", "search.name"),  # optuna over a grid
        ("search.num_samples=0", "search.num_samples"),
        ("metric.name=nfe", "metric.name"),  # no trial reports it
    ],
)
def test_a_search_that_cannot_work_exits_2_naming_the_field(shell, override, field):
    (shell.cwd / f"{NAME}.yaml").write_text(readme_spec())
    ran = shell.run("run", f"{NAME}.yaml", "--set", override, timeout=120)
    assert ran.code == 2 and ran.out == "", ran.text
    assert ran.err.startswith("normstudy: invalid study spec:\n") and f"\n  {field}: " in ran.err
    assert sorted(p.name for p in shell.cwd.iterdir()) == [f"{NAME}.yaml"]  # nothing written
