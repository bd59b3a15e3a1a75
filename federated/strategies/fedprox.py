"""FedProx [Li et al. 2020, arXiv 1812.06127]: FedAvg whose clients minimise
F_k(w) + (mu / 2) ||w - w_global||^2, which keeps local models near the global one on non-IID data."""

from __future__ import annotations

import dataclasses

from federated.client import ClientConfig
from federated.strategies.fedavg import FedAvg
from privacy import validation


class FedProx(FedAvg):
    """FedAvg with a proximal term.

    Args:
      proximal_mu: mu > 0.
      client, weighted, server_learning_rate: as for `FedAvg`.
    """

    def __init__(
        self,
        client: ClientConfig | None = None,
        *,
        proximal_mu: float,
        weighted: bool = True,
        server_learning_rate: float = 1.0,
    ):
        validation.positive("proximal_mu", proximal_mu, note="for FedProx; mu = 0 is FedAvg")
        client = dataclasses.replace(client or ClientConfig(), proximal_mu=float(proximal_mu))
        super().__init__(client, weighted=weighted, server_learning_rate=server_learning_rate)
