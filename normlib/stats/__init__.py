"""Statistics for comparing a method with a baseline over paired seeds (numpy and scipy only).

One module per job, each importing only those above it in this list (and ``_checks``, the
argument checks they share):

* ``paired``: the paired t-test (with its confidence bound and d_z) and the Wilcoxon test;
* ``power``: power of the paired t-test and ``seeds_needed``;
* ``spending``: Lan-DeMets alpha spending functions;
* ``recursion``: crossing probabilities of the canonical z process;
* ``boundaries``: efficacy boundaries on the z and the paired-t scale;
* ``design``: ``SequentialDesign`` and its decision at each look;
* ``planning``: expected seeds and the detectable effect of a design;
* ``simulation``: the sequential procedure's operating characteristics, simulated;
* ``multiplicity``: Holm's adjustment, for fixed and for sequential arms.

Every public name is importable from here (``from normlib.stats import paired_ttest``). The
derivations, sources and tuning results are in docs/statistics.md.
"""

from normlib.stats._checks import ALTERNATIVES
from normlib.stats.boundaries import Boundaries, boundaries
from normlib.stats.design import (
    ACTIONS,
    FUTILITY_RULES,
    SequentialDecision,
    SequentialDesign,
    decide,
)
from normlib.stats.multiplicity import holm, holm_sequential
from normlib.stats.paired import PairedTTest, WilcoxonResult, paired_ttest, wilcoxon
from normlib.stats.planning import ExpectedSeeds, detectable_effect, expected_seeds
from normlib.stats.power import power, seeds_needed
from normlib.stats.recursion import crossing_probabilities
from normlib.stats.simulation import NOISES, SimulationResult, simulate
from normlib.stats.spending import SPENDINGS, obrien_fleming, pocock

__all__ = [
    "ACTIONS",
    "ALTERNATIVES",
    "Boundaries",
    "ExpectedSeeds",
    "FUTILITY_RULES",
    "NOISES",
    "PairedTTest",
    "SPENDINGS",
    "SequentialDecision",
    "SequentialDesign",
    "SimulationResult",
    "WilcoxonResult",
    "boundaries",
    "crossing_probabilities",
    "decide",
    "detectable_effect",
    "expected_seeds",
    "holm",
    "holm_sequential",
    "obrien_fleming",
    "paired_ttest",
    "pocock",
    "power",
    "seeds_needed",
    "simulate",
    "wilcoxon",
]
