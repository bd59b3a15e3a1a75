"""The private training step (DP-SGD, Abadi et al. 2016, Alg. 1) for Keras 3 and tf-keras models.

One forward pass records every clipping unit's inputs and outputs; one backward pass gives the gradient
of the summed per-example losses with respect to those outputs; the layer rules turn them into
per-example gradient norms and the sum of clipped gradients. Then:

    gradient = (sum_i clip_C(g_i) + N(0, (sigma C')^2 I)) / B  +  grad(weight regularization)

with C' = C (1 + SLACK) the bound on each unit's term of the released sum, its rounding included (`clipping`,
`roundoff`), and B the *expected* (public) batch size, never the realised one, and the noise added once for the
global batch. With ``num_microbatches = M`` the clipped units are M equal slices of the batch, each
contributing (M / B) * sum of its examples' gradients, and the division is by M. Padding rows and examples of
weight 0 contribute nothing; with ``skip_padding`` most of the sampler's padding rows (weight -0.0,
`masking.is_padding`; never a real example, whatever its weight) are left out before the forward pass outside XLA
and without microbatches, so a step costs what its realised batch costs (and its duration follows the realised
batch size alone).
Everything here is traced into the model's `train_function`, and compiles with XLA when the layers do.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import tensorflow as tf

from privacy.accounting import noisy_padding
from privacy.accounting.mechanism import folded_multiplier
from privacy.keras import clipping, compat, optimizers, recording
from privacy.keras.factors import dim
from privacy.keras.masking import is_padding, select_rows
from privacy.keras.params import DPConfigurationError
from privacy.keras.rounding import rounded_down

PADDED_ROWS_MULTIPLE = noisy_padding.PADDED_ROWS_MULTIPLE


def dp_train_step(model, private, data):
    """Runs one DP-SGD step of ``model`` under ``private`` (a `PrivateTraining`); returns the logs."""
    checks = private.step_checks()
    x, y, sample_weight = _unpack(data)
    params = private.resolve_params(model.optimizer)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    padded_rows = _batch_size(x)  # the padded batch, before leave_out
    checks = [*checks, *clipping.checked_positions((padded_rows,))]
    expected_batch = private.global_expected_batch_size(x, replicas)
    weights = _weights(x, sample_weight)
    leave_out = (
        private.skip_padding
        and sample_weight is not None
        and params.num_microbatches is None
        and not compat.in_xla_context()
    )
    sigma_c = private.batch_size_noise_multiplier
    if sigma_c is not None and not (leave_out and replicas == 1):
        raise DPConfigurationError(
            f"batch_size_noise_multiplier={sigma_c!r} needs a step that leaves padding out on one replica (Poisson "
            f"batches with their weights, no XLA (jit_compile=False), no microbatches); this step has "
            f"{replicas} replica(s), XLA {compat.in_xla_context()}"
        )
    if leave_out:
        private.note_padding_left_out()
        extra = None if sigma_c is None else private.noise.padding_rows(sigma_c, noisy_padding.padding_offset(sigma_c))
        x, y, weights = without_padding(x, y, weights, extra)
    clipped, grads = released_sums(
        model,
        private.units(model),
        x,
        y,
        weights,
        params,
        private.noise,
        expected_batch_size=expected_batch,
        replicas=replicas,
        most_rows=padded_rows,
    )
    y_pred, weighted_losses = clipped.predictions, clipped.weighted_losses
    variables = model.trainable_variables
    regularization = _add_regularization_gradients(model, variables, grads, replicas)
    with optimizers.private_step(), tf.control_dependencies(checks):
        model.optimizer.apply_gradients(zip(grads, variables, strict=True))
    private.count_step(after=grads)

    # Examples (not padding) whose clipping unit was dropped, or whose weight is not finite.
    real = tf.not_equal(weights, 0.0)
    kept = tf.repeat(clipped.kept, tf.shape(weights)[0] // tf.size(clipped.kept))
    ok = real & tf.math.is_finite(weights) & kept
    private.count_dropped(tf.reduce_sum(tf.cast(real & ~ok, tf.int64)))
    count = tf.reduce_sum(tf.cast(ok, tf.float32))
    mean_loss = tf.reduce_sum(tf.where(ok, weighted_losses, 0.0)) / tf.maximum(count, 1.0)
    if regularization is not None:
        mean_loss += regularization
    compat.update_loss_metric(model, y_pred, mean_loss, count)
    return model.compute_metrics(x, _rows(ok, y), _rows(ok, y_pred), select_rows(ok, weights))


def released_sums(
    model,
    units,
    x,
    y,
    weights,
    params,
    noise,
    *,
    expected_batch_size: float,
    replicas: int = 1,
    most_rows: int | None = None,
) -> tuple[ClippedSum, list]:
    """(`clipped_gradient_sum` at the folded multiplier, this replica's part of the step's release (sum_i
    clip_C(g_i) + N(0, (sigma C')^2 I)) / B aligned with ``model.trainable_variables``), B the denominator
    (``params.num_microbatches`` or ``expected_batch_size``), the noise from ``noise`` (a `GaussianNoise`; on
    replica 0 only). Refuses a B < 1 whose 2^k (`folded_multiplier`) is beyond the gradients' dtype, and any B < 1
    on several replicas: their noiseless parts would be multiplied by 2^k before the replicas' sum, where an overflow
    is not a function of the released sum. ``most_rows``: the rows of the batch before its padding was left out
    (`clipping.clipped_gradient_sum`)."""
    folded, doublings = folded_multiplier(Fraction(1) / Fraction(params.num_microbatches or expected_batch_size))
    if doublings and replicas > 1:
        raise DPConfigurationError(
            f"expected_batch_size={expected_batch_size!r} is below 1 on {replicas} replicas: the step would multiply "
            f"each replica's noiseless sum by 2^{doublings} before their sum (an overflow there depends on the data); "
            f"use an expected batch size of at least 1, or one replica"
        )
    # The division by the denominator is folded into the clip factors and the noise's standard deviation (no pass
    # over the gradients for it): (sum_i clip_C(g_i) + N(0, (sigma C')^2 I)) / B = sum_i clip_C(g_i) / B + N(0,
    # (sigma C' / B)^2 I), the same noise draws times sigma C' / B (exact rationals: the noise's stddev rounds up in the
    # gradients' dtype, 1 / B down, so their rounding never lowers the noise against the clipped contributions).
    # Where 1 / B > 1 (B < 1), 1 / B = m 2^k: m folds in, the noisy sums are multiplied by 2^k (`folded_multiplier`).
    clipped = clipped_gradient_sum(
        model,
        units,
        x,
        y,
        weights,
        params,
        expected_batch_size=expected_batch_size,
        replicas=replicas,
        multiplier=folded,
        most_rows=most_rows,
    )
    sums = noise.add(clipped.sums, params.exact_noise_stddev * folded)
    if not doublings:
        return clipped, sums
    beyond = {g.dtype.name for g in sums if 2**doublings > float(g.dtype.max)}
    if beyond:
        raise DPConfigurationError(
            f"expected_batch_size={expected_batch_size!r} is too small: the step multiplies its noisy sums by "
            f"2^{doublings} (1 / B = m 2^{doublings}, m <= 1), beyond the largest {', '.join(sorted(beyond))}"
        )
    return clipped, [g * rounded_down(2**doublings, g.dtype) for g in sums]


class ClippedSum(NamedTuple):
    """The noiseless part of a step on one replica."""

    sums: list  # sum of clipped gradients times the multiplier, aligned with model.trainable_variables
    norms: tf.Tensor  # each unit's gradient norm before clipping, shape (units,)
    kept: tf.Tensor  # the units that contributed (finite gradient and loss), shape (units,)
    predictions: tf.Tensor
    weighted_losses: tf.Tensor  # per-example loss times sample weight, shape (batch,)


def clipped_gradient_sum(
    model,
    units,
    x,
    y,
    weights,
    params,
    *,
    expected_batch_size: float,
    replicas: int = 1,
    multiplier: float | Fraction = 1.0,
    most_rows: int | None = None,
) -> ClippedSum:
    """Sums the clipped per-example (or per-microbatch) gradients of one batch on this replica, times
    ``multiplier`` (``most_rows``: `clipping.clipped_gradient_sum`'s)."""
    microbatches = params.num_microbatches
    if microbatches is not None:
        local_microbatches = _local_microbatches(microbatches, replicas, x)
        unit_scale = microbatches / expected_batch_size
    else:
        local_microbatches, unit_scale = None, 1.0
    call_kwargs = {"training": True} if compat.call_accepts_training(model) else {}
    compat.clear_data_dependent_losses(model)
    usable = tf.not_equal(weights, 0.0) & tf.math.is_finite(weights)
    with tf.GradientTape() as tape:
        with recording.recording(units) as records:
            y_pred = model(x, **call_kwargs)
        _reject_data_dependent_losses(model)
        _reject_weights_used_outside_their_layers(records, model)
        losses = per_example_loss(model, y, y_pred)
        # Selected, not multiplied: padding (weight 0) must add exactly 0 even where its loss is not finite.
        weighted_losses = tf.where(usable, losses * tf.where(usable, weights, 0.0), 0.0)
        objective = tf.reduce_sum(weighted_losses) * unit_scale
    target_grads = tape.gradient(objective, records.targets(units), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    finite = tf.math.is_finite(weighted_losses)  # padding rows are 0
    if local_microbatches is not None:
        finite = tf.reduce_all(tf.reshape(finite, [local_microbatches, -1]), axis=1)
    sums, norms, kept = clipping.clipped_gradient_sum(
        units,
        records,
        target_grads,
        model.trainable_variables,
        l2_norm_clip=params.l2_norm_clip,
        num_microbatches=local_microbatches,
        finite_losses=finite,
        multiplier=multiplier,
        most_rows=most_rows,
    )
    return ClippedSum(sums, norms, kept, y_pred, weighted_losses)


def per_example_loss(model, y, y_pred):
    """The compiled loss of each example, shape (batch,): for several outputs, the sum over outputs of each
    output's loss times its ``loss_weights`` entry, as Keras weighs them (each averaged over any axes but
    the batch, as Keras does)."""
    if model.loss is None or (isinstance(model.loss, (dict, list, tuple)) and not model.loss):
        raise DPConfigurationError("the model has no loss: compile it with loss=... before training")
    outputs = _outputs(model, y, y_pred)
    weights = compat.loss_weights(model)
    total = None
    for index, (name, target, prediction) in enumerate(outputs):
        loss = _for_output(model.loss, name, index, len(outputs), "losses")
        weight = 1.0 if weights is None else _for_output(weights, name, index, len(outputs), "loss_weights")
        values = _one_loss(model, loss, target, prediction) * tf.cast(weight, tf.float32)
        total = values if total is None else total + values
    return total


def _outputs(model, y, y_pred) -> list:
    """[(output name, target, prediction)] for each output of the model."""
    if isinstance(y_pred, dict):
        names, predictions = list(y_pred), list(y_pred.values())
    elif isinstance(y_pred, (list, tuple)):
        predictions = list(y_pred)
        names = list(getattr(model, "output_names", None) or [])
        names = names if len(names) == len(predictions) else [str(i) for i in range(len(predictions))]
    else:
        return [(None, _unwrapped(y), y_pred)]
    if len(predictions) == 1:
        return [(names[0], _unwrapped(y), predictions[0])]
    if isinstance(y, dict):
        missing = [name for name in names if name not in y]
        if missing:
            raise DPConfigurationError(f"the targets have no entry for the model outputs {missing}")
        targets = [y[name] for name in names]
    elif isinstance(y, (list, tuple)) and len(y) == len(predictions):
        targets = list(y)
    else:
        raise DPConfigurationError(
            f"the model has {len(predictions)} outputs {names}; give one target per output "
            "(a list in output order, or a dict by output name)"
        )
    return list(zip(names, targets, predictions, strict=True))


def _for_output(value, name, index, count, what):
    """``value``'s entry for one output: by name in a dict, by position in a list, else shared by all."""
    if isinstance(value, dict):
        if name not in value:
            raise DPConfigurationError(f"the {what} given to compile have no entry for the output {name!r}")
        return value[name]
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise DPConfigurationError(f"compile was given {len(value)} {what} for a model with {count} outputs")
        return value[index]
    return value


def _unwrapped(value):
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value


def _one_loss(model, loss, y, y_pred):
    keras = compat.keras_of(model)
    fn = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(fn, keras.losses.Loss):
        fn = _unreduced(fn, keras)
    values = fn(*_same_rank(y, y_pred))
    if values.shape.rank == 0:
        raise DPConfigurationError(
            f"the loss {_name(loss)} returned one number for the whole batch; DP-SGD needs one loss per "
            "example: use a keras.losses.Loss (any reduction) or a function returning shape (batch,)"
        )
    values = tf.cast(values, tf.float32)
    if values.shape.rank > 1:
        values = tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
    return values


def _rows(keep, tensors):
    """``tensors`` (any structure, batch first) with the rows where ``keep`` is False set to zero."""
    return None if tensors is None else tf.nest.map_structure(lambda t: select_rows(keep, t), tensors)


def _same_rank(y, y_pred):
    """Labels of shape (batch,) against outputs (batch, 1), or the reverse, as Keras' losses align them."""
    y = tf.convert_to_tensor(y)
    rank, pred_rank = y.shape.rank, y_pred.shape.rank
    if rank is not None and pred_rank is not None:
        if rank == pred_rank - 1 and y_pred.shape[-1] == 1:
            y = tf.expand_dims(y, -1)
        elif rank == pred_rank + 1 and y.shape[-1] == 1:
            y = tf.squeeze(y, -1)
    return y, y_pred


def _unreduced(loss, keras):
    """A copy of the Loss object with reduction 'none' (its `call` if it cannot be rebuilt)."""
    cache = getattr(loss, "_ppml_unreduced", None)
    if cache is None:
        try:
            cache = type(loss).from_config({**loss.get_config(), "reduction": "none"})
        except (TypeError, ValueError, KeyError):
            cache = loss.call
        object.__setattr__(loss, "_ppml_unreduced", cache)
    return cache


def _name(loss):
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or repr(loss)


def _unpack(data):
    if isinstance(data, tuple) and len(data) in (2, 3):
        return data if len(data) == 3 else (*data, None)
    if isinstance(data, tuple) and len(data) == 1:
        return data[0], None, None
    return data, None, None


def _batch_size(x):
    return dim(tf.nest.flatten(x)[0])


def _weights(x, sample_weight):
    if sample_weight is None:
        return tf.ones([_batch_size(x)], tf.float32)
    weights = tf.cast(sample_weight, tf.float32)
    if weights.shape.rank == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape.rank != 1:
        raise DPConfigurationError(f"sample weights must have one value per example, got shape {weights.shape}")
    return weights


def without_padding(x, y, weights, extra=None):
    """The rows that are not the sampler's padding (`masking.is_padding`: weight -0.0), in order, then padding rows
    up to the next multiple of `PADDED_ROWS_MULTIPLE` (at most the batch; so an empty batch still runs). With
    ``extra`` (noisy padding's max(0, ceil(mu + Z)), an int32 scalar), ``extra`` more padding rows first: K =
    min(batch, m + extra) rows, then rounded up to a multiple of `noisy_padding.NOISY_ROWS_MULTIPLE` instead (at most
    the batch; read when the step is traced, the one value `noisy_padding.covered_rows` states).

    Padding rows contribute exactly 0 to the clipped sum, the loss and the metrics, so leaving them out changes no
    result, only the work, which then follows the realised batch size instead of the padded one; the multiple keeps
    the number of distinct shapes the kernels see small. Real examples stay whatever their weight (0 and NaN
    included: they contribute 0, or are counted as dropped, as in the padded batch), so the rows computed depend on
    the sampler's draw alone, never on the examples' weights. Not under XLA (static shapes) nor with microbatches
    (contiguous slices of the padded batch).
    """
    padding = tf.cast(is_padding(weights), tf.int32)
    kept = tf.size(weights) - tf.reduce_sum(padding)  # m
    multiple = PADDED_ROWS_MULTIPLE
    if extra is not None:
        kept = tf.minimum(tf.size(weights), kept + extra)  # K
        multiple = noisy_padding.NOISY_ROWS_MULTIPLE
    size = tf.minimum(tf.size(weights), tf.maximum(1, (kept + multiple - 1) // multiple) * multiple)
    rows = tf.argsort(padding, stable=True)[:size]

    def take(t):
        return tf.gather(t, rows)

    return tf.nest.map_structure(take, x), None if y is None else tf.nest.map_structure(take, y), take(weights)


def _local_microbatches(microbatches, replicas, x):
    if microbatches % replicas:
        raise DPConfigurationError(f"num_microbatches={microbatches} must be divisible by the {replicas} replicas")
    local = microbatches // replicas
    batch = tf.nest.flatten(x)[0].shape[0]
    if batch is not None and batch % local:
        raise DPConfigurationError(
            f"a batch of {batch} examples cannot be split into num_microbatches={microbatches} equal parts; "
            f"use a (padded) batch size divisible by it"
        )
    return local


def _reject_data_dependent_losses(model):
    if compat.data_dependent_losses(model):
        raise DPConfigurationError(
            "a layer called add_loss() (e.g. an activity_regularizer) during the forward pass; that loss "
            "depends on the whole batch and cannot be clipped per example. Remove it, or fold it into the "
            "compiled loss per example"
        )


def _reject_weights_used_outside_their_layers(records, model):
    outside = records.read_outside(model.trainable_variables)
    if outside:
        raise DPConfigurationError(
            f"the forward pass computes with {[v.name for v in outside]} outside the layer that owns them (e.g. "
            "an output layer reading an embedding's matrix through a reference it does not track: tied "
            "weights); per-example clipping would miss the gradient of that use. Give that layer the variable "
            "as its own weight (ppml clips a variable several layers own as one), or compute with weights only "
            "inside the layers that own them"
        )


def _add_regularization_gradients(model, variables, grads, replicas):
    """Adds the gradient of the weight penalties (data-independent: no clipping, no noise) in place."""
    with tf.GradientTape() as tape:
        penalty = compat.weight_regularization_loss(model)
    if penalty is None:
        return None
    for i, g in enumerate(tape.gradient(penalty, variables)):
        if g is not None:
            grads[i] = grads[i] + tf.cast(g, grads[i].dtype) / replicas
    return penalty
