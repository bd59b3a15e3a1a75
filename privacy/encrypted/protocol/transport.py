"""Message passing between the three parties, with per-layer counters of rounds and bytes.

A protocol step is one call to `Channel.exchange`: every party sends what it has for this step,
then waits for what it expects. All parties take every step (possibly sending and receiving
nothing), so the round count is the same on every party and equals the protocol's round complexity.
Each message carries the step number; a message for another step means the parties have fallen out
of step and is an error, not a silent misreading.

`QueueLink` connects parties that run as threads of one process (tests, benchmarks); real parties use
the TLS links of `privacy.encrypted.network.server`, which implement the same `Link` interface.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import queue

import numpy as np

DEFAULT_TIMEOUT_S = 30.0


class TransportError(RuntimeError):
    """A peer timed out, disconnected, or sent a message that does not fit the protocol.

    Messages name parties, steps and layers, never share values (shares are random, but plaintext
    must never reach a log by accident).
    """


@dataclasses.dataclass
class LayerCost:
    """Communication of one layer, as seen by one party."""

    rounds: int = 0
    bytes_sent: int = 0


class CommStats:
    """Rounds and bytes per layer, for the party that owns this object."""

    def __init__(self):
        self.layers: dict[str, LayerCost] = collections.OrderedDict()
        self._current = "setup"

    @contextlib.contextmanager
    def layer(self, name: str):
        """Attributes the communication inside the block to layer `name`."""
        previous, self._current = self._current, name
        try:
            yield
        finally:
            self._current = previous

    def record(self, nbytes: int) -> None:
        cost = self.layers.setdefault(self._current, LayerCost())
        cost.rounds += 1
        cost.bytes_sent += nbytes

    def to_dict(self) -> dict:
        """``{layer: {"rounds": ..., "bytes": ...}}`` in execution order."""
        return {name: {"rounds": c.rounds, "bytes": c.bytes_sent} for name, c in self.layers.items()}

    @property
    def current_layer(self) -> str:
        return self._current

    @property
    def rounds(self) -> int:
        return sum(c.rounds for c in self.layers.values())

    @property
    def bytes_sent(self) -> int:
        return sum(c.bytes_sent for c in self.layers.values())


class Link:
    """A reliable, ordered, authenticated message pipe to one peer party."""

    def send(self, step: int, arrays: list[np.ndarray]) -> None:
        raise NotImplementedError

    def recv(self, step: int, timeout: float) -> list[np.ndarray]:
        raise NotImplementedError


class QueueLink(Link):
    """One direction pair of in-process queues (for parties running as threads)."""

    def __init__(self, outbox: queue.Queue, inbox: queue.Queue, peer: int):
        self._outbox, self._inbox, self._peer = outbox, inbox, peer

    def send(self, step, arrays):
        self._outbox.put((step, arrays))

    def recv(self, step, timeout):
        try:
            got_step, arrays = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TransportError(f"party {self._peer} sent nothing for step {step} within {timeout:g} s") from None
        if got_step != step:
            raise TransportError(f"party {self._peer} is at step {got_step}, expected step {step}")
        return arrays


def queue_links(num_parties: int = 3) -> list[dict[int, Link]]:
    """Fully connected in-process links: ``links[i][j]`` is party i's link to party j."""
    boxes = {(i, j): queue.Queue() for i in range(num_parties) for j in range(num_parties) if i != j}
    return [
        {j: QueueLink(boxes[(i, j)], boxes[(j, i)], j) for j in range(num_parties) if j != i}
        for i in range(num_parties)
    ]


class Channel:
    """One party's view of the network: step-numbered exchanges with its two peers."""

    def __init__(self, links: dict[int, Link], *, timeout: float = DEFAULT_TIMEOUT_S):
        self.links = links
        self.timeout = timeout
        self.stats = CommStats()
        self._step = 0

    @property
    def step(self) -> int:
        """Number of steps taken so far."""
        return self._step

    def exchange(self, sends: dict[int, list[np.ndarray]], recv_from: tuple[int, ...] = ()) -> dict:
        """Sends ``sends[j]`` to each party j, then receives one message from each party in `recv_from`."""
        self._step += 1
        nbytes = 0
        for peer, arrays in sends.items():
            arrays = [np.ascontiguousarray(a) for a in arrays]
            nbytes += sum(a.nbytes for a in arrays)
            self.links[peer].send(self._step, arrays)
        self.stats.record(nbytes)
        received = {}
        for peer in recv_from:
            try:
                received[peer] = self.links[peer].recv(self._step, self.timeout)
            except TransportError as err:
                raise TransportError(f"in layer {self.stats.current_layer!r}: {err}") from None
        return received
