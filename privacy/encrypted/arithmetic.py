"""Arithmetic on replicated shares: public operations, multiplication, truncation, opening.

Multiplication (ABY3, semi-honest): party i computes its term of a 3-out-of-3 sharing of x*y from
the four components it holds, ``z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i``, masks it with a fresh
zero-sharing and sends it to party i-1 (`reshare`): one round, one ring element per output element
per party, no dealer and no precomputed triples. Matrix products work the same way on matrices.

Truncation (ABY3's Pi_trunc1 idea, SecureML's local shift on a two-out-of-two split): a fixed-point
product carries 2f fractional bits and must be divided by 2^f. Write x = s + c2 with s = c0 + c1
(held by party 0) and c2 (held by parties 1 and 2). Party 0 shifts s, parties 1 and 2 compute
-((-c2) >> f), and party 0 re-shares its part with one message: one round, one element per output
element. Because s is uniformly random, the result is floor(x / 2^f) + e with e in {0, 1} and
E[e] = frac(x / 2^f) (unbiased stochastic rounding), except with probability |x| / 2^64 (x in ring
units), when it is off by about 2^(64-f). Such failures are what the overflow monitor catches: every
secure comparison checks that its input lies in [-2^range_bits, 2^range_bits) and reports the bits
above to the client (see `privacy.encrypted.comparison`).
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.party import Party
from privacy.encrypted.ring import DTYPE, logical_shift
from privacy.encrypted.shares import AShare


def add_public(p: Party, x: AShare, c) -> AShare:
    """x + c for public ring elements c (added to component 0, held by parties 0 and 2)."""
    c = np.asarray(c, dtype=DTYPE)
    if p.index == 0:
        return AShare(x.a + c, x.b + np.zeros_like(c))
    if p.index == 2:
        return AShare(x.a + np.zeros_like(c), x.b + c)
    return AShare(x.a + np.zeros_like(c), x.b + np.zeros_like(c))


def public_share(p: Party, c: np.ndarray) -> AShare:
    """A (non-random) sharing of the public ring elements c."""
    zero = np.zeros_like(np.asarray(c, dtype=DTYPE))
    return add_public(p, AShare(zero, zero), c)


def reshare(p: Party, z: np.ndarray) -> AShare:
    """Turns this party's term z_i of a 3-out-of-3 sharing into a fresh replicated share (1 round)."""
    z = z + p.zero_share(z.shape)
    received = p.exchange({p.prev: [z]}, (p.next,))
    return AShare(z, received[p.next][0])


def reshare_from_party0(p: Party, value: np.ndarray, *, xor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Components (v - m, m, c2) of v + c2, from a v only party 0 knows: 1 round, one message.

    Party 0 passes v; parties 1 and 2 pass the component c2 they both hold. The mask m is drawn from
    k_1 (parties 0 and 1) and party 0 sends c0 = v - m to party 2. With ``xor`` the components are
    (v ^ m, m, c2), a binary sharing of v ^ c2.

    Returns:
        This party's pair (c_i, c_{i+1}), for an `AShare` or a `BShare`.
    """
    if p.index == 0:
        m = p.prf_next.words(value.shape)
        c0 = value ^ m if xor else value - m
        p.exchange({2: [c0]})
        return c0, m
    if p.index == 1:
        m = p.prf_self.words(value.shape)
        p.exchange()
        return m, value
    return value, p.exchange({}, (0,))[0][0]


def mul_local(x: AShare, y: AShare) -> np.ndarray:
    """This party's 3-out-of-3 term of the elementwise product x*y (no communication)."""
    return x.a * y.a + x.a * y.b + x.b * y.a


def matmul_local(x: AShare, w: AShare) -> np.ndarray:
    """This party's 3-out-of-3 term of the matrix product x @ w (no communication)."""
    return x.a @ (w.a + w.b) + x.b @ w.a


def mul(p: Party, x: AShare, y: AShare) -> AShare:
    """Elementwise x*y without truncation (for products with 0/1 bits or integers): 1 round."""
    return reshare(p, mul_local(x, y))


def truncate(p: Party, x: AShare, bits: int) -> AShare:
    """floor(x / 2^bits) + {0, 1}, probabilistically (see module docstring): 1 round."""
    d = DTYPE(bits)
    if p.index == 0:
        return AShare(*reshare_from_party0(p, logical_shift(x.a + x.b, d)))
    c2 = x.b if p.index == 1 else x.a
    return AShare(*reshare_from_party0(p, -logical_shift(-c2, d)))


def open_share(p: Party, x: AShare) -> np.ndarray:
    """What party i sends the output's owner: its component, re-randomized by a zero-sharing.

    The three values are a uniformly random 3-out-of-3 sharing of x, so they reveal x and nothing else.
    """
    return x.a + p.zero_share(x.shape)
