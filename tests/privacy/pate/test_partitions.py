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


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: check_disjoint([[0, 1], [1, 2]]), "row 1 is in the partitions of teachers 0 and 1"),
        (lambda: check_disjoint([[0, 5]], num_rows=5), "row 5, outside"),
        (lambda: check_public_private([7, 8, 9], [1, 2, 9]), "public split overlaps the private one"),
        (lambda: partition_by_key(["a", "b"], 0), "teachers must be an integer >= 1"),
    ],
)
def test_bad_partitions_are_refused(build, match):
    with pytest.raises(PateConfigurationError, match=match):
        build()


def test_no_one_record_decides_whether_partitioning_succeeds():
    # A teacher whose only record is removed gets an empty partition: nothing is refused, and no message can
    # carry the private row count. Empty partitions pass check_disjoint too.
    keys = [f"record-{i}" for i in range(60)]
    parts = partition_by_key(keys, 50, seed=0)
    lone = next(t for t, rows in enumerate(parts) if len(rows) == 1)
    without = [k for i, k in enumerate(keys) if i != parts[lone][0]]
    after = partition_by_key(without, 50, seed=0)
    assert len(after[lone]) == 0 and len(check_disjoint(after, len(without))) == 50
    assert {t: [without[r] for r in rows] for t, rows in enumerate(after) if t != lone} == {
        t: [keys[r] for r in rows] for t, rows in enumerate(parts) if t != lone
    }


def test_a_teacher_with_an_empty_partition_votes_independently_of_the_private_data():
    from privacy.pate import keras_training

    rng = np.random.default_rng(0)
    queries = rng.normal(size=(40, 3))
    votes = [
        keras_training.teacher_votes(
            rng.normal(size=(30, 3)), rng.integers(0, 3, 30), [[]], queries, 3, epochs=1, seed=7, hidden=4
        )
        for _ in range(2)
    ]
    assert np.array_equal(votes[0], votes[1]) and np.all(votes[0].sum(axis=1) == 1)
