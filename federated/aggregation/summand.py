"""What one client adds to a round's sum."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Summand:
    """A client's contribution: summed coordinate-wise over the clients of a round.

    Attributes:
      vector: [d] float64 (e.g. n_k * delta_k, or a clipped delta).
      counts: [c] int64 integers summed exactly (example counts, client counts, clipping bits);
        their meaning is the strategy's.
    """

    vector: np.ndarray
    counts: np.ndarray

    def __add__(self, other: "Summand") -> "Summand":
        return Summand(self.vector + other.vector, self.counts + other.counts)
