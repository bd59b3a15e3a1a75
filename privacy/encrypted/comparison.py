"""Secure comparison by bit decomposition, and what is built on it: ReLU, maximum, argmax.

Bits are handled 64 at a time: a binary share packs the 64 bits of a ring element into one uint64
word, so XOR, shifts and bit broadcasts are local word operations and one AND round processes all
bits of all elements at once.

Bit decomposition (ABY3's A2B with a Kogge-Stone adder): x = s + c2 with s = c0 + c1 known to party
0 and c2 known to parties 1 and 2. Party 0 XOR-shares s (1 round); the two binary numbers are added
with a parallel-prefix adder: generate g = s & c2 (1 round) and six prefix levels (1 round each),
8 rounds in all. The sign bit of x is bit 63 of the sum. The same sum is used for the overflow
monitor: the bits of ``(x XOR sign) >> range_bits`` are zero exactly when -2^range_bits <= x < 2^range_bits, and
are opened to the client with the output.

Bit injection (a 0/1 bit times an arithmetic share): party 0 knows c = b0 ^ b1 and parties 1, 2 know
b2; b = c + b2 - 2*c*b2 over the ring takes one sharing round and one multiplication round, and the
product with x one more. ReLU(x) = x * NOT sign(x): 11 rounds. max(a, b) = a + [a < b] * (b - a).
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.arithmetic import mul, public_share, reshare_from_party0
from privacy.encrypted.party import Party
from privacy.encrypted.ring import DTYPE
from privacy.encrypted.shares import AShare, BShare

_ONE = DTYPE(1)
WORD_BITS = 64


def _and_local(x: BShare, y: BShare) -> np.ndarray:
    return (x.a & y.a) ^ (x.a & y.b) ^ (x.b & y.a)


def and_many(p: Party, pairs: list[tuple[BShare, BShare]]) -> list[BShare]:
    """Bitwise ANDs of several pairs of binary shares in one round."""
    terms = [_and_local(x, y) for x, y in pairs]
    flat = np.concatenate([t.ravel() for t in terms])
    flat = flat ^ p.zero_share_xor(flat.shape)
    received = p.exchange({p.prev: [flat]}, (p.next,))[p.next][0]
    out, start = [], 0
    for t in terms:
        out.append(BShare(flat[start:start + t.size].reshape(t.shape), received[start:start + t.size].reshape(t.shape)))
        start += t.size
    return out


def _shl(x: BShare, k: int) -> BShare:
    return x.map(lambda c: c << DTYPE(k))


def bit_decompose(p: Party, x: AShare) -> BShare:
    """Binary share of the ring elements x (all 64 bits): 8 rounds."""
    zero = np.zeros(x.shape, dtype=DTYPE)
    s = BShare(*reshare_from_party0(p, x.a + x.b if p.index == 0 else zero, xor=True))
    c2 = BShare(zero, x.b) if p.index == 1 else BShare(x.a, zero) if p.index == 2 else BShare(zero, zero)
    propagate = s ^ c2
    (generate,) = and_many(p, [(s, c2)])
    group_p, group_g, k = propagate, generate, 1
    while k < WORD_BITS:
        if 2 * k < WORD_BITS:
            new_g, group_p = and_many(p, [(group_p, _shl(group_g, k)), (group_p, _shl(group_p, k))])
        else:
            (new_g,) = and_many(p, [(group_p, _shl(group_g, k))])
        group_g = group_g ^ new_g
        k *= 2
    return propagate ^ _shl(group_g, 1)


def sign_bit(p: Party, x: AShare) -> BShare:
    """[x < 0] as a binary share in bit 0 of each word; records the overflow check of x."""
    bits = bit_decompose(p, x)
    sign = bits.map(lambda c: c >> DTYPE(WORD_BITS - 1))
    spread = bits.map(lambda c: (c.view(np.int64) >> np.int64(WORD_BITS - 1)).view(DTYPE))
    p.overflow_words.append((bits ^ spread).map(lambda c: (c >> DTYPE(p.range_bits)).ravel()))
    return sign


def bit_not(p: Party, bit: BShare) -> BShare:
    """1 - bit for bits held in bit 0 (flips component 0, held by parties 0 and 2)."""
    if p.index == 0:
        return BShare(bit.a ^ _ONE, bit.b)
    if p.index == 2:
        return BShare(bit.a, bit.b ^ _ONE)
    return bit


def bit_to_arith(p: Party, bit: BShare) -> AShare:
    """A 0/1 bit (bit 0 of each word) as an arithmetic share of the integer 0 or 1: 2 rounds."""
    zero = np.zeros(bit.shape, dtype=DTYPE)
    c = AShare(*reshare_from_party0(p, (bit.a ^ bit.b) & _ONE if p.index == 0 else zero))
    b2 = (AShare(zero, bit.b & _ONE) if p.index == 1 else AShare(bit.a & _ONE, zero) if p.index == 2
          else AShare(zero, zero))
    both = mul(p, c, b2)
    return c + b2 - both.times_public(DTYPE(2))


def less_than_zero(p: Party, x: AShare) -> AShare:
    """[x < 0] as an arithmetic 0/1 share: 10 rounds."""
    return bit_to_arith(p, sign_bit(p, x))


def relu(p: Party, x: AShare) -> AShare:
    """max(x, 0) exactly, elementwise: 11 rounds."""
    positive = bit_to_arith(p, bit_not(p, sign_bit(p, x)))
    return mul(p, positive, x)


def maximum(p: Party, x: AShare) -> AShare:
    """Maximum over the last axis by a tournament: ceil(log2 n) comparison levels of 11 rounds."""
    while x.shape[-1] > 1:
        pairs = x.shape[-1] // 2
        left = x.map(lambda c: c[..., 0:2 * pairs:2])
        right = x.map(lambda c: c[..., 1:2 * pairs:2])
        diff = right - left
        right_wins = less_than_zero(p, -diff)
        best = left + mul(p, right_wins, diff)
        if x.shape[-1] % 2:
            best = _append_last(best, x)
        x = best
    return x.map(lambda c: c[..., 0])


def argmax(p: Party, x: AShare) -> AShare:
    """Index of the maximum over the last axis (first index on ties), as an arithmetic integer share."""
    index = public_share(p, np.broadcast_to(np.arange(x.shape[-1], dtype=DTYPE), x.shape).copy())
    while x.shape[-1] > 1:
        pairs = x.shape[-1] // 2
        pick = lambda s, start: s.map(lambda c: c[..., start:2 * pairs:2])  # noqa: E731
        left, right, left_i, right_i = pick(x, 0), pick(x, 1), pick(index, 0), pick(index, 1)
        diff, diff_i = right - left, right_i - left_i
        right_wins = less_than_zero(p, left - right)
        both = mul(p, AShare(np.stack([right_wins.a] * 2), np.stack([right_wins.b] * 2)),
                   AShare(np.stack([diff.a, diff_i.a]), np.stack([diff.b, diff_i.b])))
        new_x = left + both.map(lambda c: c[0])
        new_i = left_i + both.map(lambda c: c[1])
        if x.shape[-1] % 2:
            new_x, new_i = _append_last(new_x, x), _append_last(new_i, index)
        x, index = new_x, new_i
    return index.map(lambda c: c[..., 0])


def _append_last(best: AShare, source: AShare) -> AShare:
    return AShare(np.concatenate([best.a, source.a[..., -1:]], axis=-1),
                  np.concatenate([best.b, source.b[..., -1:]], axis=-1))


def positive(p: Party, x: AShare) -> BShare:
    """[x > 0] as a binary share in bit 0 (the label of a single-logit classifier)."""
    return sign_bit(p, -x)
