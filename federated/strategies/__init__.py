"""Strategies: one federated algorithm per module behind the `Strategy` interface; DP wraps one of them."""

from federated.strategies._dp_clipping_base import MAX_CLIPPING_NORM, MAX_NOISE_STDDEV, check_clipping_norm
from federated.strategies.build import DEFAULT_SERVER_LEARNING_RATES, SERVER_OPTIMIZERS, build_strategy, with_client_dp
from federated.strategies.dp_adaptive_clipping import DifferentialPrivacyAdaptiveClipping
from federated.strategies.dp_fixed_clipping import DifferentialPrivacyFixedClipping
from federated.strategies.dp_local import LocalDifferentialPrivacy
from federated.strategies.fedadagrad import FedAdagrad
from federated.strategies.fedadam import FedAdam
from federated.strategies.fedavg import FedAvg
from federated.strategies.fedavgm import FedAvgM
from federated.strategies.fedopt import FedOpt
from federated.strategies.fedprox import FedProx
from federated.strategies.fedsgd import FedSGD
from federated.strategies.fedyogi import FedYogi
from federated.strategies.strategy import RoundContext, ServerState, Strategy

__all__ = [
    "DEFAULT_SERVER_LEARNING_RATES",
    "MAX_CLIPPING_NORM",
    "MAX_NOISE_STDDEV",
    "check_clipping_norm",
    "DifferentialPrivacyAdaptiveClipping",
    "DifferentialPrivacyFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedOpt",
    "FedProx",
    "FedSGD",
    "FedYogi",
    "RoundContext",
    "LocalDifferentialPrivacy",
    "SERVER_OPTIMIZERS",
    "ServerState",
    "Strategy",
    "build_strategy",
    "with_client_dp",
]
