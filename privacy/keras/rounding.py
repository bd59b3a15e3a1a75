"""Directed rounding of the private step's constants to a tensor dtype: the noise's standard deviation rounds up and
the 1 / B folded into the clip factors rounds down, so that neither rounding leaves less noise, or a larger
clipped contribution, than the accountant assumes (rounding to nearest can do both: float32(sigma C / B) is up to
2^-24 below sigma C / B for about half of all B)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import tensorflow as tf


def rounded_up(value: float | Fraction, dtype) -> np.generic:
    """The smallest finite value of the float ``dtype`` at least ``value`` (>= 0, compared exactly), a numpy scalar."""
    return _rounded(value, dtype, 1)


def rounded_down(value: float | Fraction, dtype) -> np.generic:
    """The largest value of the float ``dtype`` at most ``value`` (>= 0, compared exactly), a numpy scalar."""
    return _rounded(value, dtype, -1)


def _rounded(value, dtype, direction: int):
    exact = Fraction(value)
    if exact < 0:
        raise ValueError(f"cannot round {value!r}: a standard deviation or multiplier is >= 0")
    with np.errstate(over="ignore"):  # nearest, or one step off after two roundings
        near = np.array([float(exact)], tf.as_dtype(dtype).as_numpy_dtype)
    bits = near.view(f"uint{8 * near.itemsize}")
    while np.isfinite(near[0]) and (Fraction(float(near[0])) - exact) * direction < 0:
        bits[0] = bits[0] + 1 if direction > 0 else bits[0] - 1  # non-negative floats are ordered as their bits
    if not np.isfinite(near[0]):
        raise ValueError(f"{value!r} is beyond the largest {tf.as_dtype(dtype).name}")
    return near[0]


def cast_down(values, dtype):
    """``values`` (non-negative) cast to the float ``dtype`` rounding toward zero: the cast's nearest value, one step
    lower (on its bits) where it came out above ``values``; exact in the subnormal range too, where rounding to
    nearest can exceed a value by half its own size."""
    dtype = tf.as_dtype(dtype)
    cast = tf.cast(values, dtype)
    if dtype == values.dtype:
        return cast
    bits = {2: tf.int16, 4: tf.int32, 8: tf.int64}[dtype.size]
    lower = tf.bitcast(tf.bitcast(cast, bits) - 1, dtype)  # non-negative floats are ordered as their bits
    return tf.where((tf.cast(cast, values.dtype) > values) & (cast > 0), lower, cast)
