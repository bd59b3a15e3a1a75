"""What a client runs locally, and what it sends back."""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.renamed import old_attribute, take_old_keyword
from privacy import validation


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Local training of one round: E epochs of minibatch SGD.

    Attributes:
      local_epochs: E, passes over the client's data in the round (>= 1; None: 1); ``epochs`` is its old name,
        kept for one release (keyword and attribute, a DeprecationWarning; both keywords at once are refused).
      batch_size: B, examples per step; None means the full local dataset (B = infinity).
      learning_rate: client SGD step size.
      proximal_mu: FedProx's mu >= 0: adds (mu / 2) ||w - w_global||^2 to the local loss.
      shuffle: reshuffle the client's examples every epoch (from its seed); False keeps their order,
        epoch after epoch, as TFF's ``dataset.batch(B).repeat(E)`` does (each epoch's last batch partial).
    """

    local_epochs: int | None = None
    batch_size: int | None = 10
    learning_rate: float = 0.1
    proximal_mu: float = 0.0
    shuffle: bool = True
    epochs: dataclasses.InitVar[int | None] = None

    def __post_init__(self, epochs):
        take_old_keyword(self, "local_epochs", "epochs", epochs, default=1)
        object.__setattr__(self, "local_epochs", validation.integer("local_epochs", self.local_epochs, minimum=1))
        if self.batch_size is not None:
            object.__setattr__(
                self,
                "batch_size",
                validation.integer("batch_size", self.batch_size, minimum=1, note="or None for the full batch"),
            )
        object.__setattr__(self, "learning_rate", validation.positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "proximal_mu", validation.number("proximal_mu", self.proximal_mu, low=0))
        if not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle must be True or False, got {self.shuffle!r}")


old_attribute(ClientConfig, "epochs", "local_epochs")


@dataclasses.dataclass(frozen=True)
class ClientUpdate:
    """A client's result: delta = w_local - w_global (float64, exact difference of the float32 weights).

    Attributes:
      delta: flat update vector.
      num_examples: n_k, the client's example count.
      loss: mean training loss per example processed (E n_k of them), each batch's loss taken with
        the weights before its step (TFF's definition: ``sum_b |b| loss_b / sum_b |b|``).
      position: the client's position in the population (its index in `ClientData.client_ids`).
    """

    delta: np.ndarray
    num_examples: int
    loss: float
    position: int

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.delta)))
