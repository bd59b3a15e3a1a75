"""Where the preprocessing mechanisms' Gaussian noise comes from.

A released model must carry noise nobody can regenerate, so by default every release draws a fresh
128-bit Philox key from the operating system's CSPRNG (`os.urandom`). Tests fix the noise with a seed:
each stream (one per mechanism) is then keyed by SHA-256 of (seed, stream name), so releases are
reproducible and independent of one another. A seeded release is recorded as such, and the privacy
gate refuses it: whoever knows the seed can subtract the noise.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

CSPRNG = "CSPRNG-keyed Philox (os.urandom)"
SEEDED = "seeded Philox (reproducible, for tests: not private to anyone who knows the seed)"
NO_NOISE = "none (exact statistics)"


def describe(*, private: bool, seed: int | None) -> str:
    """How the releases of a configuration draw their noise: `CSPRNG`, `SEEDED` or `NO_NOISE`."""
    if not private:
        return NO_NOISE
    return CSPRNG if seed is None else SEEDED


class NoiseSource:
    """Independent Gaussian draws for one mechanism's release.

    Args:
      seed: None (the default) keys the generator from the OS CSPRNG; an integer makes the draws
        reproducible (tests only).
      stream: distinguishes the streams of one seed (e.g. the mechanism's name).
    """

    def __init__(self, seed: int | None = None, stream: str = ""):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"noise seed must be None or an integer >= 0, got {seed!r}")
        if seed is None:
            key = int.from_bytes(os.urandom(16), "little")
        else:
            key = int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:16], "little")
        self._generator = np.random.Generator(np.random.Philox(key=key))
        self.seeded = seed is not None

    @property
    def description(self) -> str:
        return SEEDED if self.seeded else CSPRNG

    def normal(self, std, size=None) -> np.ndarray:
        """N(0, std^2) draws (float64); ``std`` may be an array broadcast against ``size``."""
        return self._generator.normal(0.0, std, size)
