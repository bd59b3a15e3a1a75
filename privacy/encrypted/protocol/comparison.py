"""Secure comparison with a helper, and the gating of values by its result (ReLU, max, argmax).

A comparison looks at a value split in two addends, x = A + B, where the helper h knows B and its pair
u = h+1, v = h+2 both know A (`Split`). Every replicated share splits so without communication
(A = c_{h+2}, the component the pair holds in common, B = c_h + c_{h+1}); so do the masked sum of a
re-sharing or truncation round (`arithmetic.masked_sum`) and the parts of an exact truncation
(`privacy.encrypted.protocol.truncation`). When x is in [-2^R, 2^R), the sign of x is bit R of
X = A + B' with B' = B + 2^R, and that bit is A_R xor B'_R xor carry, where carry = [a > c'] for
a = A mod 2^R (known to the pair) and c' = 2^R - 1 - (B' mod 2^R) (known to the helper). With R = 63 this
is the sign of any ring element read as a signed 64-bit integer, whatever its range.

`Comparison` decides [a > c'] in the style of SecureNN's private compare, with the roles of two parties
who know one number and a third who knows the other:

1. The helper sends u additive shares mod p = 127 of the R bits of c' (v draws its shares from the
   key it shares with the helper). This message rides on the round that made x (`Split.rnd`).
2. The pair draws a secret bit beta. For beta = 0 it tests a > c', for beta = 1 it tests c' > a - 1
   (c' >= a); in both cases the test is whether some w_i = 0 for
   ``w_i = (y_i - t_i + 1) + sum_{j>i} (t_j xor y_j)`` (t, y the tested numbers' bits), which is
   linear in the shared bits of c'. Each w_i is multiplied by a random nonzero rho_i, the vector is
   rotated by a random offset (beta and the offset come from one word of the pair's PRF: its bit 0, and
   its other 63 bits mod R, independent of beta and uniform to within R / 2^63 <= 2^-57 in statistical
   distance), both pair members mask their shares with a common random vector and send them to the
   helper (`kernels.pair_vectors`). The helper adds them: at most one entry is zero, at the offset's
   random position, and the others are uniform nonzero; it learns delta = carry xor beta, a uniform
   bit. One round (`Comparison.send`; several comparisons share it), R bytes per element from each
   pair member.

Then [x >= 0] = beta' xor delta' with beta' = A_R xor beta at the pair and delta' = B'_R xor delta at
the helper (`Bit`). `gate` multiplies values by that bit in one round (the helper sends u masked
products) and leaves the results as terms of u and v (`Terms` with the helper's term zero);
`arithmetic.reshare_pair` makes them replicated again when a product with secret weights needs that.

Correctness needs x in [-2^R, 2^R), which `privacy.encrypted.model.ranges` proves for every compared value
from the input bounds the servers check (`RangePlan.server_bounds`; they check the inputs against them,
`privacy.encrypted.protocol.input_check`); nothing here detects a violation, and nothing is revealed either.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from privacy import validation
from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.protocol.arithmetic import Pending, roles
from privacy.encrypted.protocol.modulus import MODULUS
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.rounds import Round
from privacy.encrypted.protocol.shares import AShare, Terms
from privacy.encrypted.protocol.transport import TransportError

MAX_BITS = 63
"""Largest R: with R = 63 a comparison decides the sign of any ring element (signed 64-bit reading)."""


def flat(x, shape: tuple) -> np.ndarray:
    """x (a ring array of `shape`, or one that broadcasts to it) as a contiguous 1-D ring array, for the kernels:
    a view where it already is one."""
    if not (isinstance(x, np.ndarray) and x.dtype == DTYPE and x.shape == shape and x.flags.c_contiguous):
        x = np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=DTYPE), shape))
    return x.reshape(-1)


@dataclasses.dataclass(frozen=True)
class Bit:
    """A secret bit b = beta' xor delta': `value` is beta' at the helper's pair, delta' at the helper."""

    helper: int
    value: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.value.shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Bit":
        """An index operation (reshape, repeat, slice) on the bits."""
        return Bit(self.helper, fn(self.value))


