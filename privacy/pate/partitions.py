"""Disjoint partitions of the private data, one per teacher, and the public/private split check.

A record (or a data holder, with `partition_by_key`) belongs to exactly one teacher, so adding or removing it
changes one teacher's votes: the teacher-level guarantee of the aggregators then holds per record (or per
holder) under add/remove; replacing a record may move it to another teacher, so replace-one is two teachers.
Partitions are lists of row indices into the private data. A partition may be empty: whether one is must not
decide whether a run happens (that would let one record decide it), so its teacher is trained on nothing and
votes data-independently (`privacy.pate.keras_training.teacher_votes`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from privacy import validation
from privacy.pate.votes import PateConfigurationError


def check_disjoint(partitions, num_rows: int | None = None) -> list[np.ndarray]:
    """Returns the partitions as int64 arrays (empty ones included); raises PateConfigurationError naming a row
    in two of them, or a row outside [0, num_rows)."""
    arrays = [np.asarray(p, dtype=np.int64).ravel() for p in partitions]
    owner: dict[int, int] = {}
    for teacher, rows in enumerate(arrays):
        for row in rows.tolist():
            if num_rows is not None and not 0 <= row < num_rows:
                raise PateConfigurationError(f"partition of teacher {teacher} names row {row}, outside [0, {num_rows})")
            if row in owner:
                raise PateConfigurationError(
                    f"partitions overlap: row {row} is in the partitions of teachers {owner[row]} and {teacher}"
                )
            owner[row] = teacher
    return arrays


def check_public_private(public_rows, private_rows) -> None:
    """Raises PateConfigurationError if a row is in both the public (query) split and the private one."""
    shared = np.intersect1d(np.asarray(public_rows), np.asarray(private_rows))
    if shared.size:
        raise PateConfigurationError(
            f"the public split overlaps the private one: {shared.size} shared rows (first: row {int(shared[0])})"
        )


def partition_by_key(keys, num_teachers: int, *, seed: int = 0) -> list[np.ndarray]:
    """Row indices per teacher: row i goes to teacher BLAKE2b_seed(keys[i]) mod ``num_teachers``.

    A row's teacher is a function of its key (and the seed) alone, never of its position or of other rows:
    adding or removing one record changes one teacher's partition and moves no other record (replacing it
    changes up to two), and with holder ids as keys all of a holder's rows go to one teacher. Teachers that
    get no row are returned with empty partitions, never refused. Keys are holder ids, or the rows'
    content (e.g. `federated.partitioners.keyed.content_keys`); equal keys share a teacher. The seed need
    not be secret: the guarantee does not depend on who knows the partition.
    """
    _check_count(num_teachers)
    validation.integer("partition seed", seed, minimum=0, maximum=2**128 - 1, error=PateConfigurationError)
    secret = seed.to_bytes(16, "big")
    teacher_of_row = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(_key_bytes(k), digest_size=8, key=secret, salt=b"pate-teacher").digest(), "big"
            )
            % num_teachers
            for k in keys
        ],
        dtype=np.int64,
    )
    return [np.flatnonzero(teacher_of_row == t) for t in range(num_teachers)]


def _key_bytes(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    return repr(key.item() if isinstance(key, np.generic) else key).encode("utf-8")


def _check_count(num_teachers) -> None:
    validation.integer("teachers", num_teachers, minimum=1, error=PateConfigurationError)
