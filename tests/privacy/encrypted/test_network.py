"""Three real party processes on 127.0.0.1 with mutual TLS: correctness, costs and faults."""

import os
import signal
import socket
import ssl
import time

import numpy as np
import pytest

from privacy.encrypted import InputBounds, TransportError, import_keras_model
from privacy.encrypted.certificates import create_deployment
from privacy.encrypted.network import RemoteClient, recv_message, send_message
from privacy.encrypted.plan import Activation, Architecture, Dense, ModelPlan
from privacy.encrypted.processes import loopback_parties
from privacy.encrypted.shares import share


@pytest.mark.parametrize("fixture", ["tabular", "digits_mlp", "digits_cnn"])
def test_three_processes_agree_with_keras(request, fixture):
    model, x = request.getfixturevalue(fixture)
    plan = import_keras_model(model)
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    bounds = InputBounds.from_data(x, plan.architecture.input_shape)
    with loopback_parties(plan, bounds, timeout=20) as deployment, RemoteClient(deployment, timeout=20) as client:
        got = client.predict(x)
        labels = client.predict(x[:7], output="label").labels
        cost = client.last_cost
    want = (expected[:, 0] > 0.5) if expected.shape[1] == 1 else expected.argmax(1)
    assert np.array_equal(got.labels, want) and np.array_equal(labels, want[:7])
    assert np.abs(got.outputs - expected).max() <= 1e-3
    assert cost.rounds > 0 and cost.bytes > 0 and "label" in cost.layers


def tiny_plan():
    rng = np.random.default_rng(3)
    arch = Architecture((4,), (Dense("d", 3), Activation("d.relu", "relu"), Dense("out", 2)))
    return ModelPlan(arch, {"d": (rng.normal(size=(4, 3)), rng.normal(size=3)),
                            "out": (rng.normal(size=(3, 2)), rng.normal(size=2))})


TINY_BOUNDS = InputBounds.declared(-4.0, 4.0, (4,))


def raw_client(deployment, index):
    host, port = deployment.addresses[index]
    context = deployment.tls_context("client", server=False)
    sock = context.wrap_socket(socket.create_connection((host, port), timeout=10))
    hello, _ = recv_message(sock, "party")
    return sock, hello


def test_faulty_clients_get_clear_errors_and_the_parties_keep_serving(tmp_path):
    x = np.array([[0.123456789, -1.5, 2.25, 0.5]])
    with loopback_parties(tiny_plan(), TINY_BOUNDS, timeout=5, directory=str(tmp_path / "dep")) as deployment:
        # A certificate from another CA is refused during the handshake.
        other = create_deployment(str(tmp_path / "other"), list(deployment.addresses))
        with pytest.raises(TransportError, match="TLS handshake with party 0 .* failed"):
            RemoteClient(other, timeout=5).connect()
        # Garbage instead of a ppml message: an error naming the problem, then the connection is dropped.
        sock, _ = raw_client(deployment, 1)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(64))
        reply, _ = recv_message(sock, "party 1")
        assert reply["kind"] == "error" and "not ppml protocol" in reply["message"]
        # Wrong input shape sent straight to the parties (the client library would refuse it first).
        socks = [raw_client(deployment, i)[0] for i in range(3)]
        for sock, (a, b) in zip(socks, share(np.zeros((2, 5), dtype=np.uint64))):
            send_message(sock, {"kind": "predict", "request_id": "r1", "output": "logits"}, [a, b])
        replies = [recv_message(sock, "party")[0] for sock in socks]
        assert all(r["kind"] == "error" and "expected (batch,) + (4,)" in r["message"] for r in replies)
        with RemoteClient(deployment, timeout=5) as client:
            with pytest.raises(ValueError, match=r"input has shape \(1, 3\)"):
                client.predict(np.zeros((1, 3)))
            ok = client.predict(x)
        reference = np.maximum(x @ tiny_plan().weights["d"][0] + tiny_plan().weights["d"][1], 0)
        reference = reference @ tiny_plan().weights["out"][0] + tiny_plan().weights["out"][1]
        assert np.abs(ok.logits - reference).max() < 1e-3
    logs = "".join(open(tmp_path / "dep" / f"party-{i}.log").read() for i in range(3))
    assert "session 2 done" in logs and "TLS handshake from" in logs and "123456" not in logs


@pytest.mark.parametrize("fault", ["killed", "stalled"])
def test_a_party_that_dies_or_stalls_gives_an_error_not_a_hang(tmp_path, fault):
    with loopback_parties(tiny_plan(), TINY_BOUNDS, timeout=3, directory=str(tmp_path)) as deployment:
        with RemoteClient(deployment, timeout=8) as client:
            client.predict(np.zeros((1, 4)))
            pid = int([line for line in open(tmp_path / "party-2.log") if "pid" in line][0].split()[-1])
            os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
            try:
                start = time.monotonic()
                with pytest.raises(TransportError, match="party 2") as err:
                    client.predict(np.array([[0.123456789, 1, 2, 3]]))
                assert time.monotonic() - start < 12
                assert "123456" not in str(err.value)
            finally:
                if fault == "stalled":
                    os.kill(pid, signal.SIGCONT)
