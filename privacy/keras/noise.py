"""Gaussian noise for the summed clipped gradients, added once per global batch.

A `tf.random.Generator` (counter-based Philox) holds the state. Every step it draws one fresh 128-bit seed per
gradient tensor (`make_seeds`, which advances its state, so no step or tensor ever reuses another's draws),
and each tensor's noise is drawn with Philox under that seed by the Box-Muller transform: a uniform w in (0, 1]
and an angle give the independent N(0, 1) pair sqrt(-2 ln w) (cos, sin).

One sampler, two implementations. The float32 sampler is defined by `box_muller_words` on TensorFlow's
stateless Philox words; `normal` picks how it runs when the step is traced. On CPU outside XLA it runs
as a compiled loop (`privacy.keras.noise_kernel`, numba: the same Philox words bit for bit, the same transform
with float32 polynomials, draws within 2 float32 ulps of max(radius, 1) of the ops') called through
`tf.numpy_function` (stateless: a pure function of seed, size and standard deviation, which it multiplies in;
compiled when such a step is traced). Under XLA
(``jit_compile=True``: a numpy_function cannot be compiled) and where a GPU or TPU is visible it runs as
whole-tensor TensorFlow ops, which TensorFlow vectorises (its own `stateless_normal` kernel applies the same
transform one element at a time). float64 tensors are always drawn by the ops (`box_muller`).

The cut-off. A pair's radius is at most R = sqrt(-2 ln w_min), set by the bits of w: one float32 uniform
(2^-23 steps) cuts at 5.65 (TensorFlow's kernel at 5.68), two at 7.99. The noise is then N(0, I) conditioned on radii
<= R, and a record's gradient can move a pair out of that disk: `privacy.accounting.noise_cutoff` bounds the
delta this adds (reported as (epsilon, delta + X), refused above 1 % of delta). For float32 (and narrower)
tensors w comes from 64 Philox bits (`box_muller_words`: three uint32 words per pair, the third for a 24-bit
angle), R = sqrt(128 ln 2) = 9.42; for float64 tensors from two float64 uniforms (`box_muller`), R = 12.0. For
the MLP 784-512-512-10 (334 853 pairs) over 60 epochs at n = 60 000, B = 256, delta = 1e-5, the cut-off adds
1.8e-8 at sigma 0.5, 1.1e-10 at 0.8, 2.4e-11 at 1 and 1.6e-12 at 2 for every epsilon (at the run's RDP epsilon,
crediting Poisson sampling: 1.8e-8, 7.3e-11, 2.2e-12, 2.4e-14); at 7.99 (two float32 uniforms, ppml before)
it added 3.9e-4, 7.9e-6, 2.4e-6 and 3.0e-7, more than 1 % of delta at each. The float32 radius is capped at
`RADIUS_CAP`, just below R, so that neither implementation's rounding puts a pair beyond R (a test checks every
angle at the largest radius); the float64 radius likewise (`box_muller`). Not for narrower tensors: their draws
are float32 ones cast, which can round a pair up to 2^-8 R (bfloat16; 2^-11 R float16) beyond R (the private step
refuses those dtypes, `privacy.keras.validator`). Float rounding of the draws (Mironov 2012) is otherwise out of
scope. `GaussianNoise.draws` records (R, pairs per step) for the guarantee.

Cost (benchmarks/noise_sampler.py, interleaved A/B in one process, CPU ms, AMD EPYC, 2 shared cores, Dec 6 2026).
The MLP's draws alone (6 rounds, load 4-5), as TensorFlow ops with `tf.cos` and `tf.sin` (before the polynomials):
TensorFlow's kernel 9.3, two float32 uniforms 8.2, 64-bit words (this sampler) 8.1, the same with the logarithm in
float64 9.4, two words per pair (41-bit radius, cut 7.54) 6.6. Three Philox words per pair and the cosine and sine
are most of it; two words per pair would save ~20 % but cut at 7.54, which adds more than delta itself at sigma <= 1
for that MLP. The compiled kernel draws the same in 1.9-2.8 (the ops 8.0-9.2 and TensorFlow's kernel 8.5-10.0 in the
same runs, load 3.3-4.6; about 1.1 ms of it is the loops; the numpy_function crossing itself is cheap, the rest was
not profiled). The whole private MLP step (batch 256, `--step`, 8 rounds of 40 steps, Keras 3) takes 16.0 with it
against 21.3 with the `tf.cos` ops, non-private 11.4 (load 4.6-5.0): 1.40x instead of 1.86x in CPU, 1.34x instead of
1.68x in wall time; tf-keras (6 rounds, load 5.1-5.2) 1.46x instead of 1.79x CPU; after the polynomials 15.2 against
10.9, 1.40x CPU and wall (load 3.9-4.8). Under XLA the ops run: the draws took 11.0 with `tf.cos` and `tf.sin`
(TensorFlow's kernel 10.4; 5 rounds, load ~4.5) and 4.3 with the polynomials (TensorFlow's kernel 9.6; 6 rounds,
load ~4), and the private MLP step 2.2x the non-private XLA step's CPU before (26.3 vs 12.0, load 5.1-5.4) and 1.74x
after (20.6 vs 11.9, load 4.6-4.7; separate runs, 6 rounds each).

Stateless ops avoid XLA's slow compilation of the generator's own `normal`. By default the generator is seeded
from ``seed`` (reproducible runs) or from TensorFlow's non-deterministic source. With ``secure=True`` its 192-bit
state (key and counter) is drawn from the operating system's CSPRNG (`os.urandom`) and user seeds are refused, so
noise cannot be replayed from a guessable seed.

Under `tf.distribute` strategies every replica draws noise but only replica 0's is kept: the optimizer
sums gradients across replicas, so the global sum receives exactly one draw of std ``sigma * C (1 + SLACK)``
(`DPParams.exact_noise_stddev`).
"""

