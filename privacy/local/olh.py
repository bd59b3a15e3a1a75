"""Optimized local hashing (OLH; Wang et al. 2017): each person draws a hash function H from a universal family
mapping [k] to [g], g = round(e**eps + 1), and sends H with generalized randomized response over g buckets applied
to H(v). A report (H, y) supports every value v with H(v) = y.

The hash is drawn independently of the value and is public, so the report's privacy loss is at most that of
randomized response over g buckets: pure epsilon-LDP per person. Variance, like OUE's, does not grow with k,
with a report of O(log k) bits.

Hash family: H(v) = ((a v + b) mod P) mod g with P = 2**31 - 1 prime, a uniform in [1, P), b in [0, P). For
v != v' the pair ((a v + b) mod P, (a v' + b) mod P) is uniform over distinct pairs, so a report supports a value
other than the person's own with probability q* = 1/g up to 2/P (< 1e-9): the estimator's bias is that small.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from privacy.local.frequency_oracle import FrequencyOracle, grr_dp_event, grr_draw, grr_probabilities

HASH_PRIME = (1 << 31) - 1
_CHUNK_CELLS = 1 << 22


@dataclasses.dataclass(frozen=True)
class HashedReports:
    """OLH reports: person i sent hash (a[i], b[i]) and bucket y[i] in [0, g)."""

    a: np.ndarray
    b: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.size)


def hash_values(a: np.ndarray, b: np.ndarray, values: np.ndarray, g: int) -> np.ndarray:
    """H_{a,b}(v) = ((a v + b) mod P) mod g, elementwise (broadcasting)."""
    return ((a * values + b) % HASH_PRIME) % g


class OptimizedLocalHashing(FrequencyOracle):
    """OLH at per-person ``epsilon`` over k values; reports are `HashedReports`."""

    name = "olh"

    @property
    def buckets(self) -> int:
        """g = round(e**eps + 1), at least 2 (Wang et al.'s variance-optimal choice)."""
        return max(2, round(math.exp(self.epsilon) + 1))

    def support_probabilities(self):
        keep, _ = grr_probabilities(self.epsilon, self.buckets)
        return keep, 1.0 / self.buckets

    def _randomize(self, values, rng):
        a = rng.integers(1, HASH_PRIME, size=values.size)
        b = rng.integers(0, HASH_PRIME, size=values.size)
        hashed = hash_values(a, b, values, self.buckets)
        return HashedReports(a=a, b=b, y=grr_draw(hashed, self.epsilon, self.buckets, rng))

    def support_counts(self, reports):
        if not isinstance(reports, HashedReports):
            raise ValueError(f"OLH reports must be HashedReports, got {type(reports).__name__}")
        a, b, y = (np.asarray(x, dtype=np.int64) for x in (reports.a, reports.b, reports.y))
        if not a.shape == b.shape == y.shape or a.ndim != 1:
            raise ValueError(f"OLH reports need a, b, y of one length, got shapes {a.shape}, {b.shape}, {y.shape}")
        for name, array, low, high in (("a", a, 1, HASH_PRIME), ("b", b, 0, HASH_PRIME), ("y", y, 0, self.buckets)):
            bad = (array < low) | (array >= high)
            if bad.any():
                raise ValueError(f"OLH report {name} must be in [{low}, {high}), got {array[np.argmax(bad)]}")
        counts = np.zeros(self.k)
        domain = np.arange(self.k, dtype=np.int64)
        rows = max(1, _CHUNK_CELLS // self.k)
        for start in range(0, y.size, rows):
            chunk = slice(start, start + rows)
            hashed = hash_values(a[chunk, None], b[chunk, None], domain[None, :], self.buckets)
            counts += (hashed == y[chunk, None]).sum(axis=0)
        return counts, int(y.size)

    def dp_event(self):
        """RandomizedResponseDpEvent over g buckets: an upper bound (the hash is public and independent of the
        value; where it collides two values the loss is zero)."""
        return grr_dp_event(self.epsilon, self.buckets)

    def to_dict(self):
        return {**super().to_dict(), "buckets": self.buckets}
