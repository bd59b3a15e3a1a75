"""Exact parity with TensorFlow Federated's FedAvg rounds: a numpy reference written here, in TFF's terms.

TFF (`tff.learning.algorithms.build_weighted_fed_avg`) trains each client on ``dataset.batch(B).repeat(E)``
(a fixed order; each epoch's last batch partial), averages the model deltas weighted by example counts,
and applies the server optimizer to the pseudo-gradient -delta; its per-round train loss is
example-weighted over all batches, each batch's loss taken with the weights before its step. With
``ClientConfig(shuffle=False)`` and `FedAdam(bias_correction=True)` ppml computes the same rounds.
"""

import numpy as np
import pytest

from federated import ClientConfig, ClientData, FedAdam, FedAvg, FedAvgM, FederatedSimulation, UniformSampler
from federated.models import DenseModel
from federated.partitioners import Partition

SIZES = (7, 12, 20, 5, 16, 9)  # unequal clients: partial last batches of B = 4
E, B, LR, ROUNDS, D, K = 2, 4, 0.1, 4, 5, 3


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _local_training(w, b, x, y):
    """E epochs of minibatch SGD over the client's examples in order; (w, b, loss sum, examples seen)."""
    w, b, loss_sum, seen = w.copy(), b.copy(), 0.0, 0
    for _ in range(E):
        for start in range(0, len(y), B):
            xb, yb = x[start : start + B], y[start : start + B]
            p = _softmax(xb @ w + b)
            loss_sum += -np.log(p[np.arange(len(yb)), yb]).sum()
            seen += len(yb)
            grad = (p - np.eye(K)[yb]) / len(yb)
            w, b = w - LR * xb.T @ grad, b - LR * grad.sum(axis=0)
    return w, b, loss_sum, seen


def _server(name):
    """TFF's server optimizers on the pseudo-gradient g = -delta (learning rates as in the strategies)."""
    state = {"t": 0, "v": 0.0, "m": 0.0, "s": 0.0}

    def step(weights, delta):
        g = -delta
        if name == "fedavg":  # build_sgdm(1.0)
            return weights - 1.0 * g
        if name == "fedavgm":  # build_sgdm(0.5, momentum=0.9): accumulator = 0.9 a + g
            state["v"] = 0.9 * state["v"] + g
            return weights - 0.5 * state["v"]
        state["t"] += 1  # build_adam(0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
        state["m"] = state["m"] + (g - state["m"]) * (1 - 0.9)
        state["s"] = state["s"] + (g**2 - state["s"]) * (1 - 0.999)
        lr = 0.05 * np.sqrt(1 - 0.999 ** state["t"]) / (1 - 0.9 ** state["t"])
        return weights - lr * state["m"] / (np.sqrt(state["s"]) + 1e-7)

    return step


def _strategy(name, client):
    if name == "fedavg":
        return FedAvg(client)
    if name == "fedavgm":
        return FedAvgM(client, server_learning_rate=0.5, server_momentum=0.9)
    return FedAdam(
        client,
        server_learning_rate=0.05,
        beta_1=0.9,
        beta_2=0.999,
        tau=1e-7,
        initial_accumulator=0.0,
        bias_correction=True,
    )


@pytest.mark.parametrize("name", ["fedavg", "fedavgm", "fedadam"])
def test_fedavg_family_matches_tffs_rounds_to_1e6(name):
    rng = np.random.default_rng(7)
    n = sum(SIZES)
    x, y = rng.normal(size=(n, D)).astype(np.float32), rng.integers(0, K, n)
    bounds = np.cumsum((0,) + SIZES)
    partition = Partition(
        [f"c{i}" for i in range(len(SIZES))],
        [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)],
    )
    data = ClientData(x, y, partition)
    client = ClientConfig(local_epochs=E, batch_size=B, learning_rate=LR, shuffle=False)
    sim = FederatedSimulation(
        DenseModel(D, K, seed=3), data, _strategy(name, client), rounds=ROUNDS, sampler=UniformSampler(1.0), seed=0
    )
    per_round = []
    sim.run(lambda record: per_round.append(([w.copy() for w in sim.state.weights], record.train_loss)) and None)

    server = _server(name)
    w, b = (a.astype(np.float64) for a in DenseModel(D, K, seed=3)().get_weights())
    flat = np.concatenate([w.ravel(), b])
    for weights, train_loss in per_round:
        deltas, counts, loss_sum, seen = [], [], 0.0, 0
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            w_k, b_k, client_loss, client_seen = _local_training(w, b, x[lo:hi].astype(np.float64), y[lo:hi])
            deltas.append(np.concatenate([(w_k - w).ravel(), b_k - b]))
            counts.append(hi - lo)
            loss_sum, seen = loss_sum + client_loss, seen + client_seen
        mean_delta = np.average(deltas, axis=0, weights=counts)
        flat = server(flat, mean_delta)
        w, b = flat[: D * K].reshape(D, K), flat[D * K :]
        ours = np.concatenate([a.ravel() for a in weights]).astype(np.float64)
        assert np.max(np.abs(ours - flat)) < 1e-6
        assert train_loss == pytest.approx(loss_sum / seen, abs=1e-6)
