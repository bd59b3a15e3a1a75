"""Noisy padding's row multiple: Poisson steps with noisy padding against fixed batches, interleaved in one process.

One model of dp_sgd_speed.py (``--model``, its `build_model`, random MNIST-shaped data of 60 000 examples, expected
batch ``--batch-size``), made private once per configuration: fixed batches drawn from the arrays (``sampling=
"shuffle"``, what `fit(x, y, batch_size=B)` runs: dp_sgd_speed's "fixed from arrays") and Poisson batches from the
same arrays with noisy padding (``skip_padding=True``, ``batch_size_noise_multiplier=sigma_c``) for each sigma_c of
``--sigma-cs`` and each row multiple of ``--multiples`` (`noisy_padding.NOISY_ROWS_MULTIPLE`, set before the
configuration's step is traced). After a warm-up `fit` that traces each, every round fits every configuration
``--steps`` + 1 steps in turn; a step's time is from Keras' batch begin to its end (wall, and the process's CPU
time), the first step of each fit left out (its input pipeline starts). Each step's rows are read from the step
itself (a wrapper of `train_step.without_padding` that stores the row count in a variable: one scalar assignment
per step), so that steps at a row count this process has not run before (a first use: kernels set up for the shape)
are told from steady ones. Printed per configuration: expected rows over B (exact, `poisson_padding.rows_pmf`), the
round medians of steady steps as ratios to the fixed configuration's in the same round (median and range over the
rounds, CPU and wall), the mean cost of a first use above the configuration's steady median, the distinct shapes
expected in a 60-epoch run (n = 60 000) and that run's first uses spread over its steps. The Keras flavour is
``--flavour``'s; the processor and the load averages before, per round and after are printed. Run:

    make run ARGS='python benchmarks/noisy_padding_ab.py --model cnn --sigma-cs 2 3 4 --multiples 1 8 32'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

N, EPOCHS = 60000, 60


def _uptime() -> str:
    """The load averages as `uptime` prints them (the runtime's root may have no `uptime`)."""
    return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--flavour", choices=("keras3", "tf_keras"), default="keras3")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sigma-cs", type=float, nargs="+", default=[4.0])
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=4, help="steps of the warm-up fit (it traces the step)")
    parser.add_argument("--out", help="JSON of every step's rows and times")
    args = parser.parse_args()
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if args.flavour == "tf_keras" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    import tensorflow as tf
    from dp_sgd_speed import build_model, examples, processor
    from poisson_padding import rows_pmf

    from privacy.accounting import noisy_padding
    from privacy.keras import compat, make_private, train_step

    keras = compat.default_keras()
    batch, rng = args.batch_size, np.random.default_rng(0)
    xs, ys = examples(rng, args.model, N)
    run_steps = math.ceil(EPOCHS * N / batch)  # a Poisson run's steps (`DpSgdMechanism.from_epochs`)
    current = {}  # the configuration whose step is being traced: its rows variable, and its traces counted
    unpadded = train_step.without_padding

    def counted(x, y, w, extra=None):  # runs when a step is traced; the assignment, every step
        current["traces"][0] += 1
        x, y, w = unpadded(x, y, w, extra)
        current["rows"].assign(tf.size(w))
        return x, y, w

    train_step.without_padding = counted

    configurations = {"fixed": dict(sampling="shuffle")}
    for sigma_c in args.sigma_cs:
        for multiple in args.multiples:
            configurations[f"sigma_c {sigma_c:g}, multiple {multiple}"] = dict(
                skip_padding=True, batch_size_noise_multiplier=sigma_c, seed=0, multiple=multiple
            )
    models, state = {}, {}
    for name, options in configurations.items():
        options = dict(options)
        multiple = options.pop("multiple", None)
        keras.utils.set_random_seed(0)
        model = make_private(
            build_model(keras, args.model),
            l2_norm_clip=1.0,
            noise_multiplier=1.1,
            expected_batch_size=batch,
            dataset_size=N,
            **options,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
        models[name] = model
        state[name] = dict(multiple=multiple, rows=tf.Variable(batch), traces=[0], steps=[])

    seen = set()  # row counts this process has run: a later use of one finds its kernels set up

    class Clock(keras.callbacks.Callback):
        def __init__(self, name, round_):
            super().__init__()
            self.name, self.round = name, round_

        def on_train_batch_begin(self, step, logs=None):
            self.began = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, step, logs=None):
            wall, cpu = time.perf_counter() - self.began[0], time.process_time() - self.began[1]
            rows = int(state[self.name]["rows"].numpy())
            first = step == 0
            state[self.name]["steps"].append(
                dict(round=self.round, rows=rows, wall=wall * 1e3, cpu=cpu * 1e3, fit_start=first, new=rows not in seen)
            )
            seen.add(rows)

    def fit(name, steps, round_):
        current.update(state[name])
        if state[name]["multiple"] is not None:
            noisy_padding.NOISY_ROWS_MULTIPLE = state[name]["multiple"]
        models[name].fit(
            xs, ys, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Clock(name, round_)]
        )

    began = (_uptime(), os.getloadavg())
    for name in models:
        fit(name, args.warmup, -1)
    loads = []
    for round_ in range(args.rounds):
        for name in models:
            fit(name, args.steps + 1, round_)
        loads.append(os.getloadavg()[0])
    ended = _uptime()

    def steady(name, round_, key):
        return [s[key] for s in state[name]["steps"] if s["round"] == round_ and not s["fit_start"] and not s["new"]]

    base = {(r, k): statistics.median(steady("fixed", r, k)) for r in range(args.rounds) for k in ("cpu", "wall")}
    print(
        f"{args.model}, {args.flavour}, B = {batch}, {args.rounds} rounds x {args.steps} steps; {processor()}, "
        f"{os.cpu_count()} cores; uptime before: {began[0]}; after: {ended}; load (1 min) per round "
        f"{' '.join(f'{v:.1f}' for v in loads)}"
    )
    print(
        f"{'configuration':<28} {'rows/B':>7} {'CPU ms':>7} {'CPU ratio (range)':>20} {'wall ratio (range)':>20} "
        f"{'shapes':>6} {'1st use ms':>10} {'run shapes':>10} {'ms/step':>7} {'traces':>6}"
    )
    summary = {}
    for name, s in state.items():
        ratios = {
            k: [
                statistics.median(steady(name, r, k)) / base[r, k]
                for r in range(args.rounds)
                if steady(name, r, k)  # a round whose every step was a first use has no steady step
            ]
            for k in ("cpu", "wall")
        }
        everything = [x for x in s["steps"] if not x["fit_start"]]
        steady_cpu = statistics.median(x["cpu"] for x in everything if not x["new"])
        new = [x["cpu"] - steady_cpu for x in everything if x["new"]]
        first_use = statistics.mean(new) if new else 0.0
        if s["multiple"] is None:
            rows, shapes = float(batch), 1.0
        else:
            values, probs = rows_pmf(batch, configurations[name]["batch_size_noise_multiplier"], s["multiple"])
            rows, shapes = float(np.sum(values * probs)), float(np.sum(1 - (1 - probs) ** run_steps))
        summary[name] = dict(
            rows_over_batch=rows / batch,
            cpu_ms=steady_cpu,
            cpu_ratio=statistics.median(ratios["cpu"]),
            cpu_ratios=ratios["cpu"],
            wall_ratio=statistics.median(ratios["wall"]),
            wall_ratios=ratios["wall"],
            first_uses=len(new),
            first_use_cpu_ms=first_use,
            run_shapes=shapes,
            first_use_cpu_ms_per_run_step=first_use * shapes / run_steps,
            traces=s["traces"][0],
        )
        r = summary[name]
        print(
            f"{name:<28} {r['rows_over_batch']:>7.3f} {steady_cpu:>7.1f} "
            f"{r['cpu_ratio']:>6.3f} ({min(ratios['cpu']):.2f}-{max(ratios['cpu']):.2f}) "
            f"{r['wall_ratio']:>8.3f} ({min(ratios['wall']):.2f}-{max(ratios['wall']):.2f}) {len(new):>6} "
            f"{first_use:>10.1f} {shapes:>10.1f} {r['first_use_cpu_ms_per_run_step']:>7.3f} {r['traces']:>6}"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "args": vars(args),
                    "processor": processor(),
                    "uptime": [began[0], ended],
                    "loads": loads,
                    "summary": summary,
                    "steps": {name: s["steps"] for name, s in state.items()},
                },
                f,
            )


if __name__ == "__main__":
    main()
