"""One protocol step assembled from several operations, so that independent messages share a round.

A `Round` collects what this party sends to each peer and the slots for what it receives, then runs
them as one `Channel.exchange`. Every party builds the same rounds in the same program order, so the
arrays a peer sends arrive in the order this party registered their slots. Operations that do not
depend on each other's results add their messages to one open round (for example the helper's bit
shares of a comparison ride on the round of the truncation whose result is compared), which is how the
protocol keeps its round count low. Operations that need a few rounds but no particular ones (the
servers' input check) ride along: `Party.ride` lets them add messages to every round before it runs.
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.protocol.transport import TransportError


class Slot:
    """Where one received array lands once its round has run."""

    def __init__(self, peer: int, shape: tuple, dtype):
        self.peer, self.shape, self.dtype = peer, tuple(shape), np.dtype(dtype)
        self._value = None

    @property
    def value(self) -> np.ndarray:
        if self._value is None:
            raise RuntimeError("the round this value arrives in has not run yet")
        return self._value


class Round:
    """Messages for one protocol step of `party`; `run` executes it once."""

    def __init__(self, party):
        self.party = party
        self.sends: dict[int, list[np.ndarray]] = {}
        self.slots: dict[int, list[Slot]] = {}
        self.done = False

    def send(self, peer: int, array: np.ndarray) -> None:
        if self.done:
            raise RuntimeError("cannot add a message to a round that has run")
        self.sends.setdefault(peer, []).append(np.ascontiguousarray(array))

    def receive(self, peer: int, shape, dtype=np.uint64) -> Slot:
        if self.done:
            raise RuntimeError("cannot expect a message in a round that has run")
        slot = Slot(peer, shape, dtype)
        self.slots.setdefault(peer, []).append(slot)
        return slot

    def run(self) -> None:
        """Sends everything, receives everything (idempotent)."""
        if self.done:
            return
        self.party.ride(self)
        self.done = True
        received = self.party.exchange(self.sends, tuple(sorted(self.slots)))
        for peer, slots in self.slots.items():
            arrays = received[peer]
            if len(arrays) != len(slots):
                raise TransportError(
                    f"party {peer} sent {len(arrays)} arrays in step {self.party.channel.step}, expected {len(slots)}"
                )
            for slot, array in zip(slots, arrays, strict=True):
                if array.shape != slot.shape or array.dtype != slot.dtype:
                    raise TransportError(
                        f"party {peer} sent an array of shape {array.shape} ({array.dtype}) in step "
                        f"{self.party.channel.step}, expected {slot.shape} ({slot.dtype})"
                    )
                slot._value = array
