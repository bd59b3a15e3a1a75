"""MirroredStrategy cases: two logical CPU replicas (configured before TensorFlow starts), both flavours."""

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from privacy.keras import DPConfigurationError, compat, make_private, private_training  # noqa: E402

K = compat.default_keras()
L = K.layers
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one per process: collectives share keys


def _train(strategy, x, y, **private_kwargs):
    with strategy.scope():
        K.utils.set_random_seed(0)
        model = K.Sequential([K.Input((6,)), L.Dense(5, activation="tanh"), L.Dense(3)])
        make_private(model, **private_kwargs)
        model.compile(optimizer=K.optimizers.SGD(0.5), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
    model.fit(batches, epochs=1, verbose=0)
    return model


def case_two_replicas_clip_per_example_like_one_device():
    """sigma = 0, C small enough to clip: the global sum of clipped gradients is the same."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, size=16)
    settings = dict(l2_norm_clip=0.05, noise_multiplier=0.0, expected_batch_size=8, sampling="shuffle")
    mirrored = _train(STRATEGY, x, y, **settings)
    single = _train(tf.distribute.get_strategy(), x, y, **settings)
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2
    for a, b in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert private_training(mirrored).steps == 2


def case_noise_is_added_once_for_the_global_batch():
    """Zero gradients, Poisson batches over 2 replicas: the update's std is sigma C (1 + 2^-10) / B, not sqrt(2)
    times.

    40 000 coordinates: a sqrt(2) error in the std would be ~100 standard errors of the chi-square test.
    """
    sigma, clip, expected_batch, n = 1.0, 3.0, 20, 200
    with STRATEGY.scope():
        model = K.Sequential([K.Input((200,)), L.Dense(200, use_bias=False, kernel_initializer="zeros")])
        make_private(model, l2_norm_clip=clip, noise_multiplier=sigma, expected_batch_size=expected_batch, seed=3)
        model.compile(optimizer=K.optimizers.SGD(1.0), loss="mse")
    x = np.random.default_rng(1).normal(size=(n, 200)).astype("float32")
    model.fit(x, np.zeros((n, 200), "float32"), epochs=1, steps_per_epoch=1, verbose=0)
    update = -model.get_weights()[0].ravel()
    std = sigma * clip * (1 + 2**-10) / expected_batch  # 2^-10: `params.SLACK`
    chi2 = (update.size - 1) * np.var(update, ddof=1) / std**2
    assert 2 * min(stats.chi2.cdf(chi2, update.size - 1), stats.chi2.sf(chi2, update.size - 1)) > 1e-3, (
        update.std(),
        std,
    )
    private = private_training(model)
    assert private.steps == 1 and private.mechanism().batch_size == expected_batch


def case_noisy_padding_is_refused_on_two_replicas():
    """batch_size_noise_multiplier is analysed for one replica (its padding drawn once, its rows left out there):
    fit on two replicas refuses at its first step, naming the replicas, and counts no step."""
    n = 200
    x, y = np.random.default_rng(0).normal(size=(n, 6)).astype("float32"), np.zeros(n, "int64")
    with STRATEGY.scope():
        model = K.Sequential([K.Input((6,)), L.Dense(3)])
        make_private(
            model,
            l2_norm_clip=1.0,
            noise_multiplier=1.1,
            expected_batch_size=20,
            dataset_size=n,
            skip_padding=True,
            batch_size_noise_multiplier=3.0,
        )
        model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        model.fit(x, y, epochs=1, verbose=0)
    except DPConfigurationError as err:
        assert "2 replica(s)" in str(err), err
    else:
        raise AssertionError("noisy padding trained on two replicas")
    assert private_training(model).steps == 0
