"""FedAdam [Reddi et al. 2021]: v <- beta_2 v + (1 - beta_2) Delta^2, in two forms.

* Reddi et al.'s (default): w <- w + eta m / (sqrt(v) + tau), v_0 = tau^2, no bias correction.
* TFF's (``bias_correction=True``), `tff.learning.optimizers.build_adam` applied to the pseudo-gradient
  -Delta: at the server's t-th step, eta_t = eta sqrt(1 - beta_2^t) / (1 - beta_1^t). With
  ``beta_2=0.999, tau=1e-7, initial_accumulator=0`` (TFF's defaults) the rounds equal TFF's.
"""

import math

import numpy as np

from federated.client import ClientConfig
from federated.strategies.fedopt import FedOpt


class FedAdam(FedOpt):
    """Adam on the server (see `FedOpt` for the other arguments).

    Args:
      bias_correction: Kingma & Ba's bias correction of the step, as TFF applies it (see the module docstring).
    """

    def __init__(self, client: ClientConfig | None = None, *, bias_correction: bool = False, **kwargs):
        super().__init__(client, **kwargs)
        if not isinstance(bias_correction, bool):
            raise ValueError(f"bias_correction must be True or False, got {bias_correction!r}")
        self.bias_correction = bias_correction

    def second_moment(self, v, squared):
        return self.beta_2 * v + (1 - self.beta_2) * squared

    def initial_slots(self, dimension):
        slots = super().initial_slots(dimension)
        return {**slots, "steps": np.zeros(1)} if self.bias_correction else slots

    def step_size(self, slots):
        if not self.bias_correction:
            return super().step_size(slots)
        t = slots["steps"][0] + 1
        eta = self.server_learning_rate * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        return eta, {"steps": np.array([t])}

    def to_dict(self):
        return {**super().to_dict(), "bias_correction": self.bias_correction}
