"""Real parties: separate processes talking over TCP with mutual TLS 1.3.

Wire format (every message, both between parties and with clients)::

    b"PPML" | version (1 byte) | header length (4 bytes, big endian) | JSON header | array payloads

The JSON header holds public metadata only (message kind, session and step numbers, shapes, dtypes);
the payloads are little-endian uint64 share arrays or uint8 residue arrays. Anything else (wrong
magic, oversized header or payload, another dtype, a shape that does not match the bytes) is a
`MalformedMessage`: the connection is dropped and the error names the peer, never the contents.

Sessions: party 0 orders the clients' requests. For each one it tells parties 1 and 2 which request
comes next; each party checks it holds that request with the same public shape and answers ready or
refuse; party 0 then says go (all run the protocol) or abort (all tell the client why). A party that
disconnects or stays silent past the timeout during a protocol run makes the others fail with a
`TransportError` naming it; they report the failure to the client and stop serving, since their
correlated randomness and step counters can no longer be trusted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import ssl
import struct
import threading
import time
import uuid

import numpy as np

from privacy.encrypted.certificates import CLIENT_ROLE, Deployment, party_role, peer_role
from privacy.encrypted.client import Prediction, predict_with_retries, share_input
from privacy.encrypted.costs import CostReport
from privacy.encrypted.model_shares import PartyModel
from privacy.encrypted.party import Party
from privacy.encrypted.randomness import new_key
from privacy.encrypted.ring import DTYPE, FixedPoint
from privacy.encrypted.ranges import RangePlan
from privacy.encrypted.secure import OUTPUTS, OutputShare, predict_share
from privacy.encrypted.shares import NUM_PARTIES, AShare
from privacy.encrypted.transport import DEFAULT_TIMEOUT_S, Channel, Link, TransportError

log = logging.getLogger("ppml.encrypted")

MAGIC = b"PPML"
VERSION = 1
_PREFIX = struct.Struct("!4sBI")
MAX_HEADER_BYTES = 1 << 16
MAX_PAYLOAD_BYTES = 1 << 31
MAX_BATCH = 100_000
_WIRE_DTYPES = {"u8": np.dtype("<u8"), "u1": np.dtype("u1")}


def _no_delay(sock: socket.socket) -> socket.socket:
    """Small protocol messages must leave at once, not wait for Nagle's algorithm (40 ms stalls)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class MalformedMessage(TransportError):
    """A peer sent bytes that are not a well-formed ppml message."""


def _wire(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_WIRE_DTYPES["u1" if np.asarray(a).dtype == np.uint8 else "u8"])


def send_message(sock: socket.socket, meta: dict, arrays=()) -> None:
    """Writes one framed message (metadata and uint64 or uint8 arrays)."""
    arrays = [_wire(a) for a in arrays]
    header = json.dumps({"meta": meta, "shapes": [list(a.shape) for a in arrays],
                         "dtypes": ["u1" if a.dtype == np.uint8 else "u8" for a in arrays]}).encode()
    sock.sendall(b"".join([_PREFIX.pack(MAGIC, VERSION, len(header)), header] + [a.tobytes() for a in arrays]))


def _recv_exact(sock: socket.socket, count: int, who: str) -> bytearray:
    buf = bytearray(count)
    view, got = memoryview(buf), 0
    while got < count:
        try:
            n = sock.recv_into(view[got:], count - got)
        except socket.timeout:
            raise TransportError(f"{who} sent nothing for {sock.gettimeout():g} s") from None
        except (ssl.SSLError, OSError) as err:
            raise TransportError(f"connection to {who} failed: {err.__class__.__name__}") from None
        if n == 0:
            raise TransportError(f"{who} closed the connection")
        got += n
    return buf


