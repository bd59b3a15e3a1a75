"""Where the preprocessing mechanisms' Gaussian noise comes from.

A released model must carry noise nobody can regenerate, so by default every release draws a fresh
128-bit Philox key from the operating system's CSPRNG (`os.urandom`). Tests fix the noise with a seed:
each stream (one per mechanism) is then keyed by SHA-256 of (seed, stream name), so releases are
reproducible and independent of one another. A seeded release is recorded as such, and the privacy
gate refuses it: whoever knows the seed can subtract the noise.

A noisy value is released rounded to a grid (`snap`): the low-order bits of a float64 x + N(0, s^2) depend
on x (Mironov 2012), so only multiples of a power of two between s/2048 and s/1024 leave the mechanism.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction

import numpy as np

from privacy import validation

CSPRNG = "CSPRNG-keyed Philox (os.urandom)"
SEEDED = "seeded Philox (reproducible, for tests: not private to anyone who knows the seed)"
NO_NOISE = "none (exact statistics)"
GRID_BITS = 10
"""Released values are multiples of 2^(floor(log2 s) - GRID_BITS) for noise std s (`snap`)."""


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
        if seed is not None:
            validation.integer("noise seed", seed, minimum=0, note="or None")
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

    def noisy(self, values, std) -> np.ndarray:
        """``values`` + N(0, std^2), snapped to the grid of ``std`` (`snap`): what a mechanism releases."""
        values = np.asarray(values, dtype=np.float64)
        return snap(values + self.normal(std, values.shape), std)

    def noisy_exact(self, values, std) -> np.ndarray:
        """As `noisy` for exact ``values`` (ints or Fractions, a sequence), with the sum and the snapping done
        exactly (`snap_exact`): the release is a function of the exact value plus the noise alone."""
        return snap_exact(values, self.normal(std, len(values)), std)


class ZeroNoise:
    """A noise source that adds nothing (exact statistics: a non-private pipeline, tests of sensitivity)."""

    seeded = False

    @staticmethod
    def normal(std, size=None) -> np.ndarray:
        return np.zeros(np.broadcast(np.asarray(std), np.empty(size if size is not None else ())).shape)

    @staticmethod
    def noisy(values, std) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    @staticmethod
    def noisy_exact(values, std) -> np.ndarray:
        return np.array([float(v) for v in values])


def grid(std) -> np.ndarray:
    """The release grid of noise std ``std``: 2^(floor(log2 std) - GRID_BITS), a power of two (0 where std is 0)."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 0, np.exp2(np.floor(np.log2(np.where(std > 0, std, 1.0))) - GRID_BITS), 0.0)


def snap(values, std) -> np.ndarray:
    """``values`` rounded to the nearest multiple of `grid` (``std``) (exact in float64: a power of two),
    elementwise against ``std``; values with ``std`` 0 (exact statistics) are returned as they are."""
    values, step = np.broadcast_arrays(np.asarray(values, dtype=np.float64), grid(std))
    return np.where(step > 0, np.round(values / np.where(step > 0, step, 1.0)) * step, values)


def snap_exact(values, draws, std) -> np.ndarray:
    """``values`` (exact: ints or Fractions) plus the float ``draws``, rounded to the nearest multiple of `grid`
    (``std``), computed exactly and converted to float64 once: unlike `snap` of a float sum, no rounding of the
    value itself (float64's, of a large sum that one record can tip) comes before the noise."""
    steps = np.broadcast_to(grid(std), np.shape(draws))
    out = []
    for value, draw, step in zip(values, np.asarray(draws, dtype=np.float64), steps, strict=True):
        exact = Fraction(value) + Fraction(float(draw))
        out.append(float(round(exact / Fraction(float(step))) * Fraction(float(step))) if step > 0 else float(exact))
    return np.array(out)
