"""bench/gpu.sh --dry-run: every step of the GPU script on CPU with tiny sizes (integration:
about two minutes on two cores), so the script a GPU machine gets is known to run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_gpu_sh_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = output[output.index("gpu.sh summary"):]
    for step in ("tests", "epoch", "methods", "packing", "rows"):
        assert any(line.split()[:1] == [step] and line.endswith(" ok")
                   for line in summary.splitlines()), summary  # fmt: skip
    for name in ("epoch", "methods", "packing"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["rows"] and data["machine"]["device"] == "cpu"
    assert json.loads((tmp_path / "packing.json").read_text())["runner"] == "processes"
    variants = {row["variant"] for row in json.loads((tmp_path / "epoch.json").read_text())["rows"]}
    assert variants == {"fp32", "bf16", "channels_last"}
    # the rows for docs/benchmarks.md
    assert "| model | variant | ours s/epoch |" in output
    assert "packing >= 3x trials/hour at k = 4" in output
    assert (tmp_path / "logs" / "epoch.log").is_file()


def test_gpu_sh_refuses_unknown_options():
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--bogus"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr
