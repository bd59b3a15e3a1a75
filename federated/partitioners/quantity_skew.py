"""Quantity skew: client sizes drawn from Dirichlet(alpha), labels IID (Li et al. 2022, arXiv 2102.02079).

Each client's share of the examples is one coordinate of q ~ Dirichlet(alpha, ..., alpha); the
examples are shuffled, so the label mix is IID while the sizes are skewed (small alpha: very skewed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.partitioners.base import Partitioner, check_num_clients, client_names
from privacy import validation


@dataclasses.dataclass(frozen=True)
class QuantitySkewPartitioner(Partitioner):
    """Dirichlet(alpha) client sizes, every client with at least ``min_examples_per_client``.

    The minimum is given to every client first and the rest is split by the Dirichlet shares, so no
    client is empty whatever alpha is.
    """

    num_clients: int
    alpha: float
    seed: int = 0
    min_examples_per_client: int = 1
    name = "quantity"

    def __post_init__(self):
        object.__setattr__(self, "alpha", validation.positive("alpha", self.alpha))
        object.__setattr__(
            self,
            "min_examples_per_client",
            validation.integer("min_examples_per_client", self.min_examples_per_client, minimum=1),
        )

    def _split(self, labels, keys):
        check_num_clients(self.num_clients, labels.size)
        floor = self.num_clients * self.min_examples_per_client
        if floor > labels.size:
            raise ValueError(
                f"{self.num_clients} clients x min_examples_per_client="
                f"{self.min_examples_per_client} exceeds the {labels.size} examples"
            )
        rng = np.random.default_rng(self.seed)
        shares = rng.dirichlet(np.full(self.num_clients, float(self.alpha)))
        extra = np.floor(shares * (labels.size - floor)).astype(np.int64)
        extra[np.argmax(shares)] += labels.size - floor - extra.sum()  # hand out rounding leftovers
        sizes = extra + self.min_examples_per_client
        order = rng.permutation(labels.size)
        return [np.sort(p) for p in np.split(order, np.cumsum(sizes)[:-1])], client_names(self.num_clients)
