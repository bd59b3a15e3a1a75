"""A party as a process: serving private predictions over TCP with mutual TLS 1.3 (messages: `wire`).

No client behaviour may stop a server, so `PartyServer` bounds everything a client can make it hold:

* Connections: at most `max_connections` client or not yet authenticated connections at once; a new
  one beyond that evicts the not yet authenticated connection open the longest, or, if all are
  authenticated clients, the one idle the longest. A TLS handshake must finish within
  `HANDSHAKE_TIMEOUT_S`; a client that sends nothing for `idle_timeout` seconds is disconnected, and a
  message must arrive completely within `timeout` seconds of its first byte. The accept loop survives
  every error (out of file descriptors or threads included) and keeps accepting.
* Memory: a request's cost (its input shares and the session's working memory, `memory.request_bytes`)
  is reserved from `memory_budget` when its header arrives, before a byte of the payload is read, and
  released when its reply has been sent or it expired. One client (certificate) may hold at most
  `client_quota` of it at once, so no client can take the whole budget; the largest batch follows
  from the quota and is announced to clients. Every malformed or refused message gets an error reply,
  then the connection is closed.
* Sessions: party 0 orders the requests. A request is known by its client's certificate serial and
  the id the client chose, so one client cannot name, answer for or join another client's request.
  Parties 1 and 2 announce each request they receive to party 0 (an out-of-band control message,
  `NOTICE`); party 0 proposes a request that all three hold (clients take turns, below), the others
  answer ready or refuse, and party 0 says go (all run the protocol) or abort (all tell the client
  why). A request that reached only some parties never holds the queue: it expires after
  `request_wait` seconds with an error reply, while complete requests are served. A follower that no
  longer holds a proposed request (it expired there first) refuses it at once: it announced the
  request, so waiting cannot bring it.
* Faults among the parties: a party that disconnects or stalls past `timeout` mid-protocol makes the
  others abort the session (the client gets the error), drop all links and connect again with fresh
  keys; a killed party rejoins when it is restarted. Weight shares are re-randomized (fresh pairwise
  keys, then a fresh replicated sharing: two rounds) every time the parties connect and every
  `refresh_every` sessions, so one party's share and keys from before a refresh and another party's share
  from after it reveal nothing (`PartyModel.refreshed`); each (re)connection starts from the bundles on
  disk, which keep the owner's sharing until `processes.reshare_model_shares` renews them.
* Clients authenticate with their own certificate; revoked ones (`certificates.revoke_client`) are
  refused at the handshake, and their open connections are closed within a fraction of a second of
  the change to ``revoked.json``.
* Sessions run one at a time, and clients take turns (`_next_ready`): a client's request waits for at
  most one session of each other client that has requests ready, not for everything they queued; each
  client's requests run in the order all three parties came to hold them (party 0 files complete
  requests per client, so a pick does not scan the queue, and remembers one number per client
  certificate served). Not bounded: a session's running time grows with its batch (up to the largest batch), and
  a few clients together can hold the memory budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import queue
import re
import socket
import ssl
import threading
import time

import numpy as np

from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.network.certificates import CLIENT_PREFIX, Deployment, party_role, peer_role, peer_serial
from privacy.encrypted.network.memory import MemoryBudget, keep_freed_memory, largest_batch, request_bytes
from privacy.encrypted.network.wire import (
    MalformedMessage,
    MessageRefused,
    TlsStream,
    no_delay,
    recv_message,
    send_message,
)
from privacy.encrypted.protocol.backend import OUTPUTS, predict_share
from privacy.encrypted.protocol.model_shares import PartyModel
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.randomness import new_key
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare
from privacy.encrypted.protocol.transport import DEFAULT_TIMEOUT_S, Channel, Link, TransportError

log = logging.getLogger("ppml.encrypted")

HANDSHAKE_TIMEOUT_S = 10.0
DEFAULT_MEMORY_BUDGET = 1 << 30
CLIENT_SHARE = 4
"""The default per-client quota is the memory budget divided by this."""
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 120.0
_REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_FOLLOWERS = frozenset(range(1, NUM_PARTIES))
NOTICE = "have"
"""A follower's out-of-band control message to party 0: it holds request `request_id` of client `client`."""


