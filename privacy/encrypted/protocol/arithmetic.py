"""Arithmetic on shares: public operations, local products, re-sharing, opening.

Products (ABY3, semi-honest): from replicated shares, party i computes its term of an additive
3-out-of-3 sharing of x*y locally, ``z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i`` (matrix products the
same way): `mul_local`, `matmul_local`. No dealer, no triples.

Terms become a replicated share again in one round, in which a helper h and its pair u = h+1, v = h+2
split z = z_0 + z_1 + z_2 into s + w (`masked_sum`): u sends z_u + a to v and v sends z_v + b to u (a is
known to h and u, b to h and v, both fresh PRF output), so u and v both learn s = z_u + z_v + a + b, a
uniformly random ring element, and h computes w = z_h - a - b from its own data. `reshare` hands out
s and w as components; `privacy.encrypted.protocol.truncation` divides the same split exactly by 2^f.
The helper knows its whole share before the round, which lets a following comparison, for which h is
the helper, send its first message in the same round (`Pending`).

`open_terms` is what a party sends the output's owner: its term re-randomized by a zero-sharing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.rounds import Round
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, Terms

HELPER = 2
"""Default helper of `reshare`: parties 0 and 1 learn the masked sum, party 2 computes the rest."""


def add_public(p: Party, x: AShare, c) -> AShare:
    """x + c for public ring elements c (added to component 0, held by parties 0 and 2)."""
    c = np.asarray(c, dtype=DTYPE)
    if p.index == 0:
        return AShare(x.a + c, x.b + np.zeros_like(c))
    if p.index == 2:
        return AShare(x.a + np.zeros_like(c), x.b + c)
    return AShare(x.a + np.zeros_like(c), x.b + np.zeros_like(c))


def add_public_terms(p: Party, x: Terms, c) -> Terms:
    """x + c on terms: the first party whose term may be nonzero adds c."""
    c = np.asarray(c, dtype=DTYPE)
    adder = 0 if x.zero != 0 else 1
    return Terms(x.term + (c if p.index == adder else np.zeros_like(c)), x.zero)


def public_share(p: Party, c: np.ndarray) -> AShare:
    """A (non-random) sharing of the public ring elements c."""
    zero = np.zeros_like(np.asarray(c, dtype=DTYPE))
    return add_public(p, AShare(zero, zero), c)


def mul_local(x: AShare, y: AShare) -> Terms:
    """This party's term of the elementwise product x*y (no communication)."""
    return Terms(x.a * y.a + x.a * y.b + x.b * y.a)


def matmul_local(x: AShare, w: AShare) -> Terms:
    """This party's term of the matrix product x @ w (no communication)."""
    return Terms(x.a @ (w.a + w.b) + x.b @ w.a)


class Pending:
    """A replicated share whose round is prepared but has not run yet.

    Attributes:
        rnd: the round that completes it (other operations may still add messages to it).
        ready: the party that already knows its own share; the helper of a comparison of this value
            sends its first message in `rnd` (`privacy.encrypted.protocol.comparison.Comparison`).
        early: that party's share (None at the other parties).
        shape: shape of the shared value.
    """

    def __init__(self, rnd: Round, ready: int, early: AShare | None, finish: Callable[[], AShare], shape: tuple):
        self.rnd, self.ready, self.early, self.shape = rnd, ready, early, tuple(shape)
        self._finish, self._value = finish, None

    def value(self) -> AShare:
        """This party's share (runs the round if nobody has yet)."""
        if self._value is None:
            self.rnd.run()
            self._value = self._finish()
        return self._value

    def then(self, fn: Callable[[AShare], AShare], shape: tuple) -> "Pending":
        """The pending result of a local (public, linear) operation on this value."""
        return Pending(
            self.rnd, self.ready, None if self.early is None else fn(self.early), lambda: fn(self.value()), shape
        )

    @classmethod
    def of_share(cls, p: Party, x: AShare, ready: int = HELPER) -> "Pending":
        """An already known share, with a fresh (so far empty) round for messages about it."""
        return cls(p.round(), ready, x if p.index == ready else None, lambda: x, x.shape)


