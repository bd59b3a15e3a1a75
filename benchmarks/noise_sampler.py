"""DP-SGD noise samplers side by side: CPU ms per step's draws for the MLP 784-512-512-10 (669 706 coordinates).

In-process A/B: every sampler is traced once (``tf.function``, optionally ``jit_compile=True``), then the
samplers run interleaved round by round (``--rounds``, ``--calls`` draws each), so a change in the machine's load
hits them alike; each figure is the median over rounds of the process CPU time per draw (what the draws cost the
machine; wall time beside it). Samplers, with their cut-off R (the largest radius of a pair, in stds):

* kernel: `tf.random.stateless_normal` (TensorFlow's Philox normal kernel, one element at a time; R 5.68);
* two_uniforms: three float32 uniforms per pair, radius from 1 - u0 - 2^-23 u1 (ppml before; R 7.99);
* words41: two uint32 words per pair, 41 bits for the radius and 23 for the angle (R 7.54);
* words64_f64: three uint32 words per pair, the radius from 64 bits computed in float64 (R 9.42);
* words64_ops: the same 64 bits, logarithm in float32, as TensorFlow ops (`privacy.keras.noise.box_muller_words`:
  ppml's sampler under XLA or off CPU; R 9.42);
* words64 (ppml, `privacy.keras.noise.normal`): on CPU without XLA the same sampler as a compiled loop
  (`privacy.keras.noise_kernel`, through `tf.numpy_function`), under ``--xla`` the TensorFlow ops.

Only `words64` and `words64_ops` are ppml's; the others are written out here to be measured.

With ``--step`` it times whole training steps of the MLP instead (batch 256, Keras 3 unless TF_USE_LEGACY_KERAS=1,
`fit` on one repeated batch, ``--calls`` steps a round, the rounds interleaved): non-private, ppml with the
compiled noise kernel, and ppml with the TensorFlow-ops sampler (its step traced with the kernel switched off,
which only this benchmark does); with ``--xla`` all three are compiled (ppml then uses the ops either way).

    make run ARGS='python benchmarks/noise_sampler.py --rounds 6'   # --xla: the draws compiled
    make run ARGS='python benchmarks/noise_sampler.py --step --rounds 6 --calls 40'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import tensorflow as tf
from dp_sgd_speed import BATCH, build_model, examples, processor

from privacy.keras import noise
from privacy.keras.noise import box_muller, box_muller_words, normal

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


def words64_ops(shape, seed):
    size = math.prod(shape)
    return tf.reshape(box_muller_words(_words((size + 1) // 2, seed, 3))[:size], shape)


def words64(shape, seed):
    return normal(tf.constant(shape), seed, tf.float32)


SAMPLERS = {f.__name__: f for f in (kernel, two_uniforms, words41, words64_f64, words64_ops, words64)}


def step_function(sampler, jit: bool):
    @tf.function(jit_compile=jit)
    def draws(seeds):
        return [sampler(shape, seeds[:, i]) for i, shape in enumerate(SHAPES)]

    return draws


def draw_timings(names, args):
    """CPU and wall ms per call of each sampler's draws for the MLP's tensors, per round."""
    functions = {name: step_function(SAMPLERS[name], args.xla) for name in names}
    generator = tf.random.Generator.from_seed(1, alg=PHILOX)
    for f in functions.values():  # trace and warm up
        for _ in range(3):
            [t.numpy() for t in f(generator.make_seeds(len(SHAPES)))]
    cpu, wall = {n: [] for n in names}, {n: [] for n in names}
    for _ in range(args.rounds):
        for name, f in functions.items():
            seeds = [generator.make_seeds(len(SHAPES)) for _ in range(args.calls)]
            c0, w0 = time.process_time(), time.perf_counter()
            for s in seeds:
                [t.numpy() for t in f(s)]
            cpu[name].append(1e3 * (time.process_time() - c0) / args.calls)
            wall[name].append(1e3 * (time.perf_counter() - w0) / args.calls)
    return cpu, wall


def step_timings(args):
    """CPU and wall ms per training step of the MLP: non-private, ppml (kernel), ppml (TensorFlow ops), per round."""
    from privacy.keras import make_private

    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras as keras
    else:
        import keras
    keras.utils.set_random_seed(0)
    x, y = examples(np.random.default_rng(0), "mlp", BATCH)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    models = {}
    for name in ("keras", "ppml_kernel", "ppml_ops"):
        model = build_model(keras, "mlp")
        if name != "keras":
            make_private(
                model,
                l2_norm_clip=1.0,
                noise_multiplier=1.1,
                expected_batch_size=BATCH,
                dataset_size=60000,
                sampling="shuffle",
                seed=0,
            )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=args.xla)
        applies = noise.compiled_kernel_applies
        if name == "ppml_ops":  # trace this model's step with the TensorFlow-ops sampler
            noise.compiled_kernel_applies = lambda: False
        try:
            model.fit(batches, epochs=1, steps_per_epoch=5, verbose=0)
        finally:
            noise.compiled_kernel_applies = applies
        models[name] = model
    cpu, wall = {n: [] for n in models}, {n: [] for n in models}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append((time.process_time(), time.perf_counter()))

    for _ in range(args.rounds):
        for name, model in models.items():
            ends = []
            model.fit(batches, epochs=1, steps_per_epoch=args.calls + 1, verbose=0, callbacks=[Clock()])
            (c0, w0), (c1, w1) = ends[0], ends[-1]  # from the end of the first step: fit's set-up left out
            cpu[name].append(1e3 * (c1 - c0) / args.calls)
            wall[name].append(1e3 * (w1 - w0) / args.calls)
    return cpu, wall


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--xla", action="store_true", help="compile the draws (or steps) with jit_compile=True")
    parser.add_argument("--step", action="store_true", help="time whole MLP training steps, not the draws")
    parser.add_argument("--only", nargs="*", choices=sorted(SAMPLERS), help="samplers to run (default: all)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    cpu, wall = step_timings(args) if args.step else draw_timings(args.only or list(SAMPLERS), args)
    result = {
        "processor": processor(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "xla": args.xla,
        "step": args.step,
        "rounds": args.rounds,
        "calls": args.calls,
        "cpu_ms": {n: statistics.median(v) for n, v in cpu.items()},
        "wall_ms": {n: statistics.median(v) for n, v in wall.items()},
        "cpu_ms_rounds": cpu,
        "wall_ms_rounds": wall,
    }
    print(f"{result['processor']}, {result['cores']} cores, load {load_before} -> {result['load_after']}")
    for name in cpu:
        print(f"  {name:<12} CPU {result['cpu_ms'][name]:6.2f} ms  wall {result['wall_ms'][name]:6.2f} ms")
    if args.step:
        base = result["cpu_ms"]["keras"], result["wall_ms"]["keras"]
        for name in ("ppml_kernel", "ppml_ops"):
            ratios = result["cpu_ms"][name] / base[0], result["wall_ms"][name] / base[1]
            print(f"  {name} / keras: CPU {ratios[0]:.2f}x  wall {ratios[1]:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
