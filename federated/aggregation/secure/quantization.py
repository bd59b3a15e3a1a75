"""Clipping and b-bit stochastic quantization of real vectors to integers, and back for sums."""

from __future__ import annotations

import numpy as np


def quantize(vector: np.ndarray, clipping_range: float, bits: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Clips to [-r, r] and maps to integers 0..2^b - 1 with unbiased stochastic rounding.

    Returns (uint64 values, number of coordinates that were clipped).
    """
    clipped = np.clip(vector, -clipping_range, clipping_range)
    scaled = (clipped + clipping_range) * (((1 << bits) - 1) / (2.0 * clipping_range))
    values = np.floor(scaled + rng.random(scaled.shape))
    return np.minimum(values, (1 << bits) - 1).astype(np.uint64), int(np.count_nonzero(clipped != vector))


def dequantize_sum(total: np.ndarray, count: int, clipping_range: float, bits: int) -> np.ndarray:
    """The real sum of ``count`` vectors from the sum of their quantized values."""
    return total.astype(np.float64) * (2.0 * clipping_range / ((1 << bits) - 1)) - count * clipping_range
