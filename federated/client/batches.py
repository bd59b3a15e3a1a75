"""Which examples each local SGD step of a client reads: the batch schedule every execution shares.

Each epoch a client shuffles its n examples (a permutation drawn from its seed; or keeps their order,
without shuffling) and cuts them into ceil(n / B) consecutive batches of B slots; the last batch's empty
slots are masked. Schedules are
padded to a fixed number of steps per shape bucket (E * ceil(width / B)) so compiled graphs see one
shape for all clients of a bucket.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchSchedule:
    """The batches of a group of clients.

    Attributes:
      rows: [clients, max_steps, B] int32 dataset rows read at each step (masked slots hold a valid
        row, the client's first, or row 0 for padding clients, so gathers stay in range).
      mask: [clients, max_steps, B] bool, True where the slot holds one of the client's examples.
      steps: [clients] int32 local steps each client takes (0 for padding clients).
    """

    rows: np.ndarray
    mask: np.ndarray
    steps: np.ndarray


def batch_schedule(
    indices: Sequence[np.ndarray],
    seeds: np.ndarray,
    *,
    epochs: int,
    batch: int,
    width: int,
    clients: int | None = None,
    shuffle: bool = True,
) -> BatchSchedule:
    """The schedule of clients whose examples are the dataset rows ``indices[k]`` (each non-empty).

    Args:
      seeds: [len(indices), 2] non-negative integers; client k's permutations are drawn from
        ``np.random.default_rng(seeds[k])``, one per epoch.
      epochs: E, passes over each client's data.
      batch: B, slots per step; every client has at most ``width`` examples and ``B <= width``.
      width: the shape bucket's client size (sets ``max_steps = E * ceil(width / B)``).
      clients: pad to this many clients (taking no steps); default ``len(indices)``.
      shuffle: False reads each client's examples in ``indices[k]`` order every epoch.
    """
    clients = len(indices) if clients is None else clients
    max_steps = epochs * math.ceil(width / batch)
    rows = np.zeros((clients, max_steps, batch), np.int32)
    mask = np.zeros((clients, max_steps, batch), bool)
    steps = np.zeros(clients, np.int32)
    for k, index in enumerate(indices):
        n = len(index)
        per_epoch = math.ceil(n / batch)
        rng = np.random.default_rng([int(s) for s in seeds[k]])
        order = np.full((epochs, per_epoch * batch), -1, np.int64)
        for epoch in range(epochs):
            order[epoch, :n] = rng.permutation(n) if shuffle else np.arange(n)
        order = order.reshape(epochs * per_epoch, batch)
        steps[k] = epochs * per_epoch
        mask[k, : steps[k]] = order >= 0
        rows[k, : steps[k]] = np.where(order >= 0, index[np.maximum(order, 0)], index[0])
        rows[k, steps[k] :] = index[0]
    return BatchSchedule(rows, mask, steps)
