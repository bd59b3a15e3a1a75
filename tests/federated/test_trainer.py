"""Local training: one trace for all clients, the executions agree, FedAvg/FedSGD/FedProx against
centralised Keras SGD, and what the numpy execution refuses."""

import keras
import numpy as np
import pytest

from federated.client import ClientConfig, ClientTrainer
from federated.weights import flatten

from .conftest import linear_model, mlp_model


def _clients(rng, sizes, dim=64):
    return [
        (i, rng.random((n, dim)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32))
        for i, n in enumerate(sizes)
    ]


def _model_with(layer):
    def build():
        keras.utils.set_random_seed(2)
        return keras.Sequential([keras.Input((64,)), layer(), keras.layers.Dense(10)])

    return build


def test_traced_once_per_shape_bucket_not_per_client(rng):
    trainer = ClientTrainer(mlp_model, jit_compile=False)  # the same graphs, without XLA's compile time
    weights = trainer.initial_weights()
    clients = _clients(rng, [33, 40, 57, 64])  # one size bucket (64)
    seeds = rng.integers(0, 2**31 - 1, (4, 2)).astype(np.int32)
    for lr, mu in ((0.1, 0.2), (0.5, 0.3)):  # learning rate and mu are graph inputs
        trainer.train(
            weights, clients, ClientConfig(local_epochs=1, batch_size=10, learning_rate=lr, proximal_mu=mu), seeds
        )
        trainer.train(
            weights,
            clients[1:],
            ClientConfig(local_epochs=1, batch_size=10, learning_rate=lr, proximal_mu=mu),
            seeds[1:],
        )
    assert trainer.tracing_count() == 1
    trainer.train(weights, clients, ClientConfig(local_epochs=2, batch_size=None), seeds)  # a new (E, B): one more
    trainer.train(weights, _clients(rng, [3, 7]), ClientConfig(local_epochs=2, batch_size=None), seeds[:2])  # bucket 8
    assert trainer.tracing_count() == 3


def _deep_model():
    """Flatten, three hidden activations (one layer without bias), logits: all the numpy execution covers."""
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(12, activation="tanh", use_bias=False),
            keras.layers.Dense(9, activation="sigmoid"),
            keras.layers.Dense(10),
        ]
    )


@pytest.mark.parametrize(
    "execution,model_fn,batch_size",
    [("vectorized", mlp_model, 10), ("numpy", mlp_model, 10), ("numpy", _deep_model, 10), ("numpy", _deep_model, None)],
)
def test_executions_match_sequential(rng, execution, model_fn, batch_size):
    sequential, other = ClientTrainer(model_fn), ClientTrainer(model_fn, execution=execution)
    clients = [
        (i, x.reshape((-1,) + sequential.model.inputs[0].shape[1:]), y) for i, x, y in _clients(rng, [30, 17, 45, 8, 3])
    ]
    seeds = rng.integers(0, 2**31 - 1, (5, 2)).astype(np.int32)
    config = ClientConfig(local_epochs=2, batch_size=batch_size, learning_rate=0.1, proximal_mu=0.1)
    weights = sequential.initial_weights()
    for a, b in zip(
        sequential.train(weights, clients, config, seeds), other.train(weights, clients, config, seeds), strict=True
    ):
        assert a.position == b.position and a.num_examples == b.num_examples
        assert np.max(np.abs(a.delta)) > 1e-3  # the clients did train
        np.testing.assert_allclose(a.delta, b.delta, atol=2e-7 * 10, rtol=0)  # float32 rounding only
        assert a.loss == pytest.approx(b.loss, rel=1e-5)


def _functional_skip():
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Add()([inputs, hidden])))


def _dense_used_twice():
    inputs = keras.Input((64,))
    shared = keras.layers.Dense(64, activation="relu")
    return keras.Model(inputs, keras.layers.Dense(10)(shared(shared(inputs))))


def _frozen():
    model = linear_model()
    model.layers[-1].trainable = False
    return model


@pytest.mark.parametrize(
    "model_fn,loss,message",
    [
        (
            _model_with(lambda: keras.layers.Dropout(0.5)),
            None,
            r"covers Dense and Flatten layers, not dropout.*Dropout",
        ),
        (
            lambda: keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")]),
            None,
            "activation 'softmax'",
        ),
        (
            lambda: keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="relu")]),
            None,
            "end in a Dense layer with linear activation",
        ),
        (
            lambda: keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="gelu")]),
            None,
            "layer dense.* has activation 'gelu'",
        ),
        (
            lambda: keras.Sequential([keras.Input((8, 8)), keras.layers.Dense(10)]),
            None,
            r"sees inputs of shape \(8, 8\).*add a Flatten layer",
        ),
        (_functional_skip, None, "not add"),
        (_dense_used_twice, None, "forward pass is not the chain of its Dense layers"),
        (_frozen, None, "frozen"),
        (linear_model, keras.losses.SparseCategoricalCrossentropy(), r"from_logits=True\) only"),
        (linear_model, "MeanSquaredError", "not MeanSquaredError"),
    ],
)
def test_numpy_execution_refuses_what_it_does_not_cover(model_fn, loss, message):
    with pytest.raises(ValueError, match=message + ".*use execution 'sequential' or 'vectorized'"):
        ClientTrainer(model_fn, loss=loss, execution="numpy")


