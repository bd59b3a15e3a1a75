"""Gaussian noise for the summed clipped gradients, added once per global batch.

A `tf.random.Generator` (counter-based Philox) holds the state. Every step it draws one fresh 128-bit seed per
gradient tensor (`make_seeds`, which advances its state, so no step or tensor ever reuses another's draws),
and each tensor's noise is drawn with Philox under that seed by the Box-Muller transform: uniforms w in (0, 1]
and v in [0, 1) give the independent N(0, 1) pair sqrt(-2 ln w) (cos 2 pi v, sin 2 pi v). The transform is
written as whole-tensor ops on `tf.random.stateless_uniform`, which TensorFlow vectorises: with the radius
from two uniforms (below) it takes 0.91-0.97x the CPU time of `tf.random.stateless_normal`, whose kernel applies the
same transform one element at a time (benchmarks/README.md). One float32 uniform is a multiple of 2^-23, which
would cut the noise at |z| <= 5.65 (the kernel: 5.68): a record whose clipped gradient lies in one coordinate
would then be exposed with probability P(N > 5.65 - 1/sigma) per step, outside any epsilon. So w = 1 - u0 -
eps u1 is built from two uniforms (eps = 2^-23 in float32, 2^-52 in float64): |z| <= 7.99 in float32 (exposure
P(N > 7.99 - 1/sigma), 1.4e-12 at sigma 1) and 12.0 in float64. XLA runs the same ops, so the cut is the
same there (XLA's own `stateless_normal`, not used, gave the kernel's draws in a check and cuts at 5.68).
Stateless ops avoid XLA's slow compilation of the generator's own `normal` (benchmarks/README.md). By default
the generator is seeded from ``seed`` (reproducible runs) or from TensorFlow's non-deterministic source. With
``secure=True`` its 192-bit state (key and counter) is drawn from the operating system's CSPRNG (`os.urandom`) and
user seeds are refused, so noise cannot be replayed from a guessable seed.

Under `tf.distribute` strategies every replica draws noise but only replica 0's is kept: the optimizer
sums gradients across replicas, so the global sum receives exactly one draw of std ``sigma * C``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from privacy import validation
from privacy.keras.params import DPConfigurationError


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

    def build(self) -> None:
        """Creates the generator (eagerly, under the distribution strategy in scope)."""
        if self._generator is not None:
            return
        if self.secure:
            state = [int.from_bytes(os.urandom(8), "little", signed=True) for _ in range(3)]
            self._generator = tf.random.Generator.from_state(state, alg=tf.random.Algorithm.PHILOX)
        elif self.seed is not None:
            self._generator = tf.random.Generator.from_seed(self.seed, alg=tf.random.Algorithm.PHILOX)
        else:
            self._generator = tf.random.Generator.from_non_deterministic_state(alg=tf.random.Algorithm.PHILOX)

    def add(self, tensors, stddev: float) -> list:
        """``tensors`` plus independent noise of standard deviation ``stddev`` (on replica 0 only)."""
        if stddev == 0:
            return list(tensors)
        if self._generator is None:
            raise RuntimeError("GaussianNoise.build() must run (eagerly) before the training step is traced")
        keep = _first_replica_indicator()
        seeds = self._generator.make_seeds(len(tensors))  # shape (2, len(tensors)); advances the state
        out = []
        for i, t in enumerate(tensors):
            draw = standard_normal(tf.shape(t), seeds[:, i], t.dtype) * tf.cast(stddev, t.dtype)
            out.append(t + (draw if keep is None else draw * tf.cast(keep, t.dtype)))
        return out


def standard_normal(shape, seed, dtype) -> tf.Tensor:
    """Independent N(0, 1) draws of ``shape`` and ``dtype`` under the Philox ``seed`` (shape (2,)), by Box-Muller.

    Computed in float64 for float64 tensors, else in float32 (then cast).
    """
    compute = tf.float64 if dtype == tf.float64 else tf.float32
    size = tf.reduce_prod(shape)
    u = tf.random.stateless_uniform(
        tf.stack([3, (size + 1) // 2]), seed=seed, dtype=compute, alg=tf.random.Algorithm.PHILOX
    )
    return tf.cast(tf.reshape(box_muller(u)[:size], shape), dtype)


def box_muller(u) -> tf.Tensor:
    """2n N(0, 1) draws (n cosines, then n sines) from uniforms ``u`` of shape (3, n), multiples of eps in [0, 1).

    The radius's uniform w = 1 - u[0] - eps u[1] lies in [eps^2, 1]: the logarithm is finite and |z| reaches
    sqrt(-2 ln eps^2) (7.99 in float32, 12.0 in float64); the angle is 2 pi u[2].
    """
    eps = float(np.finfo(u.dtype.as_numpy_dtype).eps)
    w = tf.maximum((1.0 - u[0]) - eps * u[1], eps * eps)  # the floor only binds if a backend returned u = 1
    radius = tf.sqrt(-2.0 * tf.math.log(w))
    angle = (2.0 * math.pi) * u[2]
    return tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)


def _first_replica_indicator():
    """1 on replica 0 and 0 elsewhere when several replicas run the step, else None."""
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1:
        return None
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.equal(replica_id, 0)
