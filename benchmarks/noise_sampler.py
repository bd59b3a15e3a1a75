"""DP-SGD noise samplers side by side: CPU ms per step's draws for the MLP 784-512-512-10 (669 706 coordinates).

In-process A/B: every sampler is traced once (``tf.function``, optionally ``jit_compile=True``), then the
samplers run interleaved round by round (``--rounds``, ``--calls`` draws each), so a change in the machine's load
hits them alike; each figure is the median over rounds of the process CPU time per draw (what the draws cost the
machine; wall time beside it). Samplers, with their cut-off R (the largest radius of a pair, in stds):

* kernel: `tf.random.stateless_normal` (TensorFlow's Philox normal kernel, one element at a time; R 5.68);
* two_uniforms: three float32 uniforms per pair, radius from 1 - u0 - 2^-23 u1 (ppml before; R 7.99);
* words41: two uint32 words per pair, 41 bits for the radius and 23 for the angle (R 7.54);
* words64_f64: three uint32 words per pair, the radius from 64 bits computed in float64 (R 9.42);
* words64 (ppml now, `privacy.keras.noise.standard_normal`): the same 64 bits, logarithm in float32 (R 9.42).

Only `words64` is ppml's; the others are written out here to be measured.

    make run ARGS='python benchmarks/noise_sampler.py --rounds 6'   # --xla: the draws compiled
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import tensorflow as tf
from dp_sgd_speed import processor

from privacy.keras.noise import box_muller, standard_normal

SHAPES = [(784, 512), (512,), (512, 512), (512,), (512, 10), (10,)]
PHILOX = tf.random.Algorithm.PHILOX


def _words(n, seed, rows):
    return tf.random.stateless_uniform([rows, n], seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=PHILOX)


def kernel(shape, seed):
    return tf.random.stateless_normal(shape, seed=seed, alg=PHILOX)


def two_uniforms(shape, seed):
    size = math.prod(shape)
    u = tf.random.stateless_uniform([3, (size + 1) // 2], seed=seed, alg=PHILOX)
    return tf.reshape(box_muller(u)[:size], shape)


def words41(shape, seed):
    size = math.prod(shape)
    w = _words((size + 1) // 2, seed, 2)
    top = tf.cast(tf.bitwise.right_shift(w[1], 23), tf.float32)  # 9 bits extending the radius's 32
    v = tf.cast(w[0], tf.float32) + (top + 1.0) * 2.0**-9  # (2^9 w0 + top + 1) 2^-41, scaled by 2^32
    radius = tf.sqrt(tf.maximum(-2.0 * (tf.math.log(v) - 32.0 * math.log(2.0)), 0.0))
    angle = (2.0 * math.pi * 2.0**-23) * tf.cast(tf.bitwise.bitwise_and(w[1], 2**23 - 1), tf.float32)
    return tf.reshape(tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)[:size], shape)


def words64_f64(shape, seed):
    size = math.prod(shape)
    w = _words((size + 1) // 2, seed, 3)
    u = tf.cast(w[0], tf.float64) * 2.0**-32 + (tf.cast(w[1], tf.float64) + 1.0) * 2.0**-64
    radius = tf.cast(tf.sqrt(-2.0 * tf.math.log(u)), tf.float32)
    angle = (2.0 * math.pi * 2.0**-24) * tf.cast(tf.bitwise.right_shift(w[2], 8), tf.float32)
    return tf.reshape(tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)[:size], shape)


def words64(shape, seed):
    return standard_normal(tf.constant(shape), seed, tf.float32)


SAMPLERS = {f.__name__: f for f in (kernel, two_uniforms, words41, words64_f64, words64)}


def step_function(sampler, jit: bool):
    @tf.function(jit_compile=jit)
    def draws(seeds):
        return [sampler(shape, seeds[:, i]) for i, shape in enumerate(SHAPES)]

    return draws


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--xla", action="store_true", help="compile the draws with jit_compile=True")
    parser.add_argument("--only", nargs="*", choices=sorted(SAMPLERS), help="samplers to run (default: all)")
    args = parser.parse_args(argv)
    names = args.only or list(SAMPLERS)
    functions = {name: step_function(SAMPLERS[name], args.xla) for name in names}
    generator = tf.random.Generator.from_seed(1, alg=PHILOX)
    for f in functions.values():  # trace and warm up
        for _ in range(3):
            [t.numpy() for t in f(generator.make_seeds(len(SHAPES)))]
    load_before = os.getloadavg()
    cpu, wall = {n: [] for n in names}, {n: [] for n in names}
    for _ in range(args.rounds):
        for name, f in functions.items():
            seeds = [generator.make_seeds(len(SHAPES)) for _ in range(args.calls)]
            c0, w0 = time.process_time(), time.perf_counter()
            for s in seeds:
                [t.numpy() for t in f(s)]
            cpu[name].append(1e3 * (time.process_time() - c0) / args.calls)
            wall[name].append(1e3 * (time.perf_counter() - w0) / args.calls)
    result = {
        "processor": processor(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "xla": args.xla,
        "rounds": args.rounds,
        "calls": args.calls,
        "cpu_ms": {n: statistics.median(v) for n, v in cpu.items()},
        "wall_ms": {n: statistics.median(v) for n, v in wall.items()},
        "cpu_ms_rounds": cpu,
    }
    print(f"{result['processor']}, {result['cores']} cores, load {load_before} -> {result['load_after']}")
    for name in names:
        print(f"  {name:<12} CPU {result['cpu_ms'][name]:6.2f} ms  wall {result['wall_ms'][name]:6.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