def in_failure_window(s: np.ndarray, bound_bits: int) -> np.ndarray:
    """Per example (first axis), whether some masked sum s lies below 2^(bound_bits + 1): where a
    truncation may go wrong (a check the pair makes on its own data)."""
    low = s < DTYPE(1 << (bound_bits + 1))
    return low.reshape(len(low), -1).any(axis=1) if low.ndim else np.array([bool(low)])


def roles(helper: int) -> tuple[int, int, int]:
    """(h, u, v): the helper and its pair."""
    return helper, (helper + 1) % NUM_PARTIES, (helper + 2) % NUM_PARTIES


def masked_sum(p: Party, z: Terms, helper: int, rnd: Round) -> tuple[np.ndarray | None, Callable[[], np.ndarray]]:
    """Adds the split of z to `rnd`: returns (w, None) at the helper and (None, s) at its pair, where
    z = s + w, s = z_u + z_v + a + b is uniformly random and known to u and v once `rnd` has run
    (call the function), and w = z_h - a - b is known to h now."""
    h, u, v = roles(helper)
    shape = z.shape
    if p.index == h:
        return z.term - p.prf_with(u).words(shape) - p.prf_with(v).words(shape), None
    first = p.index == u
    mask = p.prf_with(h).words(shape)  # a at u, b at v
    rnd.send(v if first else u, z.term + mask)
    other = rnd.receive(v if first else u, shape)
    return None, lambda: z.term + mask + other.value


def reshare(p: Party, z: Terms, *, helper: int = HELPER, rnd: Round | None = None) -> Pending:
    """Replicated share of z from terms: 1 round (see the module docstring).

    Components: (c_h, c_u) = (r, w - r) at h, which sends c_u to u; (c_u, c_v) = (c_u, s) at u;
    (c_v, c_h) = (s, r) at v, with r from the key of h and v.

    Args:
        rnd: an open round to add the messages to (default: a new one).
    """
    h, u, v = roles(helper)
    rnd = rnd or p.round()
    shape = z.shape
    w, s = masked_sum(p, z, helper, rnd)
    if p.index == h:
        r = p.prf_with(v).words(shape)
        rnd.send(u, w - r)
        share = AShare(r, w - r)  # components (c_h, c_u)
        return Pending(rnd, h, share, lambda: share, shape)
    first = p.index == u
    r = None if first else p.prf_with(h).words(shape)
    from_helper = rnd.receive(h, shape) if first else None
    return Pending(rnd, h, None, lambda: AShare(from_helper.value, s()) if first else AShare(s(), r), shape)


def reshare_pair(p: Party, y: Terms, rnd: Round | None = None) -> Pending:
    """Replicated share of y = t_u + t_v, held by the pair u, v of helper ``h = y.zero``: 1 round.

    The pair draws nu and xi from their common key and sends the helper t_u - nu + xi and t_v - xi
    (uniform to it); the components are (c_h, c_u, c_v) = (t_v - xi, t_u - nu + xi, nu). Party u knows
    its share before the round (`Pending.ready`), so a comparison with u as helper can start in it.
    """
    if y.zero is None:
        raise ValueError("reshare_pair needs terms with one zero party")
    h, u, v = roles(y.zero)
    rnd = rnd or p.round()
    shape = y.shape
    if p.index == h:
        c_u, c_h = rnd.receive(u, shape), rnd.receive(v, shape)
        return Pending(rnd, u, None, lambda: AShare(c_h.value, c_u.value), shape)
    pair = p.prf_with(v if p.index == u else u)
    nu, xi = pair.words(shape), pair.words(shape)
    if p.index == u:
        c_u = y.term - nu + xi
        rnd.send(h, c_u)
        share = AShare(c_u, nu)
        return Pending(rnd, u, share, lambda: share, shape)
    c_h = y.term - xi
    rnd.send(h, c_h)
    share = AShare(nu, c_h)
    return Pending(rnd, u, None, lambda: share, shape)


def open_terms(p: Party, x: Terms) -> np.ndarray:
    """What this party sends the output's owner: its term, re-randomized by a zero-sharing.

    The three values are a uniformly random 3-out-of-3 sharing of x, so they reveal x and nothing else.
    """
    return x.term + p.zero_share(x.shape)
