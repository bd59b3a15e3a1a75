"""FedYogi [Reddi et al. 2021; Zaheer et al. 2018]: v <- v - (1 - beta_2) Delta^2 sign(v - Delta^2)."""

import numpy as np

from federated.strategies.fedopt import FedOpt


class FedYogi(FedOpt):
    """Yogi on the server (see `FedOpt` for the arguments)."""

    def second_moment(self, v, squared):
        return v - (1 - self.beta_2) * squared * np.sign(v - squared)
