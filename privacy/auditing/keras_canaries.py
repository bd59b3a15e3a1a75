"""Keras side of canary audits: the Dirac canary slot of a white-box audit, and the scores of both kinds.

White-box design. The audited model takes [features | canary id] and wraps the model under audit
(features -> logits) with `DiracCanaryHead`, which holds one trainable weight w_i per canary, initialised to 0,
turns the id column into the one-hot slot e_i per batch (O(batch x canaries), as the per-example gradients of w
are anyway), and outputs

    real example (id 0, slot all zero):  the wrapped model's logits, unchanged (w plays no part);
    canary i (id i + 1, slot = e_i):     logits = A * (w_i - stop_gradient(w_i)) * e_0, whose value is 0.

So a canary's loss is the cross-entropy of all-zero logits against class 0 whatever the weights are, and its
gradient is exactly A (1/K - 1) e_i in the coordinates of w and zero in every other variable (the wrapped
model's branch is cut by the select): a Dirac on coordinate i, of norm A (K - 1) / K, far above any clip
norm, so per-example clipping scales it to exactly C e_i (direction -e_i). Real examples give w no gradient.
Each step, w therefore receives -C for every included canary that was sampled, plus the step's Gaussian noise;
with SGD, w_i after training is (lr / B) (C * times sampled + noise) for an included canary and (lr / B) noise
for an excluded one: the score is w_i. The wrapped model's forward pass on real inputs never reads w, and the
canary head is an audit device: the audited model is trained for the audit only, never pushed.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from privacy.auditing.canaries import DIRAC_AMPLITUDE as AMPLITUDE
from privacy.auditing.losses import per_example_cross_entropy


class DiracCanaryHead(tf.keras.layers.Layer):
    """Selects the wrapped model's logits for real rows and the Dirac canary logits for canary rows (see module)."""

    def __init__(self, num_canaries: int, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_canaries, self.num_classes = int(num_canaries), int(num_classes)

    def build(self, input_shape):
        self.slot_weights = self.add_weight(
            name="canary_slot", shape=(self.num_canaries,), initializer="zeros", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs):
        logits, ids = inputs
        slot = tf.one_hot(tf.cast(ids[:, 0], tf.int32) - 1, self.num_canaries, dtype=logits.dtype)  # id 0: zeros
        z = tf.linalg.matvec(slot, self.slot_weights)
        z = AMPLITUDE * (z - tf.stop_gradient(z))  # value 0, gradient A * slot
        canary_logits = z[:, None] * tf.one_hot(0, self.num_classes, dtype=z.dtype)[None, :]
        is_canary = tf.reduce_any(tf.not_equal(slot, 0), axis=-1, keepdims=True)
        return tf.where(is_canary, canary_logits, logits)

    def get_config(self):
        return dict(super().get_config(), num_canaries=self.num_canaries, num_classes=self.num_classes)


def with_dirac_slot(model, num_features: int, num_canaries: int, num_classes: int):
    """A functional model on [features | canary id] (width num_features + 1) that outputs `model`'s logits for
    real rows (id 0) and Dirac canary logits for canary rows. `model` must map [batch, num_features] to logits."""
    inputs = tf.keras.Input(shape=(num_features + 1,))
    features, ids = inputs[:, :num_features], inputs[:, num_features:]
    head = DiracCanaryHead(num_canaries, num_classes, name="dirac_canary_head")
    return tf.keras.Model(inputs, head([model(features), ids]))


def white_box_scores(audited_model) -> np.ndarray:
    """Score of each Dirac canary: its slot weight's change over training (it starts at 0)."""
    return np.asarray(audited_model.get_layer("dirac_canary_head").slot_weights.numpy(), np.float64)


def black_box_scores(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Score of each input-space canary: minus the cross-entropy of `model`'s logits on it (higher = more likely
    trained on). Raises FloatingPointError (naming no canary) when the logits are not finite."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    if not np.isfinite(logits).all():
        raise FloatingPointError("the model's logits on the canaries are not finite")
    probabilities = tf.nn.softmax(logits).numpy()
    return -per_example_cross_entropy(y, probabilities)
