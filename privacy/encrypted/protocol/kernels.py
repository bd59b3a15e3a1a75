"""Compiled loops of the comparison's test vectors and of the PRF's residues (numba), without temporaries, and of
the ring-word steps around them (the comparison's splits and result bits, a gate's terms, the input check's parts).

A comparison's work is a few operations on each of R residues per compared value (`comparison`): numpy
makes a full pass, and an array, for each of them. These kernels do them row by row in registers; the ring-word
kernels do several numpy passes over the compared values in one. On large
arrays they release the GIL (`nogil`), so the three party threads of an in-process cluster run them at the
same time; on small ones they keep it (`KEEP_GIL_BELOW`). Each computes exactly what the comparison's
docstring (and `randomness.Prf.residues`) defines, from the same inputs; `tests/privacy/encrypted/test_kernels.py`
checks them bit for bit against the numpy computation they replaced, at every width.

Compilation: the kernels have fixed signatures and compile when this module is imported, twice (releasing the
GIL and keeping it): on a clean cache about twice the CPU of compiling them once, a few seconds; from the cache
about a tenth more than loading one copy (benchmarks/README.md). It is imported where the kernels are used and by
`randomness.self_test`, which every process runs before its first key (so a server compiles at start-up, never on
a client's request), not by ``import privacy.encrypted``: commands that never run the protocol (`ppml report`, the
TFX glue) do not compile them (nor import numba, unless they add training noise: `privacy.keras.noise_kernel`). The
machine code is cached in a directory private to the user (`privacy._numba`).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import types

from privacy._numba import compiled
from privacy.encrypted.protocol.modulus import MODULUS


def _array(dtype, dims: int, readonly: bool = False, aligned: bool = True):
    return types.Array(dtype, dims, "C", readonly=readonly, aligned=aligned)


_U8, _U64 = types.uint8, types.uint64


KEEP_GIL_BELOW = 1 << 16
"""Entries of a call's work array (residues, bytes of a draw, or ring words) below which a kernel keeps the GIL.
Where other threads wait for the GIL (the three parties of an in-process cluster), a release hands it to one of
them, and taking it back waits for that thread's next release: below this size that costs more than the call runs
(benchmarks/README.md, encrypted_inference, Dec 7 2026)."""


def _twins(*signatures, work: int, depends: tuple = ()):
    """`compiled` twice from one function, releasing the GIL (``.free``) and keeping it (``.held``); a call runs
    ``.free`` where its argument number `work` has at least `KEEP_GIL_BELOW` entries, ``.held`` below."""

    def decorate(fn):
        free = compiled(*signatures, depends=depends)(fn)
        held = compiled(*signatures, depends=depends, nogil=False)(fn)

        @functools.wraps(fn)
        def call(*args):
            return (call.free if args[work].size >= KEEP_GIL_BELOW else call.held)(*args)

        call.free, call.held = free, held
        return call

    return decorate


_P = numba.uint32(MODULUS)
_LIFT = 64 * MODULUS
"""A multiple of p above every |w_i| (at most 63 residues of at most p - 1, plus 1): w + LIFT is unsigned."""
_DEPENDS = (MODULUS,)
"""The value from `modulus` compiled into the kernels that use p: their machine code is cached per value."""


@_twins(types.void(_array(_U64, 1), _array(_U8, 2, True), _array(_U8, 2)), work=1, depends=_DEPENDS)
def helper_message(other, shares, out):  # pragma: no cover - compiled
    """out[r, j] = (bit j of other[r], most significant first, minus shares[r, j]) mod p: the helper's
    additive shares for u of the bits of c' (v's are `shares`, the helper's own PRF residues: below p)."""
    count, bits = shares.shape
    one = numba.uint64(1)
    p = numba.uint8(MODULUS)
    for r in range(count):
        value = other[r]
        for j in range(bits):  # bit + p - share is in [1, p + 1] (shares are the helper's own residues, < p)
            total = numba.uint8((value >> numba.uint64(bits - 1 - j)) & one) + (p - shares[r, j])
            out[r, j] = total - p * numba.uint8(total >= p)  # mod p by one conditional subtraction: vectorizes