@dataclasses.dataclass(frozen=True)
class Split:
    """x = A + B for a comparison with helper `helper`: `helper_part` (B, at the helper) is known now,
    `pair_part()` (A, at u and v) once `rnd` has run. The helper's first message rides on `rnd` if it
    has not run yet (otherwise on a round of its own)."""

    rnd: Round
    helper: int
    shape: tuple
    helper_part: np.ndarray | None = None
    pair_part: Callable[[], np.ndarray] | None = None

    @classmethod
    def of_share(cls, p: Party, x: Pending) -> "Split":
        """A replicated share: A = c_{h+2}, B = c_h + c_{h+1}, with the helper ``x.ready``."""
        h, u, _ = roles(x.ready)
        if p.index == h:
            return cls(x.rnd, h, x.shape, helper_part=x.early.a + x.early.b)
        return cls(x.rnd, h, x.shape, pair_part=lambda: x.value().b if p.index == u else x.value().a)

    def plus(self, c: np.ndarray) -> "Split":
        """x + c for public c (the helper adds it)."""
        if self.helper_part is None:
            return self
        return dataclasses.replace(self, helper_part=self.helper_part + np.asarray(c, dtype=DTYPE))


class Comparison:
    """[x >= 0] (or [x > 0] with `strict`) for x = A + B in [-2^bits, 2^bits) (x - 1 there if strict).

    Construction adds the helper's first message to ``split.rnd``; `send` adds the pair's test vectors
    to a later round (several comparisons can share it); `bit` returns the result once that round ran.
    """

    def __init__(self, p: Party, split: Split, bits: int, *, strict: bool = False):
        bits = validation.integer("comparison bits", bits, minimum=1, maximum=MAX_BITS)
        self.p, self.split, self.bits, self.helper = p, split, bits, split.helper
        self._first = split.rnd if not split.rnd.done else p.round()
        h, u, v = roles(split.helper)
        shape = split.shape + (bits,)
        self._low = DTYPE((1 << bits) - 1)
        self._sent: Round | None = None
        if p.index == h:
            from privacy.encrypted.protocol import kernels  # imported where used: see kernels' docstring

            self._big = np.empty(split.shape, dtype=DTYPE)  # B'
            other = np.empty(self._big.size, dtype=DTYPE)  # c'
            offset = DTYPE((1 << bits) - (1 if strict else 0))
            kernels.helper_split(flat(split.helper_part, split.shape), offset, self._low, self._big.reshape(-1), other)
            shares = p.prf_with(v).residues(shape, MODULUS).reshape(-1, bits)
            message = np.empty_like(shares)
            kernels.helper_message(other, shares, message)
            self._first.send(u, message.reshape(shape))
        elif p.index == u:
            self._slot = self._first.receive(h, shape, np.uint8)
        else:
            self._shares = p.prf_with(h).residues(shape, MODULUS)

    def send(self, rnd: Round) -> None:
        """Adds the pair's test vectors to `rnd` (runs the first round if nobody has yet)."""
        if self._sent is not None:
            raise RuntimeError("a comparison's test vectors are sent once")
        self._sent = rnd
        self._first.run()
        p, bits = self.p, self.bits
        h, u, v = roles(self.helper)
        shape = self.split.shape + (bits,)
        if p.index == h:
            self._vectors = [rnd.receive(j, shape, np.uint8) for j in (u, v)]
            return
        first = p.index == u
        self._big = self.split.pair_part()  # A
        shares = (self._slot.value if first else self._shares).reshape(-1, bits)
        pair = p.prf_with(v if first else u)
        coins = pair.words(self.split.shape)  # bit 0: beta; the other 63 bits mod `bits`: the left rotation
        self._coins = coins.reshape(-1)
        rho = pair.residues(shape, MODULUS - 1).reshape(-1, bits)  # multipliers rho - 1
        mask = pair.residues(shape, MODULUS).reshape(-1, bits)
        out = np.empty(shares.shape, dtype=np.uint8)
        from privacy.encrypted.protocol import kernels

        largest = kernels.pair_vectors(flat(self._big, self.split.shape), self._coins, shares, rho, mask, first, out)
        if largest >= MODULUS:  # the kernel's arithmetic holds for residues only: its output is dropped
            raise TransportError(f"party {h} sent a comparison residue of {largest}, not below {MODULUS}")
        rnd.send(h, out.reshape(shape))

    def bit(self) -> Bit:
        """The result (runs the pair's round if nobody has yet)."""
        if self._sent is None:
            raise RuntimeError("the comparison's test vectors were not sent")
        self._sent.run()
        from privacy.encrypted.protocol import kernels

        if self.p.index == self.helper:
            u_vec, v_vec = (s.value.reshape(-1, self.bits) for s in self._vectors)
            flips = np.empty(len(u_vec), dtype=DTYPE)  # delta
            kernels.any_zero_sum(u_vec, v_vec, flips)
        else:
            flips = self._coins  # bit 0: beta
        out = np.empty(self.split.shape, dtype=DTYPE)
        kernels.top_bit_xor(flat(self._big, self.split.shape), DTYPE(self.bits), flips, out.reshape(-1))
        return Bit(self.helper, out)


