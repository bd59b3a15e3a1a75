"""The wire format between parties and with clients, read strictly.

Every message::

    b"PPML" | version (1 byte) | header length (4 bytes, big endian) | JSON header | array payloads

The JSON header ``{"meta": {...}, "shapes": [[...], ...], "dtypes": ["u8" | "u1", ...]}`` holds public
metadata only; the payloads are little-endian uint64 share arrays or uint8 residue arrays. Reading is
strict, and every violation is a `MalformedMessage` naming the peer, never the contents: a wrong magic
or version, a header over 64 KiB, JSON that is not plain (NaN, Infinity, nesting deeper than 8, other
keys), more than 16 arrays, a shape with more than 8 dimensions or a dimension that is not an integer
in [0, 2^31), another dtype. The payload size is computed exactly and passed to `admit` before a byte
of it is read, so an announcement cannot make the reader allocate; `admit` refuses with
`MessageRefused`. A message that has started must arrive completely within `within` seconds.
"""

from __future__ import annotations

import json
import math
import select
import socket
import ssl
import struct
import threading
import time

import numpy as np

from privacy.encrypted.protocol.transport import TransportError

MAGIC = b"PPML"
VERSION = 3
"""The protocol's version, of the parties' messages and PRF draws as well as of this framing: it changes with
them (3: a comparison's beta and rotation from one PRF word), so parties of different releases refuse each
other's messages instead of computing on streams out of step."""
_PREFIX = struct.Struct("!4sBI")
MAX_HEADER_BYTES = 1 << 16
MAX_ARRAYS = 16
MAX_DIMS = 8
MAX_DIM = 1 << 31
MAX_DEPTH = 8
DTYPES = {"u8": np.dtype("<u8"), "u1": np.dtype("u1")}


class MalformedMessage(TransportError):
    """A peer sent bytes that are not a well-formed ppml message."""


class MessageRefused(MalformedMessage):
    """A well-formed message announced more than the reader admits (its memory budget)."""


