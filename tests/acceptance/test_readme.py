"""README.md runs as written: every ```python block, and every `$ normstudy ...` example whose
output the README quotes prints exactly that now."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# A block that cannot run here is marked on the line above it: <!-- skip: the reason -->
SKIP = re.compile(r"<!-- skip: (.+?) -->\s*$")


def blocks(language: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason) of every fenced block of a language, in order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(2), skip.group(1) if skip else None))
    return found


def cli_examples() -> list[tuple[int, str, str, int | None]]:
    """(line, command, expected output, expected exit code) for each quoted `$ normstudy`."""
    examples = []
    for line, code, _ in blocks(""):
        lines = code.splitlines()
        for i, text in enumerate(lines):
            if not text.startswith("$ normstudy "):
                continue
            output = []
            for follow in lines[i + 1 :]:
                if follow.startswith("$ "):
                    break
                output.append(follow)
            exit_code = None
            rest = lines[i + 1 + len(output) :]
            if rest[:1] == ["$ echo $?"] and len(rest) > 1:
                exit_code = int(rest[1])
            examples.append((line + 1 + i, text[2:], "\n".join(output), exit_code))
    return examples


PYTHON = blocks("python")
CLI = cli_examples()


def test_the_readme_has_the_examples_this_suite_runs():
    assert len(PYTHON) >= 7 and len(CLI) >= 2


@pytest.mark.parametrize(("line", "code", "skip"), PYTHON, ids=[f"line{b[0]}" for b in PYTHON])
def test_python_block_runs_as_written(line, code, skip, tmp_path):
    if skip:
        pytest.skip(skip)
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, f"README.md line {line}:\n{code}\n{ran.stderr[-3000:]}"


@pytest.mark.parametrize(("line", "command", "expected", "code"), CLI,
                         ids=[f"line{e[0]}" for e in CLI])  # fmt: skip
def test_quoted_cli_output_is_what_the_cli_prints(line, command, expected, code, shell):
    args = shlex.split(command)[1:]
    ran = shell.run(*args, timeout=120)
    assert ran.text.rstrip("\n") == expected, f"README.md line {line}: {command}"
    if code is not None:
        assert ran.code == code