def compare(p: Party, split: Split, bits: int, *, strict: bool = False) -> Bit:
    """One comparison on its own: the helper's message in ``split.rnd``, the pair's in a round of its own."""
    comparison = Comparison(p, split, bits, strict=strict)
    rnd = p.round()
    comparison.send(rnd)
    rnd.run()
    return comparison.bit()


@dataclasses.dataclass(frozen=True)
class GateParts:
    """A value to gate, value = A + B + c: A at the bit's pair, B at its helper (or 0 for everyone if
    `helper_zero`), and an optional carry bit c = beta xor delta with the same helper (an exact
    truncation's, `privacy.encrypted.protocol.truncation`)."""

    pair: np.ndarray | None
    helper: np.ndarray | None
    carry: Bit | None = None
    helper_zero: bool = False

    @property
    def factors(self) -> int:
        """How many masked factors the helper sends for this value."""
        return (0 if self.helper_zero else 2) + (0 if self.carry is None else 2)

    @classmethod
    def of_share(cls, p: Party, x: AShare, helper: int) -> "GateParts":
        h, u, _ = roles(helper)
        if p.index == h:
            return cls(None, x.a + x.b)
        return cls(x.b if p.index == u else x.a, None)


def gate_in(p: Party, bit: Bit, values: list, rnd: Round) -> Callable[[], list[Terms]]:
    """value * bit for each value (AShare or `GateParts`, shapes equal to the bit's): adds the messages to
    `rnd` and returns what gives the results (terms of the helper's pair) once `rnd` has run.

    With b = beta' + sigma * delta' (sigma = 1 - 2 beta') and value = A + B + beta_c + sigma_c * delta_c:
    the pair knows A, beta', beta_c, sigma_c, the helper B, delta', delta_c; every product of a pair's and a
    helper's factor is formed from the helper's factors delta', B, B delta' (and delta_c, delta_c delta'),
    each sent to u minus a mask drawn from the key the helper shares with v, which v uses instead.
    """
    h, u, v = roles(bit.helper)
    shape = bit.shape
    parts = [x if isinstance(x, GateParts) else GateParts.of_share(p, x, bit.helper) for x in values]
    if p.index == h:
        key = p.prf_with(v)
        delta = bit.value
        rnd.send(u, delta - key.words(shape))
        for part in parts:
            factors = [] if part.helper_zero else [part.helper, part.helper * delta]
            if part.carry is not None:
                factors += [part.carry.value, part.carry.value * delta]
            for factor in factors:
                rnd.send(u, factor - key.words(shape))
        return lambda: [Terms(np.zeros(shape, dtype=DTYPE), h) for _ in values]
    beta = bit.value
    first = p.index == u
    if first:
        delta = rnd.receive(h, shape)
        factors = [[rnd.receive(h, shape) for _ in range(part.factors)] for part in parts]
    else:
        key = p.prf_with(h)
        delta = key.words(shape)
        factors = [[key.words(shape) for _ in range(part.factors)] for part in parts]

    def finish() -> list[Terms]:
        from privacy.encrypted.protocol import kernels

        got = (lambda f: f.value) if first else (lambda f: f)
        sigma = None if all(part.helper_zero and part.carry is None for part in parts) else DTYPE(1) - DTYPE(2) * beta
        out = []
        for part, received in zip(parts, factors, strict=True):
            carry_beta = DTYPE(0) if part.carry is None else part.carry.value
            pair = part.pair if part.carry is None else part.pair + carry_beta  # A + beta_c
            term = np.empty(shape, dtype=DTYPE)  # sigma pair delta + [u] pair beta; the sums below go into it
            kernels.gate_pair_term(
                flat(pair, shape), flat(beta, shape), flat(got(delta), shape), first, term.reshape(-1)
            )
            if not part.helper_zero:
                both, product = got(received[0]), got(received[1])
                term += beta * both
                term += sigma * product
            if part.carry is not None:
                sigma_c = DTYPE(1) - DTYPE(2) * carry_beta
                term += sigma_c * beta * got(received[-2])
                term += sigma_c * sigma * got(received[-1])
            out.append(Terms(term, h))
        return out

    return finish


def gate(p: Party, bit: Bit, values: list) -> list[Terms]:
    """`gate_in` in a round of its own: 1 round."""
    rnd = p.round()
    finish = gate_in(p, bit, values, rnd)
    rnd.run()
    return finish()


def open_bit(p: Party, bit: Bit) -> np.ndarray:
    """What this party sends the output's owner: three XOR shares of the bit, uniform one by one."""
    h, u, v = roles(bit.helper)
    if p.index == h:
        return bit.value
    blind = p.prf_with(v if p.index == u else u).words(bit.shape) & DTYPE(1)
    return bit.value ^ blind if p.index == u else blind
