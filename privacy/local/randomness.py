"""Where a local randomizer's coins come from: the OS CSPRNG by default, a seeded generator for research only.

A person's randomizer must use coins nobody else can predict: if the collector could replay them it could
undo the randomization. `OsRandom` reads every draw from `os.urandom` (the OS CSPRNG). ``seed=<int>`` gives
numpy's PCG64 generator instead: reproducible runs for tests and benchmarks, and no guarantee for real data
(anyone who knows the seed can invert the reports).

Randomized response, GRR, OLH and OUE draw their Bernoulli coins as ``integers(0, 2**53) < K`` with K rounded in
the safe direction (`privacy.local.frequency_oracle.grr_keep_threshold`, `OptimizedUnaryEncoding.other_bit_threshold`):
the probabilities drawn with are exact rationals whose likelihood ratio is at most e**epsilon, and their estimators
use those probabilities. OUE's own bit is ``random() < 1/2``, exactly 1/2.
"""

from __future__ import annotations

import os

import numpy as np

from privacy import validation

_TWO_TO_64 = 1 << 64


class OsRandom:
    """The OS CSPRNG behind the two methods of `numpy.random.Generator` the randomizers use."""

    cryptographic = True

    @staticmethod
    def _words(count: int) -> np.ndarray:
        return np.frombuffer(os.urandom(8 * count), dtype=np.uint64)

    def random(self, size: int) -> np.ndarray:
        """``size`` uniforms on [0, 1), float64 multiples of 2**-53."""
        return (self._words(int(size)) >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: int = 1) -> np.ndarray:
        """``size`` N(loc, scale^2) draws by the Box-Muller transform of CSPRNG words (not hardened against
        floating-point attacks on Gaussian samplers, Mironov 2012). The radius's uniform is (word + 1) 2^-64 in
        [2^-64, 1] from a whole 64-bit word, so a pair's radius stops at sqrt(128 ln 2) = 9.42 (53-bit uniforms:
        8.57); the delta that cut-off adds (`privacy.accounting.noise_cutoff.escape_bound`) is not in any delta
        reported (local DP-FedAvg refuses z < 2 for it)."""
        count = int(size)
        pairs = (count + 1) // 2
        radius = np.sqrt(-2.0 * np.log((self._words(pairs).astype(np.float64) + 1.0) * 2.0**-64))
        angle = 2.0 * np.pi * self.random(pairs)
        return loc + scale * np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        """``size`` uniform int64 in [low, high), exactly uniform (rejection of the top of the 64-bit range)."""
        span = int(high) - int(low)
        if span <= 0:
            raise ValueError(f"integers needs high > low, got [{low}, {high})")
        limit = np.uint64(_TWO_TO_64 - _TWO_TO_64 % span - 1)  # accept words <= limit
        out = np.empty(int(size), dtype=np.int64)
        filled = 0
        while filled < out.size:
            words = self._words(out.size - filled)
            words = words[words <= limit]
            out[filled : filled + words.size] = (words % np.uint64(span)).astype(np.int64) + int(low)
            filled += words.size
        return out


def resolve_random(seed: int | None = None):
    """`OsRandom` for ``seed=None`` (the default for anything that touches real data); a PCG64
    `numpy.random.Generator` for an integer seed (research only: reproducible, and replayable by anyone with
    the seed)."""
    if seed is None:
        return OsRandom()
    return np.random.default_rng(validation.integer("seed", seed, minimum=0, note="or None for the OS CSPRNG"))


def spawn_seeds(seed: int | None, count: int) -> list[int | None]:
    """``count`` seeds of independent streams derived from ``seed`` (numpy's SeedSequence.spawn), one for each
    consumer (so a population draw and the coins never share a stream); ``count`` Nones for ``seed=None``."""
    if seed is None:
        return [None] * count
    return [
        int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        for child in np.random.SeedSequence(int(seed)).spawn(count)
    ]


def is_cryptographic(rng) -> bool:
    """True when ``rng`` draws from the OS CSPRNG."""
    return bool(getattr(rng, "cryptographic", False))
