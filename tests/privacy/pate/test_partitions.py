"""Teacher partitions are disjoint, and the public split must not overlap the private one."""

import numpy as np
import pytest

from privacy.pate import (PateConfigurationError, check_disjoint, check_public_private, partition_by_key,
                          partition_randomly)


def test_random_partition_is_disjoint_and_covers_every_row():
    parts = partition_randomly(103, 10, seed=1)
    rows = np.concatenate(check_disjoint(parts, 103))
    assert sorted(rows.tolist()) == list(range(103)) and {len(p) for p in parts} <= {10, 11}


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
    (lambda: partition_by_key(["a", "a", "b"], 3), "exceed the number of holders"),
    (lambda: partition_randomly(5, 6), "exceed the private rows"),
])
def test_bad_partitions_are_refused(build, match):
    with pytest.raises(PateConfigurationError, match=match):
        build()
