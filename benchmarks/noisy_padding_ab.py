"""Noisy padding's cost: Poisson steps with noisy padding against fixed batches, alternated in one process.

One model of dp_sgd_speed.py (``--model``, its `build_model`, random MNIST-shaped data of 60 000 examples, expected
batch ``--batch-size``), made private once per configuration: fixed batches drawn from the arrays (``sampling=
"shuffle"``, what `fit(x, y, batch_size=B)` runs: dp_sgd_speed's "fixed from arrays") and Poisson batches from the same
arrays with noisy padding (``skip_padding=True``, ``batch_size_noise_multiplier=sigma_c``) for each sigma_c of
``--sigma-cs`` and each row multiple of ``--multiples`` (`noisy_padding.NOISY_ROWS_MULTIPLE`, set before the
configuration's step is traced). A warm-up `fit` traces each step; then each configuration's own Keras train function
runs on a live iterator of the batches `fit` would draw (the same sampler and prefetch: the input pipeline runs beside
the step as in `fit`; fit's callbacks, the same host work for every configuration, do not run), in short visits of
``--chunk`` steps, every configuration once per round, ``--rounds`` rounds: each block of as many rounds as
configurations rotates an order shuffled for the block (seeded), so each runs once in every position (the batches drawn
are seeded too: runs of one model see the same rows). A step's time is the train function's call up to its loss on the
host (wall, and the process's CPU time), with the process's minor page faults and system CPU time beside it; the first
step of a visit is left out (it follows another configuration's step). Each step's rows are read from the step itself (a
wrapper of `train_step.without_padding` that stores the row count in a variable: one scalar assignment per step), so
that steps at a row count this process has not run before (a first use: kernels set up for the shape) are told from
steady ones. Printed per configuration: expected rows over B (exact, `poisson_padding.rows_pmf`) and the mean measured
over the steady steps, the per-round median of steady steps as a ratio to the fixed configuration's in the same round:
the median over rounds with a 95 % bootstrap interval (rounds resampled), CPU and wall; page faults and system ms per
step; the mean cost of a first use above the configuration's steady median, the distinct shapes expected in a 60-epoch
run (n = 60 000) and that run's first uses spread over its steps. ``--keep-freed-memory`` sets glibc's malloc to keep
freed memory (`mallopt`: mmap threshold 32 MiB, no trimming) instead of returning TensorFlow's large buffers to the
system and faulting them in again next step; A/B it across processes. The Keras flavour is ``--flavour``'s; the
processor and the load averages before, per round and after are printed. Run:

    make run ARGS='python benchmarks/noisy_padding_ab.py --model cnn --sigma-cs 2 4 --multiples 1'
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import resource
import statistics

from interleave import balanced_rounds, bootstrap_interval, train_once

N, EPOCHS = 60000, 60
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest mmap threshold on 64-bit systems


def _uptime() -> str:
    """The load averages as `uptime` prints them (the runtime's root may have no `uptime`)."""
    return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _keep_freed_memory() -> None:
    """glibc's malloc keeps freed blocks below 32 MiB in its heap and never trims it (process-wide, from now on)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as err:
        raise SystemExit(f"--keep-freed-memory needs glibc's libc.so.6: {err}") from None
    if not (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise SystemExit("--keep-freed-memory: glibc's mallopt refused the settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--flavour", choices=("keras3", "tf_keras"), default="keras3")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sigma-cs", type=float, nargs="+", default=[4.0])
    parser.add_argument("--multiples", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=4, help="steps per visit of a configuration (the first not timed)")
    parser.add_argument("--warmup", type=int, default=4, help="steps of the warm-up fit (it traces the step)")
    parser.add_argument("--keep-freed-memory", action="store_true", help="glibc malloc keeps freed memory (mallopt)")
    parser.add_argument("--out", help="JSON of every step's rows and times")
    args = parser.parse_args()
    if args.chunk < 2:
        parser.error(f"--chunk must be at least 2 (the first step of a visit is not timed), got {args.chunk}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if args.flavour == "tf_keras" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.keep_freed_memory:
        _keep_freed_memory()

    import numpy as np
    import tensorflow as tf
    from dp_sgd_speed import build_model, examples, processor
    from poisson_padding import rows_pmf

    from privacy.accounting import noisy_padding
    from privacy.keras import compat, make_private, private_training, sampling, train_step

    keras = compat.default_keras()
    batch, rng = args.batch_size, np.random.default_rng(0)
    xs, ys = examples(rng, args.model, N)
    run_steps = math.ceil(EPOCHS * N / batch)  # a Poisson run's steps (`DpSgdMechanism.from_epochs`)
    current = {}  # the configuration whose step runs: its rows variable, and its traces counted
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

    def select(name):
        current.update(state[name])
        if state[name]["multiple"] is not None:
            noisy_padding.NOISY_ROWS_MULTIPLE = state[name]["multiple"]

    for name, model in models.items():  # traces the step, builds the optimizer
        select(name)
        model.fit(xs, ys, batch_size=batch, epochs=1, steps_per_epoch=args.warmup, verbose=0)
    # The batches `fit` draws from the arrays (model.py's `_shuffle_arrays` and Poisson sampling), prefetched as there.
    iterators = {}
    for name, model in models.items():
        if name == "fixed":
            batches = sampling.shuffled_batches((xs, ys), dataset_size=N, batch_size=batch, seed=1)
        else:
            batches = sampling.poisson_batches((xs, ys), dataset_size=N, expected_batch_size=batch, seed=1)
        iterators[name] = iter(model.distribute_strategy.experimental_distribute_dataset(batches.prefetch(2)))
        model.make_train_function()

    seen = set()  # row counts this process has run: a later use of one finds its kernels set up

    def step(name, round_, timed):
        model = models[name]
        with private_training(model).fitting(None):
            before = resource.getrusage(resource.RUSAGE_SELF)
            wall, cpu = train_once(model, iterators[name])
            after = resource.getrusage(resource.RUSAGE_SELF)
        rows = int(state[name]["rows"].numpy())
        state[name]["steps"].append(
            dict(
                round=round_,
                rows=rows,
                wall=wall,
                cpu=cpu,
                faults=after.ru_minflt - before.ru_minflt,
                system=(after.ru_stime - before.ru_stime) * 1e3,
                timed=timed,
                new=rows not in seen,
            )
        )
        seen.add(rows)

    began = (_uptime(), os.getloadavg())
    loads = []
    for round_, order in enumerate(balanced_rounds(list(models), args.rounds)):
        for name in order:
            select(name)
            for k in range(args.chunk):
                step(name, round_, timed=k > 0)
        loads.append(os.getloadavg()[0])
    ended = _uptime()

    def steady(name, round_, key):
        return [s[key] for s in state[name]["steps"] if s["round"] == round_ and s["timed"] and not s["new"]]

    base = {(r, k): statistics.median(steady("fixed", r, k)) for r in range(args.rounds) for k in ("cpu", "wall")}
    print(
        f"{args.model}, {args.flavour}, B = {batch}, {args.rounds} rounds x {args.chunk} steps per visit "
        f"(first untimed){', freed memory kept' if args.keep_freed_memory else ''}; "
        f"{processor()}, {os.cpu_count()} cores; uptime "
        f"before: {began[0]}; after: {ended}; load (1 min) per round {' '.join(f'{v:.1f}' for v in loads)}"
    )
    print(
        f"{'configuration':<26} {'rows/B':>13} {'CPU ms':>6} {'CPU ratio [95 % CI]':>20} {'wall ratio [95 % CI]':>20} "
        f"{'faults':>6} {'sys ms':>6} {'shapes':>6} {'1st use ms':>10} {'run shapes':>10} {'ms/step':>7} {'traces':>6}"
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
        timed = [x for x in s["steps"] if x["timed"]]
        steady_cpu = statistics.median(x["cpu"] for x in timed if not x["new"])
        new = [x["cpu"] - steady_cpu for x in timed if x["new"]]
        first_use = statistics.mean(new) if new else 0.0
        if s["multiple"] is None:
            rows, shapes = float(batch), 1.0
        else:
            values, probs = rows_pmf(batch, configurations[name]["batch_size_noise_multiplier"], s["multiple"])
            rows, shapes = float(np.sum(values * probs)), float(np.sum(1 - (1 - probs) ** run_steps))
        summary[name] = dict(
            rows_over_batch=rows / batch,
            measured_rows_over_batch=statistics.mean(x["rows"] for x in timed if not x["new"]) / batch,
            cpu_ms=steady_cpu,
            cpu_ratio=statistics.median(ratios["cpu"]),
            cpu_ratio_ci=bootstrap_interval(ratios["cpu"]),
            cpu_ratios=ratios["cpu"],
            wall_ratio=statistics.median(ratios["wall"]),
            wall_ratio_ci=bootstrap_interval(ratios["wall"]),
            wall_ratios=ratios["wall"],
            faults_per_step=statistics.mean(x["faults"] for x in timed),
            system_ms_per_step=statistics.mean(x["system"] for x in timed),
            first_uses=len(new),
            first_use_cpu_ms=first_use,
            run_shapes=shapes,
            first_use_cpu_ms_per_run_step=first_use * shapes / run_steps,
            traces=s["traces"][0],
        )
        r = summary[name]
        print(
            f"{name:<26} {r['rows_over_batch']:>6.3f}/{r['measured_rows_over_batch']:.3f} {steady_cpu:>6.1f} "
            f"{r['cpu_ratio']:>6.3f} [{r['cpu_ratio_ci'][0]:.3f}-{r['cpu_ratio_ci'][1]:.3f}] "
            f"{r['wall_ratio']:>6.3f} [{r['wall_ratio_ci'][0]:.3f}-{r['wall_ratio_ci'][1]:.3f}] "
            f"{r['faults_per_step']:>6.0f} {r['system_ms_per_step']:>6.1f} {len(new):>6} "
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
