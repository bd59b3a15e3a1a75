"""Per-example losses with the label shapes Keras accepts, run on both Keras flavours."""

import numpy as np
import tensorflow as tf

from privacy.keras import compat, make_private
from privacy.keras.train_step import per_example_loss

K = compat.default_keras()
L = K.layers


def _binary_model():
    model = K.Sequential([K.Input((3,)), L.Dense(1, activation="sigmoid")])
    return make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=8, dataset_size=40,
                        target_delta=1e-3)


def case_flat_labels_against_a_single_output_column():
    """Labels (batch,) against outputs (batch, 1) give the same per-example losses as (batch, 1) labels."""
    rng = np.random.default_rng(0)
    y_flat = rng.integers(0, 2, size=8).astype("float32")
    y_pred = tf.constant(rng.uniform(0.05, 0.95, size=(8, 1)).astype("float32"))
    expected = -(y_flat * np.log(y_pred.numpy()[:, 0]) + (1 - y_flat) * np.log(1 - y_pred.numpy()[:, 0]))
    for loss in ("binary_crossentropy", K.losses.BinaryCrossentropy()):
        model = _binary_model()
        model.compile(optimizer="sgd", loss=loss)
        for labels in (y_flat, y_flat[:, None]):
            values = per_example_loss(model, tf.constant(labels), y_pred).numpy()
            np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


def case_fit_with_flat_labels_trains_and_accounts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert history.history["epsilon"][-1] > 0
