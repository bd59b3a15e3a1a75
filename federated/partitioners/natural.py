"""Natural partition: one client per distinct value of a key column (user id, writer, device)."""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.partitioners.base import Partitioner
from privacy import validation


@dataclasses.dataclass(frozen=True)
class NaturalPartitioner(Partitioner):
    """Groups examples by ``keys``; clients are named by their key, in sorted key order.

    Args:
      max_clients: keep only the first this many keys (in sorted order), or all when None.
    """

    max_clients: int | None = None
    name = "natural"
    population_from_data = True

    def _split(self, labels, keys):
        if keys is None:
            raise ValueError("the natural partitioner needs keys: pass keys=<one client key per example>")
        keys = np.asarray(keys)
        if keys.shape != labels.shape:
            raise ValueError(f"keys has shape {keys.shape}, labels {labels.shape}: one key per example needed")
        if keys.dtype.kind in "SO":  # bytes from tf.Example features
            keys = np.array([k.decode() if isinstance(k, bytes) else str(k) for k in keys])
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        indices = np.split(order, np.cumsum(np.bincount(inverse, minlength=unique.size))[:-1])
        ids = [str(k) for k in unique]
        if self.max_clients is not None:
            validation.integer("max_clients", self.max_clients, minimum=1)
            ids, indices = ids[: self.max_clients], indices[: self.max_clients]
        return [np.sort(ix) for ix in indices], ids
