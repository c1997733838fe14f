"""Fixed-step solvers: order of convergence, exactness, torchdiffeq parity, nfe, checkpointing."""

import math
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from normlib.ode import FIXED_STEP_METHODS, ODEBlock, odeint_fixed
from normlib.ode.solvers import check_solver

ORDERS = {"euler": 1, "rk2": 2, "rk4": 4}

# Eigenvalues -0.52 +- 0.99i and -0.95: a damped rotation, smooth on [0, 1].
A = torch.tensor(
    [[-0.5, 1.0, 0.0], [-1.0, -0.5, 0.3], [0.2, 0.0, -1.0]], dtype=torch.float64
)
Z0 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)


def linear_field(t, z):
    return A @ z


def exact_linear_solution():
    return torch.linalg.matrix_exp(A) @ Z0


@pytest.mark.parametrize("method", list(FIXED_STEP_METHODS))
def test_tableaux_are_consistent(method):
    tableau = FIXED_STEP_METHODS[method]
    assert math.isclose(sum(tableau.b), 1.0, rel_tol=1e-15)
    for c_i, a_i in zip(tableau.c, tableau.a, strict=True):
        assert math.isclose(c_i, sum(a_i), abs_tol=1e-15)


@pytest.mark.parametrize("method", list(ORDERS))
def test_halving_the_step_divides_the_error_by_two_to_the_order(method):
    exact = exact_linear_solution()
    coarse = (odeint_fixed(linear_field, Z0, method, steps=8) - exact).norm().item()
    fine = (odeint_fixed(linear_field, Z0, method, steps=16) - exact).norm().item()
    assert fine > 1e-9  # far above float64 roundoff, so the ratio is truncation error
    assert coarse / fine == pytest.approx(2 ** ORDERS[method], rel=0.15)


@pytest.mark.parametrize("method", list(ORDERS))
def test_one_step_on_exponential_growth_is_the_taylor_polynomial(method):
    # For dz/dt = lam z an explicit RK method of order p with p stages multiplies
    # z by sum_{k<=p} (lam h)^k / k!.
    lam, h = 0.7, 0.3
    z = odeint_fixed(lambda t, z: lam * z, torch.ones((), dtype=torch.float64), method,
                     steps=1, t0=1.0, t1=1.0 + h)
    taylor = sum((lam * h) ** k / math.factorial(k) for k in range(ORDERS[method] + 1))
    assert z.item() == pytest.approx(taylor, abs=1e-15)


def test_time_grid_runs_from_t0_to_t1():
    t0, t1, steps = 0.5, 2.0, 3
    h = (t1 - t0) / steps
    z0 = torch.zeros((), dtype=torch.float64)
    # Euler on dz/dt = t is the left Riemann sum of t over the grid t0 + k h.
    euler = odeint_fixed(lambda t, z: t.expand_as(z), z0, "euler", steps, t0, t1)
    assert euler.item() == pytest.approx(sum(h * (t0 + k * h) for k in range(steps)), abs=1e-14)
    # RK4 is Simpson's rule for a field depending on t only: exact for cubics.
    rk4 = odeint_fixed(lambda t, z: (3 * t**2).expand_as(z), z0, "rk4", steps, t0, t1)
    assert rk4.item() == pytest.approx(t1**3 - t0**3, abs=1e-13)


@pytest.mark.parametrize(("method", "reference"), [("euler", "euler"), ("rk2", "midpoint")])
@pytest.mark.parametrize("steps", [4, 16])
def test_matches_torchdiffeq_fixed_grid(method, reference, steps):
    torchdiffeq = pytest.importorskip(
        "torchdiffeq", reason="torchdiffeq is the optional `ode` extra (pip install normstudy[ode])"
    )
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    expected = torchdiffeq.odeint(linear_field, Z0, times, method=reference,
                                  options={"step_size": 1.0 / steps})[-1]
    ours = odeint_fixed(linear_field, Z0, method, steps=steps)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_adaptive_dopri5_reaches_the_tolerance():
    pytest.importorskip("torchdiffeq", reason="adaptive methods need the `ode` extra")
    z = odeint_fixed(linear_field, Z0, "dopri5", rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z, exact_linear_solution(), rtol=0, atol=1e-8)


