"""Teacher partitions are disjoint, and the public split must not overlap the private one."""

import numpy as np
import pytest

from privacy.pate import PateConfigurationError, check_disjoint, check_public_private, partition_by_key


def _teacher_of(parts, keys):
    return {keys[row]: t for t, rows in enumerate(parts) for row in rows.tolist()}


def test_partition_is_disjoint_covers_every_row_and_is_balanced():
    keys = [f"record-{i}" for i in range(2000)]
    parts = partition_by_key(keys, 10, seed=1)
    rows = np.concatenate(check_disjoint(parts, 2000))
    assert sorted(rows.tolist()) == list(range(2000))
    assert all(abs(len(p) - 200) <= 4.5 * np.sqrt(2000 * 0.1 * 0.9) for p in parts)


def test_one_record_added_first_or_removed_moves_no_other_record():
    keys = [f"record-{i}" for i in range(300)]
    base = _teacher_of(partition_by_key(keys, 7, seed=3), keys)
    added = ["intruder"] + keys  # first in the file: positions of every other record shift
    with_added = _teacher_of(partition_by_key(added, 7, seed=3), added)
    assert {k: with_added[k] for k in keys} == base
    removed = keys[1:]
    assert _teacher_of(partition_by_key(removed, 7, seed=3), removed) == {k: base[k] for k in removed}


def test_partition_by_key_keeps_each_holder_with_one_teacher():
    keys = np.array(["a", "b", "a", "c", "d", "b", "e", "c"])
    parts = check_disjoint(partition_by_key(keys, 3), len(keys))
    for holder in set(keys.tolist()):
        owners = {t for t, rows in enumerate(parts) if set(np.flatnonzero(keys == holder)) & set(rows.tolist())}
        assert len(owners) == 1, holder


@pytest.mark.parametrize("build,match", [
    (lambda: check_disjoint([[0, 1], [1, 2]]), "row 1 is in the partitions of teachers 0 and 1"),
    (lambda: check_disjoint([[0], []]), "teacher 1 is empty"),
    (lambda: check_disjoint([[0, 5]], num_rows=5), "row 5, outside"),
    (lambda: check_public_private([7, 8, 9], [1, 2, 9]), "public split overlaps the private one"),
    (lambda: partition_by_key(["a", "a", "b"], 3), "got no rows"),
    (lambda: partition_by_key(["a", "b"], 0), "teachers must be an integer >= 1"),
])
def test_bad_partitions_are_refused(build, match):
    with pytest.raises(PateConfigurationError, match=match):
        build()
