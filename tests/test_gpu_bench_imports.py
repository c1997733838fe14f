"""bench/gpu.sh's Python runs on a bare GPU machine: torch, torchvision, numpy, scipy,
scikit-learn, matplotlib, pyyaml and pytest, but no Ray, MLflow, Optuna or pydantic.

Each benchmark script (and each test module gpu.sh runs) is imported in a fresh interpreter
whose import system refuses those packages, with the repository on ``PYTHONPATH`` as on that
machine (no install). A failure names the import chain that reached a refused package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

# Not on the GPU machine: the study service's own dependencies and their heavy friends.
REFUSED = ("ray", "mlflow", "optuna", "pydantic", "pydantic_core", "torchdiffeq", "pandas",
           "sqlalchemy", "psutil", "jsonschema", "playwright", "importlinter")  # fmt: skip

# The benchmarks gpu.sh runs, and the helpers it calls.
SCRIPTS = ("_common.py", "epoch.py", "methods.py", "packing.py", "odenet_step.py",
           "sequential.py", "gpu_rows.py")  # fmt: skip
# The test modules gpu.sh's CUDA step always runs.
TEST_MODULES = ("tests/normlib/test_enorm.py", "tests/normlib/test_models.py")

# The refused packages are made not installed: the path finder no longer sees them, so an
# import fails with "No module named ..." and importlib.util.find_spec returns None (torch
# probes optional packages that way), exactly as on the GPU machine.
PROBE = """
import importlib.machinery, runpy, sys, traceback
REFUSED = set(sys.argv[2].split(","))
assert not {m.split(".")[0] for m in sys.modules} & REFUSED

class NotInstalled(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [NotInstalled if f is importlib.machinery.PathFinder else f
                    for f in sys.meta_path]
try:
    runpy.run_path(sys.argv[1], run_name="imported_by_test")  # module body only, not main()
except ImportError:
    traceback.print_exc()
    sys.exit(3)
loaded = sorted({m.split(".")[0] for m in sys.modules} & REFUSED)
if loaded:
    print("loaded anyway:", loaded)
    sys.exit(4)
print("imported", sys.argv[1])
"""


def probe(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(REFUSED)],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_imports_without_study_service(script):
    result = probe(BENCH / script)
    assert result.returncode == 0, f"{script}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("module", TEST_MODULES)
def test_cuda_test_module_imports_without_study_service(module):
    result = probe(ROOT / module)
    assert result.returncode == 0, f"{module}:\n{result.stdout}{result.stderr}"


def test_the_probe_refuses():
    """The hook works: a module that needs pydantic fails to import under it."""
    result = probe(ROOT / "studies" / "config" / "spec.py")
    assert result.returncode == 3 and "No module named 'pydantic'" in result.stderr
