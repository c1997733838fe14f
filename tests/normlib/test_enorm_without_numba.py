"""ENorm without numba (the `fast` extra not installed): normlib imports, and a cycle takes
PyTorch's path where the fused kernels would otherwise run, with the same result."""

from __future__ import annotations

import subprocess
import sys

import torch

from normlib import enorm as enorm_module
from normlib import enorm_kernels

# One conv -> flatten -> linear chain with SGD momentum buffers, three ENorm cycles with one
# intra-op thread and no size threshold: where numba imports, the fused kernels run them.
CYCLES = """
import torch
from torch import nn
from normlib.enorm import ENorm


def cycles() -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(5 * 4 * 4, 7), nn.ReLU(), nn.Linear(7, 3))
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.mul_(1.0 + i % 3)  # far from balanced
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = model(torch.randn(4, 3, 8, 8)).square().mean()
    loss.backward()
    optimizer.step()
    before = {f"before.{n}": p.detach().clone() for n, p in model.named_parameters()}
    enorm = ENorm(model.named_parameters(), optimizer, c=1.2, sweep="jacobi")
    for _ in range(3):
        enorm.step()
    state = {f"w.{n}": p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"m.{n}": optimizer.state[p]["momentum_buffer"].clone()
                  for n, p in model.named_parameters()})
    return state | before
"""

CHILD = """
import sys
sys.modules["numba"] = None  # `import numba` raises ImportError, as without the extra
import torch
import normlib
import normlib.models
from normlib import enorm, enorm_kernels
assert not enorm_kernels.available(), "numba imported"
enorm.FUSED_MIN_WEIGHTS = 0
{cycles}
torch.save(cycles(), sys.argv[1])
"""


def _cycles() -> dict[str, torch.Tensor]:
    """Run CYCLES in this process (numba importable) and return its weights and buffers."""
    namespace: dict = {}
    exec(CYCLES, namespace)
    threads = torch.get_num_threads()
    try:
        return namespace["cycles"]()
    finally:
        torch.set_num_threads(threads)


def test_without_numba_a_cycle_equals_the_torch_path(tmp_path, monkeypatch):
    out = tmp_path / "state.pt"
    subprocess.run([sys.executable, "-c", CHILD.format(cycles=CYCLES), str(out)], check=True,
                   timeout=300)  # fmt: skip
    without_numba = torch.load(out)
    monkeypatch.setattr(enorm_module, "FUSED_MIN_WEIGHTS", 0)
    assert enorm_kernels.available(), "numba comes with the dev extra (via `fast`)"
    fused = _cycles()
    monkeypatch.setattr(enorm_kernels, "available", lambda: False)
    torch_path = _cycles()
    assert without_numba.keys() == torch_path.keys() and len(torch_path) == 3 * 8
    for name, tensor in torch_path.items():
        assert torch.equal(without_numba[name], tensor), name  # the same ops, bit for bit
        torch.testing.assert_close(fused[name], tensor, rtol=1e-6, atol=0)
    # the cycles did work: the weights around the two balanced units moved (5.weight by its
    # columns only), the classifier's did not (balance_last is off)
    for name in ("0.weight", "2.weight", "5.weight"):
        assert (torch_path[f"w.{name}"] - torch_path[f"before.{name}"]).abs().max() > 1e-3, name
    assert torch.equal(torch_path["w.7.weight"], torch_path["before.7.weight"])
