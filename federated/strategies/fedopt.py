"""Adaptive server optimizers (FedOpt) [Reddi et al. 2021, arXiv 2003.00295, Algorithm 2].

With Delta the averaged client update:
    m <- beta_1 m + (1 - beta_1) Delta
    v <- second-moment rule (Adagrad, Adam or Yogi; one subclass each)
    w <- w + eta_t * m / (sqrt(v) + tau)
with eta_t = eta (no bias correction, as in the paper); `FedAdam` also offers TFF's bias-corrected step.
"""

from __future__ import annotations

import abc

import numpy as np

from federated.client import ClientConfig
from federated.strategies.fedavg import FedAvg
from privacy import validation


class FedOpt(FedAvg, abc.ABC):
    """Base of FedAdagrad, FedAdam and FedYogi.

    Args:
      server_learning_rate: eta (Reddi et al. tune it on a log grid; 1e-2 is a common start).
      beta_1: first-moment decay in [0, 1).
      beta_2: second-moment decay in [0, 1) (unused by Adagrad).
      tau: adaptivity tau > 0 (the paper's epsilon).
      initial_accumulator: v_0 >= 0 (Reddi et al. use tau^2).
    """

    def __init__(
        self,
        client: ClientConfig | None = None,
        *,
        server_learning_rate: float = 1e-2,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        initial_accumulator: float | None = None,
        weighted: bool = True,
    ):
        super().__init__(client, weighted=weighted, server_learning_rate=server_learning_rate)
        self.beta_1 = float(validation.probability("beta_1", beta_1, zero=True))
        self.beta_2 = float(validation.probability("beta_2", beta_2, zero=True))
        self.tau = float(validation.positive("tau", tau))
        self.initial_accumulator = float(
            self.tau**2
            if initial_accumulator is None
            else validation.number("initial_accumulator", initial_accumulator, low=0)
        )

    def initial_slots(self, dimension):
        return {"m": np.zeros(dimension), "v": np.full(dimension, self.initial_accumulator)}

    @abc.abstractmethod
    def second_moment(self, v: np.ndarray, squared: np.ndarray) -> np.ndarray:
        """The new v from the old one and Delta^2."""

    def step_size(self, slots: dict) -> tuple[float, dict]:
        """(eta_t of this step, slots to update with it): eta and none, unless a subclass corrects bias."""
        return self.server_learning_rate, {}

    def apply(self, state, mean_update):
        m = self.beta_1 * state.slots["m"] + (1 - self.beta_1) * mean_update
        v = self.second_moment(state.slots["v"], np.square(mean_update))
        eta, slots = self.step_size(state.slots)
        step = eta * m / (np.sqrt(v) + self.tau)
        return self.step_weights(state, step, m=m, v=v, **slots)

    def to_dict(self):
        return {
            **super().to_dict(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "tau": self.tau,
            "initial_accumulator": self.initial_accumulator,
        }
