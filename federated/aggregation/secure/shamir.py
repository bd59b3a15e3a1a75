"""Shamir t-of-n secret sharing over GF(p), p = 2^521 - 1 (a Mersenne prime above any 32-byte secret)."""

from __future__ import annotations

import functools
import secrets

PRIME = 2**521 - 1


def split(secret: bytes, holders: list[int], threshold: int) -> dict[int, int]:
    """Shares of ``secret`` for each holder id (ids >= 0; evaluated at x = id + 1); any ``threshold`` recover it.

    Polynomial coefficients come from `secrets` (a CSPRNG).
    """
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold must be in [1, {len(holders)}], got {threshold}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for holder in holders:
        x, value = holder + 1, 0
        for c in reversed(coefficients):  # Horner
            value = (value * x + c) % PRIME
        shares[holder] = value
    return shares


def reconstruct(shares: dict[int, int], length: int = 32) -> bytes:
    """The secret from at least ``threshold`` shares {holder id: share} (Lagrange interpolation at 0)."""
    holders = tuple(sorted(shares))
    weights = _lagrange_at_zero(holders)
    secret = sum(shares[h] * w for h, w in zip(holders, weights, strict=True)) % PRIME
    if secret >> (8 * length):
        raise ValueError(
            f"these {len(shares)} shares do not determine a {length}-byte secret (fewer than the "
            f"threshold, or corrupted)"
        )
    return secret.to_bytes(length, "big")


@functools.lru_cache(maxsize=64)
def _lagrange_at_zero(holders: tuple[int, ...]) -> tuple[int, ...]:
    xs = [h + 1 for h in holders]
    weights = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator = numerator * (-xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(weights)
