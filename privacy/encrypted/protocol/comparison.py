"""Secure comparison with a helper, and the gating of values by its result (ReLU, max, argmax).

Every replicated share splits into two addends without communication: x = A + B with A = c_{h+2},
the component the pair u = h+1, v = h+2 holds in common, and B = c_h + c_{h+1}, the sum of the
helper h's two components. When the interval analysis proves x in [-2^R, 2^R), the sign of x is bit
R of X = A + B' with B' = B + 2^R, and that bit is A_R xor B'_R xor carry, where carry = [a > c'] for
a = A mod 2^R (known to the pair) and c' = 2^R - 1 - (B' mod 2^R) (known to the helper).

`compare` decides [a > c'] in the style of SecureNN's private compare, with the roles of two parties
who know one number and a third who knows the other:

1. The helper sends u additive shares mod p = 127 of the R bits of c' (v draws its shares from the
   key it shares with the helper). This message rides on the round that made x (`Pending`).
2. The pair draws a secret bit beta. For beta = 0 it tests a > c', for beta = 1 it tests c' > a - 1
   (c' >= a); in both cases the test is whether some w_i = 0 for
   ``w_i = (y_i - t_i + 1) + sum_{j>i} (t_j xor y_j)`` (t, y the tested numbers' bits), which is
   linear in the shared bits of c'. Each w_i is multiplied by a random nonzero rho_i, the vector is
   rotated by a random offset, both pair members mask their shares with a common random vector and
   send them to the helper. The helper adds them: at most one entry is zero, at a uniformly random
   position, and the others are uniform nonzero; it learns delta = carry xor beta, a uniform bit.
   One round, R bytes per element from each pair member.

Then [x >= 0] = beta' xor delta' with beta' = A_R xor beta at the pair and delta' = B'_R xor delta at
the helper (`Bit`). `gate` multiplies values by that bit in one round (the helper sends u three masked
products per value) and leaves the results as terms of u and v (`Terms` with the helper's term zero);
`arithmetic.reshare_pair` makes them replicated again when a product with secret weights needs that.
ReLU(x) = x * [x >= 0]: one comparison round, one gating round, plus one re-sharing round before the
next secret product, and the helper's first message merged into the round that made x.

Correctness needs x in [-2^R, 2^R), which `privacy.encrypted.model.ranges` proves for every compared value
from the declared input bounds; nothing here detects a violation, and nothing is revealed either.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.protocol.arithmetic import Pending
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, Terms

MODULUS = 127
"""The prime p of the helper's test vectors: larger than every w_i (at most R + 2 <= 63), and 2^7 - 1,
so that residues fit a byte and sample with few rejections."""
MAX_BITS = 61
"""Largest R: compared values must lie in [-2^61, 2^61)."""


@dataclasses.dataclass(frozen=True)
class Bit:
    """A secret bit b = beta' xor delta': `value` is beta' at the helper's pair, delta' at the helper."""

    helper: int
    value: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.value.shape


def _roles(helper: int) -> tuple[int, int, int]:
    return helper, (helper + 1) % NUM_PARTIES, (helper + 2) % NUM_PARTIES


def _bits(v: np.ndarray, count: int) -> np.ndarray:
    """Bits count-1..0 of uint64 values, most significant first, as int16 along a trailing axis."""
    v = np.asarray(v, dtype=DTYPE)
    top = np.ascontiguousarray(v.reshape(-1, 1) << DTYPE(64 - count))
    flat = np.unpackbits(top.byteswap().view(np.uint8), axis=-1, count=count)
    return flat.reshape(v.shape + (count,)).astype(np.int16)


_OFFSET = 1 << 14
_REDUCE = ((np.arange(2 * _OFFSET) - _OFFSET) % MODULUS).astype(np.int16)


def _mod(w: np.ndarray) -> np.ndarray:
    """w mod p for int16 values in [-2^14, 2^14) (a table lookup: numpy's integer remainder is slow)."""
    return _REDUCE[w + _OFFSET]


def _before(g: np.ndarray) -> np.ndarray:
    """sum of g over the earlier positions of the last axis (the more significant bits)."""
    return np.cumsum(g, axis=-1, dtype=np.int16) - g


