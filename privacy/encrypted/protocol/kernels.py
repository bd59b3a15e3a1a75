"""Compiled loops of the comparison's test vectors (numba), one pass per message and no temporaries.

A comparison's work is a few operations on each of R residues per compared value (`comparison`): numpy
makes a full pass, and an array, for each of them. These kernels do them in one pass, in registers, and
release the GIL (`nogil`), so the three party threads of an in-process cluster run them at the same
time. Each computes exactly what the comparison's docstring defines, residues mod p = 127 from the same
inputs; `tests/privacy/encrypted/test_kernels.py` checks them bit for bit against the numpy computation
they replaced.

Compilation: the kernels have fixed signatures and compile when this module is imported (so a server
compiles at start-up, never on a client's request), about a second per process on a clean cache. The
machine code is cached in ``$XDG_CACHE_HOME/ppml/numba`` (``~/.cache/ppml/numba``), a directory of the
current user with no access for others (a cache that someone else can write would run their code); where
that cannot be had (no home, a directory owned by someone else or open to others) the kernels compile
without a cache. ``NUMBA_CACHE_DIR``, if set, is used instead (numba's own setting).
"""

from __future__ import annotations

import os
import stat

import numba
from numba import types

MODULUS = 127
"""The prime p of the test vectors (`comparison.MODULUS`)."""


def _private_cache_dir() -> str | None:
    """The per-user cache directory for the machine code, created 0700; None if it is not safe or possible."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "ppml", "numba")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IRWXO):
        return None
    return path


def _compile(*signatures):
    """numba.njit with these signatures (compiled now), nogil, cached in the private directory if there is one."""
    own = not numba.config.CACHE_DIR
    directory = _private_cache_dir() if own else numba.config.CACHE_DIR

    def decorate(fn):
        if directory is None:
            return numba.njit(list(signatures), nogil=True, cache=False)(fn)
        saved, numba.config.CACHE_DIR = numba.config.CACHE_DIR, directory
        try:  # the cache's location is fixed when the dispatcher is made
            return numba.njit(list(signatures), nogil=True, cache=True)(fn)
        finally:
            numba.config.CACHE_DIR = saved

    return decorate


def _array(dtype, dims: int, readonly: bool = False):
    return types.Array(dtype, dims, "C", readonly=readonly)


_U8, _U64 = types.uint8, types.uint64


@_compile(types.void(_array(_U64, 1), _array(_U8, 2, True), _array(_U8, 2)))
def helper_message(other, shares, out):  # pragma: no cover - compiled
    """out[r, j] = (bit j of other[r], most significant first, minus shares[r, j]) mod p: the helper's
    additive shares for u of the bits of c' (v's are `shares`)."""
    count, bits = shares.shape
    for r in range(count):
        value = other[r]
        for j in range(bits):
            bit = numba.int32((value >> numba.uint64(bits - 1 - j)) & numba.uint64(1))
            out[r, j] = (bit + MODULUS - numba.int32(shares[r, j])) % MODULUS


@_compile(
    types.void(
        _array(_U64, 1),
        _array(_U64, 1),
        _array(_U8, 2, True),
        _array(_U8, 2, True),
        _array(_U64, 1, True),
        _array(_U8, 2, True),
        types.boolean,
        _array(_U8, 2),
    )
)
def pair_vectors(a, beta, shares, rho, rotation, mask, first, out):  # pragma: no cover - compiled
    """A pair member's blinded, rotated test vectors (`comparison.Comparison.send`), one row per value.

    a: the pair's number mod 2^R; beta: the pair's secret bits; shares: this member's shares mod p of the
    bits of c'; rho: multipliers less one (in [0, p - 1)); rotation: words whose remainder mod R is the
    row's left rotation; mask: the common mask (added by u, subtracted by v); first: whether this is u.
    Row r of out is w_i rho_i +- mask_i mod p at position (i - rotation) mod R, with
    w_i = [u] + sum_{j<i} ((1 - 2 t_j) c_j + [u] t_j) + (1 - 2 beta)(c_i - [u] t_i) for the bits t of
    a - beta mod 2^R (most significant first), or the fixed vector (0, 1, ..., 1) / 0 where beta = 1 and
    a = 0 (c' > -1 always holds).
    """
    count, bits = shares.shape
    low = (numba.uint64(1) << numba.uint64(bits)) - numba.uint64(1)
    lead = numba.int32(1) if first else numba.int32(0)
    for r in range(count):
        b = numba.int32(beta[r])
        tested = (a[r] - beta[r]) & low
        always = b == 1 and a[r] == 0
        sign = 1 - 2 * b
        offset = numba.int64(rotation[r] % numba.uint64(bits))
        before = lead
        for i in range(bits):
            t = numba.int32((tested >> numba.uint64(bits - 1 - i)) & numba.uint64(1))
            c = numba.int32(shares[r, i])
            w = before + sign * (c - lead * t)
            before += (1 - 2 * t) * c + lead * t
            if always:
                w = numba.int32(0) if (i == 0 or not first) else numba.int32(1)
            m = numba.int32(mask[r, i])
            blinded = (w % MODULUS) * (numba.int32(rho[r, i]) + 1) + (m if first else MODULUS - m)
            position = i - offset
            if position < 0:
                position += bits
            out[r, position] = blinded % MODULUS


@_compile(types.void(_array(_U8, 2, True), _array(_U8, 2, True), _array(_U64, 1)))
def any_zero_sum(u, v, out):  # pragma: no cover - compiled
    """out[r] = 1 if u[r, j] + v[r, j] = 0 mod p for some j, else 0: the helper's delta."""
    count, bits = u.shape
    for r in range(count):
        found = numba.uint64(0)
        for j in range(bits):
            if (numba.int32(u[r, j]) + numba.int32(v[r, j])) % MODULUS == 0:
                found = numba.uint64(1)
                break
        out[r] = found
