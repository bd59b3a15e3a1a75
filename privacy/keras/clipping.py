"""Per-example (or per-microbatch) clipping: the sum of clipped gradients from one backward pass.

Given what the recorder kept during the forward pass and the gradient of the summed per-example losses
with respect to every unit's recorded outputs, each unit's rule writes its per-example gradients as
factors; the squared norms add up across units to each example's full-gradient norm, and every
example's gradient is scaled by min(1, C / norm) (Abadi et al. 2016, Alg. 1) before summing. A unit
that was not called contributes zero. A clipping unit whose gradient or loss is not finite (an example
with inf or NaN features, labels or weight; e.g. an inf label under MAE has an inf loss but a finite
gradient) is dropped: it contributes exactly 0 (selected away, since 0 x inf is NaN), which keeps every
unit's contribution within norm C, and the caller counts it.

The clip factor divides by a rigorous bound, not by the computed norm (`roundoff`): a ghost norm is a sum of signed
terms that an adversarial record can make cancel to 0 in float32 while its gradient, summed by a separate matmul, is
huge. Each unit's factor is C / max(D_u, C) (`divisors`: D_u bounds the exact norm and leaves room for the clipped
sum's rounding, relative and underflow), in float64, then multiplied by the folded m = 1 / B (2^-k / B <= 1 where
B < 1: the step multiplies its noisy sums by 2^k, `train_step`) and rounded down to the gradients' dtype:
the unit's term of the released sum is within s_u (||grad_u|| + r_u) + e_u <= m C (1 + SLACK) of zero (the sum
over units adds its own float32 rounding), which the noise covers (`DPParams.exact_noise_stddev`). A unit whose
bound is not finite (an overflow), or whose underflow bound alone fills the slack, is dropped like a non-finite
one.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import tensorflow as tf

from privacy.accounting import noise_cutoff
from privacy.keras import compat, roundoff
from privacy.keras.factors import combined
from privacy.keras.params import SLACK, DPConfigurationError
from privacy.keras.rounding import cast_down, rounded_down


def checked_positions(sizes, what: str = "batch rows") -> list:
    """Refuses a sum over more than `noise_cutoff.MAX_STEP_POSITIONS` terms, the product of ``sizes`` (ints or scalar
    tensors: rows, positions) on each replica in sync, beyond what `noise_cutoff.max_l2_norm_clip` keeps finite: when
    traced where every size is an int; else by the check returned, on which the step's result must depend. Outside
    XLA an assertion, which fails when the step runs. XLA drops assertions but compiles each shape before it runs
    it, so there the check is a guard (`tf.ensure_shape` to [0] of a tensor of shape [count] beyond the limit, [0]
    within): compiling a step of too many terms fails (InvalidArgumentError naming the limit, what is summed and the
    count) before it runs, and a step within compiles without it. Refusing every size unknown when traced would break
    the ``jit_compile`` fits Keras runs with varying sizes (a dataset's smaller last batch, a sequence length left
    None). Data-independent where the sizes are: the batch's rows (the sampler's padded batch, or a caller's of at most
    its checked size) and the model's positions; a caller's sequence length left None is its batch's longest record's,
    so there the refusal (visible, never a released non-finite sum) can turn on one record: give such inputs a fixed
    length."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if all(isinstance(size, int) for size in sizes):
        noise_cutoff.check_step_positions(math.prod(sizes) * replicas, what, error=DPConfigurationError)
        return []
    limit = noise_cutoff.MAX_STEP_POSITIONS
    count = math.prod((tf.cast(size, tf.int64) for size in sizes), start=tf.constant(replicas, tf.int64))
    message = f"a DP-SGD step sums more than {limit} {what} (all replicas), beyond l2_norm_clip's bound"
    if compat.in_xla_context():
        over = tf.where(count <= limit, tf.constant(0, tf.int64), count)
        name = re.sub(r"[^A-Za-z0-9.\-/]+", "_", message.replace("'s ", " "))  # an op's name: the message's words
        return [tf.ensure_shape(tf.ones(tf.reshape(over, [1]), tf.int8, name=name), [0])]
    return [tf.debugging.assert_less_equal(count, tf.constant(limit, tf.int64), message=message)]


