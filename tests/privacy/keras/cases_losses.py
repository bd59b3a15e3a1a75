"""Per-example losses with the label shapes Keras accepts, run on both Keras flavours."""

import numpy as np
import tensorflow as tf

from privacy.keras import compat, make_private
from privacy.keras.train_step import per_example_loss

K = compat.default_keras()
L = K.layers


def _binary_model():
    model = K.Sequential([K.Input((3,)), L.Dense(1, activation="sigmoid")])
    return make_private(
        model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=8, dataset_size=40, target_delta=1e-3
    )


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


def _two_outputs(named):
    K.utils.set_random_seed(0)
    inputs = K.Input((3,))
    hidden = L.Dense(4, activation="tanh")(inputs)
    a, b = L.Dense(2, name="a")(hidden), L.Dense(1, activation="sigmoid", name="b")(hidden)
    return K.Model(inputs, {"a": a, "b": b} if named else [a, b])


def case_several_outputs_and_weighted_losses_train_like_keras():
    """Two outputs with their own losses and loss_weights (a list, or a dict by output name) and sample
    weights: with sigma 0 and a huge clip the private update equals Keras' own (the multi-output pattern
    of TF Privacy's tests), and each example's loss is the weighted sum of its outputs' losses."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 3)).astype("float32")
    ya, yb = rng.normal(size=(16, 2)).astype("float32"), rng.integers(0, 2, size=(16, 1)).astype("float32")
    weights = rng.uniform(0.5, 2.0, size=16).astype("float32")
    for named in (False, True):
        settings = dict(
            loss={"a": "mse", "b": K.losses.BinaryCrossentropy()} if named else ["mse", K.losses.BinaryCrossentropy()],
            loss_weights={"a": 0.5, "b": 2.0} if named else [0.5, 2.0],
        )
        targets = {"a": ya, "b": yb} if named else [ya, yb]
        reference = _two_outputs(named)
        reference.compile(optimizer=K.optimizers.SGD(0.3), **settings)
        private = K.models.clone_model(reference)
        private.set_weights(reference.get_weights())
        make_private(private, l2_norm_clip=1e9, noise_multiplier=0.0, expected_batch_size=16, sampling="shuffle")
        private.compile(optimizer=K.optimizers.SGD(0.3), **settings)
        predictions = private(x)
        a, b = (predictions["a"], predictions["b"]) if named else predictions
        expected = 0.5 * np.mean((a.numpy() - ya) ** 2, axis=1) + 2.0 * -(
            yb[:, 0] * np.log(b.numpy()[:, 0]) + (1 - yb[:, 0]) * np.log(1 - b.numpy()[:, 0])
        )
        np.testing.assert_allclose(per_example_loss(private, targets, predictions).numpy(), expected, rtol=1e-4)
        for model in (reference, private):
            model.fit(x, targets, sample_weight=weights, batch_size=16, epochs=1, shuffle=False, verbose=0)
        for want, got in zip(reference.get_weights(), private.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"named outputs: {named}")
    wrong = _two_outputs(False)
    make_private(wrong, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=8, dataset_size=16)
    wrong.compile(optimizer="sgd", loss=["mse"])
    try:
        wrong.fit(x, [ya, yb], epochs=1, verbose=0)
    except Exception as err:
        assert "losss" not in str(err), str(err)
    else:
        raise AssertionError("one loss for two outputs was accepted")
