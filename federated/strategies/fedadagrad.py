"""FedAdagrad [Reddi et al. 2021]: v <- v + Delta^2."""

from federated.strategies.fedopt import FedOpt


class FedAdagrad(FedOpt):
    """Adagrad on the server (see `FedOpt` for the arguments; beta_2 is unused)."""

    def second_moment(self, v, squared):
        return v + squared