def divisors(squared_bounds: list, roundings: list, l2_norm_clip: float, multiplier: float | Fraction = 1.0):
    """D_u (float64, (U,)) from every variable's factor's ``squared_norm_bounds`` and ``rounding`` (r, e), so that any
    scale s_u <= m C / max(D_u, C) (C = ``l2_norm_clip``, m = ``multiplier`` <= 1: the e hold for scales up to 1)
    keeps the unit's term within s_u (||grad_u|| + r_u) + e_u <= m C (1 + SLACK), r_u and e_u summed over variables:
    D_u >= ||grad_u|| (sqrt of the summed squared bounds) and D_u >= r_u / (SLACK - e_u / (m C)), so s_u r_u <=
    m C SLACK - e_u (also where D_u <= C and s_u <= m); inf (the unit dropped) where e_u >= m C SLACK. In float64:
    e_u / (m C) rounded up (m C rounded down, the add_n and division covered by FLOAT64_MARGIN), the rest by the
    final (1 + FLOAT64_MARGIN)."""
    if not 0 < multiplier <= 1:
        raise ValueError(
            f"multiplier={multiplier!r} must be in (0, 1]: the clipped sum's rounding bounds hold for scales up to 1 "
            "(the step multiplies its noisy sums by the rest of a larger 1 / B)"
        )
    budget = float(rounded_down(Fraction(float(l2_norm_clip)) * Fraction(multiplier), tf.float64))
    norm = tf.sqrt(tf.add_n(squared_bounds))
    underflow = tf.add_n([e for _, e in roundings]) * (1 + roundoff.FLOAT64_MARGIN) / budget
    room = float(SLACK) - underflow
    relative = tf.add_n([r for r, _ in roundings])
    needed = tf.where(room > 0, relative / room, float("inf"))
    return tf.maximum(norm, needed) * (1 + roundoff.FLOAT64_MARGIN)


def clip_scale(divisor, l2_norm_clip: float, keep, dtype, multiplier: float | Fraction = 1.0):
    """Each unit's factor min(1, C / D_u) (Abadi et al. 2016) times ``multiplier``, in ``dtype``, never above the
    exact value: where D_u <= C, ``multiplier`` rounded down (`rounding.rounded_down`); elsewhere C / D_u times it in
    float64, times (1 - 2 u) (u ``dtype``'s unit roundoff; the float64 product's two roundings are below u) and
    rounded toward zero in ``dtype`` (`rounding.cast_down`: to nearest overshoots among the subnormals). 0 where
    ``keep`` is False or D_u is not finite."""
    clip = tf.constant(float(l2_norm_clip), tf.float64)
    down = 1 - 2 * roundoff.unit_roundoff(dtype)
    factor = clip / tf.maximum(divisor, clip) * float(rounded_down(multiplier, tf.float64)) * down
    unclipped = tf.constant(rounded_down(multiplier, dtype), dtype)
    scale = tf.where(divisor <= clip, unclipped, cast_down(factor, dtype))
    return tf.where(keep & tf.math.is_finite(divisor), scale, tf.zeros_like(scale))


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
    most_rows: int | None = None,
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
        rounded DOWN with it (`clip_scale`), so its rounding never raises a unit's contribution.
      most_rows: at least the rows of the batch (an int, or a tensor: unused), for the positions check where the
        units are known only when the step runs: the padded batch's rows where `skip_padding` left its padding out,
        so that a configuration beyond the limit is refused when the step is traced, as with the padding kept, and
        not by an assertion at the first realised batch over it.

    Returns:
      (list of tensors shaped like ``variables``, per-unit gradient norms before clipping as computed (reported),
      per-unit mask of the units kept: finite norm, finite bound and finite loss).

    Raises:
      DPConfigurationError: where a variable's clipped sum adds more than `noise_cutoff.MAX_STEP_POSITIONS` rows
        times positions over all replicas (`checked_positions`: when traced; else InvalidArgumentError before the
        sums are used, or under XLA when the step is compiled for the realised sizes).
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
    names = {id(variable): getattr(variable, "path", variable.name) for variable in variables}  # Keras 3: layer/name
    checks = []
    for key, factor in factors.items():
        units, *positions = factor.summed_rows()  # units <= rows
        units = most_rows if isinstance(most_rows, int) and not isinstance(units, int) else units
        checks += checked_positions((units, *positions), f"rows (times positions) in {names.get(key)}'s sum")
    norms = tf.sqrt(tf.add_n([f.squared_norms() for f in factors.values()]))
    divisor = divisors(
        [f.squared_norm_bounds() for f in factors.values()],
        [f.rounding() for f in factors.values()],
        l2_norm_clip,
        multiplier,
    )
    kept = tf.math.is_finite(norms) & tf.math.is_finite(divisor)
    kept = kept if finite_losses is None else kept & finite_losses
    scales = {}
    # Every step selects the dropped units' rows away (0 x inf is NaN), whether it drops one or not: a step that
    # skipped the selection when all were kept would take longer exactly when an example is not finite.
    sums = []
    for variable in variables:
        factor = factors.get(id(variable))
        if factor is None:
            sums.append(tf.zeros(variable.shape, variable.dtype))
        else:
            dtype = _dtype(factor)
            if dtype not in scales:
                scales[dtype] = clip_scale(divisor, l2_norm_clip, kept, dtype, multiplier)
            sums.append(tf.cast(factor.kept(kept).clipped_sum(scales[dtype]), variable.dtype))
    if checks:
        with tf.control_dependencies(checks):
            sums = [tf.identity(total) for total in sums]
    return sums, norms, kept


def _dtype(factor):
    return getattr(factor, "g", getattr(factor, "grads", None)).dtype
