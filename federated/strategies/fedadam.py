"""FedAdam [Reddi et al. 2021]: v <- beta_2 v + (1 - beta_2) Delta^2."""

from federated.strategies.fedopt import FedOpt


class FedAdam(FedOpt):
    """Adam on the server, without bias correction (see `FedOpt` for the arguments)."""

    def second_moment(self, v, squared):
        return self.beta_2 * v + (1 - self.beta_2) * squared
