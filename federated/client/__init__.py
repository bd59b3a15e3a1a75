"""The client side: local-training settings, compiled local training, and what a client returns."""

from federated.client.config import ClientConfig, ClientUpdate
from federated.client.trainer import EXECUTIONS, ClientTrainer

__all__ = ["ClientConfig", "ClientTrainer", "ClientUpdate", "EXECUTIONS"]
