"""The README as the test: every test drives the installed ``normstudy`` console script in a
fresh working directory, as a user would (helpers: user_shell.py). No fixture starts Ray or
MLflow for the CLI; the CLI does, as for a user."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from user_shell import WORKDIRS, make_shell  # noqa: E402


@pytest.fixture
def shell(tmp_path):
    """A fresh user shell in ``.../my studies/study-1``."""
    user = make_shell(tmp_path, WORKDIRS["space"])
    yield user
    user.close()


@pytest.fixture(scope="session", params=list(WORKDIRS))
def quickstart(request, tmp_path_factory):
    """``normstudy run quickstart`` once per working directory kind: (shell, what it printed)."""
    user = make_shell(tmp_path_factory.mktemp("user"), WORKDIRS[request.param])
    ran = user.run("run", "quickstart")
    print(f"normstudy run quickstart in {user.cwd}: {ran.seconds:.1f}s")
    yield user, ran
    user.close()
