"""The float32 noise sampler of `privacy.keras.noise` as a compiled CPU loop (numba): the same draws, ~3x cheaper.

`normal` is a pure function of the Philox seed, the size and the scale: it makes exactly TensorFlow's stateless
Philox4x32-10 words for the seed (`tf.random.stateless_uniform(..., dtype=tf.uint32, minval=None, maxval=None,
alg=PHILOX)`: the seed scrambled into a key and counter as TensorFlow does, then one 4-word block per counter
value), applies the transform of `noise.box_muller_words` to them and multiplies each draw by the scale (the
noise's standard deviation: no separate pass over the draws for it). The loops are written so that LLVM
vectorises them: the 32x32->64-bit multiplies in 64-bit lanes, and instead of libm's scalar log, sin and cos,
float32 polynomials: Cephes' logf (the one Eigen's vectorised `plog`, which `tf.math.log` runs, evaluates) and
the exact reduction of the 24-bit angle with Cephes' sine and cosine polynomials that the TensorFlow ops use
too. The words equal TensorFlow's bit for bit; a draw differs from the TensorFlow ops' one by at most 2 float32
ulps of max(radius, 1) (tests/privacy/keras/cases_checks.py). The radius is capped at
`noise_constants.RADIUS_CAP`, as in the TensorFlow ops, so every pair the kernel can give lies within
`noise.cutoff_radius` (checked at all 2^24 angles of the largest radius).

Compiled with fixed signatures when this module is imported (`noise.normal` imports it when it traces a step that
will run it, so before that step runs; `box_muller_words`, the transform alone, which only the tests call, compiles on
first use: this import takes 1.3-1.4 s CPU on a clean cache against 1.8-1.9 s when it compiled that too, and 0.36-0.41
s from the cache, numba's own import (~0.25 s) aside, on this project's shared 2-core machine, load 2.7-4.5); the
machine code is cached as `privacy._numba` says, apart for each value of
the cap and polynomials it takes from `privacy.keras.noise_constants` (numba would not see them change).
The loops release the GIL (`nogil`), so TensorFlow's threads run beside them.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from privacy._numba import compiled
from privacy.keras.noise_constants import COS_COEFFICIENTS, RADIUS_CAP, SIN_COEFFICIENTS

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
"""Philox4x32's multipliers."""
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
"""Philox4x32's key increments (Weyl sequence)."""
_SCRAMBLE_KEY = np.uint64(0x02461E293EC8F720)
"""The key under which TensorFlow turns a stateless seed into a Philox key and counter."""
_LOW, _32 = np.uint64(0xFFFFFFFF), np.uint64(32)

