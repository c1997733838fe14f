"""The budget for building a model on the meta device (studies.trial.validation) counts the
build, not torch's lazy imports: a fresh process on a slow machine refused a 2-layer MLP as
"too big" when the first init op imported torch._dynamo inside the budget."""

from __future__ import annotations

import subprocess
import sys

FRESH_PROCESS = """
import time
from studies.trial import validation
from studies.trial.validation import check_buildable
from studies.config.load import parse_config

spec = parse_config({"name": "tiny", "dataset": {"name": "digits"},
                     "model": {"name": "fully_connected", "n_layers": 2, "width": 16},
                     "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1},
                     "seeds": [1]})
validation.BUILD_SECONDS = BUDGET
started = time.process_time()
print(check_buildable(spec.trial_config()), round(time.process_time() - started, 2))
"""


def fresh_check(budget: float) -> str:
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS.replace("BUDGET", repr(budget))],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_tiny_model_fits_a_tight_budget_in_a_fresh_process():
    # torch's lazy imports take far more than 0.3 s of CPU; the build of this MLP far less
    problems, seconds = fresh_check(0.3).rsplit(" ", 1)
    assert problems == "[]", problems
    assert float(seconds) > 0.3  # the imports happened inside check_buildable, off the budget


def test_a_budget_of_zero_refuses_even_a_tiny_model_naming_the_fields():
    problems, _ = fresh_check(0.0).rsplit(" ", 1)
    assert "model.n_layers / model.width" in problems and "CPU seconds" in problems
