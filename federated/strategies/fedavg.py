"""Federated Averaging (FedAvg) [McMahan et al. 2017, arXiv 1602.05629].

Each sampled client runs E epochs of minibatch SGD from the global weights; the server moves to
w + eta * mean_k(delta_k), the mean weighted by example counts n_k (weighted) or equal (unweighted).
With eta = 1 this is the paper's model averaging.
"""

from __future__ import annotations

import numpy as np

from federated.aggregation import Summand
from federated.client import ClientConfig
from federated.strategies.strategy import Strategy
from privacy import validation


class FedAvg(Strategy):
    """FedAvg.

    Args:
      client: local training settings (E, B, client learning rate, FedProx mu).
      weighted: weight clients by example count (True) or equally (False).
      server_learning_rate: eta, the server step on the averaged update.
    """

    def __init__(self, client: ClientConfig | None = None, *, weighted: bool = True, server_learning_rate: float = 1.0):
        validation.positive("server_learning_rate", server_learning_rate)
        self.client = client or ClientConfig()
        self.weighted = bool(weighted)
        self.server_learning_rate = float(server_learning_rate)

    def summand(self, update, state):
        weight = update.num_examples if self.weighted else 1
        return Summand(vector=weight * update.delta, counts=np.array([weight], np.int64))

    def aggregate(self, state, total, ctx):
        if total is None or total.counts[0] == 0:  # empty or failed round, or only empty clients: the weights stay
            return state.replace(round=state.round + 1), {"skipped": True}
        return self.apply(state, total.vector / float(total.counts[0])), {}

    def apply(self, state, mean_update: np.ndarray):
        """One server step with pseudo-gradient ``-mean_update`` (flat float64); increments the round."""
        return self.step_weights(state, self.server_learning_rate * mean_update)

    def to_dict(self):
        return {**super().to_dict(), "server_learning_rate": self.server_learning_rate}
