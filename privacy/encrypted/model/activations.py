"""The piecewise-linear sigmoid evaluated on shares, and its error.

sigmoid is replaced by its linear interpolant through 21 knots on [-8, 8], constant outside. A
continuous piecewise-linear function is a constant plus a weighted sum of ReLUs,
``f(x) = sigmoid(t_0) + sum_j d_j * relu(x - t_j)`` with d_j the change of slope at knot t_j, so it
costs one batched ReLU (all knots at once) and one truncation.

Error: ``max_x |f(x) - sigmoid(x)| = 3.20e-3`` (attained between knots); with f = 16 fixed point the
secure evaluation adds at most ~4e-4 of rounding, hence the stated bound `SIGMOID_MAX_ERROR`.
"""

from __future__ import annotations

import numpy as np

KNOTS = np.array([-8, -6, -5, -4, -3.25, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3.25, 4, 5, 6, 8.0])
INTERPOLATION_ERROR = 3.2e-3
SIGMOID_MAX_ERROR = 3.6e-3
"""Bound on |secure sigmoid(x) - sigmoid(x)| for f = 16 fractional bits, all x."""


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def pwl_coefficients() -> tuple[float, np.ndarray]:
    """(constant, slope changes d_j at `KNOTS`) of the piecewise-linear sigmoid."""
    values = _sigmoid(KNOTS)
    slopes = np.diff(values) / np.diff(KNOTS)
    changes = np.diff(np.concatenate([[0.0], slopes, [0.0]]))
    return float(values[0]), changes


def pwl_sigmoid(x: np.ndarray) -> np.ndarray:
    """The piecewise-linear sigmoid in floating point (the function the protocol approximates)."""
    constant, changes = pwl_coefficients()
    x = np.asarray(x, dtype=np.float64)
    return constant + np.maximum(x[..., None] - KNOTS, 0.0) @ changes
