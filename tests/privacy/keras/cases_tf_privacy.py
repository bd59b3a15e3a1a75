"""TF Privacy's own patterns, replayed against privacy.keras on both Keras flavours.

The expected values are TF Privacy's (its optimizer and DPSequential tests), recomputed here with numpy,
and every epsilon with dp-accounting directly.
"""

import os
import tempfile

import dp_accounting
import numpy as np
import tensorflow as tf
from scipy import stats

from privacy.accounting import compute_dp_sgd_privacy
from privacy.keras import (
    DPConfigurationError,
    DPGradientDescentGaussianOptimizer,
    DPKerasAdagradOptimizer,
    DPKerasAdamOptimizer,
    DPKerasSGDOptimizer,
    compat,
    make_private,
    private_training,
)
from privacy.keras.private_training import is_private

K = compat.default_keras()
L = K.layers


def _vector_loss(data, variable):
    """TF Privacy's test loss: 0.5 * ||data_i - variable||^2 per example; its gradient is variable - data_i."""
    return 0.5 * tf.reduce_sum(tf.math.squared_difference(data, variable), axis=1)


def case_compute_gradients_of_a_loss_vector_and_its_tape():
    """TF Privacy's testBaselineWithTensorLoss / WithCallableLoss: the mean gradient, whatever the
    microbatches, through _compute_gradients with a tape or a callable loss, for SGD, Adam and Adagrad."""
    data0 = tf.constant([[3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [-1.0, 0.0]])
    data1 = tf.constant([[8.0], [2.0], [3.0], [1.0]])
    for cls, microbatches in (
        (DPKerasSGDOptimizer, 1),
        (DPKerasAdamOptimizer, 2),
        (DPKerasAdagradOptimizer, 4),
        (DPGradientDescentGaussianOptimizer, None),
    ):
        var0, var1 = tf.Variable([1.0, 2.0]), tf.Variable([3.0])
        opt = cls(l2_norm_clip=100.0, noise_multiplier=0.0, num_microbatches=microbatches, learning_rate=2.0)
        with tf.GradientTape() as tape:
            loss = _vector_loss(data0, var0) + _vector_loss(data1, var1)
        by_tape = opt._compute_gradients(loss, [var0, var1], tape=tape)
        by_callable = opt.compute_gradients(lambda: _vector_loss(data0, var0) + _vector_loss(data1, var1), [var0, var1])
        for grads in (by_tape, by_callable):
            np.testing.assert_allclose(grads[0][0].numpy(), [-2.5, -2.5], rtol=1e-6)
            np.testing.assert_allclose(grads[1][0].numpy(), [-0.5], rtol=1e-6)


def case_clipping_noise_and_apply():
    """TF Privacy's testClippingNorm ([-0.6, -0.8]), testNoiseMultiplier (std C sigma / M) and
    testAssertOnNoCallOfComputeGradients (applying gradients it did not compute is refused); a microbatch
    whose loss is not finite is dropped."""
    var0 = tf.Variable([0.0, 0.0])
    data0 = tf.constant([[3.0, 4.0], [6.0, 8.0]])
    opt = DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=0.0, num_microbatches=1, learning_rate=2.0)
    grads = opt._compute_gradients(lambda: _vector_loss(data0, var0), [var0])
    np.testing.assert_allclose(grads[0][0].numpy(), [-0.6, -0.8], rtol=1e-5)
    opt.apply_gradients(grads)
    np.testing.assert_allclose(var0.numpy(), [1.2, 1.6], rtol=1e-5)
    try:
        opt.apply_gradients(grads)  # already applied: these could be any gradients now
    except DPConfigurationError as err:
        assert "make_private" in str(err), str(err)
    else:
        raise AssertionError("gradients were applied twice")
    # A microbatch whose loss is not finite although its gradient is (|inf - v| has gradient -1) contributes 0.
    var1 = tf.Variable([0.0, 0.0])
    data1 = tf.constant([[3.0, 4.0], [np.inf, 0.0]])
    opt = DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=0.0, num_microbatches=2, learning_rate=1.0)
    grads = opt._compute_gradients(lambda: tf.reduce_sum(tf.abs(data1 - var1), axis=1), [var1])
    np.testing.assert_allclose(grads[0][0].numpy(), [-0.5 / np.sqrt(2)] * 2, rtol=1e-6)
    for clip, sigma, microbatches in ((2.0, 4.0, 1), (4.0, 1.0, 4), (3.0, 2.0, None)):
        var = tf.Variable(tf.zeros([20000]))
        opt = DPKerasSGDOptimizer(
            l2_norm_clip=clip, noise_multiplier=sigma, num_microbatches=microbatches, learning_rate=2.0
        )
        noise = opt._compute_gradients(lambda: _vector_loss(tf.zeros([16, 20000]), var), [var])[0][0].numpy()
        std = clip * sigma / (microbatches or 16)
        chi2 = (noise.size - 1) * np.var(noise, ddof=1) / std**2
        assert 2 * min(stats.chi2.cdf(chi2, noise.size - 1), stats.chi2.sf(chi2, noise.size - 1)) > 1e-6, (
            clip,
            sigma,
            microbatches,
            noise.std(),
            std,
        )


