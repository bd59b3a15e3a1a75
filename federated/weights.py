"""Model weights as a list of arrays, and their flat float64 vector form used in aggregation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

Weights = list  # list[np.ndarray], in the model's `trainable_variables` order


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One float64 vector of all arrays, concatenated in order."""
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray], dtype=None) -> Weights:
    """Splits ``vector`` into arrays shaped like ``like`` (dtype of ``like`` unless given)."""
    out, start = [], 0
    for ref in like:
        size = int(np.prod(ref.shape))
        out.append(vector[start : start + size].reshape(ref.shape).astype(dtype or ref.dtype))
        start += size
    if start != vector.size:
        raise ValueError(f"vector has {vector.size} values, the weights {start}")
    return out


def num_parameters(arrays: Sequence[np.ndarray]) -> int:
    return int(sum(np.prod(a.shape) for a in arrays))
