"""Small models and digits clients shared by the federated tests."""

import keras
import numpy as np
import pytest

from federated.data import load_digits_clients
from federated.partitioners import DirichletPartitioner, IidPartitioner


def linear_model():
    """64 -> 10 softmax regression with seeded initial weights."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])


def mlp_model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])


@pytest.fixture(scope="session")
def digits_iid():
    return load_digits_clients(IidPartitioner(num_clients=20, seed=0))


@pytest.fixture(scope="session")
def digits_dirichlet():
    return load_digits_clients(DirichletPartitioner(num_clients=40, alpha=0.5, seed=0))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


_CALIBRATIONS: dict = {}
"""calibrate_noise_multiplier's results by its arguments, kept while one module's tests run (`memoized_calibration`)."""


@pytest.fixture(scope="module")
def memoized_calibration():
    """The federated trainer's plan calibrates z through one cache per module: a pure function of its arguments
    (dp-accounting's Brent search over the event family), so an identical call returns the value the first one
    computed; any other call computes, and an error is raised each time. A sampling-without-replacement RDP
    calibration costs seconds of CPU, and the command-line tests' runs repeat identical ones. The key is the
    arguments alone: a test in a module using this fixture must not patch what calibration reads (its constants,
    the accountants, PLD's discretisation), or must call the unmemoized `calibrate_noise_multiplier` itself. The
    cache is cleared when the module's tests end."""
    from pipelines.components.federated_trainer import spec

    calibrate = spec.calibrate_noise_multiplier

    def memoized(mechanism, **settings):
        key = (mechanism, *sorted((k, tuple(v) if k == "prior_events" else v) for k, v in settings.items()))
        if key not in _CALIBRATIONS:
            _CALIBRATIONS[key] = calibrate(mechanism, **settings)
        return _CALIBRATIONS[key]

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(spec, "calibrate_noise_multiplier", memoized)
            yield
    finally:
        _CALIBRATIONS.clear()