def no_delay(sock: socket.socket) -> socket.socket:
    """Small protocol messages must leave at once, not wait for Nagle's algorithm (40 ms stalls)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class TlsStream:
    """A TLS connection that one reader thread and other (writing) threads use at once.

    OpenSSL forbids concurrent calls on one connection, so every single TLS call holds `_lock`; the
    socket is non-blocking, and waiting for data or buffer space happens in select() outside that lock
    (in slices of at most 0.2 s, so data that a writer's TLS call buffered is never waited on for long).
    A writer holds `_write_lock` for a whole ``sendall`` (a write OpenSSL could not finish must be retried
    with the same bytes before another write starts) but takes `_lock` only around each call, so while
    it waits for the peer to drain its buffer, this side's reader keeps draining the peer's messages:
    two parties sending large messages to each other at once cannot deadlock. It offers what
    `send_message` and `recv_message` use: ``sendall``, ``recv_into``, ``settimeout``/``gettimeout``.
    """

    _SLICE = 0.2

    def __init__(self, sock: ssl.SSLSocket, timeout: float | None = None, send_timeout: float | None = None):
        """`timeout`: seconds a read waits for data (None: forever); `send_timeout`: for a whole sendall."""
        self._sock, self._timeout, self._send_timeout = sock, timeout, send_timeout
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        sock.setblocking(False)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def getpeercert(self):
        return self._sock.getpeercert()

    def _wait(self, deadline: float | None, *, read: bool) -> None:
        remaining = self._SLICE if deadline is None else min(self._SLICE, deadline - time.monotonic())
        if remaining <= 0:
            raise socket.timeout("timed out")
        if self._sock.fileno() < 0:
            raise ConnectionAbortedError("the connection was closed")
        if read:
            select.select([self._sock], [], [], remaining)
        else:
            select.select([], [self._sock], [], remaining)

    def recv_into(self, view, nbytes: int) -> int:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                try:
                    return self._sock.recv_into(view, nbytes)
                except (ssl.SSLWantReadError, BlockingIOError):
                    write = False
                except ssl.SSLWantWriteError:
                    write = True
            self._wait(deadline, read=not write)

    def sendall(self, data) -> None:
        deadline = None if self._send_timeout is None else time.monotonic() + self._send_timeout
        view = memoryview(data).cast("B")
        with self._write_lock:
            while len(view):
                with self._lock:
                    try:
                        view = view[self._sock.send(view) :]
                        continue
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        read = False
                    except ssl.SSLWantReadError:
                        read = True
                self._wait(deadline, read=read)

    def shutdown(self) -> None:
        """Ends the connection at the socket level (wakes a reader waiting in select; no TLS call)."""
        try:
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        with self._lock:
            try:
                self._sock.close()
            except OSError:
                pass


def _code(a: np.ndarray) -> str:
    return "u1" if a.dtype == np.uint8 else "u8"


def send_message(sock: socket.socket, meta: dict, arrays=()) -> None:
    """Writes one framed message (metadata and uint64 or uint8 arrays)."""
    arrays = [np.ascontiguousarray(a, dtype=DTYPES[_code(np.asarray(a))]) for a in arrays]
    header = json.dumps(
        {"meta": meta, "shapes": [list(a.shape) for a in arrays], "dtypes": [_code(a) for a in arrays]}, allow_nan=False
    ).encode()
    sock.sendall(b"".join([_PREFIX.pack(MAGIC, VERSION, len(header)), header] + [a.tobytes() for a in arrays]))


def _recv_exact(sock: socket.socket, count: int, who: str, deadline: float | None) -> bytearray:
    buf = bytearray(count)
    view, got = memoryview(buf), 0
    while got < count:
        if deadline is not None and time.monotonic() > deadline:
            raise TransportError(f"{who} did not send a complete message in time")
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


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _depth(value, limit: int) -> int:
    if limit < 0:
        raise ValueError("nested too deep")
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def _dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < MAX_DIM:
        raise ValueError("bad dimension")
    return d


def parse_header(raw: bytes) -> tuple[dict, list[tuple], list[np.dtype]]:
    """(meta, shapes, dtypes) of a header; ValueError if it breaks any rule of the module docstring."""
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not isinstance(header, dict) or set(header) != {"meta", "shapes", "dtypes"}:
        raise ValueError("not a ppml header")
    meta, shapes, dtypes = header["meta"], header["shapes"], header["dtypes"]
    if not isinstance(meta, dict) or not isinstance(shapes, list) or not isinstance(dtypes, list):
        raise ValueError("not a ppml header")
    _depth(header, MAX_DEPTH)
    if len(shapes) > MAX_ARRAYS or len(dtypes) != len(shapes):
        raise ValueError("too many arrays")
    if any(not isinstance(s, list) or len(s) > MAX_DIMS for s in shapes):
        raise ValueError("bad shape")
    if any(not isinstance(d, str) or d not in DTYPES for d in dtypes):
        raise ValueError("bad dtype")
    return meta, [tuple(_dim(d) for d in s) for s in shapes], [DTYPES[d] for d in dtypes]


def recv_message(
    sock: socket.socket, who: str, *, admit=None, within: float | None = None, max_payload: int = 1 << 33
) -> tuple[dict, list[np.ndarray]]:
    """Reads one framed message; raises `MalformedMessage` (or `MessageRefused`) or `TransportError`.

    Args:
        who: the peer, for error messages.
        admit: called with the exact payload size before it is read; returns False to refuse it.
        within: seconds, from its first byte, for the whole message (None: no limit).
        max_payload: payload bytes refused without asking `admit`.
    """
    prefix = bytes(_recv_exact(sock, 1, who, None))
    deadline = None if within is None else time.monotonic() + within
    magic, version, header_len = _PREFIX.unpack(prefix + bytes(_recv_exact(sock, _PREFIX.size - 1, who, deadline)))
    if magic != MAGIC or version != VERSION:
        raise MalformedMessage(f"{who} sent a message that is not ppml protocol version {VERSION}")
    if header_len > MAX_HEADER_BYTES:
        raise MalformedMessage(f"{who} sent a {header_len}-byte header (limit {MAX_HEADER_BYTES})")
    try:
        meta, shapes, dtypes = parse_header(bytes(_recv_exact(sock, header_len, who, deadline)))
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedMessage(f"{who} sent an unreadable message header ({err})") from None
    sizes = [math.prod(s) * d.itemsize for s, d in zip(shapes, dtypes, strict=True)]
    total = sum(sizes)
    if total > max_payload or (admit is not None and not admit(total)):
        raise MessageRefused(f"{who} announced {total} payload bytes, more than this party admits now")
    payload = _recv_exact(sock, total, who, deadline)
    arrays, start = [], 0
    for shape, size, dtype in zip(shapes, sizes, dtypes, strict=True):
        arrays.append(np.frombuffer(payload, dtype=dtype, count=size // dtype.itemsize, offset=start).reshape(shape))
        start += size
    return meta, arrays