class TlsLink(Link):
    """A party-to-party link over one TLS connection; a reader thread queues incoming messages and owns
    the connection (others only shut it down, see `_Connection`)."""

    def __init__(
        self, sock: ssl.SSLSocket, peer: int, on_broken=None, *, send_timeout: float | None = None, on_notice=None
    ):
        self.sock, self.peer, self.session = TlsStream(sock, None, send_timeout), peer, 0
        self.broken = False
        self._inbox: queue.Queue = queue.Queue()
        self._on_broken, self._on_notice = on_broken, on_notice
        threading.Thread(target=self._read, daemon=True, name=f"link-{peer}").start()

    def _read(self):
        while True:
            try:
                meta, arrays = recv_message(self.sock, f"party {self.peer}")
                if meta.get("control") and meta.get("kind") == NOTICE and self._on_notice:
                    self._on_notice(self.peer, meta)  # out of band: not part of the protocol's sequence
                else:
                    self._inbox.put((meta, arrays))
            except TransportError as err:
                self.broken = True
                self._inbox.put(err)
                if self._on_broken:
                    self._on_broken(self)
                return

    def close(self) -> None:
        self.broken = True
        self.sock.close()

    def _send(self, meta, arrays=()):
        try:
            send_message(self.sock, meta, arrays)  # one sendall: TlsStream lets one writer at a time through
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
            raise TransportError(
                f"party {self.peer} sent {meta.get('kind')} message for session "
                f"{meta.get('session')} step {meta.get('step')}, expected session {self.session} "
                f"step {step}"
            )
        return arrays

    def send_control(self, meta, arrays=()):
        self._send(dict(meta, control=True), arrays)

    def recv_control(self, timeout, what: str) -> tuple[dict, list]:
        meta, arrays = self._next(timeout, what)
        if not meta.get("control"):
            raise TransportError(f"party {self.peer} sent a protocol message while {what} was expected")
        return meta, arrays


class _Connection:
    """An accepted connection (client, or not yet authenticated) as seen by a party.

    After the handshake its TLS connection is a `TlsStream`: the handler thread reads requests, and
    replies go through an outbox to a writer thread, so that a client that does not read its replies
    delays only its own connection, never a session. Other threads only ever shut the connection down
    (`shutdown`); the thread that owns the descriptor (the writer, or the handler before there is one)
    closes it, so a descriptor number is never reused while a thread still waits on it.
    """

    def __init__(self, sock: socket.socket, address):
        self.sock, self.address = sock, address
        self.who = f"client {address[0]}:{address[1]}"
        self.serial: int | None = None  # the client certificate's, once authenticated
        self.last_active = time.monotonic()
        self.closed = False
        self._outbox: queue.Queue = queue.Queue()
        self._writing = False
        self._state = threading.Lock()

    def start(self, tls: ssl.SSLSocket, *, idle_timeout: float, send_timeout: float) -> None:
        """Switches to the authenticated TLS connection and starts the writer (which then owns it)."""
        self.sock = TlsStream(tls, idle_timeout, send_timeout)
        self._writing = True
        threading.Thread(target=self._write, daemon=True, name="reply").start()

    def _write(self):
        while True:
            item = self._outbox.get()
            if item is None:
                break
            meta, arrays, done = item
            try:
                if not self.closed:
                    send_message(self.sock, meta, arrays)
            except (ssl.SSLError, OSError):
                log.warning("%s did not take its reply", self.who)
                self.shutdown()
            finally:
                if done:
                    done()
        with self._state:
            self._writing = False
        while not self._outbox.empty():  # replies queued after the end: release what they hold
            item = self._outbox.get_nowait()
            if item is not None and item[2]:
                item[2]()
        self.sock.close()

    def reply(self, meta, arrays=(), done=None) -> None:
        """Queues a reply; `done` runs once it has been sent or dropped."""
        with self._state:
            if self._writing:
                self._outbox.put((meta, arrays, done))
                return
        if done:
            done()

    def shutdown(self) -> None:
        """Ends the connection from any thread: its reader and writer wake up and finish."""
        self.closed = True
        if self.sock is None:
            return
        if isinstance(self.sock, TlsStream):
            self.sock.shutdown()
        else:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def finish(self) -> None:
        """Called by the handler when it is done: the writer sends what is queued, then closes."""
        if isinstance(self.sock, TlsStream):
            self._outbox.put(None)
        elif self.sock is not None:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()