from __future__ import annotations

import importlib
import math
import os
from fractions import Fraction

import numpy as np
import tensorflow as tf

from privacy import validation
from privacy.accounting import noise_cutoff
from privacy.keras import compat
from privacy.keras.noise_constants import COS_COEFFICIENTS, RADIUS_CAP, SIN_COEFFICIENTS
from privacy.keras.params import DPConfigurationError
from privacy.keras.rounding import rounded_up


class GaussianNoise:
    """Adds N(0, stddev^2) noise to tensors, once for the global batch.

    Args:
      seed: integer seed for reproducible noise, or None.
      secure: draw the generator state from `os.urandom`; incompatible with ``seed``.
    """

    def __init__(self, *, seed: int | None = None, secure: bool = False):
        if secure and seed is not None:
            raise DPConfigurationError("secure_noise=True draws its seed from the OS CSPRNG; do not pass a seed")
        if seed is not None:
            seed = validation.integer("seed", seed, note="or None", error=DPConfigurationError)
        self.seed = seed
        self.secure = secure
        self._generator = None
        self._step_extra: list = []  # noise drawn for this step before `add` (`padding_rows`), traced
        self.draws: noise_cutoff.NoiseDraws | None = None
        """(cut-off radius, Box-Muller pairs per step) for the guarantee (`privacy.accounting.noise_cutoff`): the
        smallest radius and the most pairs over every set of tensors `expect` saw (each trace of `add` too)."""

    def expect(self, tensors) -> None:
        """Takes into `draws` noise on tensors (or variables) shaped as ``tensors``; ignored where a shape is not
        fully known (a model not built yet): the trace of `add` sees the gradients' static shapes."""
        shapes = [tuple(t.shape) for t in tensors]
        if not shapes or any(d is None for shape in shapes for d in shape):
            return
        pairs = sum(pairs_of(shape) for shape in shapes)
        if pairs:  # empty tensors draw nothing
            drawn = noise_cutoff.NoiseDraws(radius=min(cutoff_radius(t.dtype) for t in tensors), pairs=pairs)
            self.draws = drawn.merged(self.draws)

    def build(self) -> None:
        """Creates the generator (eagerly, under the distribution strategy in scope). The float32 kernel
        (`privacy.keras.noise_kernel`) compiles when a step that runs it is traced (`normal`), not here: central
        DP-FedAvg's float64 draws and XLA steps never run it."""
        if self._generator is not None:
            return
        if self.secure:
            state = [int.from_bytes(os.urandom(8), "little", signed=True) for _ in range(3)]
            self._generator = tf.random.Generator.from_state(state, alg=tf.random.Algorithm.PHILOX)
        elif self.seed is not None:
            self._generator = tf.random.Generator.from_seed(self.seed, alg=tf.random.Algorithm.PHILOX)
        else:
            self._generator = tf.random.Generator.from_non_deterministic_state(alg=tf.random.Algorithm.PHILOX)

    def resume_at(self, steps: int) -> None:
        """Rekeys a seeded generator for a run resumed after ``steps`` steps, from (seed, steps), so that it does
        not draw again the noise of the steps its state records (a seed restarts the stream; unseeded and secure
        generators never repeat). Steps of a killed process after its state's last save are not recorded: a run
        resumed from that state draws their noise again."""
        if self.seed is not None and steps > 0:
            self._generator.reset_from_seed(int(np.random.SeedSequence([self.seed, steps]).generate_state(1)[0]))

    def add(self, tensors, stddev: float | Fraction) -> list:
        """``tensors`` plus independent noise of standard deviation ``stddev`` (on replica 0 only), rounded up in
        each tensor's dtype (`normal`)."""
        if stddev == 0:
            return list(tensors)
        if self._generator is None:
            raise RuntimeError("GaussianNoise.build() must run (eagerly) before the training step is traced")
        self.expect([*tensors, *self._step_extra])
        keep = _first_replica_indicator()
        seeds = self._generator.make_seeds(len(tensors))  # shape (2, len(tensors)); advances the state
        out = []
        for i, t in enumerate(tensors):
            draw = normal(tf.shape(t), seeds[:, i], t.dtype, stddev)
            out.append(t + (draw if keep is None else draw * tf.cast(keep, t.dtype)))
        return out

    def padding_rows(self, batch_size_noise_multiplier: float, offset: float) -> tf.Tensor:
        """max(0, ceil(offset + Z)) as an int32 scalar, Z ~ N(0, sigma_c^2) one float64 Box-Muller draw of this
        generator (counted in `draws`): noisy padding's rows (`privacy.accounting.noisy_padding`)."""
        if self._generator is None:
            raise RuntimeError("GaussianNoise.build() must run (eagerly) before the training step is traced")
        seed = self._generator.make_seeds(1)[:, 0]
        z = tf.ensure_shape(normal([1], seed, tf.float64, batch_size_noise_multiplier), [1])
        self._step_extra = [z]  # one step's noise: `add` counts this pair with the gradients' in `draws`
        return tf.cast(tf.maximum(tf.constant(0.0, tf.float64), tf.math.ceil(offset + z[0])), tf.int32)