class CountingLinearField(nn.Module):
    """dz/dt = W z with its own call counter, to check ODEBlock's count independently."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(A.clone())
        self.own_count = 0

    def forward(self, t, z):
        self.own_count += 1
        return z @ self.weight.T


@pytest.mark.parametrize(("method", "per_step"), [("euler", 1), ("rk2", 2), ("rk4", 4)])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_nfe_counts_evaluations_of_the_last_forward(method, per_step, checkpoint):
    func = CountingLinearField()
    block = ODEBlock(func, method, steps=5, checkpoint=checkpoint)
    block(Z0.repeat(2, 1))
    assert block.nfe == func.own_count == 5 * per_step
    block.nfe = func.own_count = 0
    block(Z0.repeat(2, 1)).sum().backward()  # a checkpointed backward re-evaluates func
    assert block.nfe == 5 * per_step
    assert func.own_count == (2 if checkpoint else 1) * 5 * per_step


def test_nfe_of_an_adaptive_solve_is_counted():
    pytest.importorskip("torchdiffeq", reason="adaptive methods need the `ode` extra")
    func = CountingLinearField()
    block = ODEBlock(func, "dopri5", rtol=1e-6, atol=1e-8)
    block(Z0.repeat(2, 1))
    assert block.nfe == func.own_count
    assert block.nfe >= 6  # at least the first dopri5 step (FSAL: 6 fresh stages)


@pytest.mark.parametrize("method", list(ORDERS))
def test_checkpoint_gives_identical_output_and_gradients(method):
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    z0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for checkpoint in (False, True):
        field.zero_grad()
        z0.grad = None
        z = odeint_fixed(lambda t, z: field(z), z0, method, steps=6, checkpoint=checkpoint)
        z.pow(3).sum().backward()
        results.append([z.detach(), z0.grad.clone()] + [p.grad.clone() for p in field.parameters()])
    for plain, checkpointed in zip(*results, strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=0, atol=1e-10)


class CountedScale(nn.Module):
    """Parametrization W -> 2 W that counts how often it is computed."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, weight):
        self.calls += 1
        return 2 * weight


def test_parametrized_weights_are_computed_once_per_solve():
    layer = nn.Linear(3, 3, bias=False).double()
    scale = CountedScale()
    parametrize.register_parametrization(layer, "weight", scale)
    scale.calls = 0  # registering evaluates the parametrization once

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, t, z):
            return self.layer(z)

    z = odeint_fixed(Field(), Z0, "rk4", steps=5)
    assert scale.calls == 1
    with torch.no_grad():
        weight = 2 * layer.parametrizations.weight.original
    expected = odeint_fixed(lambda t, z: z @ weight.T, Z0, "rk4", steps=5)
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-15)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="method") as error:
        odeint_fixed(linear_field, Z0, "heun")
    for valid in ("euler", "rk2", "rk4", "dopri5"):
        assert valid in str(error.value)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        odeint_fixed(linear_field, Z0, "euler", steps=steps)


def test_checkpoint_needs_a_fixed_step_method():
    pytest.importorskip("torchdiffeq", reason="adaptive methods need the `ode` extra")
    with pytest.raises(ValueError, match="checkpoint"):
        odeint_fixed(linear_field, Z0, "dopri5", checkpoint=True)


def test_without_torchdiffeq_adaptive_methods_ask_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # makes `import torchdiffeq` fail
    with pytest.raises(ImportError, match=r"normstudy\[ode\]"):
        check_solver("dopri5", 8)
    with pytest.raises(ValueError, match="euler, rk2, rk4 ") as error:
        check_solver("heun", 8)
    assert "dopri5" not in str(error.value)
    z = odeint_fixed(linear_field, Z0, "rk4", steps=4)  # fixed steps need no torchdiffeq
    assert torch.isfinite(z).all()


def test_ode_block_needs_a_module():
    with pytest.raises(TypeError, match="func"):
        ODEBlock(linear_field)