def _keras_sgd(x, y, lr, steps):
    """Centralised full-batch SGD with Keras's own optimizer and loss."""
    model = linear_model()
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(y), epochs=steps, shuffle=False, verbose=0)
    return flatten([v.numpy() for v in model.trainable_variables])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_client_full_batch_fedavg_step_is_centralised_sgd(rng, jit_compile):
    ((_, x, y),) = _clients(rng, [50])
    trainer = ClientTrainer(linear_model, jit_compile=jit_compile)
    w0 = trainer.initial_weights()
    (update,) = trainer.train(
        w0, [(0, x, y)], ClientConfig(local_epochs=1, batch_size=None, learning_rate=0.3), np.zeros((1, 2), np.int32)
    )
    # Up to float32 rounding of differently ordered (but identical) operations.
    np.testing.assert_allclose(flatten(w0) + update.delta, _keras_sgd(x, y, 0.3, 1), rtol=1e-5, atol=1e-6)


def test_fedsgd_average_is_large_batch_sgd(rng):
    clients = _clients(rng, [10, 25, 40])
    trainer = ClientTrainer(linear_model, jit_compile=False)
    w0 = trainer.initial_weights()
    updates = trainer.train(
        w0, clients, ClientConfig(local_epochs=1, batch_size=None, learning_rate=0.2), np.zeros((3, 2), np.int32)
    )
    weighted = sum(u.num_examples * u.delta for u in updates) / sum(u.num_examples for u in updates)
    x = np.concatenate([c[1] for c in clients])
    y = np.concatenate([c[2] for c in clients])
    np.testing.assert_allclose(flatten(w0) + weighted, _keras_sgd(x, y, 0.2, 1), rtol=1e-5, atol=1e-6)


def test_fedprox_adds_the_proximal_gradient(rng):
    # Full batch, lr a: w1 = w0 - a g(w0) in both; FedProx's second step adds -a mu (w1 - w0).
    ((_, x, y),) = _clients(rng, [30])
    trainer = ClientTrainer(linear_model, jit_compile=False)
    w0 = trainer.initial_weights()
    seeds = np.zeros((1, 2), np.int32)
    lr, mu = 0.4, 0.7

    def delta(epochs, proximal_mu):
        config = ClientConfig(local_epochs=epochs, batch_size=None, learning_rate=lr, proximal_mu=proximal_mu)
        return trainer.train(w0, [(0, x, y)], config, seeds)[0].delta

    np.testing.assert_allclose(delta(1, mu), delta(1, 0.0), atol=1e-7)
    np.testing.assert_allclose(delta(2, mu), delta(2, 0.0) - lr * mu * delta(1, 0.0), atol=1e-6)


def test_evaluate_and_bad_models():
    trainer = ClientTrainer(linear_model)
    x = np.eye(64, dtype=np.float32)[:20]
    y = np.arange(20) % 10
    logits = x @ trainer.initial_weights()[0] + trainer.initial_weights()[1]
    result = trainer.evaluate(trainer.initial_weights(), x, y)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    expected_loss = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(20), y])
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    with pytest.raises(ValueError, match="built model"):
        ClientTrainer(lambda: keras.Sequential([keras.layers.Dense(3)]))
    with pytest.raises(ValueError, match="execution must be one of"):
        ClientTrainer(linear_model, execution="parallel")
    with pytest.raises(ValueError, match="loss must be a keras.losses.Loss instance or a Loss class name"):
        ClientTrainer(linear_model, loss="mse")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1 \\(or None for the full batch\\)"):
        ClientConfig(batch_size=0)


class _Counter(keras.layers.Layer):
    """Counts the examples it trains on in an integer non-trainable variable (a count of a client's records)."""

    def build(self, shape):
        self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", dtype="int64", trainable=False)

    def call(self, x, training=None):
        if training:
            self.seen.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "int64"))
        return x


def test_non_trainable_state_constants_train_and_updated_statistics_are_refused(rng):
    with pytest.raises(ValueError, match=r"training updates the model's non-trainable weights \[.*moving_mean.*\]"):
        ClientTrainer(_model_with(keras.layers.BatchNormalization))
    with pytest.raises(ValueError, match=r"training updates the model's non-trainable weights \['\S*counter/seen'\]"):
        ClientTrainer(_model_with(lambda: _Counter(name="counter")))
    with pytest.raises(ValueError, match="vectorized execution cannot carry per-client random state"):
        ClientTrainer(_model_with(lambda: keras.layers.Dropout(0.5)), execution="vectorized")
    clients = _clients(rng, [30, 20])
    seeds = np.zeros((2, 2), np.int32)
    for layer in (lambda: keras.layers.Normalization(mean=0.5, variance=0.1), lambda: keras.layers.Dropout(0.5)):
        trainer = ClientTrainer(_model_with(layer), jit_compile=False)
        updates = trainer.train(trainer.initial_weights(), clients, ClientConfig(batch_size=10), seeds)
        assert all(u.finite and np.any(u.delta != 0) for u in updates)
