"""The client side: local-training settings, batch schedules, local training, and what a client returns."""

from federated.client.batches import BatchSchedule, batch_schedule
from federated.client.config import ClientConfig, ClientUpdate
from federated.client.numpy_sgd import NumpyDenseSgd
from federated.client.trainer import EXECUTIONS, ClientTrainer

__all__ = [
    "BatchSchedule",
    "ClientConfig",
    "ClientTrainer",
    "ClientUpdate",
    "EXECUTIONS",
    "NumpyDenseSgd",
    "batch_schedule",
]