@dataclasses.dataclass
class _Request:
    conn: _Connection
    request_id: str
    output: str
    shares: tuple
    reserved: int
    arrived: float

    @property
    def key(self) -> tuple[int, str]:
        """(client certificate serial, request id): request ids are the client's own, not shared across clients."""
        return self.conn.serial, self.request_id


def _request_key(meta: dict) -> tuple[int, str] | None:
    """The (client serial, request id) a control message names, or None if it names none validly."""
    client, request_id = meta.get("client"), meta.get("request_id")
    if (
        isinstance(client, bool)
        or not isinstance(client, int)
        or client < 0
        or not isinstance(request_id, str)
        or not _REQUEST_ID.fullmatch(request_id)
    ):
        return None
    return client, request_id


class PartyServer:
    """Party `index` of a deployment, serving private predictions with its model share. Construction has the
    process's C allocator keep freed arrays for the next session (`memory.keep_freed_memory`; process-wide).

    Args:
        index: 0, 1 or 2.
        deployment: addresses and credentials (from `ppml encrypted setup`).
        model: this party's `PartyModel` (from `ppml encrypted share-model`).
        timeout: seconds to wait for a peer's message; also how long a request waits for its session.
        memory_budget: bytes for requests and their sessions (the model's shares come on top).
        client_quota: the most of the budget one client (certificate) may hold at once (default: a
            quarter); the largest batch follows from it.
        max_connections: client (or unauthenticated) connections held at once.
        idle_timeout: seconds a client connection may stay silent.
        refresh_every: renew the keys and re-randomize the weight shares every this many sessions (0: only
            when connecting).

    Raises:
        ValueError: if the model share is another party's or one example does not fit the budget.
    """

    def __init__(
        self,
        index: int,
        deployment: Deployment,
        model: PartyModel,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        client_quota: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        refresh_every: int = 0,
    ):
        if model.index != index:
            raise ValueError(f"the model share is party {model.index}'s, but this is party {index}")
        self.index, self.deployment, self.model, self.timeout = index, deployment, model, timeout
        self._loaded = model  # the sharing on disk, which a restarted party starts from
        self.request_wait, self.idle_timeout = timeout, idle_timeout
        self.max_connections, self.refresh_every = max_connections, refresh_every
        client_quota = memory_budget // CLIENT_SHARE if client_quota is None else client_quota
        self.budget = MemoryBudget(memory_budget, client_quota)
        keep_freed_memory()  # a session's arrays stay for the next: no page faults to take them back
        self.input_size = math.prod(model.architecture.input_shape)
        self.max_batch = largest_batch(model, self.budget.quota)
        if self.max_batch < 1:
            raise ValueError(
                f"a client quota of {self.budget.quota} bytes does not fit one example of this model "
                f"({request_bytes(model, 1)} bytes)"
            )
        self.links: dict[int, TlsLink] = {}
        self._incoming: dict[int, TlsLink] = {}
        self._peers = threading.Condition()
        self._connections: set[_Connection] = set()
        self._connections_lock = threading.Lock()
        self._requests: dict[tuple[int, str], _Request] = {}  # by `_Request.key`
        self._requests_ready = threading.Condition()
        self._announced: dict[tuple[int, str], tuple[set, float]] = {}  # party 0: followers holding a request, since
        self._ready: dict[int, dict] = {}  # party 0: client serial -> keys all three hold, in the order they did
        self._last_turn: dict[int, int] = {}  # party 0: client serial -> number of the last session it was given
        self._turns = 0
        self._reset = False
        self._established = False
        self._session = 0
        self._since_refresh = 0
        self._revoked: tuple = (None, frozenset())
        self._server_context = deployment.tls_context(party_role(index), server=True)
        self._client_context = deployment.tls_context(party_role(index), server=False)

    # -- connections -------------------------------------------------------------------------
    def _accept_loop(self, listener):
        while True:
            try:
                sock, address = listener.accept()
            except OSError as err:  # e.g. out of file descriptors: wait for some to be freed
                log.warning("party %d: accept failed (%s); retrying", self.index, err.__class__.__name__)
                time.sleep(0.2)
                continue
            conn = _Connection(sock, address)
            with self._connections_lock:
                victim = None
                if len(self._connections) >= self.max_connections:
                    # Not yet authenticated ones first: nobody without a certificate can push a client out.
                    anonymous = [c for c in self._connections if c.serial is None]
                    victim = min(anonymous or self._connections, key=lambda c: c.last_active)
                self._connections.add(conn)
            if victim is not None:
                log.warning(
                    "party %d: %d connections; closing the one idle longest (%s)",
                    self.index,
                    self.max_connections,
                    victim.who,
                )
                victim.shutdown()
                with self._connections_lock:
                    self._connections.discard(victim)
            try:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            except RuntimeError as err:  # out of threads: this connection goes, the loop keeps accepting
                log.warning("party %d: no thread for %s (%s); connection dropped", self.index, conn.who, err)
                self._drop(conn)

    def _revoked_serials(self) -> frozenset:
        path = os.path.join(self.deployment.directory, "revoked.json")
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._revoked[0]:
            self._revoked = (stamp, self.deployment.revoked())
        return self._revoked[1]

    def _handle(self, conn: _Connection):
        try:
            no_delay(conn.sock).settimeout(HANDSHAKE_TIMEOUT_S)
            # The TLS socket takes over the descriptor: keep it reachable so that eviction can close it.
            tls = conn.sock = self._server_context.wrap_socket(
                conn.sock, server_side=True, do_handshake_on_connect=False
            )
            if conn.closed:
                raise OSError("evicted")
            tls.do_handshake()
        except (ssl.SSLError, OSError, ValueError) as err:
            log.warning(
                "party %d: TLS handshake from %s:%s failed (%s)",
                self.index,
                conn.address[0],
                conn.address[1],
                getattr(err, "reason", None) or err.__class__.__name__,
            )
            self._drop(conn)
            return
        try:
            role = peer_role(tls)
            peers = {party_role(j): j for j in range(self.index + 1, NUM_PARTIES)}
            if role in peers:
                conn.sock = None  # the connection now belongs to the peer link
                self._peer_arrived(peers[role], tls)
                return
            try:
                conn.serial = peer_serial(tls)
                revoked = conn.serial in self._revoked_serials()
            except ValueError as err:
                log.error("party %d: %s; refusing clients", self.index, err)
                revoked = True
            if role.startswith(CLIENT_PREFIX) and not revoked:
                conn.who = f"{role} at {conn.address[0]}:{conn.address[1]}"
                conn.start(tls, idle_timeout=self.idle_timeout, send_timeout=self.timeout)
                self._serve_client(conn)
            else:
                log.warning(
                    "party %d: rejected a connection from %r at %s%s",
                    self.index,
                    role,
                    conn.address[0],
                    " (revoked)" if revoked else "",
                )
        except Exception:  # a bug must cost this connection only, never the server
            log.exception("party %d: connection from %s failed", self.index, conn.address[0])
        finally:
            self._drop(conn)

    def _drop(self, conn: _Connection):
        conn.finish()
        with self._connections_lock:
            self._connections.discard(conn)

    def _peer_arrived(self, j: int, tls: ssl.SSLSocket):
        link = TlsLink(tls, j, self._link_broken, send_timeout=self.timeout, on_notice=self._noticed)
        with self._peers:
            old = self._incoming.pop(j, None)
            self._incoming[j] = link
            self._peers.notify_all()
        if old is not None:
            old.close()
        if self._established:  # the peer restarted or reset: start over together
            self._request_reset(f"party {j} connected again")

    def _link_broken(self, link: TlsLink):
        if self._established and self.links.get(link.peer) is link:
            self._request_reset(f"the link to party {link.peer} broke")

    def _request_reset(self, why: str):
        log.warning("party %d: %s; resetting", self.index, why)
        self._established = False
        for link in list(dict(self.links).values()):
            link.close()
        with self._requests_ready:
            self._reset = True
            self._requests_ready.notify_all()

    def _connect(self, j: int) -> TlsLink:
        host, port = self.deployment.addresses[j]
        started = time.monotonic()
        while True:
            try:
                sock = no_delay(socket.create_connection((host, port), timeout=self.timeout))
                tls = self._client_context.wrap_socket(sock)
                break
            except (ssl.SSLError, OSError) as err:
                if time.monotonic() - started > 4 * self.timeout:
                    raise TransportError(
                        f"party {j} at {host}:{port} did not come up "
                        f"({getattr(err, 'reason', None) or err.__class__.__name__})"
                    ) from None
                time.sleep(0.1)
        if peer_role(tls) != party_role(j):
            tls.close()
            raise TransportError(f"the server at {host}:{port} is {peer_role(tls)!r}, not {party_role(j)!r}")
        return TlsLink(tls, j, self._link_broken, send_timeout=self.timeout, on_notice=self._noticed)

    # -- requests ----------------------------------------------------------------------------
    def _admit(self, nbytes: int, reserved: list, owner) -> bool:
        batch = math.ceil(nbytes / (2 * 8 * self.input_size))
        if batch > self.max_batch:
            return False
        cost = request_bytes(self.model, max(batch, 1))
        if not self.budget.reserve(cost, owner):
            return False
        reserved.append(cost)
        return True

    def _serve_client(self, conn: _Connection):
        conn.reply({"kind": "hello", "party": self.index, "max_batch": self.max_batch, **self.model.public_info()})
        while not conn.closed:
            reserved: list = []
            try:
                meta, arrays = recv_message(
                    conn.sock,
                    conn.who,
                    within=self.timeout,
                    admit=functools.partial(self._admit, reserved=reserved, owner=conn.serial),
                )
            except TransportError as err:
                self.budget.release(sum(reserved), conn.serial)
                if isinstance(err, MessageRefused):
                    conn.reply(
                        {
                            "kind": "error",
                            "message": f"{err} (largest batch {self.max_batch}; the party "
                            f"may be busy, or this client holds its quota)",
                        }
                    )
                elif isinstance(err, MalformedMessage):
                    log.warning("party %d: %s; connection dropped", self.index, err)
                    conn.reply({"kind": "error", "message": str(err)})
                return
            conn.last_active = time.monotonic()
            cost = sum(reserved)
            problem, request_id = self._validate(meta, arrays)
            if problem is None:
                request = _Request(conn, request_id, meta["output"], tuple(arrays), cost, time.monotonic())
                with self._requests_ready:
                    if request.key in self._requests:
                        problem = f"request {request_id} is already waiting"
                    else:
                        self._requests[request.key] = request
                        self._mark_ready(request.key)
                        self._requests_ready.notify_all()
            if problem is not None:
                self.budget.release(cost, conn.serial)
                conn.reply({"kind": "error", "request_id": request_id, "message": problem})
                continue
            if self.index != 0:
                self._announce(request.key)

    def _announce(self, key: tuple[int, str]) -> None:
        """A follower tells party 0 that it holds a request (party 0 proposes only requests all three hold)."""
        link = self.links.get(0)
        if self._established and link is not None and not link.broken:
            with contextlib.suppress(TransportError):
                link.send_control({"kind": NOTICE, "client": key[0], "request_id": key[1]})

    def _noticed(self, peer: int, meta: dict) -> None:
        key = _request_key(meta)
        if key is None:
            return
        with self._requests_ready:
            holders, since = self._announced.get(key, (set(), time.monotonic()))
            self._announced[key] = (holders | {peer}, since)
            self._mark_ready(key)
            self._requests_ready.notify_all()

    def _mark_ready(self, key: tuple[int, str]) -> None:
        """Party 0, holding the queue's lock: files the request under its client once all three hold it."""
        if key in self._requests and self._announced.get(key, (set(), 0))[0] >= _FOLLOWERS:
            self._ready.setdefault(key[0], {})[key] = None

    def _unready(self, key: tuple[int, str]) -> None:
        """Party 0, holding the queue's lock: the request is no longer complete (taken or expired)."""
        keys = self._ready.get(key[0], {})
        keys.pop(key, None)
        if not keys:
            self._ready.pop(key[0], None)

    def _next_ready(self) -> _Request:
        """Party 0: the next request to run among those all three parties hold (waits for one); raises on a reset.

        Clients take turns: the request comes from the client (certificate) whose last session started
        longest ago (never: first), and is that client's oldest complete one. So a client waits for at most
        one session of each other client with requests, however many those queued. A pick costs in
        proportion to the clients with complete requests, not to the requests queued.
        """
        with self._requests_ready:
            while True:
                if self._reset:
                    raise TransportError("reset requested")
                if self._ready:
                    serial = min(self._ready, key=lambda c: self._last_turn.get(c, -1))  # the first of equals
                    key = next(iter(self._ready[serial]))
                    self._unready(key)
                    del self._announced[key]
                    self._last_turn[serial] = self._turns = self._turns + 1
                    return self._requests.pop(key)
                self._requests_ready.wait(timeout=1.0)

    def _validate(self, meta: dict, arrays: list) -> tuple[str | None, str | None]:
        """Why a request cannot be accepted (None if it can), and its id if it has a valid one."""
        request_id = meta.get("request_id")
        request_id = request_id if isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id) else None
        if meta.get("kind") != "predict" or request_id is None:
            return "expected a predict request with a request_id of 1-64 letters, digits, '_' or '-'", request_id
        if meta.get("output") not in OUTPUTS:
            return f"output must be one of {OUTPUTS}", request_id
        if meta["output"] == "logits" and not self.model.allow_logits:
            return "this model's owner allows only labels to be revealed (output 'label')", request_id
        precision = self.model.ranges.input_bounds.precision(self.model.fixed)
        stated = meta.get("input_frac_bits", self.model.fixed.frac_bits)  # older clients: the model's
        if isinstance(stated, bool) or not isinstance(stated, int) or stated != precision:
            stated = stated if type(stated) is int and abs(stated) < 100 else "an invalid value"  # not echoed at length
            return (
                f"this model takes inputs of {precision} fractional bits (share-model --input-frac-bits), the "
                f"request's were encoded with {stated}: use a client that reads the inputs' precision",
                request_id,
            )
        expected = tuple(self.model.architecture.input_shape)
        if (
            len(arrays) != 2
            or any(a.dtype != DTYPE or a.shape != arrays[0].shape for a in arrays)
            or arrays[0].shape[1:] != expected
        ):
            got = [a.shape for a in arrays]
            return (
                f"party {self.index} got input shares of shapes {got}, expected two uint64 (batch,) + {expected}",
                request_id,
            )
        if not 0 < arrays[0].shape[0] <= self.max_batch:
            return f"batch size must be in 1..{self.max_batch}, got {arrays[0].shape[0]}", request_id
        return None, request_id

    def _take_request(self, key: tuple[int, str] | None) -> _Request | None:
        """A follower's request that party 0 proposed, or None at once: party 0 proposes only requests this
        party announced, so one it does not hold has expired here (waiting would only hold the queue)."""
        with self._requests_ready:
            return self._requests.pop(key, None) if key is not None else None

    def _expire_loop(self):
        while True:
            time.sleep(min(0.2, self.request_wait / 4))
            try:
                self._expire()
            except Exception:  # this thread must outlive any bug
                log.exception("party %d: expiring requests failed", self.index)

    def _end_revoked(self):
        """Closes the open connections of clients revoked since they connected."""
        try:
            revoked = self._revoked_serials()
        except ValueError as err:
            log.error("party %d: %s; closing all client connections", self.index, err)
            revoked = None
        with self._connections_lock:
            ended = [c for c in self._connections if c.serial is not None and (revoked is None or c.serial in revoked)]
        for conn in ended:
            log.warning("party %d: %s was revoked; connection closed", self.index, conn.who)
            conn.shutdown()

    def _expire(self):
        self._end_revoked()
        now = time.monotonic()
        with self._requests_ready:
            old = [r for r in self._requests.values() if now - r.arrived > self.request_wait]
            for r in old:
                del self._requests[r.key]
                self._unready(r.key)
            holders = {r.key: self._announced.get(r.key, (set(), 0))[0] for r in old}
            for key in [k for k, (_, since) in self._announced.items() if now - since > self.request_wait]:
                del self._announced[key]
                self._unready(key)
        for r in old:
            if not self._established:
                why = self._waiting_for()
            elif self.index == 0:
                missing = sorted(set(range(1, NUM_PARTIES)) - holders[r.key])
                why = (
                    f"{' and '.join(f'party {j}' for j in missing)} did not get it"
                    if missing
                    else "the parties were busy"
                )
            else:
                why = "party 0 did not start it: it or the other party did not get it, or they are busy"
            self._finish_request(
                r, f"party {self.index}: the request expired after {self.request_wait:g} s without a session ({why})"
            )

    def _waiting_for(self) -> str:
        links, incoming = dict(self.links), dict(self._incoming)  # other threads replace them
        missing = [
            j
            for j in range(NUM_PARTIES)
            if j != self.index and j not in incoming and (j not in links or links[j].broken)
        ]
        return f"the parties are reconnecting; not connected: {', '.join(f'party {j}' for j in missing) or 'none'}"

    def _finish_request(self, request: _Request, problem: str | None, meta=None, arrays=()):
        """Queues the reply; the request's memory is released once it has been sent."""
        if problem is not None:
            meta, arrays = {"kind": "error", "request_id": request.request_id, "message": problem}, ()
        request.conn.reply(meta, arrays, done=lambda: self.budget.release(request.reserved, request.conn.serial))

    # -- sessions ----------------------------------------------------------------------------
    def _check(self, request, shape=None, output=None) -> str | None:
        """Why a proposed request cannot run here (None if it can)."""
        if request is None:
            return f"party {self.index} did not receive the request"
        if shape is not None and (list(request.shares[0].shape) != shape or request.output != output):
            return f"party {self.index} got a request of another shape or output than party 0"
        return None

    def _party(self, session: int) -> Party:
        for link in self.links.values():
            link.session = session
        return Party(
            self.index, Channel(self.links, timeout=self.timeout), self._keys[0], self._keys[1], session=session
        )

    def _run(self, session: int, request: _Request):
        party = self._party(session)
        started = time.perf_counter()
        try:
            result = predict_share(party, self.model, AShare(*request.shares), request.output)
        except TransportError as err:
            self._finish_request(request, f"party {self.index}: {err}")
            raise
        except Exception as err:  # out of step with the others now: report, then reconnect
            log.exception("party %d: session %d failed", self.index, session)
            self._finish_request(request, f"party {self.index}: the session failed ({err.__class__.__name__})")
            raise TransportError(f"session {session} failed") from None
        stats = party.channel.stats
        if result.refused is not None:
            log.warning("party %d: session %d: input refused: %s", self.index, session, result.refused)
        rerun = [] if result.rerun is None else [result.rerun.astype(np.uint8)]
        self._finish_request(
            request,
            None,
            {
                "kind": "result",
                "request_id": request.request_id,
                "stats": stats.to_dict(),
                "combine": result.combine,
                "frac_bits": result.frac_bits,
                "rerun": bool(rerun),
                "refused": result.refused,
            },
            [] if result.values is None else [result.values] + rerun,
        )
        log.info(
            "party %d: session %d done in %.1f ms (%d rounds, %d bytes sent)%s",
            self.index,
            session,
            1e3 * (time.perf_counter() - started),
            stats.rounds,
            stats.bytes_sent,
            f"; withheld {int(result.rerun.sum())} example(s) for a re-run" if rerun else "",
        )

    def _refresh(self, session: int):
        """Renews the pairwise keys and re-randomizes the weight shares (all parties at once, two rounds)."""
        party = self._party(session)
        self.model = self.model.refreshed(party)
        self._keys = party.keys  # the old keys are dropped: later sessions draw from the new ones only
        self._since_refresh = 0
        log.info("party %d: keys renewed, weight shares re-randomized (session %d)", self.index, session)

    def _lead_refresh(self):
        self._session += 1
        for link in self.links.values():
            link.send_control({"kind": "refresh", "session": self._session})
        self._refresh(self._session)

    def _decide(self, session: int, request: _Request | None, problem: str | None):
        if problem is None:
            self._since_refresh += 1
            self._run(session, request)
        elif request is not None:
            self._finish_request(request, problem)

    def _lead(self):
        self._lead_refresh()
        while True:
            if self.refresh_every and self._since_refresh >= self.refresh_every:
                self._lead_refresh()
            request = self._next_ready()
            item = request.key
            self._session += 1
            try:
                problem = self._check(request)
                shape = list(request.shares[0].shape)
                for link in self.links.values():
                    link.send_control(
                        {
                            "kind": "session",
                            "session": self._session,
                            "client": item[0],
                            "request_id": item[1],
                            "shape": shape,
                            "output": request.output,
                        }
                    )
                for link in self.links.values():
                    answer, _ = link.recv_control(self.timeout, "answer to a session proposal")  # given at once
                    problem = problem or answer.get("problem")
                for link in self.links.values():
                    link.send_control({"kind": "go" if problem is None else "abort", "problem": problem})
            except TransportError as err:
                self._finish_request(request, f"party {self.index}: {err}")
                raise
            self._decide(self._session, request, problem)

    def _follow(self):
        leader = self.links[0]
        while True:
            proposal, _ = leader.recv_control(None, "session proposal")
            self._session = int(proposal["session"])
            if proposal.get("kind") == "refresh":
                self._refresh(self._session)
                continue
            request = self._take_request(_request_key(proposal))
            try:
                problem = self._check(request, proposal["shape"], proposal["output"])
                leader.send_control({"kind": "answer", "problem": problem})
                decision, _ = leader.recv_control(self.timeout, "go or abort")
            except TransportError as err:
                if request is not None:
                    self._finish_request(request, f"party {self.index}: {err}")
                raise
            self._decide(self._session, request, decision.get("problem"))

    def _establish(self):
        """Connects to parties 0..index-1, waits for index+1..2, agrees fresh pairwise keys."""
        for link in self.links.values():
            link.close()
        self.links = {}
        for j in range(self.index):
            self.links[j] = self._connect(j)
        later = range(self.index + 1, NUM_PARTIES)
        with self._peers:
            if not self._peers.wait_for(lambda: all(j in self._incoming for j in later), timeout=4 * self.timeout):
                missing = [j for j in later if j not in self._incoming]
                raise TransportError(f"parties {missing} did not connect to party {self.index}")
            for j in later:
                self.links[j] = self._incoming.pop(j)
        prev, nxt = (self.index - 1) % NUM_PARTIES, (self.index + 1) % NUM_PARTIES
        own_key = new_key()  # k_i, shared with the predecessor
        self.links[prev].send_control({"kind": "key"}, [np.frombuffer(own_key, dtype=DTYPE)])
        meta, arrays = self.links[nxt].recv_control(self.timeout, "key")
        if meta.get("kind") != "key" or len(arrays) != 1 or arrays[0].shape != (2,):
            raise TransportError(f"party {nxt} sent no key")
        self._keys = (own_key, arrays[0].tobytes())
        self._session = 0
        self.model = self._loaded  # every party restarts the chain of refreshes from the sharing on disk
        self._established = True
        if self.index != 0:  # party 0 forgot what the followers held before: tell it again
            with self._requests_ready:
                waiting = list(self._requests)
            for key in waiting:
                self._announce(key)

    def serve(self, on_ready=None) -> None:
        """Listens, connects to the other parties, agrees keys, then serves forever (reconnecting after faults).

        Args:
            on_ready: called once, with no arguments, when requests can first be served.
        """
        host, port = self.deployment.addresses[self.index]
        listener = socket.create_server((host, port), reuse_port=False)
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True, name="accept").start()
        threading.Thread(target=self._expire_loop, daemon=True, name="expire").start()
        while True:
            try:
                self._establish()
                log.info(
                    "party %d: ready on %s:%d, pid %d (largest batch %d)",
                    self.index,
                    host,
                    port,
                    os.getpid(),
                    self.max_batch,
                )
                if on_ready:
                    on_ready()
                    on_ready = None
                self._lead() if self.index == 0 else self._follow()
            except TransportError as err:
                log.error("party %d: %s; connecting to the others again", self.index, err)
                self._established = False
                time.sleep(0.2)
                with self._requests_ready:
                    self._reset = False
                    self._announced.clear()
                    self._ready.clear()
