"""Multiple arms against one baseline: Holm's step-down adjustment (Holm 1979).

With p_(1) <= ... <= p_(m) sorted ascending, adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j));
rejecting where adj <= alpha controls the family-wise error rate at alpha. ``holm_sequential``
applies it to the stage-wise p-values of group-sequential arms, each designed at level
alpha / m. Why that is valid: docs/statistics.md, "Several arms".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from normlib.stats._checks import FloatArray, check_alpha
from normlib.stats.design import SequentialDecision, SequentialDesign


def holm(pvalues: ArrayLike) -> FloatArray:
    """Holm-Bonferroni adjusted p-values, returned in the input order.

    With p_(1) <= ... <= p_(m) sorted ascending,
        adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)),
    so the adjusted values never decrease along the sorted order and stay in [0, 1].
    Rejecting where adj <= alpha controls the family-wise error rate at alpha.
    Empty input gives an empty array; a NaN or a value outside [0, 1] raises ValueError.
    """
    try:
        values = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError("pvalues must be a sequence of numbers") from error
    if values.ndim != 1:
        raise ValueError(f"pvalues must be one-dimensional (got shape {values.shape})")
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        raise ValueError(f"pvalues[{bad[0]}] is {values[bad[0]]}; p-values must lie in [0, 1]")

    m = values.size
    order = np.argsort(values, kind="stable")
    multipliers = m - np.arange(m)
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, multipliers * values[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def holm_sequential(
    decisions: Sequence[SequentialDecision], designs: Sequence[SequentialDesign], alpha: float
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Holm across m arms: (Holm-adjusted stage-wise p-values, rejected) in the input order.

    Every arm must have stopped, and its design must be at level <= alpha / m (the Bonferroni
    split that makes each efficacy stop a family-wise rejection). Rejected: adjusted <= alpha.
    """
    alpha = check_alpha(alpha)
    if len(decisions) != len(designs):
        raise ValueError(
            f"decisions ({len(decisions)}) and designs ({len(designs)}) must pair up per arm"
        )
    m = len(decisions)
    for i, (decision, design) in enumerate(zip(decisions, designs, strict=True)):
        if not decision.stopped:
            raise ValueError(f"arm {i} has not stopped yet (action 'continue')")
        if design.alpha > alpha / m * (1 + 1e-9):
            raise ValueError(
                f"arm {i}'s design has alpha={design.alpha}; with {m} arms it must be "
                f"<= alpha / m = {alpha / m}"
            )
    adjusted = holm(np.array([d.pvalue for d in decisions], dtype=float))
    return adjusted, adjusted <= alpha
