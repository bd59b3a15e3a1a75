"""LSTM or GRU: non-private Keras, ppml's LSTM/GRU rule and its vectorised fallback, interleaved in one process.

dp_sgd_speed.py's recurrent model (64 units on 32 x 16 sequences, a 10-way Dense, batch 256, random data). The
fallback is forced by a subclass of the layer, which computes the same but takes `VectorizedRule`. Each round trains
every model ``--steps`` steps through `fit` (shuffled fixed batches of 256 from 2048 examples), in turn, after warm-up
steps that compile it; each figure is the median over rounds of each round's median ms per step (wall, and the
process's CPU time). The Keras flavour is the runtime's (TF_USE_LEGACY_KERAS=1 for tf-keras). Run:

    make run ARGS='python benchmarks/recurrent_ab.py --layer GRU --jit-compile'
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from dp_sgd_speed import BATCH, SEQUENCE, processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", choices=("LSTM", "GRU"), default="LSTM")
    parser.add_argument("--jit-compile", action="store_true", help="compile every model with XLA")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model and round")
    args = parser.parse_args()

    import numpy as np

    from privacy.keras import compat, make_private

    keras = compat.default_keras()
    recurrent = getattr(keras.layers, args.layer)
    fallback = type(f"Fallback{args.layer}", (recurrent,), {})  # a subclass: ppml's rules leave it to the fallback
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * BATCH, SEQUENCE, 16)).astype("float32")
    y = rng.normal(size=(8 * BATCH, 10)).astype("float32")

    def build(layer, private):
        model = keras.Sequential([keras.Input((SEQUENCE, 16)), layer(64), keras.layers.Dense(10)])
        if private:
            model = make_private(
                model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=BATCH, dataset_size=len(x),
                sampling="shuffle", seed=0,
            )  # fmt: skip
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=args.jit_compile)
        model.fit(x, y, batch_size=BATCH, steps_per_epoch=3, verbose=0)  # warm-up: traces and compiles the step
        return model

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.ends.append((time.perf_counter(), time.process_time()))

    models = {"non-private": build(recurrent, False), "rule": build(recurrent, True), "fallback": build(fallback, True)}
    load_before, rounds = os.getloadavg(), {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            clock = Clock()
            clock.ends = []
            model.fit(x, y, batch_size=BATCH, steps_per_epoch=args.steps + 1, verbose=0, callbacks=[clock])
            wall, cpu = (np.diff([end[i] for end in clock.ends]) * 1000 for i in (0, 1))
            rounds[name].append((float(np.median(wall)), float(np.median(cpu))))
    flavour = "tf-keras" if compat.is_tf_keras(keras.layers.Dense(1)) else "Keras 3"
    print(f"{args.layer}, {flavour}, XLA {args.jit_compile}; {processor()}, {os.cpu_count()} cores, load", end=" ")
    print(f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; wall / CPU ms per step (ratio to non-private):")
    base = [statistics.median(r[i] for r in rounds["non-private"]) for i in (0, 1)]
    for name, values in rounds.items():
        wall, cpu = (statistics.median(v[i] for v in values) for i in (0, 1))
        print(f"  {name:12s} {wall:7.1f} / {cpu:7.1f}  ({wall / base[0]:.2f}x / {cpu / base[1]:.2f}x)")


if __name__ == "__main__":
    main()
