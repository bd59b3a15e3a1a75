"""Replicated secret shares (2-out-of-3) of ring elements, and the data owner's side of sharing.

A secret x is split into three components with x = c0 + c1 + c2 (mod 2^64). Party i holds the pair
(c_i, c_{i+1}) (indices mod 3): any one party sees two uniformly random components and learns nothing
about x; any two parties together could reconstruct, which is why the security model needs an honest
majority.

`AShare` is one party's pair of components; linear operations on it are local. `Terms` is one party's
term of an additive 3-out-of-3 sharing (what local products give before any communication), possibly
with one party's term fixed at zero (a 2-out-of-2 sharing between the other two). `share` and
`reconstruct` are what a data owner (the client with its input, the model owner with its
weights) runs in its own process; servers never call them on plaintext.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.protocol.randomness import Prf, new_key

NUM_PARTIES = 3


@dataclasses.dataclass(frozen=True)
class AShare:
    """One party's arithmetic share: components c_i (`a`) and c_{i+1} (`b`) of x = c0 + c1 + c2."""

    a: np.ndarray
    b: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.a.shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "AShare":
        """Applies a linear index operation (reshape, slice, pad with zeros, window) to both components."""
        return AShare(fn(self.a), fn(self.b))

    def reshape(self, *shape) -> "AShare":
        return self.map(lambda c: c.reshape(*shape))

    def __add__(self, other: "AShare") -> "AShare":
        return AShare(self.a + other.a, self.b + other.b)

    def __sub__(self, other: "AShare") -> "AShare":
        return AShare(self.a - other.a, self.b - other.b)

    def __neg__(self) -> "AShare":
        return AShare(-self.a, -self.b)

    def times_public(self, k: np.ndarray) -> "AShare":
        """Multiplies by public ring elements (broadcasting); no truncation."""
        k = np.asarray(k, dtype=DTYPE)
        return AShare(self.a * k, self.b * k)


@dataclasses.dataclass(frozen=True)
class Terms:
    """This party's term of x = t_0 + t_1 + t_2; if `zero` is a party index, that party's term is 0.

    Public linear maps are local: each party applies them to its term (a public constant is added by one
    party only, never by the `zero` party, so that it keeps a zero term).
    """

    term: np.ndarray
    zero: int | None = None

    @property
    def shape(self) -> tuple:
        return self.term.shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Terms":
        """Applies a linear index operation (reshape, slice, pad with zeros, window, sum)."""
        return Terms(fn(self.term), self.zero)

    def __add__(self, other: "Terms") -> "Terms":
        return Terms(self.term + other.term, self.zero if self.zero == other.zero else None)

    def __sub__(self, other: "Terms") -> "Terms":
        return Terms(self.term - other.term, self.zero if self.zero == other.zero else None)

    def times_public(self, k: np.ndarray) -> "Terms":
        return Terms(self.term * np.asarray(k, dtype=DTYPE), self.zero)

    @classmethod
    def of_share(cls, x: AShare) -> "Terms":
        """A replicated share read as additive terms: party i's term is its component c_i."""
        return cls(x.a)


def share(secret: np.ndarray, prf: Prf | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits ring elements into three replicated shares; element i is what party i receives.

    Args:
        secret: uint64 array (already fixed-point encoded).
        prf: the data owner's own random stream (a fresh OS-keyed one if omitted).

    Returns:
        ``[(c0, c1), (c1, c2), (c2, c0)]``: two uniformly random components and the third one fixed.
    """
    prf = prf or Prf(new_key())
    secret = np.asarray(secret, dtype=DTYPE)
    c0 = prf.words(secret.shape)
    c1 = prf.words(secret.shape)
    c2 = secret - c0 - c1
    comps = (c0, c1, c2)
    return [(comps[i], comps[(i + 1) % NUM_PARTIES]) for i in range(NUM_PARTIES)]


def reconstruct(components: list[np.ndarray]) -> np.ndarray:
    """Sums three additive components (c0, c1, c2), or 3-out-of-3 shares, into the secret."""
    if len(components) != NUM_PARTIES:
        raise ValueError(f"reconstruction needs {NUM_PARTIES} components, got {len(components)}")
    return components[0] + components[1] + components[2]
