"""FedSGD [McMahan et al. 2017]: FedAvg with one full-batch gradient step per client.

Weighted by example counts, the averaged update is -lr times the gradient of the mean loss over
the union of the sampled clients' data: one step of large-batch SGD.
"""

from __future__ import annotations

from federated.client import ClientConfig
from federated.strategies.fedavg import FedAvg


class FedSGD(FedAvg):
    """FedAvg with E = 1 and B = infinity (each client computes one full-batch gradient).

    Args:
      learning_rate: the SGD step size (applied on the clients; the server step is 1).
      weighted: weight by example counts (True gives exactly large-batch SGD).
    """

    def __init__(self, learning_rate: float, *, weighted: bool = True):
        super().__init__(ClientConfig(local_epochs=1, batch_size=None, learning_rate=learning_rate), weighted=weighted)
