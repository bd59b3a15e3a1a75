"""Fixtures for the encrypted-inference tests: run party code on shares and open the results."""

import numpy as np
import pytest

from privacy.encrypted.in_process import LocalParties
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.protocol.arithmetic import Pending, open_terms
from privacy.encrypted.protocol.comparison import Bit, open_bit
from privacy.encrypted.protocol.randomness import Prf
from privacy.encrypted.protocol.shares import AShare, Terms, reconstruct, share

FIXED = FixedPoint(16)
TEST_KEYS = [bytes([i + 1]) * 16 for i in range(3)]


def open_value(party, out):
    """This party's share of a protocol value for reconstruction: ('add' | 'xor', array)."""
    if isinstance(out, Bit):
        return "xor", open_bit(party, out)
    if isinstance(out, Pending):
        out = out.value()
    return "add", open_terms(party, out if isinstance(out, Terms) else Terms.of_share(out))


class Runner:
    """Runs ``fn(party, *shares)`` on three in-process parties; reconstructs what it returns.

    Keys and the data owner's randomness are fixed, so every run is reproducible. After a run,
    `flagged` holds the examples some party flagged for a re-run (bool per example, or None) and
    `rerun` whether there was any.
    """

    def __init__(self):
        self.parties = LocalParties(keys=TEST_KEYS, timeout=20)
        self.owner = Prf(bytes(16))
        self.last_parties = None

    def __call__(self, fn, *secrets):
        shared = [share(np.asarray(s, dtype=np.uint64), self.owner) for s in secrets]

        def body(party, index):
            outs = fn(party, *[AShare(*s[index]) for s in shared])
            outs = outs if isinstance(outs, tuple) else (outs,)
            return [open_value(party, out) for out in outs], party.rerun

        results, self.last_parties = self.parties.run(body, [0, 1, 2])
        values = []
        for k, (kind, _) in enumerate(results[0][0]):
            comps = [results[i][0][k][1] for i in range(3)]
            values.append(comps[0] ^ comps[1] ^ comps[2] if kind == "xor" else reconstruct(comps))
        flags = [r[1] for r in results if r[1] is not None]
        self.flagged = np.any(flags, axis=0) if flags else None
        self.rerun = bool(flags) and bool(self.flagged.any())
        return values[0] if len(values) == 1 else values


@pytest.fixture
def run_parties():
    return Runner()


@pytest.fixture
def fixed():
    return FIXED


# Small Keras models trained once per test session (seeded): (model, evaluation inputs).
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def _train(model, x, y, loss, epochs):
    import keras

    keras.utils.set_random_seed(1)
    model.compile(keras.optimizers.Adam(0.01), loss)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def tabular():
    import keras
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((30,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    return _train(model, x, y, "binary_crossentropy", 20), x[:120]


@pytest.fixture(scope="session")
def digits_mlp():
    import keras

    x, y = digits()
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(16, name="narrow"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(name="act"),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    return _train(model, x, y, "sparse_categorical_crossentropy", 6), x[:150]


@pytest.fixture(scope="session")
def digits_cnn():
    import keras

    x, y = digits()
    x = x.reshape(-1, 8, 8, 1)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(8, 3)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, outputs)
    return _train(model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True), 4), x[:60]


@pytest.fixture
def train():
    """`train(model, x, y, loss, epochs)`: seeded Adam training."""
    return _train