def recv_message(sock: socket.socket, who: str) -> tuple[dict, list[np.ndarray]]:
    """Reads one framed message; raises `MalformedMessage` or `TransportError` naming `who`."""
    magic, version, header_len = _PREFIX.unpack(bytes(_recv_exact(sock, _PREFIX.size, who)))
    if magic != MAGIC or version != VERSION:
        raise MalformedMessage(f"{who} sent a message that is not ppml protocol version {VERSION}")
    if header_len > MAX_HEADER_BYTES:
        raise MalformedMessage(f"{who} sent a {header_len}-byte header (limit {MAX_HEADER_BYTES})")
    try:
        header = json.loads(bytes(_recv_exact(sock, header_len, who)).decode())
        meta, shapes = header["meta"], [tuple(int(d) for d in s) for s in header["shapes"]]
        dtypes = [_WIRE_DTYPES[d] for d in header.get("dtypes", ["u8"] * len(shapes))]
        if not isinstance(meta, dict) or any(d < 0 for s in shapes for d in s) or len(dtypes) != len(shapes):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise MalformedMessage(f"{who} sent an unreadable message header") from None
    sizes = [int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in zip(shapes, dtypes)]
    if sum(sizes) > MAX_PAYLOAD_BYTES:
        raise MalformedMessage(f"{who} announced {sum(sizes)} payload bytes (limit {MAX_PAYLOAD_BYTES})")
    payload = _recv_exact(sock, sum(sizes), who)
    arrays, start = [], 0
    for shape, size, dtype in zip(shapes, sizes, dtypes):
        arrays.append(np.frombuffer(payload, dtype=dtype, count=size // dtype.itemsize, offset=start).reshape(shape))
        start += size
    return meta, arrays


class TlsLink(Link):
    """A party-to-party link over one TLS connection; a reader thread queues incoming messages."""

    def __init__(self, sock: ssl.SSLSocket, peer: int):
        self.sock, self.peer, self.session = sock, peer, 0
        self._inbox: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name=f"link-{peer}").start()

    def _read(self):
        while True:
            try:
                self._inbox.put(recv_message(self.sock, f"party {self.peer}"))
            except TransportError as err:
                self._inbox.put(err)
                return

    def _send(self, meta, arrays=()):
        try:
            with self._send_lock:
                send_message(self.sock, meta, arrays)
        except (ssl.SSLError, OSError) as err:
            raise TransportError(f"cannot send to party {self.peer}: {err.__class__.__name__}") from None

    def _next(self, timeout, what):
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TransportError(f"party {self.peer} sent no {what} within {timeout:g} s") from None
        if isinstance(item, TransportError):
            self._inbox.put(item)  # the link stays broken
            raise item
        return item

    def send(self, step, arrays):
        self._send({"kind": "step", "session": self.session, "step": step}, arrays)

    def recv(self, step, timeout):
        meta, arrays = self._next(timeout, f"message for step {step}")
        if meta.get("kind") != "step" or meta.get("session") != self.session or meta.get("step") != step:
            raise TransportError(f"party {self.peer} sent {meta.get('kind')} message for session "
                                 f"{meta.get('session')} step {meta.get('step')}, expected session {self.session} "
                                 f"step {step}")
        return arrays

    def send_control(self, meta, arrays=()):
        self._send(dict(meta, control=True), arrays)

    def recv_control(self, timeout, what: str) -> tuple[dict, list]:
        meta, arrays = self._next(timeout, what)
        if not meta.get("control"):
            raise TransportError(f"party {self.peer} sent a protocol message while {what} was expected")
        return meta, arrays


class _ClientConnection:
    """A client's TLS connection as seen by a party: requests in, results out."""

    def __init__(self, sock: ssl.SSLSocket, address):
        self.sock, self.address = sock, address
        self._lock = threading.Lock()

    def reply(self, meta, arrays=()):
        try:
            with self._lock:
                send_message(self.sock, meta, arrays)
        except (ssl.SSLError, OSError):
            log.warning("client %s:%s left before its reply", *self.address[:2])


class PartyServer:
    """Party `index` of a deployment, serving private predictions with its model share.

    Args:
        index: 0, 1 or 2.
        deployment: addresses and credentials (from `ppml encrypted setup`).
        model: this party's `PartyModel` (from `ppml encrypted share-model`).
        timeout: seconds to wait for a peer's message (and for peers to come up, times four).
    """

    def __init__(self, index: int, deployment: Deployment, model: PartyModel, *, timeout: float = DEFAULT_TIMEOUT_S):
        if model.index != index:
            raise ValueError(f"the model share is party {model.index}'s, but this is party {index}")
        self.index, self.deployment, self.model, self.timeout = index, deployment, model, timeout
        self.links: dict[int, TlsLink] = {}
        self._peers_ready = threading.Condition()
        self._requests: dict[str, tuple] = {}
        self._requests_ready = threading.Condition()
        self._order: queue.Queue = queue.Queue()
        self._server_context = deployment.tls_context(party_role(index), server=True)
        self._client_context = deployment.tls_context(party_role(index), server=False)

    # -- connections -------------------------------------------------------------------------
    def _accept_loop(self, listener):
        while True:
            sock, address = listener.accept()
            threading.Thread(target=self._handshake, args=(sock, address), daemon=True).start()

    def _handshake(self, sock, address):
        try:
            _no_delay(sock).settimeout(self.timeout)
            tls = self._server_context.wrap_socket(sock, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError) as err:
            log.warning("party %d: TLS handshake from %s:%s failed (%s)", self.index, address[0], address[1],
                        getattr(err, "reason", None) or err.__class__.__name__)
            sock.close()
            return
        role = peer_role(tls)
        peers = {party_role(j): j for j in range(self.index + 1, NUM_PARTIES)}
        if role in peers:
            with self._peers_ready:
                self.links[peers[role]] = TlsLink(tls, peers[role])
                self._peers_ready.notify_all()
        elif role == CLIENT_ROLE:
            self._serve_client(_ClientConnection(tls, address))
        else:
            log.warning("party %d: rejected a connection from %r at %s", self.index, role, address[0])
            tls.close()

    def _connect(self, j: int, deadline: float) -> TlsLink:
        host, port = self.deployment.addresses[j]
        while True:
            try:
                sock = _no_delay(socket.create_connection((host, port), timeout=self.timeout))
                tls = self._client_context.wrap_socket(sock)
                break
            except ssl.SSLError as err:
                raise TransportError(f"TLS handshake with party {j} at {host}:{port} failed: {err.reason}") from None
            except OSError:
                if time.monotonic() > deadline:
                    raise TransportError(f"party {j} at {host}:{port} did not come up") from None
                time.sleep(0.1)
        if peer_role(tls) != party_role(j):
            raise TransportError(f"the server at {host}:{port} is {peer_role(tls)!r}, not {party_role(j)!r}")
        tls.settimeout(None)
        return TlsLink(tls, j)

    def _serve_client(self, conn: _ClientConnection):
        conn.reply({"kind": "hello", "party": self.index, **self.model.public_info()})
        while True:
            try:
                meta, arrays = recv_message(conn.sock, f"client {conn.address[0]}:{conn.address[1]}")
            except TransportError as err:
                if isinstance(err, MalformedMessage):
                    log.warning("party %d: %s; connection dropped", self.index, err)
                    conn.reply({"kind": "error", "message": str(err)})
                conn.sock.close()
                return
            request_id = str(meta.get("request_id", ""))
            if meta.get("kind") != "predict" or not request_id:
                conn.reply({"kind": "error", "message": "expected a predict request with a request_id"})
                continue
            with self._requests_ready:
                self._requests[request_id] = (conn, meta, arrays)
                self._requests_ready.notify_all()
            if self.index == 0:
                self._order.put(request_id)

    # -- sessions ----------------------------------------------------------------------------
    def _take_request(self, request_id: str, timeout: float | None):
        with self._requests_ready:
            self._requests_ready.wait_for(lambda: request_id in self._requests, timeout=timeout)
            return self._requests.pop(request_id, None)

    def _check(self, request, shape=None, output=None) -> str | None:
        """Why a request cannot run (None if it can); only public metadata is looked at."""
        if request is None:
            return f"party {self.index} did not receive the request"
        _, meta, arrays = request
        expected = tuple(self.model.architecture.input_shape)
        if len(arrays) != 2 or arrays[0].shape != arrays[1].shape or arrays[0].shape[1:] != expected:
            got = [a.shape for a in arrays]
            return f"party {self.index} got input shares of shapes {got}, expected (batch,) + {expected}"
        if not 0 < arrays[0].shape[0] <= MAX_BATCH:
            return f"batch size must be in 1..{MAX_BATCH}, got {arrays[0].shape[0]}"
        if meta.get("output") not in OUTPUTS:
            return f"output must be one of {OUTPUTS}, got {meta.get('output')!r}"
        if shape is not None and (list(arrays[0].shape) != shape or meta.get("output") != output):
            return f"party {self.index} got a request of another shape or output than party 0"
        return None

    def _run(self, session: int, request):
        conn, meta, arrays = request
        for link in self.links.values():
            link.session = session
        channel = Channel(self.links, timeout=self.timeout)
        party = Party(self.index, channel, self._keys[0], self._keys[1], session=session)
        started = time.perf_counter()
        result = predict_share(party, self.model.architecture, self.model.weights, AShare(*arrays),
                               self.model.fixed, self.model.ranges, meta["output"])
        conn.reply({"kind": "result", "request_id": meta["request_id"], "stats": channel.stats.to_dict(),
                    "combine": result.combine, "frac_bits": result.frac_bits, "rerun": result.rerun},
                   [] if result.values is None else [result.values])
        log.info("party %d: session %d done in %.1f ms (%d rounds, %d bytes sent)", self.index, session,
                 1e3 * (time.perf_counter() - started), channel.stats.rounds, channel.stats.bytes_sent)

    def _lead(self):
        session = 0
        while True:
            request_id = self._order.get()
            session += 1
            request = self._take_request(request_id, 0)
            with self._failing_session(request):
                problem = self._check(request)
                shape = list(request[2][0].shape) if problem is None else None
                output = request[1].get("output") if request else None
                for link in self.links.values():
                    link.send_control({"kind": "session", "session": session, "request_id": request_id,
                                       "shape": shape, "output": output})
                for link in self.links.values():
                    answer, _ = link.recv_control(self.timeout, "answer to a session proposal")
                    problem = problem or answer.get("problem")
                for link in self.links.values():
                    link.send_control({"kind": "go" if problem is None else "abort", "problem": problem})
                self._finish(session, request, problem)

    def _follow(self):
        leader = self.links[0]
        while True:
            proposal, _ = leader.recv_control(None, "session proposal")
            request = self._take_request(proposal["request_id"], self.timeout)
            with self._failing_session(request):
                problem = self._check(request, proposal["shape"], proposal["output"])
                leader.send_control({"kind": "answer", "problem": problem})
                decision, _ = leader.recv_control(self.timeout, "go or abort")
                self._finish(proposal["session"], request, decision.get("problem"))

    @contextlib.contextmanager
    def _failing_session(self, request):
        """Tells the client why its request failed if a peer fails; then the party stops (re-raises)."""
        try:
            yield
        except TransportError as err:
            log.error("party %d: %s; stopping", self.index, err)
            if request is not None:
                request[0].reply({"kind": "error", "request_id": request[1].get("request_id"),
                                  "message": f"party {self.index}: {err}"})
            raise

    def _finish(self, session, request, problem):
        if problem is None:
            self._run(session, request)
        elif request is not None:
            conn, meta, _ = request
            conn.reply({"kind": "error", "request_id": meta.get("request_id"), "message": problem})

    def serve(self, on_ready=None) -> None:
        """Listens, connects to the other parties, agrees pairwise keys, then serves forever.

        Args:
            on_ready: called with no arguments once keys are agreed and requests can be served.

        Raises:
            TransportError: if peers do not come up, present wrong certificates, or fail mid-protocol.
        """
        host, port = self.deployment.addresses[self.index]
        listener = socket.create_server((host, port), reuse_port=False)
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True, name="accept").start()
        deadline = time.monotonic() + 4 * self.timeout
        for j in range(self.index):
            link = self._connect(j, deadline)
            self.links[j] = link
        with self._peers_ready:
            if not self._peers_ready.wait_for(lambda: len(self.links) == NUM_PARTIES - 1,
                                              timeout=max(deadline - time.monotonic(), 0)):
                missing = sorted(set(range(NUM_PARTIES)) - set(self.links) - {self.index})
                raise TransportError(f"parties {missing} did not connect to party {self.index}")
        prev, nxt = (self.index - 1) % NUM_PARTIES, (self.index + 1) % NUM_PARTIES
        own_key = new_key()  # k_i, shared with the predecessor
        self.links[prev].send_control({"kind": "key"}, [np.frombuffer(own_key, dtype=DTYPE)])
        _, (next_key,) = self.links[nxt].recv_control(self.timeout, "key")
        self._keys = (own_key, next_key.tobytes())
        log.info("party %d: ready on %s:%d, pid %d", self.index, host, port, os.getpid())
        if on_ready:
            on_ready()
        self._lead() if self.index == 0 else self._follow()


