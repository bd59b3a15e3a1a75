"""Masking rows by selection: a masked-out row becomes zeros, never a product with 0.

0 x inf is NaN, so multiplying a row that holds inf or NaN by a 0/1 mask would poison the sum it enters
(a padding row copied from a non-finite example, a dropped clipping unit). Every mask in
`privacy.keras` goes through `select_rows`.
"""

from __future__ import annotations

import tensorflow as tf


def select_rows(keep, tensor):
    """``tensor`` (rows first) with the rows where ``keep`` is False replaced by zeros; a scalar as it is."""
    tensor = tf.convert_to_tensor(tensor)
    if tensor.shape.rank == 0:
        return tensor
    return tf.where(tf.reshape(keep, [-1] + [1] * (tensor.shape.rank - 1)), tensor, tf.zeros_like(tensor))