def _linear_dp_model(**optimizer):
    model = K.Sequential([K.Input((2,)), L.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(
        optimizer=DPKerasSGDOptimizer(learning_rate=1.0, **optimizer), loss=K.losses.MeanSquaredError(reduction="none")
    )
    return model


def case_compiling_a_plain_model_with_a_dp_optimizer_trains_privately():
    """TF Privacy's tutorial pattern: a plain model compiled with a DP optimizer and a loss of reduction
    NONE, then fit. It trains with clipping exactly as TF Privacy's microbatch test expects (one batch of
    4, clip 1, M = none, 1, 2, 4), and with noise it is accounted as what ran: Keras' own shuffled batches,
    one Gaussian of sensitivity 2C per epoch, recomputed here from dp-accounting."""
    x = np.array([[2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]], "float32")
    y = np.array([[1.0], [3.0], [-2.0], [-4.0]], "float32")
    for microbatches in (None, 1, 2, 4):
        model = _linear_dp_model(l2_norm_clip=1.0, noise_multiplier=0.0, num_microbatches=microbatches)
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
        grads = (2 * x * (0.0 - y)).reshape(microbatches or 4, -1, 2).mean(axis=1)
        grads *= np.minimum(1.0, 1.0 / np.linalg.norm(grads, axis=1))[:, None]
        np.testing.assert_allclose(model.get_weights()[0][:, 0], -grads.mean(axis=0), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)).astype("float32"), rng.normal(size=(60, 1)).astype("float32")
    model = _linear_dp_model(l2_norm_clip=1.0, noise_multiplier=1.1, num_microbatches=5)
    history = model.fit(x, y, epochs=3, batch_size=10, verbose=0)
    private = private_training(model)
    assert (private.sampling.value, private.adjacency.value, private.steps) == ("shuffle", "replace-one", 18)
    expected = (
        dp_accounting.rdp.RdpAccountant()
        .compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(0.55), 3))
        .get_epsilon(private.target_delta)
    )
    assert abs(history.history["epsilon"][-1] - expected) < 1e-9


def _refused(fn, *fragments):
    try:
        fn()
    except DPConfigurationError as err:
        assert all(fragment in str(err) for fragment in fragments), (fragments, str(err))
    else:
        raise AssertionError(f"not refused: expected an error mentioning {fragments}")


def case_the_drop_in_leaves_every_other_model_to_keras():
    """Importing privacy.keras wraps keras.Model.fit only: compile is Keras' own, so Keras 3's load_model (which
    treated every model as having a custom compile and restored no optimizer: evaluate failed with "No loss to
    compute") and clone_model restore a plain model's compiled state, on both flavours and save formats."""
    import warnings

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    model = K.Sequential([K.Input((4,)), L.Dense(3)])
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    formats = ("model.keras", "model.h5") if compat.is_tf_keras(model) else ("model.keras",)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "compile() was not called as part of model loading"
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file")
        for name in formats:
            model.save(os.path.join(tmp, name))
            loaded = K.models.load_model(os.path.join(tmp, name))
            assert type(loaded.optimizer).__name__ == "SGD", (name, loaded.optimizer)
            np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)
        if not compat.is_tf_keras(model):
            clone = K.models.clone_model(model)
            clone.compile_from_config(model.get_compile_config())
            assert type(clone.optimizer).__name__ == "SGD"
    assert K.Model.compile.__module__.split(".")[0] in ("keras", "tf_keras")  # compile is Keras' own


