"""Vote histograms: one row per query, one column per class, each row summing to the number of teachers."""

from __future__ import annotations

import numpy as np

from privacy import validation

MAX_NOISE = 1e6
"""Upper end of every noise standard deviation and threshold accepted (votes are counts of teachers)."""


MAX_TEACHERS = 100_000
"""Upper end of the number of teachers (the selection step's analysis tabulates every maximum vote)."""


class PateConfigurationError(ValueError):
    """A PATE setting or input that cannot be analysed; the message names the setting."""


def check_votes(votes, num_teachers: int | None = None) -> np.ndarray:
    """Returns ``votes`` as an int64 array (queries, classes), or raises PateConfigurationError.

    Every row must be non-negative integer counts summing to the same number of teachers (``num_teachers``
    when given), with at least as many teachers as classes.
    """
    array = np.asarray(votes)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise PateConfigurationError(
            f"votes must be a (queries, classes) matrix with >= 2 classes, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise PateConfigurationError("votes must be finite numbers")
    if np.any(array < 0) or np.any(array != np.round(array)):
        raise PateConfigurationError("votes must be non-negative integer counts")
    array = array.astype(np.int64)
    totals = array.sum(axis=1)
    if np.any(totals != totals[0]):
        bad = int(np.flatnonzero(totals != totals[0])[0])
        raise PateConfigurationError(
            f"every query must have the same number of votes: query 0 has {totals[0]}, query {bad} has {totals[bad]}"
        )
    if num_teachers is not None and totals[0] != num_teachers:
        raise PateConfigurationError(f"votes sum to {totals[0]} per query, but teachers={num_teachers}")
    check_teachers(int(totals[0]), array.shape[1])
    return array


def check_teachers(num_teachers: int, num_classes: int) -> None:
    """Raises PateConfigurationError unless 2 <= classes <= teachers <= MAX_TEACHERS."""
    validation.integer("classes", num_classes, minimum=2, error=PateConfigurationError)
    validation.integer("teachers", num_teachers, maximum=MAX_TEACHERS, error=PateConfigurationError)
    if num_teachers < num_classes:
        raise PateConfigurationError(
            f"teachers ({num_teachers}) must be at least the number of classes "
            f"({num_classes}): with fewer, no label can win a clear majority"
        )


def check_noise(name: str, value: float) -> float:
    """Returns ``value`` as a float if it is a noise std in (0, MAX_NOISE], else raises naming ``name``."""
    return float(validation.positive(name, value, maximum=MAX_NOISE, error=PateConfigurationError))
