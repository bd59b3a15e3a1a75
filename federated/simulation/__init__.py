"""Simulation: the round loop (`FederatedSimulation`), its runners, checkpoints and history."""

from federated.simulation.checkpoint import load_checkpoint, save_checkpoint
from federated.simulation.history import History, RoundRecord
from federated.simulation.inprocess import InProcessRunner
from federated.simulation.simulation import FederatedSimulation, RoundJob

__all__ = ["FederatedSimulation", "History", "InProcessRunner", "RoundJob", "RoundRecord", "load_checkpoint",
           "save_checkpoint"]
