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
* ``multiplicity``: Holm's adjustment, for fixed and for sequential arms;
* ``meta``: fixed-effect and DerSimonian-Laird random-effects pooling with the HKSJ interval;
* ``improvement``: probability of improvement over settings, stratified bootstrap interval;
* ``ranks``: Friedman's test over settings and Nemenyi's critical difference;
* ``settings``: one arm against the baseline across settings, per setting and pooled;
* ``settings_simulation``: the pooled tests' type-I error and coverage, simulated.

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
from normlib.stats.improvement import (
    Improvement,
    improvement_interval,
    pair_scores,
    probability_of_improvement,
)
from normlib.stats.meta import MetaAnalysis, meta_analysis
from normlib.stats.multiplicity import holm, holm_sequential
from normlib.stats.paired import PairedTTest, WilcoxonResult, paired_ttest, wilcoxon
from normlib.stats.planning import ExpectedSeeds, detectable_effect, expected_seeds
from normlib.stats.power import power, seeds_needed
from normlib.stats.ranks import Friedman, friedman, nemenyi_cd, setting_ranks
from normlib.stats.recursion import crossing_probabilities
from normlib.stats.settings import WILCOXON_FROM, AcrossSettings, across_settings
from normlib.stats.settings_simulation import TESTS as TESTS_ACROSS
from normlib.stats.settings_simulation import SettingsSimulation, simulate_settings
from normlib.stats.simulation import NOISES, SimulationResult, simulate
from normlib.stats.spending import SPENDINGS, obrien_fleming, pocock

__all__ = [
    "ACTIONS",
    "ALTERNATIVES",
    "AcrossSettings",
    "Boundaries",
    "ExpectedSeeds",
    "FUTILITY_RULES",
    "Friedman",
    "Improvement",
    "MetaAnalysis",
    "NOISES",
    "PairedTTest",
    "SPENDINGS",
    "SequentialDecision",
    "SequentialDesign",
    "SettingsSimulation",
    "SimulationResult",
    "TESTS_ACROSS",
    "WILCOXON_FROM",
    "WilcoxonResult",
    "across_settings",
    "boundaries",
    "crossing_probabilities",
    "decide",
    "detectable_effect",
    "expected_seeds",
    "friedman",
    "holm",
    "holm_sequential",
    "improvement_interval",
    "meta_analysis",
    "nemenyi_cd",
    "obrien_fleming",
    "pair_scores",
    "paired_ttest",
    "pocock",
    "power",
    "probability_of_improvement",
    "seeds_needed",
    "setting_ranks",
    "simulate",
    "simulate_settings",
    "wilcoxon",
]
