"""Party links and the accept loop in isolation: no deadlock when two parties send large messages to each
other at once, and an accept loop that survives a failure to start a connection's thread."""

import socket
import threading
import time

import numpy as np
import pytest

from privacy.encrypted.network.certificates import create_deployment, party_role


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    return create_deployment(
        str(tmp_path_factory.mktemp("links")), [("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)]
    )


def tls_pair(deployment):
    """Two ends of one mutually authenticated TLS connection over loopback (party 0 serves, party 1 connects)."""
    server = deployment.tls_context(party_role(0), server=True)
    client = deployment.tls_context(party_role(1), server=False)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted = {}
        thread = threading.Thread(
            target=lambda: accepted.setdefault("sock", server.wrap_socket(listener.accept()[0], server_side=True))
        )
        thread.start()
        connecting = client.wrap_socket(socket.create_connection(listener.getsockname()))
        thread.join(timeout=10)
    return accepted["sock"], connecting


def test_two_parties_sending_large_messages_to_each_other_do_not_deadlock(deployment):
    """Both ends send 32 MiB at once (as the pair does in a truncation round), then read. A sender that
    waited for buffer space while holding the connection's lock kept its own reader from draining the
    peer's message: both sends stalled until `send_timeout` (reproduced with 6 MiB and more)."""
    from privacy.encrypted.network.server import TlsLink

    ends = tls_pair(deployment)
    links = [TlsLink(ends[0], 1, send_timeout=20.0), TlsLink(ends[1], 0, send_timeout=20.0)]
    message = np.arange(4 << 20, dtype=np.uint64)  # 32 MiB
    results, errors = {}, {}
    together = threading.Barrier(2)

    def side(k):
        try:
            together.wait()
            links[k].send(7, [message])
            results[k] = links[k].recv(7, 30.0)
        except Exception as err:  # reported below
            errors[k] = err

    start = time.monotonic()
    threads = [threading.Thread(target=side, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert all(np.array_equal(results[k][0], message) for k in range(2))
    assert time.monotonic() - start < 20
    for link in links:
        link.close()
