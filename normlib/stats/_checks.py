"""Argument checks shared by the statistics modules: each returns the checked value or raises
ValueError with a message that names the argument."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

ALTERNATIVES = ("greater", "less", "two-sided")

FloatArray = NDArray[np.float64]


def check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(
            f"alternative must be one of 'greater', 'less', 'two-sided' (got {alternative!r})"
        )


def check_open_unit(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1 (got {value!r})")


def check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite (got {value!r})")


def check_integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def as_sample(name: str, values: ArrayLike) -> FloatArray:
    """``values`` as a one-dimensional float array of finite numbers."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of numbers") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {array.shape})")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}; every value must be finite")
    return array


def check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise ValueError(f"alpha must be a number strictly between 0 and 1 (got {alpha!r})")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1 (got {alpha!r})")
    return float(alpha)


def check_looks(looks: object) -> tuple[int, ...]:
    """Cumulative seed counts: at least 2 strictly increasing integers, the first >= 2."""
    if isinstance(looks, str | bytes) or not isinstance(looks, Sequence | np.ndarray):
        raise ValueError(f"looks must be a list of cumulative seed counts (got {looks!r})")
    items = list(looks)
    if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in items):
        raise ValueError(f"looks must contain integers only (got {items!r})")
    values = [int(n) for n in items]
    if len(values) < 2:
        raise ValueError(f"looks must have at least 2 looks (got {values!r})")
    if values[0] < 2:
        raise ValueError(f"looks[0] must be >= 2 seeds (a t-test needs 2 pairs; got {values!r})")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"looks must be strictly increasing (got {values!r})")
    return tuple(values)


def check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    return float(value)


def check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)