@_twins(
    types.uint8(
        _array(_U64, 1, True),
        _array(_U64, 1, True),
        _array(_U8, 2, True),
        _array(_U8, 2, True),
        _array(_U8, 2, True),
        types.boolean,
        _array(_U8, 2),
    ),
    work=2,
    depends=_DEPENDS,
)
def pair_vectors(a, coins, shares, rho, mask, first, out):  # pragma: no cover - compiled
    """A pair member's blinded, rotated test vectors (`comparison.Comparison.send`), one row per value; returns the
    largest of `shares` (0 if there are none), which the caller tests against p before it sends anything.

    a: the pair's number (only its value mod 2^R is used); coins: the pair's random words, bit 0 the secret bit beta
    and the other 63 bits, mod R, the row's left rotation; shares: this member's shares mod p of the bits of c'; rho:
    multipliers less one (in [0, p - 1)); mask: the common mask (added by u, subtracted by v); first: whether this
    is u.
    Row r of out is w_i rho_i +- mask_i mod p at position (i - rotation) mod R, with
    w_i = [u] + sum_{j<i} ((1 - 2 t_j) c_j + [u] t_j) + (1 - 2 beta)(c_i - [u] t_i) for the bits t of
    a - beta mod 2^R (most significant first), or the fixed vector (0, 1, ..., 1) / 0 where beta = 1 and
    a = 0 mod 2^R (c' > -1 always holds). One reduction mod p per entry: (w + LIFT) rho + mask < 2^32.
    """
    count, bits = shares.shape
    one = numba.uint64(1)
    low = (one << numba.uint64(bits)) - one
    lead = 1 if first else 0
    w = np.empty(bits, np.uint32)  # w + LIFT of one row
    g = np.empty(bits, np.int32)  # the terms of its prefix sums
    blinded = np.empty(2 * bits, np.uint8)  # one row's entries, twice: the rotation is a window of it
    largest = numba.uint8(0)
    for r in range(count):
        coin = coins[r]
        b = numba.int64(coin & one)
        tested = (a[r] - (coin & one)) & low
        always = numba.int32(b & numba.int64((a[r] & low) == 0))  # the fixed vector, chosen without a branch
        sign = 1 - 2 * b
        for i in range(bits):  # the terms, then their prefix sums (a short serial loop)
            t = numba.int32((tested >> numba.uint64(bits - 1 - i)) & one)
            largest = max(largest, shares[r, i])
            c = numba.int32(shares[r, i])
            g[i] = (1 - 2 * t) * c + lead * t
            w[i] = numba.uint32(sign * (c - lead * t) + _LIFT)
        before = numba.int32(lead)
        for i in range(bits):
            fixed = numba.uint32(_LIFT + (lead if i > 0 else 0))
            w[i] = numba.uint32((w[i] + before) * numba.uint32(1 - always) + fixed * numba.uint32(always))
            before += g[i]
        for i in range(bits):
            m = numba.uint32(mask[r, i])
            blinded[i] = numba.uint32(w[i] * numba.uint32(rho[r, i] + 1) + (m if first else _P - m)) % _P
            blinded[bits + i] = blinded[i]
        offset = numba.int64((coin >> one) % numba.uint64(bits))
        for j in range(bits):
            out[r, j] = blinded[offset + j]
    return largest


@_twins(types.void(_array(_U8, 2, True), _array(_U8, 2, True), _array(_U64, 1)), work=0, depends=_DEPENDS)
def any_zero_sum(u, v, out):  # pragma: no cover - compiled
    """out[r] = 1 if u[r, j] + v[r, j] = 0 mod p for some j, else 0: the helper's delta (entries below p,
    so the sum is 0 or p)."""
    count, bits = u.shape
    for r in range(count):
        found = numba.uint64(0)
        for j in range(bits):  # every entry, without a branch: the time says nothing of where or whether
            total = numba.uint32(u[r, j]) + numba.uint32(v[r, j])
            found |= numba.uint64(total == 0) | numba.uint64(total == MODULUS)
        out[r] = found


_BYTES = numba.uint64(0x0101010101010101)
"""1 in every byte of a word: times a byte value, that value in every byte."""


@_twins(types.int64[::1](_array(_U8, 1, aligned=False), types.uint8, types.int64), work=0)
def masked_draws(values, bits_mask, modulus):  # pragma: no cover - compiled
    """values &= bits_mask in place; returns the positions (ascending) where that is >= modulus (to draw again).

    Eight bytes at a time: a byte b exceeds n = modulus - 1 where (b mod 128) + (127 - n mod 128) carries into
    bit 7, or'ed with b's own bit 7 when n < 128, and'ed with it when n >= 128 (exact per byte, with no carry
    between bytes, in either byte order). The first pass masks and counts, the second finds the positions byte by
    byte in the few words that have one (about 6 % of them for p = 127). `values` may start anywhere: it is typed
    unaligned, so its word view promises the compiler no alignment.
    """
    count = len(values)
    words = count // 8
    packed = values[: 8 * words].view(np.uint64)
    n = numba.uint64(modulus - 1)
    wide_mask = numba.uint64(bits_mask) * _BYTES
    low7, high = numba.uint64(127) * _BYTES, numba.uint64(128) * _BYTES
    lift = (numba.uint64(127) - (n & numba.uint64(127))) * _BYTES
    above_half = n >= numba.uint64(128)
    rejected = 0
    for i in range(words):
        word = packed[i] & wide_mask
        packed[i] = word
        carry = (word & low7) + lift
        over = ((carry & word) if above_half else (carry | word)) & high
        rejected += numba.int64(((over >> numba.uint64(7)) * _BYTES) >> numba.uint64(56))
    for i in range(8 * words, count):
        values[i] &= bits_mask
        rejected += numba.int64(values[i] > n)
    positions = np.empty(rejected, np.int64)
    found = 0
    for i in range(words):
        word = packed[i]
        carry = (word & low7) + lift
        over = ((carry & word) if above_half else (carry | word)) & high
        if over:
            for j in range(8 * i, 8 * i + 8):
                if values[j] > n:
                    positions[found] = j
                    found += 1
    for i in range(8 * words, count):
        if values[i] > n:
            positions[found] = i
            found += 1
    return positions


