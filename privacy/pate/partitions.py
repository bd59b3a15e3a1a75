"""Disjoint partitions of the private data, one per teacher, and the public/private split check.

A record (or a data holder, with `partition_by_key`) belongs to exactly one teacher, so changing it changes
one teacher's votes: the teacher-level guarantee of the aggregators then holds per record (or per holder).
Partitions are lists of row indices into the private data.
"""

from __future__ import annotations

import numpy as np

from privacy.pate.votes import PateConfigurationError
from privacy.preprocessing.noise import NoiseSource


def check_disjoint(partitions, num_rows: int | None = None) -> list[np.ndarray]:
    """Returns the partitions as int64 arrays; raises PateConfigurationError naming a row in two of them,
    an empty partition, or a row outside [0, num_rows)."""
    arrays = [np.asarray(p, dtype=np.int64).ravel() for p in partitions]
    owner: dict[int, int] = {}
    for teacher, rows in enumerate(arrays):
        if rows.size == 0:
            raise PateConfigurationError(f"partition of teacher {teacher} is empty")
        for row in rows.tolist():
            if num_rows is not None and not 0 <= row < num_rows:
                raise PateConfigurationError(f"partition of teacher {teacher} names row {row}, outside "
                                             f"[0, {num_rows})")
            if row in owner:
                raise PateConfigurationError(f"partitions overlap: row {row} is in the partitions of teachers "
                                             f"{owner[row]} and {teacher}")
            owner[row] = teacher
    return arrays


def check_public_private(public_rows, private_rows) -> None:
    """Raises PateConfigurationError if a row is in both the public (query) split and the private one."""
    shared = np.intersect1d(np.asarray(public_rows), np.asarray(private_rows))
    if shared.size:
        raise PateConfigurationError(f"the public split overlaps the private one: {shared.size} shared rows "
                                     f"(first: row {int(shared[0])})")


def partition_by_key(keys, num_teachers: int) -> list[np.ndarray]:
    """Rows grouped by holder key, the holders dealt to ``num_teachers`` teachers in order of first appearance,
    so every holder's rows go to one teacher; fewer holders than teachers is refused."""
    keys = np.asarray(keys)
    _check_count(num_teachers)
    holders, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(holders) < num_teachers:
        raise PateConfigurationError(f"teachers ({num_teachers}) exceed the number of holders ({len(holders)})")
    order = np.argsort(first)  # holders in order of first appearance
    teacher_of_holder = np.empty(len(holders), dtype=np.int64)
    teacher_of_holder[order] = np.arange(len(holders)) % num_teachers
    teacher_of_row = teacher_of_holder[inverse.ravel()]
    return [np.flatnonzero(teacher_of_row == t) for t in range(num_teachers)]


def partition_randomly(num_rows: int, num_teachers: int, *, seed: int | None = None) -> list[np.ndarray]:
    """A uniformly random split of rows 0 .. num_rows - 1 into ``num_teachers`` parts of near-equal size."""
    _check_count(num_teachers)
    if num_rows < num_teachers:
        raise PateConfigurationError(f"teachers ({num_teachers}) exceed the private rows ({num_rows})")
    source = NoiseSource(seed, stream="pate-partition")
    permutation = np.argsort(source.normal(1.0, size=num_rows), kind="stable")
    return [np.sort(part) for part in np.array_split(permutation, num_teachers)]


def _check_count(num_teachers) -> None:
    if isinstance(num_teachers, bool) or not isinstance(num_teachers, (int, np.integer)) or num_teachers < 1:
        raise PateConfigurationError(f"teachers must be an integer >= 1, got {num_teachers!r}")
