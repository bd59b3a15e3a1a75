"""The batch schedule all executions share: every epoch a permutation, cut into B-slot batches."""

import math

import numpy as np

from federated.client import batch_schedule


def test_each_epoch_reads_every_example_once_in_shuffled_batches():
    indices = [np.arange(100, 123), np.arange(7, 15), np.array([42])]
    seeds = np.array([[1, 2], [3, 4], [5, 6]])
    schedule = batch_schedule(indices, seeds, epochs=3, batch=5, width=32, clients=4)
    assert schedule.rows.shape == schedule.mask.shape == (4, 3 * math.ceil(32 / 5), 5)
    assert list(schedule.steps) == [3 * math.ceil(len(ix) / 5) for ix in indices] + [0]
    for k, index in enumerate(indices):
        per_epoch = math.ceil(len(index) / 5)
        epochs = schedule.rows[k, : 3 * per_epoch].reshape(3, -1)
        masks = schedule.mask[k, : 3 * per_epoch].reshape(3, -1)
        for rows, mask in zip(epochs, masks, strict=True):
            assert sorted(rows[mask]) == list(index)  # each example exactly once
            assert mask.tolist() == [True] * len(index) + [False] * (per_epoch * 5 - len(index))  # last batch short
        assert not schedule.mask[k, 3 * per_epoch :].any()  # steps past the client's are masked
        assert set(schedule.rows[k].ravel()) <= set(index)  # padding reads the client's own rows
    assert len({tuple(epoch) for epoch in schedule.rows[0, :15].reshape(3, -1)}) == 3  # a new order per epoch
    assert not schedule.mask[3].any()


def test_the_seed_decides_the_order():
    indices = [np.arange(50)]
    one = batch_schedule(indices, np.array([[7, 8]]), epochs=1, batch=10, width=64)
    again = batch_schedule(indices, np.array([[7, 8]]), epochs=1, batch=10, width=64)
    other = batch_schedule(indices, np.array([[7, 9]]), epochs=1, batch=10, width=64)
    np.testing.assert_array_equal(one.rows, again.rows)
    assert not np.array_equal(one.rows[one.mask], other.rows[other.mask])
