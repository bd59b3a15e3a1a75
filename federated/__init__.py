"""ppml.federated: federated averaging simulation for Keras models.

Rooms: `partitioners` (how data is split among clients), `data` (client data from numpy, tf.data,
TFRecords), `client` (compiled local training), `strategies` (FedAvg family, DP wrappers),
`aggregation` (reproducible sums, secure aggregation), `sampling`, `streams` (the seeded random
streams), and `simulation` (the round loop, runners, checkpoints). Importing this package does not import TensorFlow.
"""

from federated.client import ClientConfig
from federated.data import ClientData
from federated.sampling import PoissonSampler, UniformSampler
from federated.simulation import FederatedSimulation, History
from federated.strategies import (
    DifferentialPrivacyAdaptiveClipping,
    DifferentialPrivacyFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedSGD,
    FedYogi,
)

__all__ = [
    "ClientConfig",
    "ClientData",
    "DifferentialPrivacyAdaptiveClipping",
    "DifferentialPrivacyFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedProx",
    "FedSGD",
    "FedYogi",
    "FederatedSimulation",
    "History",
    "PoissonSampler",
    "UniformSampler",
]
