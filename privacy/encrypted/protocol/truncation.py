"""Exact truncation: floor(z / 2^f) of a value held as terms, with no rounding noise and no wrong value unnoticed.

In the round of `arithmetic.masked_sum`, with a helper h and its pair u, v, the pair learns s (uniform)
and h computes w' = w + 2^Z, where |z| < 2^Z is proven by the model's interval analysis
(`privacy.encrypted.model.ranges`). Then s + w' = z + 2^Z + 2^64 (the sum wraps) unless s < 2^(Z+1): an
event of probability 2^(Z+1-64) that the pair sees and that does not depend on z or on anything secret
(s is uniform whatever z is). The pair then flags the example for a re-run (`Party.flag_rerun`) and
withholds its output share for it. Otherwise floor(z / 2^f) = S + W + c exactly, with

* S = floor(s / 2^f), known to the pair;
* W = floor(w' / 2^f) - 2^(64-f) - 2^(Z-f), known to the helper;
* c = [s mod 2^f + w' mod 2^f >= 2^f], the carry of the low bits: a comparison of f bits
  (`privacy.encrypted.protocol.comparison`) whose first message rides on the same round.

The result is the fixed-point model's value, a function of the input alone: the same input always gives
the same output. (Probabilistic truncation, floor or floor + 1 at random, adds a fresh random bit to
every neuron; a client asking one input many times then sees sums of weights.) `Exact` keeps the result
in this split form while only index operations and public additions touch it. A ReLU of it costs no
extra round: with y' = S + W (y or y - 1), relu(y) = y * [y' >= 0] exactly (the two signs differ only at
y = 0, where the product is 0 either way), so the sign comparison of y' and the carry's comparison share
their rounds, and the gating multiplies the carry in as well (`comparison.gate_in`). Any other use turns
it into terms with two more rounds: the carry's second round, then one in which the helper sends u its
part of the carry, masked (`Truncation.terms`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from privacy.encrypted.model.ring import DTYPE, logical_shift
from privacy.encrypted.protocol.arithmetic import add_public_terms, in_failure_window, masked_sum, roles
from privacy.encrypted.protocol.comparison import Bit, Comparison, GateParts, Split
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.rounds import Round
from privacy.encrypted.protocol.shares import Terms

MAX_BOUND_BITS = 61
"""Largest Z: z + 2^Z must lie in [0, 2^(Z+1)) with 2^(Z+1) <= 2^62."""


class Truncation:
    """floor(z / 2^shift) for terms z with |z| < 2^bound_bits, as S + W + carry (module docstring).

    Args:
        rnd: an open round to add the messages to (default: a new one).
    """

    def __init__(self, p: Party, z: Terms, *, shift: int, bound_bits: int, helper: int, rnd: Round | None = None):
        if not 1 <= shift <= bound_bits <= MAX_BOUND_BITS:
            raise ValueError(
                f"truncation needs 1 <= shift <= bound_bits <= {MAX_BOUND_BITS}, got shift {shift}, "
                f"bound_bits {bound_bits}"
            )
        self.p, self.helper, self.shift, self.bound_bits = p, helper, shift, bound_bits
        self.rnd = rnd or p.round()
        self.shape = z.shape
        low = DTYPE((1 << shift) - 1)
        w, self._sum = masked_sum(p, z, helper, self.rnd)
        self._masked = None
        if p.index == helper:
            w = w + DTYPE(1 << bound_bits)
            self._high = logical_shift(w, shift) - DTYPE(1 << (64 - shift)) - DTYPE(1 << (bound_bits - shift))
            carry = Split(self.rnd, helper, self.shape, helper_part=(w & low) - DTYPE(1 << shift))
        else:
            carry = Split(self.rnd, helper, self.shape, pair_part=lambda: self.masked() & low)
        self.carry = Comparison(p, carry, shift)
        self._carry_sent = False
        self._carry: Bit | None = None
        self._terms: Terms | None = None

    def masked(self) -> np.ndarray:
        """The pair's s (runs the round if nobody has yet); flags the examples whose s is in the failure window."""
        if self._masked is None:
            self.rnd.run()
            self._masked = self._sum()
            self.p.flag_rerun(in_failure_window(self._masked, self.bound_bits))
        return self._masked

    def high(self) -> np.ndarray:
        """S at the pair, W at the helper: y' = S + W."""
        return self._high if self.p.index == self.helper else logical_shift(self.masked(), self.shift)

    def send_carry(self, rnd: Round) -> None:
        """Adds the carry comparison's second message to `rnd` (once)."""
        if not self._carry_sent:
            self._carry_sent = True
            self.carry.send(rnd)

    def carry_bit(self) -> Bit:
        """c as a `Bit` (beta at the pair, delta at the helper); runs a round for it if nobody has yet."""
        if self._carry is None:
            if not self._carry_sent:
                rnd = self.p.round()
                self.send_carry(rnd)
                rnd.run()
            self._carry = self.carry.bit()
        return self._carry

    def terms(self) -> Terms:
        """y as additive terms (h: W; u: S + beta + sigma (delta - m); v: sigma m), after one more round."""
        if self._terms is None:
            p, shape = self.p, self.shape
            bit = self.carry_bit()
            h, u, v = roles(self.helper)
            rnd = p.round()
            if p.index == h:
                rnd.send(u, bit.value - p.prf_with(v).words(shape))
                rnd.run()
                self._terms = Terms(self._high)
            else:
                sigma = DTYPE(1) - DTYPE(2) * bit.value
                got = rnd.receive(h, shape) if p.index == u else None
                mask = None if got else p.prf_with(h).words(shape)
                rnd.run()
                self._terms = Terms(self.high() + bit.value + sigma * got.value if got else sigma * mask)
        return self._terms


