"""Per-example (or per-microbatch) clipping: the sum of clipped gradients from one backward pass.

Given what the recorder kept during the forward pass and the gradient of the summed per-example losses
with respect to every unit's recorded outputs, each unit's rule writes its per-example gradients as
factors; the squared norms add up across units to each example's full-gradient norm, and every
example's gradient is scaled by min(1, C / norm) (Abadi et al. 2016, Alg. 1) before summing. A unit
that was not called contributes zero. A clipping unit whose gradient or loss is not finite (an example
with inf or NaN features, labels or weight; e.g. an inf label under MAE has an inf loss but a finite
gradient) is dropped: it contributes exactly 0 (selected away, since 0 x inf is NaN), which keeps every
unit's contribution within norm C, and the caller counts it.
"""

from __future__ import annotations

from fractions import Fraction

import tensorflow as tf

from privacy.keras.factors import combined
from privacy.keras.rounding import rounded_down


def clip_scale(norms, l2_norm_clip: float, keep):
    """Each clipping unit's factor min(1, C / norm) (Abadi et al. 2016), or 0 where ``keep`` is False."""
    clip = tf.cast(l2_norm_clip, norms.dtype)
    return tf.where(keep, clip / tf.maximum(norms, clip), tf.zeros_like(norms))


def clipped_gradient_sum(
    units,
    records,
    target_grads,
    variables,
    *,
    l2_norm_clip: float,
    num_microbatches: int | None = None,
    finite_losses=None,
    multiplier: float | Fraction = 1.0,
):
    """Sum over clipping units of the gradient clipped to L2 norm ``l2_norm_clip``, times ``multiplier``.

    Args:
      units: the model's clipping units (`recording.find_units`).
      records: the `Records` of the forward pass.
      target_grads: gradients of the summed losses with respect to ``records.targets(units)``, in order.
      variables: the model's trainable variables; the result is aligned with them.
      l2_norm_clip: C, the L2 bound on each unit's gradient (over all variables together).
      num_microbatches: M to clip M contiguous groups of the batch instead of single examples.
      finite_losses: per unit, whether its loss is finite (False drops it); default: all are.
      multiplier: a factor folded into each unit's clip factor (the step's 1 / B), so the sums need no pass for it;
        rounded DOWN to the clip factors' dtype (`rounding.rounded_down`), so its rounding never raises a unit's
        contribution.

    Returns:
      (list of tensors shaped like ``variables``, per-unit gradient norms before clipping, per-unit
      mask of the units kept: finite norm and loss).
    """
    factors = {}
    position = 0
    for unit in units:
        calls = records.of(unit)
        if not calls:
            continue
        grads = []
        for call in calls:
            grads.append(target_grads[position : position + len(call.targets)])
            position += len(call.targets)
        for key, factor in unit.rule.factors(unit.layer, calls, grads, unit.variables).items():
            factor = factor.grouped(num_microbatches) if num_microbatches else factor
            # A variable several layers use (tied weights) gets every use's per-example gradient.
            factors[key] = combined(factors[key], factor) if key in factors else factor
    if not factors:
        raise ValueError("no trainable layer of the model was called in the forward pass")
    squared = tf.add_n([f.squared_norms() for f in factors.values()])
    norms = tf.sqrt(squared)
    kept = tf.math.is_finite(norms) if finite_losses is None else tf.math.is_finite(norms) & finite_losses
    scale = clip_scale(norms, l2_norm_clip, kept)
    if multiplier != 1.0:
        scale = scale * tf.constant(rounded_down(multiplier, scale.dtype), scale.dtype)
    # Every step selects the dropped units' rows away (0 x inf is NaN), whether it drops one or not: a step that
    # skipped the selection when all were kept would take longer exactly when an example is not finite.
    sums = []
    for variable in variables:
        factor = factors.get(id(variable))
        if factor is None:
            sums.append(tf.zeros(variable.shape, variable.dtype))
        else:
            sums.append(tf.cast(factor.kept(kept).clipped_sum(tf.cast(scale, _dtype(factor))), variable.dtype))
    return sums, norms, kept


def _dtype(factor):
    return getattr(factor, "g", getattr(factor, "grads", None)).dtype
