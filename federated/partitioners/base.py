"""The partitioner interface: seeded, serialisable rules that split a dataset among clients."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from federated.partitioners.partition import Partition
from privacy import validation


@dataclasses.dataclass(frozen=True)
class Partitioner(abc.ABC):
    """Splits examples among clients. Subclasses are frozen dataclasses of their settings.

    The same settings and seed always give the same `Partition`; `to_dict` / `partitioner_from_dict`
    round-trip the settings.
    """

    name: ClassVar[str]
    allows_empty_clients: ClassVar[bool] = False
    population_from_data: ClassVar[bool] = False
    """N is counted from the data (one client per key), not a setting (`federated.sampling.check_public_population`)."""

    def default_keys(self, x: np.ndarray, y: np.ndarray):
        """Keys to use when the caller gives none (`ClientData.from_arrays`); None: this rule needs none."""
        return None

    def partition(self, labels: np.ndarray, *, keys: np.ndarray | None = None) -> Partition:
        """Splits examples ``0..len(labels)-1``.

        Args:
          labels: [n] integer class labels 0..K-1 (used by label-aware rules and for histograms).
          keys: [n] natural client keys (`NaturalPartitioner`) or record keys (`KeyedPartitioner`).
        """
        labels = _check_labels(labels)
        indices, ids = self._split(labels, keys)
        return Partition(ids, indices, labels=labels, spec=self.to_dict(), allow_empty=self.allows_empty_clients)

    @abc.abstractmethod
    def _split(self, labels: np.ndarray, keys: np.ndarray | None) -> tuple[list[np.ndarray], list[str]]:
        """Returns (per-client index arrays, client ids)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("labels must be integer class ids 0..K-1")
        labels = labels.astype(np.int64)
    validation.integer("labels", labels.min().item(), minimum=0)
    return labels


def check_num_clients(num_clients, num_examples: int) -> None:
    validation.integer("num_clients", num_clients, minimum=1)
    if num_clients > num_examples:
        raise ValueError(f"num_clients={num_clients} exceeds the {num_examples} examples: some clients would be empty")


def client_names(count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"client_{i:0{width}d}" for i in range(count)]
