"""Simulation: the round loop (`FederatedSimulation`), its runners, checkpoints and history.

`BeamRunner` lives in `federated.simulation.beam` and is imported on first use (it needs apache-beam).
"""

from federated.simulation.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from federated.simulation.history import History, RoundRecord
from federated.simulation.inprocess import InProcessRunner
from federated.simulation.simulation import FederatedSimulation, RoundJob, UnaccountedAbort

__all__ = [
    "CheckpointError",
    "FederatedSimulation",
    "History",
    "InProcessRunner",
    "RoundJob",
    "RoundRecord",
    "UnaccountedAbort",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name):
    if name == "BeamRunner":
        try:
            from federated.simulation.beam import BeamRunner
        except ImportError as err:
            raise ImportError(f"BeamRunner needs apache-beam ({err}); install ppml[tfx]") from err
        return BeamRunner
    raise AttributeError(name)
