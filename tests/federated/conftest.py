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