def cutoff_radius(dtype) -> float:
    """R, the largest radius of a Box-Muller pair drawn for tensors of ``dtype``, in standard deviations: 12.0
    for float64 (uniform w >= 2^-104), 9.42 otherwise (w >= 2^-64). Float rounding of the draws aside, the noise
    is N(0, 1) pairs conditioned on radius <= R (`privacy.accounting.noise_cutoff` accounts it)."""
    return noise_cutoff.sampler_radius(tf.as_dtype(dtype).name)


def pairs_of(shape) -> int:
    """Box-Muller pairs drawn for one tensor of static ``shape``: ceil(size / 2)."""
    return (math.prod(int(d) for d in shape) + 1) // 2


def normal(shape, seed, dtype, stddev: float | Fraction = 1.0) -> tf.Tensor:
    """Independent N(0, stddev^2) draws of ``shape`` and ``dtype`` under the Philox ``seed`` (shape (2,)), by
    Box-Muller: N(0, 1) draws times ``stddev`` (a float or exact Fraction, rounded UP to ``dtype``,
    `rounding.rounded_up`, so never below it; one rounding of the product).

    float64: three float64 uniforms per pair (`box_muller`); any other dtype: three 32-bit Philox words per pair
    (`box_muller_words`), computed in float32 and cast. The float32 sampler runs as one of two implementations,
    chosen when the step is traced: the compiled CPU kernel (`privacy.keras.noise_kernel`, imported, so compiled,
    here; through `tf.numpy_function`, a pure function of seed, size and stddev, so the graph can run it beside the
    backward pass; for float32 it multiplies by ``stddev`` itself, bit for bit as the product here would) where the
    graph runs on CPU (no GPU or TPU is visible) and is not compiled by XLA (``jit_compile=True``); TensorFlow ops
    otherwise. Both give the same Philox words; their N(0, 1) draws differ by at most 2 float32 ulps of
    max(radius, 1).
    """
    size = tf.reduce_prod(shape)
    pairs = tf.stack([3, (size + 1) // 2])
    scale = tf.constant(checked_scale(stddev, dtype), dtype)  # never below stddev (not tf.cast: no float32 on the way)
    if dtype == tf.float64:
        u = tf.random.stateless_uniform(pairs, seed=seed, dtype=tf.float64, alg=tf.random.Algorithm.PHILOX)
        z = box_muller(u)[:size]
    elif compiled_kernel_applies():
        importlib.import_module("privacy.keras.noise_kernel")  # compiled now, while tracing: no step waits for it
        kernel_scale = scale if dtype == tf.float32 else tf.constant(1.0)
        args = [tf.cast(seed, tf.int64), tf.cast(size, tf.int64), kernel_scale]
        z = tf.numpy_function(_kernel_draws, args, tf.float32, stateful=False)
        if dtype == tf.float32:
            return tf.reshape(z, shape)
    else:
        words = tf.random.stateless_uniform(
            pairs, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=tf.random.Algorithm.PHILOX
        )
        z = box_muller_words(words)[:size]
    return tf.cast(tf.reshape(z, shape), dtype) * scale


def checked_scale(stddev: float | Fraction, dtype):
    """``stddev`` rounded up to ``dtype`` (`rounded_up`), refused outside `noise_cutoff.noise_scale_range`, where
    its draws would not be the Gaussian the accountant assumes up to rounding (flushed to 0 below, overflowing above).
    `make_private` and the DP Trainer check float32's range first (`privacy.accounting.noise_cutoff.check_step_noise`);
    this is the last check, in the dtype drawn.

    Raises:
      DPConfigurationError: in one line naming ``stddev``, the dtype and the accepted range.
    """
    dtype = tf.as_dtype(dtype)
    noise_cutoff.check_noise_scale(stddev, dtype.name, error=DPConfigurationError)
    return rounded_up(stddev, dtype)


def compiled_kernel_applies() -> bool:
    """Whether the op being traced runs on CPU outside XLA, where `tf.numpy_function` can run the kernel."""
    return not (compat.in_xla_context() or _accelerator_visible())


def _accelerator_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _kernel_draws(seed: np.ndarray, size: np.ndarray, scale: np.ndarray) -> np.ndarray:
    from privacy.keras import noise_kernel  # imported (compiled) by `normal` when it traced this call

    return noise_kernel.normal(int(seed[0]), int(seed[1]), int(size), float(scale))


def box_muller_words(words) -> tf.Tensor:
    """2n float32 N(0, 1) draws (n cosines, then n sines) from uint32 Philox words of shape (3, n).

    The radius's uniform is w = words[0] 2^-32 + (words[1] + 1) 2^-64 in (0, 1], computed in float32 (24
    significant bits at every scale down to its least value 2^-64; the sum rounds to at most 1, so the
    logarithm is never positive); the radius is capped at `RADIUS_CAP`, so a pair's norm stays below
    sqrt(128 ln 2) = 9.42 (`cutoff_radius`). The angle is 2 pi a 2^-24 for a = words[2] >> 8: its cosine and
    sine come from an exact reduction (the nearest multiple of pi/2 from a's top bits, the rest t in [-pi/4, pi/4))
    and Cephes' float32 polynomials in t (`SIN_COEFFICIENTS`, `COS_COEFFICIENTS`), as in the compiled kernel. XLA
    compiles them into one vectorised loop (its own sine and cosine made the transform 2.4x as costly as
    TensorFlow's `tf.cos` and `tf.sin`); without XLA they are ~15 elementwise ops, 1.9x the cost of `tf.cos` and
    `tf.sin` on CPU (where the kernel runs instead), not measured on GPUs.
    """
    w = tf.cast(words[0], tf.float32) * 2.0**-32 + (tf.cast(words[1], tf.float32) * 2.0**-64 + 2.0**-64)
    radius = tf.minimum(tf.sqrt(-2.0 * tf.math.log(w)), RADIUS_CAP)
    a = tf.cast(tf.bitwise.right_shift(words[2], 8), tf.int32)
    octant = tf.bitwise.right_shift(a + (1 << 21), 22)  # the nearest multiple of pi/2, 0..4
    t = tf.cast(a - tf.bitwise.left_shift(octant, 22), tf.float32) * (2.0 * math.pi * 2.0**-24)
    t2 = t * t
    s0, s1, s2 = SIN_COEFFICIENTS
    c0, c1, c2 = COS_COEFFICIENTS
    sin = t + t * t2 * (s0 + t2 * (s1 + t2 * s2))
    cos = 1.0 - 0.5 * t2 + t2 * t2 * (c0 + t2 * (c1 + t2 * c2))
    quadrant = tf.bitwise.bitwise_and(octant, 3)  # angle = quadrant pi/2 + t: rotate (cos t, sin t) by it
    odd = tf.equal(tf.bitwise.bitwise_and(quadrant, 1), 1)
    x = tf.where(odd, sin, cos) * tf.where(tf.equal(quadrant, 1) | tf.equal(quadrant, 2), -1.0, 1.0)
    y = tf.where(odd, cos, sin) * tf.where(quadrant >= 2, -1.0, 1.0)
    return tf.concat([radius * x, radius * y], 0)


def box_muller(u) -> tf.Tensor:
    """2n N(0, 1) draws (n cosines, then n sines) from uniforms ``u`` of shape (3, n), multiples of eps in [0, 1).

    The radius's uniform w = 1 - u[0] - eps u[1] lies in [eps^2, 1]: the logarithm is finite and the radius
    reaches R = sqrt(-2 ln eps^2) (12.0 in float64, `cutoff_radius`), capped just below it (R (1 - 64 eps)) so that
    the cosine's and sine's rounding never puts a pair beyond R (only w = eps^2 reaches the cap; 2 eps^2 gives
    R sqrt(103 / 104) in float64); the angle is 2 pi u[2].
    """
    dtype = u.dtype.as_numpy_dtype
    eps = float(np.finfo(dtype).eps)
    w = tf.maximum((1.0 - u[0]) - eps * u[1], eps * eps)  # the floor only binds if a backend returned u = 1
    cap = np.nextafter(dtype(math.sqrt(-4.0 * math.log(eps)) * (1 - 64 * eps)), dtype(0))
    radius = tf.minimum(tf.sqrt(-2.0 * tf.math.log(w)), cap)
    angle = (2.0 * math.pi) * u[2]
    return tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)


def _first_replica_indicator():
    """1 on replica 0 and 0 elsewhere when several replicas run the step, else None."""
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1:
        return None
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.equal(replica_id, 0)