def case_the_drop_in_can_still_be_configured_or_refuses_with_the_fix():
    """compile with a DP optimizer, then make_private (the order TF Privacy users reach for) gives Poisson
    sampling; a first fit that cannot be accounted (a dataset without dataset_size, batched with or without
    drop_remainder) is refused before any step naming make_private's arguments, and leaves the model as it
    was, so that make_private can follow; a model with BatchNormalization compiles and is refused at fit with
    what to use instead."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(105, 4)).astype("float32"), rng.integers(0, 3, 105)
    loss = K.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def compiled(*layers):
        model = K.Sequential([K.Input((4,)), *layers, L.Dense(3)])
        model.compile(
            optimizer=DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=1.1, learning_rate=0.1), loss=loss
        )
        return model

    model = compiled()
    make_private(model, expected_batch_size=10, target_delta=1e-3)
    model.fit(x, y, epochs=1, verbose=0)
    assert (private_training(model).sampling.value, private_training(model).steps) == ("poisson", round(105 / 10))
    batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(105)
    for dataset, missing in (
        (batches.batch(10), "dataset_size=..., expected_batch_size=..., sampling='shuffle'"),
        (batches.batch(10, drop_remainder=True), "dataset_size=..., sampling='shuffle'"),
    ):
        model = compiled()
        before = [w.copy() for w in model.get_weights()]
        _refused(
            lambda: model.fit(dataset, epochs=2, verbose=0),
            "compiled with a DP optimizer",
            f"make_private(model, {missing}) before fit",
        )
        assert not is_private(model) and all(
            np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)
        )
    make_private(model, dataset_size=105, expected_batch_size=10, sampling="shuffle", target_delta=1e-3)
    history = model.fit(batches.batch(10, drop_remainder=True), epochs=2, verbose=0)
    expected = (
        dp_accounting.rdp.RdpAccountant()
        .compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(0.55), 2))
        .get_epsilon(1e-3)
    )
    assert private_training(model).steps == 20 and abs(history.history["epsilon"][-1] - expected) < 1e-9
    with_batch_norm = compiled(L.BatchNormalization())
    _refused(
        lambda: with_batch_norm.fit(x, y, epochs=1, verbose=0),
        "BatchNormalization",
        "LayerNormalization or GroupNormalization",
    )
    assert not is_private(with_batch_norm)


class OwnStep(K.Model):
    """A model whose own train_step hands the optimizer the loss vector and the tape, as TF Privacy's
    custom steps (and tf-keras's own train_step) do."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(self(x, training=True) - y), axis=1)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {"loss": tf.reduce_mean(loss)}


def case_a_custom_train_step_gets_tf_privacys_step_from_the_optimizer():
    """A model overriding train_step is not made private at compile; its optimizer runs TF Privacy's step
    (microbatch jacobians, clipping, noise once, divided by the microbatches), checked at sigma = 0."""
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]], "float32")
    y = np.zeros((4, 1), "float32")
    inputs = K.Input((2,))
    model = OwnStep(inputs, L.Dense(1, use_bias=False, kernel_initializer="ones")(inputs))
    model.compile(
        optimizer=DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=0.0, num_microbatches=2, learning_rate=1.0)
    )
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    grads = (2 * x * x.sum(axis=1, keepdims=True)).reshape(2, 2, 2).mean(axis=1)
    grads *= np.minimum(1.0, 1.0 / np.linalg.norm(grads, axis=1))[:, None]
    np.testing.assert_allclose(model.get_weights()[0][:, 0], 1.0 - grads.mean(axis=0), rtol=1e-5)
    try:
        private_training(model)
    except DPConfigurationError:
        pass
    else:
        raise AssertionError("a model with its own train_step was made private")


def case_compute_dp_sgd_privacy_states_its_assumptions():
    """TF Privacy's compute_dp_sgd_privacy(n, batch_size, noise_multiplier, epochs, delta): Poisson sampling,
    add/remove, per-example clipping, RDP with dp-accounting's conversion (2.597 for the tutorial, whose
    printout said 3.01 with the older conversion)."""
    epsilon, order = compute_dp_sgd_privacy(n=60000, batch_size=256, noise_multiplier=1.1, epochs=60, delta=1e-5)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(256 / 60000, dp_accounting.GaussianDpEvent(1.1)), 14063
    )
    want, want_order = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon_and_optimal_order(1e-5)
    assert (epsilon, order) == (want, want_order) and round(epsilon, 3) == 2.597
