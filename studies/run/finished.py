"""A study's end, marked: ``run`` and ``resume`` print it as they did and, when every stage
finished without a warning, keep what they printed in the study's mark
(:mod:`studies.store.finished`), which ``resume`` of the finished study prints again.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from studies.store.finished import write_marks

if TYPE_CHECKING:  # its study has run: Ray is loaded
    from studies.run.fit import StudyOutcome

WARNING = "[normstudy] warning"  # a failed comparison or answer, a log that did not happen


class Tee(io.TextIOBase):
    """A stream that writes through to ``out`` and keeps a copy."""

    def __init__(self, out: TextIO):
        self.out, self.copy = out, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()


def finish_marked(outcome: StudyOutcome, finish: Callable[[StudyOutcome], int]) -> int:
    """``finish(outcome)``'s exit code; a study that ended with exit 0, all its stages done
    and no warning printed is marked finished with what ``finish`` printed."""
    out, err = Tee(sys.stdout), Tee(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = finish(outcome)
    printed = out.copy.getvalue()
    stages = finished_stages(outcome)
    if code == 0 and stages and WARNING not in printed + err.copy.getvalue():
        with contextlib.suppress(OSError):  # unmarked, resume only starts Ray as before
            write_marks(stages, printed)
    return code


def finished_stages(outcome: StudyOutcome) -> list[Path]:
    """The stage folders of a study whose last stage is ``outcome``'s (none for a search stage
    whose confirm stage has not started), in order."""
    spec = outcome.spec
    if spec.confirm is not None or outcome.interrupted or outcome.counts.get("errored"):
        return []
    if spec.confirm_of:
        return [outcome.folder.parent / spec.confirm_of, outcome.folder]
    return [outcome.folder]
