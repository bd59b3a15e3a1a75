"""White-box Dirac canaries around a model of yours with one sigmoid output under binary cross-entropy.

`keras_canaries.DiracCanaryHead` wraps a model that outputs softmax logits; `SigmoidCanaryHead` is its counterpart
for a model that outputs P(class 1) as a [batch, 1] probability trained with `BinaryCrossentropy` (the bundled DP
Trainer module's), so that the module's own compile and fit can train it unchanged. On [features | canary id]:

    real row (id 0):                 the wrapped model's probability, unchanged (w plays no part);
    canary i (id i + 1), label 0:    sigmoid(-A (w_i - stop_gradient(w_i))), whose value is 1/2.

So a canary's loss is log 2 whatever the weights, and its gradient is -A / 2 e_i in the slot weights w (up to Keras'
1e-7 probability clip) and zero in every other variable (the select cuts the wrapped model's branch): a Dirac of norm
about A / 2 = `canaries.MAX_DIRAC_CLIP`, which per-example clipping scales to C e_i for any smaller C. Real rows give w
no gradient. With SGD, w_i after training is (lr / B) (C * times sampled + noise) for an included canary and
(lr / B) noise for an excluded one; the score is w_i (`keras_canaries.white_box_scores`: the layer has the same name).
With another optimizer the score is still a function of the slot's noisy updates, so a one-run bound on it stays
sound; only its power changes. A batch whose id column is not integers in [0, m] with each canary id once (a fit
that transformed its inputs) is refused (InvalidArgumentError): its canaries would have left their slots, and the
audit its power. The wrapped model is an audit device, never pushed.
"""

from __future__ import annotations

import tensorflow as tf

from privacy.auditing.canaries import DIRAC_AMPLITUDE as AMPLITUDE

CANARY_LABEL = 0.0
"""The label of every canary row (its output is 1/2 whatever the weights, so either label gives a Dirac)."""


class SigmoidCanaryHead(tf.keras.layers.Layer):
    """Selects the wrapped model's probability for real rows and the Dirac canary output for canary rows."""

    def __init__(self, num_canaries: int, **kwargs):
        super().__init__(**kwargs)
        self.num_canaries = int(num_canaries)

    def build(self, input_shape):
        self.slot_weights = self.add_weight(
            name="canary_slot", shape=(self.num_canaries,), initializer="zeros", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs):
        probability, ids = inputs
        _check_ids(ids[:, 0], self.num_canaries)
        slot = tf.one_hot(tf.cast(ids[:, 0], tf.int32) - 1, self.num_canaries, dtype=probability.dtype)  # id 0: 0
        z = tf.linalg.matvec(slot, self.slot_weights)
        canary = tf.sigmoid(-AMPLITUDE * (z - tf.stop_gradient(z)))[:, None]  # value 1/2, gradient -A / 4 * slot
        is_canary = tf.reduce_any(tf.not_equal(slot, 0), axis=-1, keepdims=True)
        return tf.where(is_canary, canary, probability)

    def get_config(self):
        return dict(super().get_config(), num_canaries=self.num_canaries)


def _check_ids(ids, num_canaries: int) -> None:
    """Fails the batch (InvalidArgumentError) unless its id column is what the audit appended: integers in
    [0, num_canaries], each canary id at most once. A fit that transforms its inputs (standardising every column, a
    cast to float16) would otherwise move canaries off their slots: the audit would silently lose its power."""
    message = f"the canary id column (the last input) must hold the integers 0 to {num_canaries} the audit appended, "
    tf.debugging.assert_equal(ids, tf.round(ids), message=message + "got a non-integer (were the inputs transformed?)")
    tf.debugging.assert_non_negative(ids, message=message + "got a negative id")
    tf.debugging.assert_less_equal(ids, tf.cast(num_canaries, ids.dtype), message=message + "got a larger id")
    canary_ids = tf.boolean_mask(ids, ids > 0)
    tf.debugging.assert_equal(
        tf.size(tf.unique(canary_ids).y), tf.size(canary_ids), message=message + "got a canary id twice in one batch"
    )


def with_sigmoid_slot(model, num_features: int, num_canaries: int):
    """A functional model on [features | canary id] (width num_features + 1) that outputs `model`'s probability for
    real rows (id 0) and the Dirac canary output for canary rows. `model` must map [batch, num_features] to
    [batch, 1] probabilities; a different output shape is refused (ValueError naming it)."""
    shape = tuple(model(tf.zeros((1, num_features))).shape)
    if shape != (1, 1):
        raise ValueError(
            f"the model must map [batch, {num_features}] features to [batch, 1] probabilities, got {shape}"
        )
    inputs = tf.keras.Input(shape=(num_features + 1,))
    features, ids = inputs[:, :num_features], inputs[:, num_features:]
    return tf.keras.Model(inputs, SigmoidCanaryHead(num_canaries, name="dirac_canary_head")([model(features), ids]))
