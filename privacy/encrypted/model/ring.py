"""The ring Z_2^64 and the fixed-point encoding of reals into it.

Ring elements are numpy ``uint64`` arrays; numpy's unsigned arithmetic wraps modulo 2^64, which is
exactly the ring's addition and multiplication. A ring element v stands for the signed integer
``v.view(int64)`` (two's complement), and a fixed-point number with ``frac_bits`` fractional bits
stands for ``v.view(int64) / 2**frac_bits``.

Headroom: the product of two encodings carries ``2 * frac_bits`` fractional bits before truncation.
`FixedPoint.encode` refuses single values above ``FixedPoint.max_abs`` = 2^(62 - 2f) (2^30 for f = 16);
whether the values a model computes from its weights and inputs fit the ring is proven per model by
the interval analysis of `privacy.encrypted.model.ranges`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy import validation

BITS = 64
DTYPE = np.uint64


def as_signed(v: np.ndarray) -> np.ndarray:
    """The two's-complement reading of ring elements, as int64 (a view, no copy)."""
    return np.asarray(v, dtype=DTYPE).view(np.int64)


def as_ring(v: np.ndarray) -> np.ndarray:
    """Signed integers (int64, or Python ints that fit) as ring elements (uint64, wrapping)."""
    return np.asarray(v, dtype=np.int64).view(DTYPE)


def arithmetic_shift(v: np.ndarray, bits: int) -> np.ndarray:
    """floor(v / 2^bits) for v read as a signed integer: the exact (cleartext) truncation."""
    return (as_signed(v) >> np.int64(bits)).view(DTYPE)


def logical_shift(v: np.ndarray, bits: int) -> np.ndarray:
    """floor(v / 2^bits) for v read as an unsigned integer in [0, 2^64)."""
    return np.asarray(v, dtype=DTYPE) >> DTYPE(bits)


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """Fixed-point encoding x -> round(x * 2^frac_bits) mod 2^64.

    Attributes:
        frac_bits: number of fractional bits f; the resolution is 2^-f (1.5e-5 for f = 16).
    """

    frac_bits: int = 16

    def __post_init__(self):
        bits = validation.integer(
            "frac_bits",
            self.frac_bits,
            minimum=1,
            maximum=24,
            note="products carry 2*frac_bits fractional bits in a 64-bit ring",
        )
        object.__setattr__(self, "frac_bits", bits)

    @property
    def scale(self) -> int:
        """2^frac_bits, the integer that stands for 1.0."""
        return 1 << self.frac_bits

    @property
    def max_abs(self) -> float:
        """Largest |x| accepted by `encode`: 2^(62 - 2f), so that x * 2^(2f) still fits 62 bits."""
        return float(2 ** (BITS - 2 - 2 * self.frac_bits))

    def encode(self, x, *, what: str = "value", frac_bits: int | None = None) -> np.ndarray:
        """Rounds reals to the nearest multiple of 2^-f and maps them into the ring.

        Args:
            x: array-like of finite reals.
            what: what the values are, for error messages ("input", "kernel of dense_1", ...).
            frac_bits: fractional bits to encode with (default ``self.frac_bits``; biases that are
                added to products use ``2 * frac_bits``).

        Raises:
            ValueError: if a value is not finite or exceeds `max_abs` (the message names `what` and
                the offending magnitude, never the values themselves).
        """
        bits = self.frac_bits if frac_bits is None else frac_bits
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} contains NaN or infinite values")
        largest = float(np.max(np.abs(x))) if x.size else 0.0
        if largest > self.max_abs:
            raise ValueError(
                f"{what} has a value of magnitude {largest:.3g}, above the {self.max_abs:.3g} "
                f"that {self.frac_bits} fractional bits leave room for in a 64-bit ring"
            )
        return as_ring(np.rint(x * float(1 << bits)).astype(np.int64))

    def decode(self, v: np.ndarray, *, frac_bits: int | None = None) -> np.ndarray:
        """Ring elements back to float64 reals."""
        bits = self.frac_bits if frac_bits is None else frac_bits
        return as_signed(v).astype(np.float64) / float(1 << bits)