class RemoteClient:
    """The client of a deployment: shares inputs to the three parties and reconstructs outputs.

    Args:
        deployment: addresses and the client's credentials.
        timeout: seconds to wait for a party.
    """

    def __init__(self, deployment: Deployment, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.deployment, self.timeout = deployment, timeout
        self._context = deployment.tls_context(CLIENT_ROLE, server=False)
        self._socks: list | None = None
        self.info: dict | None = None
        self.last_cost: CostReport | None = None

    def connect(self) -> dict:
        """Opens the three TLS connections and checks that the parties serve one model; returns its info."""
        socks, infos = [], []
        for i, (host, port) in enumerate(self.deployment.addresses):
            try:
                sock = _no_delay(socket.create_connection((host, port), timeout=self.timeout))
                tls = self._context.wrap_socket(sock)
            except ssl.SSLError as err:
                raise TransportError(f"TLS handshake with party {i} at {host}:{port} failed: {err.reason}") from None
            except OSError as err:
                raise TransportError(f"cannot reach party {i} at {host}:{port}: {err.strerror or err}") from None
            if peer_role(tls) != party_role(i):
                raise TransportError(f"the server at {host}:{port} is {peer_role(tls)!r}, not {party_role(i)!r}")
            socks.append(tls)
            meta, _ = recv_message(tls, f"party {i}")
            infos.append({k: v for k, v in meta.items() if k not in ("kind", "party")})
        if any(info != infos[0] for info in infos):
            raise TransportError("the three parties serve different model shares (model ids differ); "
                                 "re-run `ppml encrypted share-model` and restart them")
        self._socks, self.info = socks, infos[0]
        return self.info

    def close(self) -> None:
        for sock in self._socks or []:
            sock.close()
        self._socks = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def predict(self, x, *, output: str = "logits", retries: int = 2) -> Prediction:
        """Private prediction of a batch (see `InProcessCluster.predict`)."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if self._socks is None:
            self.connect()
        fixed = FixedPoint(self.info["frac_bits"])
        ranges = RangePlan.from_dict(self.info["ranges"], tuple(self.info["input_shape"]))

        def run():
            shares = share_input(x, tuple(self.info["input_shape"]), fixed, ranges)
            request_id = uuid.uuid4().hex
            for sock, (a, b) in zip(self._socks, shares):
                send_message(sock, {"kind": "predict", "request_id": request_id, "output": output}, [a, b])
            replies = []
            for i, sock in enumerate(self._socks):
                try:
                    meta, arrays = recv_message(sock, f"party {i}")
                except TransportError:
                    self.close()
                    raise
                if meta.get("kind") == "error":  # fail fast: the other parties' answers cannot help
                    self.close()
                    raise TransportError(meta.get("message", f"party {i} reported an unknown error"))
                replies.append((meta, arrays))
            client_bytes = sum(a.nbytes + b.nbytes for a, b in shares) + sum(
                a.nbytes for _, arrays in replies for a in arrays)
            self.last_cost = CostReport.from_parties([meta["stats"] for meta, _ in replies], client_bytes)
            return [OutputShare(arrays[0] if arrays else None, meta["combine"], int(meta["frac_bits"]),
                                bool(meta["rerun"])) for meta, arrays in replies]

        return predict_with_retries(run, retries=retries, output=output,
                                    output_activation=self.info["output_activation"], ranges=ranges)