def _rotate(w: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each row of the last axis rotated left by its own offset."""
    rows = w.reshape(-1, w.shape[-1])
    doubled = np.lib.stride_tricks.sliding_window_view(np.concatenate([rows, rows], axis=-1), w.shape[-1], axis=-1)
    return doubled[np.arange(len(rows)), offsets.reshape(-1)].reshape(w.shape)


def compare(p: Party, x: Pending, bits: int, *, strict: bool = False) -> Bit:
    """[x >= 0] (or [x > 0] with `strict`) for x in [-2^bits, 2^bits) (x - 1 in that range if strict).

    The helper is ``x.ready``; its first message goes into ``x.rnd`` (which then runs), the second round
    is the pair's. See the module docstring.
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"comparison bits must be in [1, {MAX_BITS}], got {bits}")
    h, u, v = _roles(x.ready)
    shape, low = x.shape, DTYPE((1 << bits) - 1)
    offset = DTYPE((1 << bits) - (1 if strict else 0))
    if p.index == h:
        big = x.early.a + x.early.b + offset  # B'
        shares = p.prf_with(v).residues(shape + (bits,), MODULUS)
        x.rnd.send(u, _mod(_bits(low - (big & low), bits) - shares).astype(np.uint8))
        x.value()
        rnd = p.round()
        vectors = [rnd.receive(j, shape + (bits,), np.uint8) for j in (u, v)]
        rnd.run()
        total = vectors[0].value.astype(np.int16) + vectors[1].value
        delta = np.any((total == 0) | (total == MODULUS), axis=-1).astype(DTYPE)
        return Bit(h, ((big >> DTYPE(bits)) & DTYPE(1)) ^ delta)
    first = p.index == u
    slot = x.rnd.receive(h, shape + (bits,), np.uint8) if first else None
    shares = None if first else p.prf_with(h).residues(shape + (bits,), MODULUS)
    share = x.value()
    big = share.b if first else share.a  # A = c_{h+2}
    shares = (slot.value if first else shares).astype(np.int16)
    pair = p.prf_with(v if first else u)
    beta = pair.words(shape) & DTYPE(1)
    rho = pair.residues(shape + (bits,), MODULUS - 1).astype(np.int16) + 1
    rotation = (pair.words(shape) % DTYPE(bits)).astype(np.int64)
    mask = pair.residues(shape + (bits,), MODULUS).astype(np.int16)
    a = big & low
    t = _bits(np.where(beta == 1, (a - DTYPE(1)) & low, a), bits)  # a, or a - 1 for the test c' > a - 1
    negate = (beta == 1)[..., None]  # False: is a > c'; True: is c' > a - 1
    g = shares - 2 * t * shares  # (t_j xor c'_j) - t_j, on shares of c'
    if first:
        g += t
        w = _before(g) + np.where(negate, t - shares, shares - t) + 1
    else:
        w = _before(g) + np.where(negate, -shares, shares)
    always = (beta == 1) & (a == 0)  # c' > -1 holds: a vector with exactly one zero
    if np.any(always):
        w[always] = np.concatenate([[0], np.ones(bits - 1, dtype=np.int16)]) if first else 0
    w = _mod(w) * rho + (mask if first else MODULUS - mask)
    rnd = p.round()
    rnd.send(h, _mod(_rotate(w, rotation)).astype(np.uint8))
    rnd.run()
    return Bit(h, ((big >> DTYPE(bits)) & DTYPE(1)) ^ beta)


def gate(p: Party, bit: Bit, values: list[AShare]) -> list[Terms]:
    """value * bit for each value (shapes equal to the bit's): 1 round; terms of the helper's pair.

    With b = beta' + sigma * delta' (sigma = 1 - 2 beta') and value = A + B:
    value * b = A beta' + B beta' + sigma A delta' + sigma B delta'. The helper sends u the B-side
    factors delta', B and B delta', each minus a mask drawn from the key it shares with v; u and v
    then hold additive terms of the product.
    """
    h, u, v = _roles(bit.helper)
    shape = bit.shape
    rnd = p.round()
    if p.index == h:
        key = p.prf_with(v)
        delta = bit.value
        rnd.send(u, delta - key.words(shape))
        for value in values:
            both = value.a + value.b
            rnd.send(u, both - key.words(shape))
            rnd.send(u, both * delta - key.words(shape))
        rnd.run()
        return [Terms(np.zeros(shape, dtype=DTYPE), h) for _ in values]
    beta = bit.value
    sigma = DTYPE(1) - DTYPE(2) * beta
    if p.index == u:
        delta = rnd.receive(h, shape)
        factors = [(rnd.receive(h, shape), rnd.receive(h, shape)) for _ in values]
        rnd.run()
        return [Terms(value.b * beta + beta * both.value + sigma * value.b * delta.value + sigma * product.value, h)
                for value, (both, product) in zip(values, factors)]
    key = p.prf_with(h)
    delta = key.words(shape)
    masks = [(key.words(shape), key.words(shape)) for _ in values]
    rnd.run()
    return [Terms(beta * both + sigma * value.a * delta + sigma * product, h)
            for value, (both, product) in zip(values, masks)]


def open_bit(p: Party, bit: Bit) -> np.ndarray:
    """What this party sends the output's owner: three XOR shares of the bit, uniform one by one."""
    h, u, v = _roles(bit.helper)
    if p.index == h:
        return bit.value
    blind = p.prf_with(v if p.index == u else u).words(bit.shape) & DTYPE(1)
    return bit.value ^ blind if p.index == u else blind
