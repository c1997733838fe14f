"""README "Study your own method" as written (issue 17): its files are written into a fresh
folder, its commands run through the installed ``normstudy``, and the study finishes with a
comparison of the user's hook against its baseline."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FILE_COMMENT = re.compile(r"^# ([\w./-]+\.(?:py|yaml))\s*$")


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Study your own method\n")
    return text[start : text.index("\n## ", start + 1)]


def files_and_commands() -> tuple[dict[str, str], list[str]]:
    """The section's files (a block whose first line is ``# path``) and its commands."""
    files, commands = {}, []
    for match in FENCE.finditer(section()):
        language, code = match.group(1), match.group(2)
        first = FILE_COMMENT.match(code.splitlines()[0]) if code.strip() else None
        if first:
            files[first.group(1)] = code
        elif language == "bash":
            commands += [line.split("  #")[0].strip() for line in code.splitlines()
                         if line.startswith("normstudy ")]  # fmt: skip
    return files, commands


def test_the_section_has_the_example():
    files, commands = files_and_commands()
    assert set(files) == {"mymethod/nets.py", "mymethod/hooks.py", "mymethod/data.py",
                          "my-study.yaml"}  # fmt: skip
    assert sum(1 for line in files["mymethod/nets.py"].splitlines() if line.strip()) <= 20
    assert sum(1 for line in files["mymethod/hooks.py"].splitlines() if line.strip()) <= 15
    assert commands[1] == "normstudy run my-study.yaml"


def test_the_readme_example_runs_as_written(shell):
    files, commands = files_and_commands()
    for name, code in files.items():
        path = shell.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    ran = [shell.run(*shlex.split(command)[1:], timeout=300) for command in commands]
    for command, result in zip(commands, ran, strict=True):
        print(f"{command}: exit {result.code}, {result.seconds:.1f}s")
        assert result.code == 0, f"{command}\n{result.text}"
    validate, run, other_data = ran
    assert "max-norm: valid, 4 trials" in validate.out
    assert f"model mymethod.nets:TinyNet: import path ({shell.cwd / 'mymethod' / 'nets.py'})" \
        in validate.out
    assert "study 'max-norm' done" in run.out and "4 finished" in run.out
    assert "method.max_norm=1.0" in run.out and "baseline method.max_norm=0" in run.out
    assert "dataset mymethod.data:blobs: import path" in other_data.out
    rows = list((shell.results / "max-norm").glob("trial_*/result.json"))
    assert len(rows) == 4


def test_a_mistake_in_the_example_is_named(shell):
    files, _ = files_and_commands()
    for name, code in files.items():
        path = shell.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    ran = shell.run("validate", "my-study.yaml", "--set", "model.dept=3", timeout=120)
    assert ran.code == 2
    assert ("model.dept: unknown argument of model 'mymethod.nets:TinyNet'; it accepts: "
            "in_features, num_classes, depth, width") in ran.err
    ran = shell.run("validate", "my-study.yaml", "--set", "code=null", timeout=120)
    assert ran.code == 2 and "no module named 'mymethod'" in ran.err
    assert not shell.results.exists()
