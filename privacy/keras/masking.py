"""Masking rows by selection: a masked-out row becomes zeros, never a product with 0.

0 x inf is NaN, so multiplying a row that holds inf or NaN by a 0/1 mask would poison the sum it enters
(a padding row copied from a non-finite example, a dropped clipping unit). Every mask in
`privacy.keras` goes through `select_rows`, or `scale_rows` where the rows are scaled anyway.

The samplers' padding rows carry weight -0.0 (`padding_weights`), real examples never do (a real weight 0 becomes
+0.0): both are weight 0 to every computation, but a step can tell the sampler's padding (`is_padding`) from a
real example of sample weight 0, so that leaving padding out does not depend on the examples' weights.
"""

from __future__ import annotations

import tensorflow as tf


def select_rows(keep, tensor):
    """``tensor`` (rows first) with the rows where ``keep`` is False replaced by zeros; a scalar as it is."""
    tensor = tf.convert_to_tensor(tensor)
    if tensor.shape.rank == 0:
        return tensor
    return tf.where(tf.reshape(keep, [-1] + [1] * (tensor.shape.rank - 1)), tensor, tf.zeros([], tensor.dtype))


def scale_rows(scale, tensor):
    """``tensor`` (rows first) with each row times its entry of ``scale``, shape (rows,); a row whose scale is 0
    becomes exact zeros even where it holds inf or NaN (`tf.math.multiply_no_nan`: a selection, not 0 x inf)."""
    return tf.math.multiply_no_nan(tensor, tf.reshape(scale, [-1] + [1] * (tensor.shape.rank - 1)))


def padding_weights(keep, weights):
    """float32 ``weights`` with the rows where ``keep`` is False set to -0.0 (padding) and every other weight 0
    to +0.0 (a real example of sample weight 0, whatever its sign)."""
    weights = tf.convert_to_tensor(weights, tf.float32)
    real = tf.where(tf.equal(weights, 0.0), tf.zeros_like(weights), weights)
    # -0.0 by its bits: a constant -0.0 would compare (and be cached, in eager mode) equal to 0.0.
    negative_zero = tf.bitcast(tf.constant(-(2**31), tf.int32), tf.float32)
    return tf.where(keep, real, tf.fill(tf.shape(weights), negative_zero))


def is_padding(weights):
    """Which rows of float32 ``weights`` are padding: weight -0.0 (sign bit set), as `padding_weights` marks it."""
    return tf.equal(weights, 0.0) & tf.less(tf.bitcast(weights, tf.int32), 0)