class Exact:
    """A truncation's result seen through index operations (`map`) and public additions (`add_public`).

    Attributes:
        trunc: the `Truncation`.
        shape: the shape after the operations.
    """

    def __init__(
        self, trunc: Truncation, fn: Callable | None = None, added: np.ndarray | None = None, shape: tuple | None = None
    ):
        self.trunc, self._fn, self._added = trunc, fn or (lambda a: a), added
        self.shape = tuple(trunc.shape if shape is None else shape)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Exact":
        shape = fn(np.zeros(self.shape, dtype=np.uint8)).shape
        inner = self._fn
        return Exact(self.trunc, lambda a: fn(inner(a)), None if self._added is None else fn(self._added), shape)

    def add_public(self, c) -> "Exact":
        shape = np.broadcast_shapes(self.shape, np.shape(c))
        added = np.broadcast_to(np.asarray(c, dtype=DTYPE), shape)
        base = 0 if self._added is None else np.broadcast_to(self._added, shape)
        return Exact(self.trunc, lambda a: np.broadcast_to(self._fn(a), shape), base + added, shape)

    def _helper_part(self) -> np.ndarray:
        high = self._fn(self.trunc.high())
        return high if self._added is None else high + self._added

    def split(self) -> Split:
        """y' = S + W for the sign comparison (its first message rides on the truncation's round)."""
        trunc = self.trunc
        if trunc.p.index == trunc.helper:
            return Split(trunc.rnd, trunc.helper, self.shape, helper_part=self._helper_part())
        return Split(trunc.rnd, trunc.helper, self.shape, pair_part=lambda: self._fn(trunc.high()))

    def gate_parts(self) -> GateParts:
        """y = S + W + c for `comparison.gate_in` (the carry must have been resolved)."""
        trunc = self.trunc
        carry = trunc.carry_bit().map(self._fn)
        if trunc.p.index == trunc.helper:
            return GateParts(None, self._helper_part(), carry)
        return GateParts(self._fn(trunc.high()), None, carry)

    def terms(self) -> Terms:
        """y as additive terms (two more rounds the first time the truncation needs them)."""
        terms = self.trunc.terms().map(self._fn)
        return terms if self._added is None else add_public_terms(self.trunc.p, terms, self._added)