@_twins(
    types.int64[::1](
        _array(_U8, 1, aligned=False), _array(types.int64, 1, True), _array(_U8, 1, True), types.uint8, types.int64
    ),
    work=1,
)
def redraw(values, redo, fresh, bits_mask, modulus):  # pragma: no cover - compiled
    """values[redo[i]] = fresh[i] & bits_mask for every i; returns the positions of `redo` (in its order) where
    that is >= modulus: one pass of `randomness.Prf.residues`' redraws (fresh: the next len(redo) stream bytes)."""
    kept = np.empty(len(redo), np.int64)
    count = 0
    for i in range(len(redo)):
        value = fresh[i] & bits_mask
        values[redo[i]] = value
        if value >= modulus:
            kept[count] = redo[i]
            count += 1
    return kept[:count].copy()


# Ring-word steps (uint64, wrapping like numpy's): several numpy passes over a comparison's values or a gate's terms
# in one call each. At batch 1 their arrays are a few hundred words; numpy releases the GIL around each pass over
# more than 500 elements, and in an in-process cluster each release is a hand-off between the party threads.
_IN, _OUT = _array(_U64, 1, True), _array(_U64, 1)


@_twins(types.void(_IN, _U64, _U64, _OUT, _OUT), work=0)
def helper_split(part, offset, low, big, other):  # pragma: no cover - compiled
    """big = part + offset; other = low - (big & low): the helper's B' and c' (`comparison.Comparison`)."""
    for i in range(len(part)):
        value = part[i] + offset
        big[i] = value
        other[i] = low - (value & low)


@_twins(types.void(_IN, _U64, _IN, _OUT), work=0)
def top_bit_xor(big, shift, flips, out):  # pragma: no cover - compiled
    """out = ((big >> shift) xor flips) & 1: a comparison's result bit from bit `shift` of B' (or A) and delta (or
    the coin whose bit 0 is beta)."""
    for i in range(len(big)):
        out[i] = ((big[i] >> shift) ^ flips[i]) & numba.uint64(1)


@_twins(types.void(_IN, _IN, _IN, types.boolean, _OUT), work=0)
def gate_pair_term(pair, beta, delta, first, out):  # pragma: no cover - compiled
    """out = (1 - 2 beta) pair delta + [first] pair beta: a pair member's term of pair * bit before the helper's
    other factors (`comparison.gate_in`); beta in {0, 1}."""
    for i in range(len(pair)):
        b = beta[i]
        term = (numba.uint64(1) - numba.uint64(2) * b) * pair[i] * delta[i]
        if first:
            term += pair[i] * b
        out[i] = term


@_twins(types.void(_IN, _IN, _IN, _IN, types.int64, _OUT, _OUT, _OUT), work=0)
def opener_split(a, b, lo, span, bits, carry, high, bound):  # pragma: no cover - compiled
    """The input check's helper parts from its copies a, b of the input (`input_check`): with B = a + b - lo
    (lo, span of one example, repeated over the batch), carry = (B mod 2^bits) - 2^bits, high = B - (B mod
    2^bits), and bound = span - B where `bound` is not empty (the exact check's second comparison)."""
    low = (numba.uint64(1) << numba.uint64(bits)) - numba.uint64(1)
    width = len(lo)
    for i in range(len(a)):
        value = a[i] + b[i] - lo[i % width]
        carry[i] = (value & low) - (low + numba.uint64(1))
        high[i] = value & ~low
        if len(bound):
            bound[i] = span[i % width] - value


@_twins(types.void(_OUT, types.int64, _IN, _IN, _IN, types.boolean), work=0)
def check_word(term, bits, common, bound, mask, first):  # pragma: no cover - compiled
    """A pair member's masked word of W (`input_check`), in place: term = high + (term << bits) + mask at party 1
    (`first`), - mask at party 2, with high = (common & ~(2^bits - 1)) - bound + 1 at party 1 and -bound at party 2
    (common: A = c_2; bound: the bound comparison's gated term, or empty where it is left out: then no -bound + 1)."""
    low = (numba.uint64(1) << numba.uint64(bits)) - numba.uint64(1)
    exact = len(bound) > 0
    for i in range(len(term)):
        high = (common[i] & ~low) if first else numba.uint64(0)
        if exact:
            high = high - bound[i] + (numba.uint64(1) if first else numba.uint64(0))
        value = high + (term[i] << numba.uint64(bits))
        term[i] = value + mask[i] if first else value - mask[i]


@_twins(types.int64(_OUT, _IN, _IN), work=0)
def check_sum(high, first, second):  # pragma: no cover - compiled
    """high += first + second, in place (party 0's W from its part and the pair's masked words, `input_check`);
    returns how many of the results are not 0."""
    nonzero = 0
    for i in range(len(high)):
        value = high[i] + first[i] + second[i]
        high[i] = value
        nonzero += numba.int64(value != numba.uint64(0))
    return nonzero
