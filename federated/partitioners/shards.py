"""Pathological non-IID shards (McMahan et al. 2017, arXiv 1602.05629, Sec. 3).

The examples are sorted by label, cut into N * k equal shards, and each client receives k shards
drawn at random: so a client sees at most k classes (MNIST: 200 shards of 300, k = 2).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.partitioners.base import Partitioner, check_num_clients, client_names
from privacy import validation


@dataclasses.dataclass(frozen=True)
class ShardPartitioner(Partitioner):
    """Sort-by-label shards, ``shards_per_client`` per client.

    Args:
      num_clients: N.
      shards_per_client: k, the most classes a client can hold.
      seed: seed of the shard assignment (ties in the label sort are broken by a seeded shuffle).
    """

    num_clients: int
    shards_per_client: int = 2
    seed: int = 0
    name = "shards"

    def __post_init__(self):
        object.__setattr__(
            self, "shards_per_client", validation.integer("shards_per_client", self.shards_per_client, minimum=1)
        )

    def _split(self, labels, keys):
        check_num_clients(self.num_clients, labels.size)
        num_shards = self.num_clients * self.shards_per_client
        if num_shards > labels.size:
            raise ValueError(
                f"{num_shards} shards ({self.num_clients} clients x {self.shards_per_client}) "
                f"exceed the {labels.size} examples: every shard needs one example"
            )
        rng = np.random.default_rng(self.seed)
        shuffled = rng.permutation(labels.size)
        ordered = shuffled[np.argsort(labels[shuffled], kind="stable")]
        shards = np.array_split(ordered, num_shards)
        assignment = rng.permutation(num_shards).reshape(self.num_clients, self.shards_per_client)
        indices = [np.sort(np.concatenate([shards[s] for s in row])) for row in assignment]
        return indices, client_names(self.num_clients)
