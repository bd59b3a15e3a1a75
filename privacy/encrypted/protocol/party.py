"""One party's protocol state: its index, its channel, and its two pairwise PRF streams.

Keys follow ABY3: key k_j is known to parties j and j-1. Party i therefore holds k_i (shared with its
predecessor i-1, stream `prf_self`) and k_{i+1} (shared with its successor i+1, stream `prf_next`).
Component j of any correlated random value is drawn from k_j, so exactly the two parties that must
hold component j can draw it without talking; `prf_with(j)` is the stream this party shares with
party j. Every session re-keys the streams with its own nonce, so a failed session never leaves the
parties' streams out of step. `rekey` replaces the keys themselves by fresh ones (one round).
"""

from __future__ import annotations

import numpy as np

from privacy import validation
from privacy.encrypted.protocol.randomness import KEY_BYTES, Prf, new_key, session_nonce
from privacy.encrypted.protocol.rounds import Round
from privacy.encrypted.protocol.shares import NUM_PARTIES
from privacy.encrypted.protocol.transport import Channel


class Party:
    """Party `index` in one session.

    Args:
        index: 0, 1 or 2.
        channel: the party's links to its peers.
        key_self: k_index, shared with party index-1.
        key_next: k_(index+1), shared with party index+1.
        session: session number; streams are AES-CTR under the keys from nonce `session`.

    Attributes:
        keys: (k_index, k_index+1), the keys the streams are drawn from.
        rerun: per example (bool array), whether a truncation's randomness fell into its failure window
            (`privacy.encrypted.protocol.truncation`): an event independent of the data, after which this
            party withholds its output share for that example; None while nothing was flagged.
        riders: operations whose messages ride on the rounds the protocol runs anyway (`ride`).
    """

    def __init__(self, index: int, channel: Channel, key_self: bytes, key_next: bytes, *, session: int):
        index = validation.integer("party index", index, minimum=0, maximum=NUM_PARTIES - 1)
        self.index = index
        self.channel = channel
        self.session = session
        self._use_keys(key_self, key_next)
        self.rerun: np.ndarray | None = None
        self.riders: list = []

    def _use_keys(self, key_self: bytes, key_next: bytes) -> None:
        self.keys = (key_self, key_next)
        self.prf_self = Prf(key_self, session_nonce(self.session))
        self.prf_next = Prf(key_next, session_nonce(self.session))

    def rekey(self) -> None:
        """Replaces both pairwise keys by fresh ones, all three parties at once (1 round).

        Each party draws a new k_index from the OS (`randomness.new_key`) and sends it to its predecessor,
        which shares it; the streams restart under the new keys. Nothing drawn afterwards is a function of
        the old keys, so whoever holds them learns nothing from the new streams' output.
        """
        own = new_key()
        rnd = self.round()
        rnd.send(self.prev, np.frombuffer(own, dtype=np.uint8))
        theirs = rnd.receive(self.next, (KEY_BYTES,), np.uint8)
        rnd.run()
        self._use_keys(own, theirs.value.tobytes())

    @property
    def prev(self) -> int:
        return (self.index - 1) % NUM_PARTIES

    @property
    def next(self) -> int:
        return (self.index + 1) % NUM_PARTIES

    def prf_with(self, peer: int) -> Prf:
        """The stream this party shares with `peer` (key k_index with the predecessor, k_index+1 with the successor)."""
        if peer == self.next:
            return self.prf_next
        if peer == self.prev:
            return self.prf_self
        raise ValueError(f"party {self.index} shares no key with party {peer}")

    def round(self) -> Round:
        """A new protocol step to add messages to (see `privacy.encrypted.protocol.rounds`)."""
        return Round(self)

    def flag_rerun(self, examples: np.ndarray) -> None:
        """Marks the examples (bool per example) whose output this party must withhold."""
        self.rerun = examples.copy() if self.rerun is None else self.rerun | examples

    def add_rider(self, steps) -> None:
        """Lets the generator `steps` ride on the coming rounds: before each round runs, ``steps.send(rnd)``
        adds its messages to it (having read what the previous round brought). Every party adds the same
        riders at the same step, so they stay in step like the rest of the protocol."""
        next(steps)
        self.riders.append(steps)

    def ride(self, rnd: Round) -> None:
        """Called by `Round.run` before the round's messages go out."""
        for steps in list(self.riders):
            try:
                steps.send(rnd)
            except StopIteration:
                self.riders.remove(steps)

    def finish_riders(self) -> None:
        """Runs rounds with nothing but the riders' messages until every rider is done."""
        while self.riders:
            self.round().run()

    def zero_share(self, shape) -> np.ndarray:
        """This party's term of a fresh 3-out-of-3 sharing of zero: F(k_i) - F(k_{i+1})."""
        return self.prf_self.words(shape) - self.prf_next.words(shape)

    def zero_share_xor(self, shape) -> np.ndarray:
        """This party's term of a fresh 3-out-of-3 XOR sharing of zero."""
        return self.prf_self.words(shape) ^ self.prf_next.words(shape)

    def exchange(self, sends: dict | None = None, recv_from: tuple[int, ...] = ()) -> dict:
        """One protocol step (see `Channel.exchange`)."""
        return self.channel.exchange(sends or {}, recv_from)
