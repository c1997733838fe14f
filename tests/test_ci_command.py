"""CI runs the README's test command as written: .ci/run's last step is that command, minus
the venv it makes before (and every check in it, mypy and the import-cycle check included)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "python3 -m venv .venv && "


def readme_test_command() -> str:
    """The command of README's "install and run the whole test suite" block."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "run the whole test suite" in line)
    return lines[start + 1]


def test_ci_runs_the_readme_test_command():
    command = readme_test_command()
    assert command.startswith(PREFIX)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[ci.index("# --- README test command (keep identical to README.md) ---") + 1] == \
        command.removeprefix(PREFIX)


def test_the_test_command_runs_every_check():
    steps = readme_test_command().split(" && ")
    assert steps[2:] == [".venv/bin/ruff check .", ".venv/bin/lint-imports", ".venv/bin/mypy",
                         ".venv/bin/python -m pytest"]
