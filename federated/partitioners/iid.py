"""IID partition: a seeded shuffle cut into near-equal parts."""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.partitioners.base import Partitioner, check_num_clients, client_names


@dataclasses.dataclass(frozen=True)
class IidPartitioner(Partitioner):
    """Shuffles the examples and gives each client floor(n/N) or ceil(n/N) of them.

    Args:
      num_clients: N.
      seed: seed of the shuffle.
    """

    num_clients: int
    seed: int = 0
    name = "iid"

    def _split(self, labels, keys):
        check_num_clients(self.num_clients, labels.size)
        order = np.random.default_rng(self.seed).permutation(labels.size)
        return [np.sort(p) for p in np.array_split(order, self.num_clients)], client_names(self.num_clients)
