"""Label-skewed partition with Dirichlet(alpha) class proportions (Hsu, Qi & Brown 2019, arXiv 1909.06335).

For every class, the share of its examples that each client receives is drawn from Dirichlet(alpha,
..., alpha) over the N clients. Small alpha gives each client few classes; alpha -> inf tends to IID.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.partitioners.base import Partitioner, check_num_clients, client_names
from privacy import validation


@dataclasses.dataclass(frozen=True)
class DirichletPartitioner(Partitioner):
    """Dirichlet(alpha) label skew.

    Args:
      num_clients: N.
      alpha: concentration > 0.
      seed: seed of the draws.
      min_examples_per_client: draws are repeated (up to ``max_attempts``) until every client has at
        least this many examples.
      max_attempts: how many draws to try before giving up with an error.
    """

    num_clients: int
    alpha: float
    seed: int = 0
    min_examples_per_client: int = 1
    max_attempts: int = 100
    name = "dirichlet"

    def __post_init__(self):
        object.__setattr__(self, "alpha", validation.positive("alpha", self.alpha))
        object.__setattr__(
            self,
            "min_examples_per_client",
            validation.integer("min_examples_per_client", self.min_examples_per_client, minimum=1),
        )

    def _split(self, labels, keys):
        check_num_clients(self.num_clients, labels.size)
        if self.num_clients * self.min_examples_per_client > labels.size:
            raise ValueError(
                f"{self.num_clients} clients x min_examples_per_client="
                f"{self.min_examples_per_client} exceeds the {labels.size} examples"
            )
        rng = np.random.default_rng(self.seed)
        by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
        for _ in range(self.max_attempts):
            parts = [[] for _ in range(self.num_clients)]
            for members in by_class:
                shares = rng.dirichlet(np.full(self.num_clients, float(self.alpha)))
                cuts = (np.cumsum(shares)[:-1] * members.size).astype(np.int64)
                for client, chunk in enumerate(np.split(members, cuts)):
                    parts[client].append(chunk)
            indices = [np.sort(np.concatenate(p)) for p in parts]
            if min(ix.size for ix in indices) >= self.min_examples_per_client:
                return indices, client_names(self.num_clients)
        raise ValueError(
            f"no Dirichlet(alpha={self.alpha}) draw in {self.max_attempts} attempts gave all {self.num_clients} "
            f"clients >= {self.min_examples_per_client} examples; raise alpha, lower num_clients or "
            f"min_examples_per_client"
        )