_F = np.float32
_SCALE32, _SCALE64 = _F(2.0**-32), _F(2.0**-64)
_CAP = _F(RADIUS_CAP)
_ANGLE_STEP = _F(2 * math.pi * 2.0**-24)
_LOG = tuple(
    _F(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)
"""Cephes' logf: log(1 + x) = x - x^2 / 2 + x^3 P(x) for x in [sqrt(1/2) - 1, sqrt(2) - 1)."""
_LN2_LOW, _LN2_HIGH = _F(-2.12194440e-4), _F(0.693359375)
"""ln 2 = high + low, high exact in few bits: e ln 2 is added in two parts."""
_SIN = tuple(_F(c) for c in SIN_COEFFICIENTS)
_COS = tuple(_F(c) for c in COS_COEFFICIENTS)
_HALF, _ONE, _ZERO, _MINUS2 = _F(0.5), _F(1.0), _F(0.0), _F(-2.0)
_DEPENDS = (RADIUS_CAP, SIN_COEFFICIENTS, COS_COEFFICIENTS)
"""The values from `privacy.keras.noise_constants` compiled into the kernels: their machine code is cached per set
of values."""


@numba.njit(inline="always")
def _philox(x0, x1, x2, x3, k0, k1):  # pragma: no cover - compiled
    """Philox4x32-10 of the counter words x0..x3 under the key words k0, k1 (each word in a uint64)."""
    for _ in range(10):
        p0 = _M0 * x0
        p1 = _M1 * x2
        x0, x1, x2, x3 = (p1 >> _32) ^ x1 ^ k0, p1 & _LOW, (p0 >> _32) ^ x3 ^ k1, p0 & _LOW
        k0 = (k0 + _W0) & _LOW
        k1 = (k1 + _W1) & _LOW
    return x0, x1, x2, x3


@numba.njit(inline="always")
def _block(key, counter_low, counter_high, b):  # pragma: no cover - compiled
    """The 4 words of block b: Philox at the 128-bit counter (counter_high, counter_low) + b."""
    low = counter_low + numba.uint64(b)
    high = counter_high + numba.uint64(low < counter_low)  # the carry
    return _philox(low & _LOW, low >> _32, high & _LOW, high >> _32, key & _LOW, key >> _32)


_U32_OUT = types.Array(types.uint32, 1, "C")


@compiled(types.void(types.uint64, types.uint64, types.uint64, _U32_OUT))
def philox_words(key, counter_low, counter_high, out):  # pragma: no cover - compiled
    """out = TensorFlow's Philox4x32-10 words for this key and 128-bit counter (`StatelessRandomUniformFullIntV2`
    with dtype uint32): word i is word i % 4 of the block at counter + i // 4."""
    size = out.size
    full = size // 4
    for b in range(full):
        y0, y1, y2, y3 = _block(key, counter_low, counter_high, b)
        out[4 * b] = y0
        out[4 * b + 1] = y1
        out[4 * b + 2] = y2
        out[4 * b + 3] = y3
    if size > 4 * full:
        last = _block(key, counter_low, counter_high, full)
        for j in range(size - 4 * full):
            out[4 * full + j] = last[j]


@numba.njit(inline="always")
def _box_muller(words, n, scale):  # pragma: no cover - compiled
    """`noise.box_muller_words` of the uint32 words (3n: three rows of n): n radius-times-cosines, then n sines,
    each times the float32 ``scale`` (rounded once more, as a separate float32 product: bit for bit the draw times
    ``scale``). Inlined where the arrays are made, so that LLVM knows they do not overlap (and vectorises the
    loops)."""
    out = np.empty(2 * n, np.float32)
    high_words, low_words, angle_words = words[:n], words[n : 2 * n], words[2 * n :]
    w = np.empty(n, np.float32)
    for k in range(n):  # the radius's uniform in (0, 1], rounded as the TensorFlow ops round it
        w[k] = _F(high_words[k]) * _SCALE32 + (_F(low_words[k]) * _SCALE64 + _SCALE64)
    bits = w.view(np.int32)
    exponent = np.empty(n, np.float32)
    for k in range(n):  # w = 2^e m with m in [sqrt(1/2), sqrt(2)); w now holds m
        b = bits[k]
        high = numba.int32((b & 0x7FFFFF) >= 0x3504F3)  # mantissa >= sqrt(2) / 2 scaled to [1/2, 1)
        exponent[k] = _F((b >> 23) - 127 + high)
        bits[k] = (b & 0x7FFFFF) | ((127 - high) << 23)
    for k in range(n):
        x = w[k] - _ONE
        e = exponent[k]
        z = x * x
        p = ((((_LOG[0] * x + _LOG[1]) * x + _LOG[2]) * x + _LOG[3]) * x + _LOG[4]) * x + _LOG[5]
        p = ((p * x + _LOG[6]) * x + _LOG[7]) * x + _LOG[8]
        log = x + (p * x * z + _LN2_LOW * e - _HALF * z) + _LN2_HIGH * e
        radius = min(math.sqrt(max(_MINUS2 * log, _ZERO)), _CAP)
        a = numba.int32(angle_words[k] >> numba.uint32(8))
        octant = (a + (1 << 21)) >> 22  # the nearest multiple of pi/2, 0..4
        t = _F(a - (octant << 22)) * _ANGLE_STEP  # in [-pi/4, pi/4), exact before this rounding
        t2 = t * t
        sin = t + t * t2 * (_SIN[0] + t2 * (_SIN[1] + t2 * _SIN[2]))
        cos = _ONE - _HALF * t2 + t2 * t2 * (_COS[0] + t2 * (_COS[1] + t2 * _COS[2]))
        quadrant = octant & 3  # angle = quadrant pi/2 + t: rotate (cos t, sin t) by it
        odd = quadrant & 1
        c = sin if odd else cos
        s = cos if odd else sin
        out[k] = (radius * c * _F(1 - 2 * ((quadrant == 1) | (quadrant == 2)))) * scale
        out[n + k] = (radius * s * _F(1 - 2 * (quadrant >> 1))) * scale
    return out


def _box_muller_words(words):  # pragma: no cover - compiled
    """`noise.box_muller_words` of the uint32 words (3, n): n radius-times-cosines, then n sines."""
    return _box_muller(words.copy().ravel(), words.shape[1], _ONE)


def __getattr__(name: str):
    """``box_muller_words``, the transform alone (for the tests), compiled on first use rather than at import."""
    if name != "box_muller_words":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    signature = types.Array(types.float32, 1, "C")(types.Array(types.uint32, 2, "C", readonly=True))
    kernel = globals()["box_muller_words"] = compiled(signature, depends=_DEPENDS)(_box_muller_words)
    return kernel


@compiled(types.Array(types.float32, 1, "C")(types.int64, types.int64, types.int64, types.float32), depends=_DEPENDS)
def normal(seed0, seed1, size, scale):  # pragma: no cover - compiled
    """``size`` float32 draws for the Philox seed (seed0, seed1): `noise.normal`'s for float32, the N(0, 1) draws
    each times ``scale`` (one float32 product, so bit for bit the N(0, 1) draw times ``scale``)."""
    key_words = _philox(
        numba.uint64(seed0) & _LOW,
        numba.uint64(seed0) >> _32,
        numba.uint64(seed1) & _LOW,
        numba.uint64(seed1) >> _32,
        _SCRAMBLE_KEY & _LOW,
        _SCRAMBLE_KEY >> _32,
    )
    key = key_words[0] | (key_words[1] << _32)
    counter_high = key_words[2] | (key_words[3] << _32)
    n = (size + 1) // 2
    words = np.empty(3 * n, np.uint32)
    philox_words(key, numba.uint64(0), counter_high, words)
    return _box_muller(words, n, scale)[:size]
