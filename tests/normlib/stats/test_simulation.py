"""normlib.stats.simulation: the simulated procedure keeps its level."""

from normlib.stats.design import SequentialDesign
from normlib.stats.simulation import simulate

LOOKS = (5, 10, 15, 20)


def test_null_rejection_rate_within_monte_carlo_error():
    for spending in ("obrien_fleming", "pocock"):
        design = SequentialDesign(LOOKS, 0.05, spending)
        for noise in ("normal", "t3"):
            r = simulate(design, 0.0, 2.0, 20_000, noise, seed=101)
            assert r.rejection_rate <= 0.05 + 3 * r.mc_se, (spending, noise, r.rejection_rate)
