"""FedAvgM: FedAvg with server momentum [Hsu, Qi & Brown 2019, arXiv 1909.06335].

v <- beta * v + mean(delta);  w <- w + eta * v.
"""

from __future__ import annotations

import numpy as np

from federated.client import ClientConfig
from federated.strategies.fedavg import FedAvg
from privacy import validation


class FedAvgM(FedAvg):
    """FedAvg with heavy-ball momentum on the server.

    Args:
      server_momentum: beta in [0, 1).
      client, weighted, server_learning_rate: as for `FedAvg`.
    """

    def __init__(
        self,
        client: ClientConfig | None = None,
        *,
        server_momentum: float = 0.9,
        weighted: bool = True,
        server_learning_rate: float = 1.0,
    ):
        super().__init__(client, weighted=weighted, server_learning_rate=server_learning_rate)
        self.server_momentum = float(validation.probability("server_momentum", server_momentum, zero=True))

    def initial_slots(self, dimension):
        return {"momentum": np.zeros(dimension)}

    def apply(self, state, mean_update):
        momentum = self.server_momentum * state.slots["momentum"] + mean_update
        return self.step_weights(state, self.server_learning_rate * momentum, momentum=momentum)

    def to_dict(self):
        return {**super().to_dict(), "server_momentum": self.server_momentum}
