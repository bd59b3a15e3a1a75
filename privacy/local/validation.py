"""Checks shared by the local randomizers (over `privacy.validation`): one-line errors that name the bad value."""

from __future__ import annotations

import numpy as np

from privacy import validation

MAX_EPSILON = 20.0
"""Largest per-person epsilon accepted. At it the smallest probability a randomizer draws with is about 2**-30
(1 / (e**20 + k - 1)), which float64 uniforms (a 2**-53 grid) still realize to a relative 2**-23; beyond it
that error grows, and such an epsilon protects nobody anyway."""
MAX_DOMAIN = 1 << 20
"""Largest domain size k (values 0..k-1)."""


def check_epsilon(epsilon) -> float:
    """``epsilon`` as a float in (0, `MAX_EPSILON`]; ValueError naming it otherwise."""
    return float(validation.positive("epsilon", epsilon, maximum=MAX_EPSILON))


def check_domain(k) -> int:
    """``k`` as an int in [2, `MAX_DOMAIN`]; ValueError naming it otherwise."""
    return validation.integer("k (the number of values)", k, minimum=2, maximum=MAX_DOMAIN)


def check_values(values, k: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of integers in [0, k); ValueError naming the first bad value."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"values must be a 1-D sequence, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"values must be integers in [0, {k}), got dtype {array.dtype}")
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ValueError(f"values must be integers in [0, {k}), got {array[np.argmax(bad)]!r}")
    bad = (array < 0) | (array >= k)
    if bad.any():
        raise ValueError(f"values must be integers in [0, {k}), got {array[np.argmax(bad)]!r}")
    return array.astype(np.int64)


def check_confidence(confidence) -> float:
    """``confidence`` as a float in (0, 1); ValueError naming it otherwise."""
    return float(validation.probability("confidence", confidence))
