"""DP-SGD speed and memory: non-private Keras vs ppml vs TF Privacy 0.9.0, ms per step at batch 256
(``--batch-size``).

Models: an MLP 784-512-512-10 and the TF Privacy tutorial CNN on MNIST-shaped random data; with ``--models``
also a Transformer encoder block on 32 tokens (Embedding, 4-head MultiHeadAttention, LayerNormalization, a
128-unit feed-forward) and an LSTM or GRU of 64 units on 32 x 16 sequences, which ppml clips by its LSTM and GRU
rules (ghost norms or per-example gradients over the time steps; targets and anchors: benchmarks/README.md,
section dp_sgd_speed.py).
Every configuration runs in its own fresh process (so peak RSS is its own) and trains through `fit`;
ms/step is the median time between consecutive steps after a compiling warm-up (the mean is in the
JSON), and CPU ms/step the process's CPU time per step (what the step costs the machine, steadier than
wall time when other jobs share the cores). The first use of each batch shape costs extra (its kernels'
set-up), which a real run pays once per shape, so a Poisson row warms up until every shape that its timed
steps use has been seen (the sizes come from a twin of its seeded sampler); the JSON gives each row's
warm-up steps, batch shapes, mean rows per step and the warm-up's CPU ms above the steady state. Rows:

* keras / ppml on Keras 3 and on tf-keras, compiled without XLA (the default of both on CPU: Keras 3's
  jit_compile="auto" turns XLA off on machines without accelerators) and with ``jit_compile=True``;
* ppml with shuffled fixed batches of 256 drawn from 60 000 examples given to `fit` as arrays (what
  `fit(x, y, batch_size=256)` runs under ``sampling="shuffle"``): the fixed-batch row that pays for its input
  pipeline like the Poisson rows below (the other fixed rows take one batch, repeated);
* ppml with Poisson batches (expected 256, padded to the 1e-9 quantile, 357 rows) drawn from 60 000
  examples given as arrays (gathered in place: `poisson_batches` on the arrays, seeded, which is what
  `fit(x, y)` builds) and as a tf.data.Dataset (read into memory): what a real private run pays; "data MB"
  is the size of those examples, which the process holds either way;
* ppml with truncated Poisson batches from arrays (``truncated_batch_size='default'``: B + 4 standard
  deviations, 320 rows); the arrays' Poisson and truncated rows also with ``skip_padding=True`` (the padding
  left out of each step); and the arrays' Poisson row with noisy padding (``skip_padding=True``,
  ``batch_size_noise_multiplier`` = `NOISY_PADDING`: the drawn examples plus max(0, ceil(mu + Z)) rows, the
  step's duration inside the guarantee);
* TF Privacy 0.9.0 `DPModel` (XLA) in tf-keras mode, with its layer registry (ghost norms; Dense only,
  so MLP only) and without (vectorized per-example gradients), beside non-private tf-keras in the same
  Python 3.11 environment, which TF Privacy needs (see benchmarks/README.md);
* Opacus 1.6 on CPU torch (MLP and CNN; fixed batches of 256), with ghost clipping and with per-example
  gradients from hooks, beside non-private torch in its own environment (``--opacus-python``; the models:
  dp_sgd_speed_opacus.py).

Ratios are to the non-private row of the same process kind and compile mode (Keras 3, tf-keras, the
TF Privacy environment, or torch in the Opacus environment). With ``--rounds R`` every configuration
runs R times, the configurations interleaved round by round (so a change in the machine's load hits them
alike), and each figure is the median over the rounds. The processor and the load average before and
after are printed and written with the table (JSON).

``--paired`` measures the fixed-batch goal rows (`TARGETS`) so that they settle: single fresh processes of one tree
ranged 1.12-1.76x for the MLP on this machine kind. Each flavour and compile mode's non-private and private models
(one repeated batch, as the rows above) run in one process (`paired_worker`), their own train functions called in
short alternating visits in a balanced rotated order (`interleave.balanced_rounds`), so that load and the process's
own state (allocator, thread pools) fall on both alike; each round's ratio of the medians (wall and process CPU), the
median over the rounds with a 95 % bootstrap interval, per process and pooled over ``--rounds`` processes (processes
and their rounds resampled, `interleave.clustered_interval`), with the processes' range. The private step includes the
batch hooks of the callbacks a private `fit` adds (state guard, privacy budget); Keras' own run in neither.

    make run ARGS='python benchmarks/dp_sgd_speed.py'
    make run ARGS='python benchmarks/dp_sgd_speed.py --paired --rounds 5 --only "ppml (keras3)"'
    make run ARGS='python benchmarks/dp_sgd_speed.py --tf-privacy-python /tmp/tfprivacy-venv/bin/python-tfp'
    python benchmarks/dp_sgd_speed.py --opacus-python /work/side/opacus/bin/python   # (runtime: see README)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from results_io import step_timings, write_results

TARGETS = {"mlp": 1.5, "cnn": 2.0}  # fixed batches; Poisson within 10 % of them (benchmarks/README.md, dp_sgd_speed.py)
ANCHORS = {"mlp": 2.2, "cnn": 2.3}  # TF Privacy's best ratios on this machine kind (all of them: benchmarks/README.md)
BATCH = 256  # the default expected batch size (--batch-size)
NOISY_PADDING = 4.0  # sigma_c of the noisy-padding row (privacy.accounting.noisy_padding)
NOISE_SEED = 5  # the noisy-padding row's noise seed, so that `step_rows` can replay its padding draws
DATASET_SIZE = 60000  # the examples a private row accounts for (and a Poisson or shuffled row draws from)
HORIZON = 200  # steps past warm-up + timed ones in which a Poisson row may extend its warm-up (`steady_warmup`)
SEQUENCE, VOCABULARY = 32, 1000  # the transformer's and the recurrent models' sequence length; token vocabulary


def build_model(keras, name):
    layers = keras.layers
    if name == "transformer":  # one encoder block: Embedding, MultiHeadAttention (EinsumDense), LayerNormalization
        ids = keras.Input((SEQUENCE,), dtype="int32")
        h = layers.Embedding(VOCABULARY, 64)(ids)
        h = layers.LayerNormalization()(h + layers.MultiHeadAttention(4, 16)(h, h))
        h = layers.LayerNormalization()(h + layers.Dense(64)(layers.Dense(128, activation="relu")(h)))
        return keras.Model(ids, layers.Dense(10)(layers.GlobalAveragePooling1D()(h)))
    if name in ("lstm", "gru"):  # ppml's LSTM and GRU rules (layer_rules)
        recurrent = layers.LSTM if name == "lstm" else layers.GRU
        return keras.Sequential([keras.Input((SEQUENCE, 16)), recurrent(64), layers.Dense(10)])
    if name == "mlp":
        return keras.Sequential(
            [
                keras.Input((784,)),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(10),
            ]
        )
    return keras.Sequential(
        [  # the TF Privacy classification tutorial's CNN
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 8, strides=2, padding="same", activation="relu"),
            layers.MaxPool2D(2, 1),
            layers.Conv2D(32, 4, strides=2, padding="valid", activation="relu"),
            layers.MaxPool2D(2, 1),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dense(10),
        ]
    )


def examples(rng, name, count):
    """``count`` random examples and labels (10 classes) shaped for model ``name``."""
    y = rng.integers(0, 10, size=count)
    if name == "transformer":
        return rng.integers(0, VOCABULARY, size=(count, SEQUENCE)).astype("int32"), y
    shape = {"mlp": (784,), "cnn": (28, 28, 1)}.get(name, (SEQUENCE, 16))
    return rng.standard_normal(size=(count, *shape), dtype="float32"), y


def worker(spec: dict) -> dict:
    """Runs one configuration in this process; returns ms/step and peak RSS."""
    if spec["flavour"] == "torch":
        import dp_sgd_speed_opacus

        return dp_sgd_speed_opacus.worker(spec, spec["batch_size"])
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if spec["flavour"] == "tf_keras" else "0"
    import numpy as np
    import tensorflow as tf

    if spec["flavour"] == "tf_keras":
        import tf_keras as keras
    else:
        import keras
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, batch = DATASET_SIZE, spec["batch_size"]
    x, y = examples(rng, spec["model"], batch)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    method = spec["method"]
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    data_mb, warmup, rows = 0.0, spec["warmup"], []
    if method == "tf_privacy":
        sys.skip_tf_privacy_import = True
        from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry
        from tensorflow_privacy.privacy.keras_models import dp_keras_model

        registry = layer_registry.make_default_layer_registry() if spec["registry"] else None
        reduction = keras.losses.Reduction.AUTO if spec["registry"] else keras.losses.Reduction.NONE
        layers = [keras.Input(x.shape[1:])] + build_model(keras, spec["model"]).layers  # built: fast clipping needs it
        model = dp_keras_model.DPSequential(
            l2_norm_clip=1.0, noise_multiplier=1.1, layers=layers, layer_registry=registry
        )
        if spec["registry"] and not model._enable_fast_peg_computation:
            raise RuntimeError("TF Privacy did not enable fast gradient clipping for this model")
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction),
        )
    else:
        model = build_model(keras, spec["model"])
        if method == "ppml":
            from privacy.keras import make_private, poisson_batches

            if spec.get("poisson"):
                xs, ys = examples(rng, spec["model"], n)
                data_mb = (xs.nbytes + ys.nbytes) / 2**20
                source = tf.data.Dataset.from_tensor_slices((xs, ys)) if spec["poisson"] == "dataset" else (xs, ys)
                cap = "default" if spec.get("truncated") else None
                # What fit(xs, ys) builds from arrays (rows gathered in place), seeded so that the twin below,
                # drawn from the same seed, tells the batch sizes the steps will see.
                batches = poisson_batches(
                    source, dataset_size=n, expected_batch_size=batch, truncated_batch_size=cap, seed=0
                ).prefetch(2)
                sigma_c = spec.get("noisy")
                count = spec["warmup"] + spec["steps"] + HORIZON
                rows = step_rows(
                    n, batch, cap, bool(spec.get("skip_padding")), count, sigma_c, len(model.trainable_weights)
                )
                warmup = steady_warmup(rows, spec["warmup"], spec["steps"])
                make_private(
                    model,
                    l2_norm_clip=1.0,
                    noise_multiplier=1.1,
                    expected_batch_size=batch,
                    dataset_size=n,
                    truncated_batch_size=cap,
                    skip_padding=bool(spec.get("skip_padding")),
                    batch_size_noise_multiplier=sigma_c,
                    seed=NOISE_SEED if sigma_c else None,
                )
            else:
                if spec.get("shuffled"):  # fit's shuffled batches of exactly `batch` rows from the arrays
                    xs, ys = examples(rng, spec["model"], n)
                    data_mb = (xs.nbytes + ys.nbytes) / 2**20
                make_private(model, **fixed_batches(batch, n))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=spec["xla"])
    ends, cpu_ends = [], []

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

    steps = warmup + spec["steps"]
    if spec.get("shuffled"):
        model.fit(xs, ys, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[StepClock()])
    else:
        model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[StepClock()])
    result = step_timings(ends, cpu_ends, warmup, data_mb)
    rows = rows[:steps] or [batch] * steps  # the non-Poisson rows: one shape
    return {**result, "warmup_steps": warmup, **shape_costs(rows, np.diff(cpu_ends) * 1000, warmup)}


def fixed_batches(batch: int, n: int) -> dict:
    """`make_private`'s options for the fixed-batch rows: shuffled batches of ``batch`` from ``n`` examples."""
    return dict(l2_norm_clip=1.0, noise_multiplier=1.1, expected_batch_size=batch, dataset_size=n, sampling="shuffle")


def paired_worker(spec: dict) -> dict:
    """``--paired``: the non-private and the private (fixed batches) model of one flavour and compile mode in this
    process, each warmed up by a `fit` of ``warmup`` steps, then their own train functions on one repeated batch,
    alternated in visits of ``chunk`` steps (the first of a visit untimed: it follows the other model's step),
    ``pair_rounds`` rounds in `interleave.balanced_rounds` order. Returns each round's ratio of the private model's
    median step to the non-private one's (wall and process CPU) and each model's median steady step (ms). The batch
    hooks of the callbacks a private `fit` adds (`privacy.keras.model.fit_callbacks`: its state guard and privacy
    budget callback) run in the private step's time, as in `fit`; Keras' own (History, progress bar) in neither."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if spec["flavour"] == "tf_keras" else "0"
    import numpy as np
    import tensorflow as tf
    from interleave import balanced_rounds, train_once

    from privacy.keras import compat, make_private, private_training
    from privacy.keras.model import fit_callbacks

    keras = compat.default_keras()
    batch = spec["batch_size"]
    x, y = examples(np.random.default_rng(0), spec["model"], batch)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    models, iterators, hooks = {}, {}, {}
    for method in ("keras", "ppml"):
        keras.utils.set_random_seed(0)
        model = build_model(keras, spec["model"])
        if method == "ppml":
            make_private(model, **fixed_batches(batch, DATASET_SIZE))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=spec["xla"],
        )
        model.fit(batches, epochs=1, steps_per_epoch=spec["warmup"], verbose=0)  # traces, builds the optimizer
        model.make_train_function()  # a private `fit` leaves the model none (`privacy.keras.model.private_fit`)
        models[method] = model
        iterators[method] = iter(model.distribute_strategy.experimental_distribute_dataset(batches))
        added = fit_callbacks(model, [], accounting=True) if method == "ppml" else []
        hooks[method] = keras.callbacks.CallbackList(added, model=model)
        hooks[method].on_train_begin()
    done = {"keras": itertools.count(), "ppml": itertools.count()}

    def visit(method):
        def chunk():
            return [
                train_once(models[method], iterators[method], hooks[method], next(done[method]))
                for _ in range(spec["chunk"])
            ][1:]

        if method == "keras":
            return chunk()
        with private_training(models[method]).fitting(None):
            return chunk()

    ratios, steps = {"wall": [], "cpu": []}, {"keras": [], "ppml": []}
    for order in balanced_rounds(["keras", "ppml"], spec["pair_rounds"]):
        times = {method: visit(method) for method in order}
        for method, timed in times.items():
            steps[method].extend(timed)
        for k, key in enumerate(("wall", "cpu")):
            medians = [statistics.median(t[k] for t in times[m]) for m in ("ppml", "keras")]
            ratios[key].append(medians[0] / medians[1])
    return {
        "wall_ratios": ratios["wall"],
        "cpu_ratios": ratios["cpu"],
        **{
            f"{method}_{key}_ms": statistics.median(t[k] for t in timed)
            for method, timed in steps.items()
            for k, key in enumerate(("wall", "cpu"))
        },
    }


def step_rows(n: int, batch: int, cap, skip_padding: bool, count: int, sigma_c=None, tensors: int = 0) -> list[int]:
    """The rows each of the first ``count`` steps computes with the workers' seeded Poisson batches: the padded
    size, or with ``skip_padding`` the realised size (with noisy padding's ``sigma_c``, plus its padding rows)
    rounded up as the step rounds it (`PADDED_ROWS_MULTIPLE`, with noisy padding `NOISY_ROWS_MULTIPLE`). Drawn from
    a twin sampler with the same seed (the sizes depend on n, B, the cap and the seed alone); noisy padding's rows
    from a twin of the noise generator seeded `NOISE_SEED`, advanced per step as the step advances it (Z, then one
    seed per gradient tensor)."""
    import numpy as np

    from privacy.accounting import noisy_padding
    from privacy.keras import poisson_batches, sampling_of
    from privacy.keras.noise import GaussianNoise

    blank = np.zeros(n, "int8")
    twin = poisson_batches((blank, blank), dataset_size=n, expected_batch_size=batch, truncated_batch_size=cap, seed=0)
    limit = sampling_of(twin).max_batch_size
    sizes = [int(w.numpy().sum()) for _, _, w in twin.take(count)]
    if sigma_c:
        import tensorflow as tf

        noise, offset = GaussianNoise(seed=NOISE_SEED), noisy_padding.padding_offset(sigma_c)
        noise.build()
        padded = []
        for s in sizes:
            padded.append(min(limit, s + int(noise.padding_rows(sigma_c, offset))))
            noise.add([tf.zeros([1])] * tensors, 1.0)  # the step's seeds for its gradient tensors
        sizes = padded
    m = noisy_padding.NOISY_ROWS_MULTIPLE if sigma_c else noisy_padding.PADDED_ROWS_MULTIPLE
    return [min(limit, max(1, -(-s // m)) * m) if skip_padding else limit for s in sizes]


def steady_warmup(rows: list[int], minimum: int, steps: int) -> int:
    """The fewest warm-up steps (at least ``minimum``) after which the ``steps`` timed ones use no batch shape the
    warm-up has not (the first use of a shape pays for its kernels' set-up); ``minimum`` + `HORIZON` at most."""
    for warmup in range(minimum, len(rows) - steps + 1):
        if set(rows[warmup : warmup + steps]) <= set(rows[:warmup]):
            return warmup
    return len(rows) - steps


def shape_costs(rows: list[int], cpu_ms, warmup: int) -> dict:
    """The timed steps' batch shapes and mean rows, and the warm-up's excess: the CPU ms of warm-up steps 1 to
    ``warmup`` - 1 (step 0 traces) above the median of the timed steps of the same shape, summed (over the shapes
    that the timed steps use)."""
    import numpy as np

    timed = rows[warmup:]
    median = {
        shape: float(np.median([cpu_ms[i - 1] for i in range(warmup, len(rows)) if rows[i] == shape]))
        for shape in set(timed)
    }
    excess = sum(cpu_ms[i - 1] - median[rows[i]] for i in range(1, warmup) if rows[i] in median)
    return {"batch_shapes": len(median), "mean_rows": float(np.mean(timed)), "warmup_excess_cpu_ms": excess}


def run_worker(python: str, spec: dict, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    env["TF_USE_LEGACY_KERAS"] = "1" if spec["flavour"] == "tf_keras" else "0"
    if spec["flavour"] == "torch":  # OpenMP's spinning threads cost torch 8-16x its CPU time on a busy machine
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:300]
            if (proc.stderr or proc.stdout)
            else f"exit {proc.returncode}"
        }
    return json.loads(lines[-1])


def processor() -> str:
    """The processor's model name (Linux /proc/cpuinfo), or the platform's word for it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def median_of(results: list[dict]) -> dict:
    """The per-round results of one configuration: the median of every figure (an error if any round failed)."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _keras3_ppml(model, label, **options):
    """The configuration of a ppml row on Keras 3 without XLA: "ppml (keras3, ``label``)" with ``options``."""
    return (
        model,
        f"ppml (keras3, {label})",
        sys.executable,
        dict(model=model, method="ppml", flavour="keras3", xla=False, **options),
    )


def configurations(models, tf_privacy_python, opacus_python):
    for model in models:
        for flavour in ("keras3", "tf_keras"):
            for xla in (False, True):
                mode = ", XLA" if xla else ""
                for method in ("keras", "ppml"):
                    yield (
                        model,
                        f"{method} ({flavour}{mode})",
                        sys.executable,
                        dict(model=model, method=method, flavour=flavour, xla=xla),
                    )
        yield _keras3_ppml(model, "fixed from arrays", shuffled=True)
        for source in ("arrays", "dataset"):
            yield _keras3_ppml(model, f"Poisson from {source}", poisson=source)
        yield _keras3_ppml(model, "Poisson from arrays, skip padding", poisson="arrays", skip_padding=True)
        yield _keras3_ppml(
            model,
            f"Poisson, noisy padding (sigma_c = {NOISY_PADDING:g})",
            poisson="arrays",
            skip_padding=True,
            noisy=NOISY_PADDING,
        )
        for skip in (False, True):
            label = "truncated Poisson" + (", skip padding" if skip else "")
            yield _keras3_ppml(model, label, poisson="arrays", truncated=True, skip_padding=skip)
        if tf_privacy_python:
            yield (
                model,
                "keras (tf_keras, TF Privacy env)",
                tf_privacy_python,
                dict(model=model, method="keras", flavour="tf_keras", xla=False),
            )
            if model == "mlp":
                yield (
                    model,
                    "TF Privacy DPModel + registry",
                    tf_privacy_python,
                    dict(model=model, method="tf_privacy", flavour="tf_keras", registry=True, xla=True),
                )
            yield (
                model,
                "TF Privacy DPModel (vectorized)",
                tf_privacy_python,
                dict(model=model, method="tf_privacy", flavour="tf_keras", registry=False, xla=True),
            )
        if opacus_python and model in ("mlp", "cnn"):
            yield model, "torch (Opacus env)", opacus_python, dict(model=model, method="torch", flavour="torch")
            for mode in ("ghost", "hooks"):
                yield (
                    model,
                    f"Opacus 1.6 ({mode})",
                    opacus_python,
                    dict(model=model, method="opacus", flavour="torch", mode=mode),
                )


def baseline_of(label):
    if "Opacus" in label:
        return "torch (Opacus env)"
    if "TF Privacy" in label:
        return "keras (tf_keras, TF Privacy env)"
    flavour = "tf_keras" if "tf_keras" in label else "keras3"
    return f"keras ({flavour}, XLA)" if "XLA" in label else f"keras ({flavour})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="steps before timing (tracing, XLA compilation); a Poisson row warms up longer, until every batch "
        "shape its timed steps use has been seen",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH,
        help="expected batch size (fixed batches take exactly this many rows; the targets and anchors are at 256)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of every configuration, interleaved")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated fragments: run only the configurations whose "
        "label contains one of them, and their non-private baselines",
    )
    parser.add_argument("--tf-privacy-python", help="python of an environment with tensorflow-privacy 0.9.0")
    parser.add_argument("--opacus-python", help="python of an environment with opacus 1.6 and CPU torch")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="the fixed-batch goal rows with each non-private and private pair alternated in one process "
        "(--rounds processes per pair)",
    )
    parser.add_argument("--pair-rounds", type=int, default=30, help="--paired: rounds per process")
    parser.add_argument(
        "--chunk", type=int, default=4, help="--paired: steps per visit of a model (the first not timed)"
    )
    parser.add_argument(
        "--out", help="JSON (default: results/dp_sgd_speed.json, with --paired dp_sgd_speed_paired.json)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(paired_worker(spec) if spec.get("paired") else worker(spec)))
        return
    fragments = [f for f in args.only.split(",") if f]
    if args.paired:
        if args.pair_rounds < 2:
            parser.error(f"--pair-rounds must be at least 2, got {args.pair_rounds}")
        if args.chunk < 2:
            parser.error(f"--chunk must be at least 2 (the first step of a visit is not timed), got {args.chunk}")
        paired(args, fragments)
        return
    every = list(configurations(args.models.split(","), args.tf_privacy_python, args.opacus_python))
    wanted = {c[1] for c in every if not fragments or any(f in c[1] for f in fragments)}
    chosen = [c for c in every if c[1] in wanted or c[1] in {baseline_of(label) for label in wanted}]
    out = args.out or os.path.join(os.path.dirname(__file__), "results", "dp_sgd_speed.json")
    machine = {"processor": processor(), "cores": os.cpu_count(), "load_before": os.getloadavg()}
    runs: dict[tuple, list] = {}
    for round_ in range(args.rounds):
        for model, label, python, spec in chosen:
            spec.update(steps=args.steps, warmup=args.warmup, batch_size=args.batch_size)
            result = run_worker(python, spec)
            runs.setdefault((model, label), []).append(result)
            print(f"  round {round_} {model:<4} {label:<52} {result}", file=sys.stderr)
    machine["load_after"] = os.getloadavg()
    rows = [{"model": model, "method": label, **median_of(results)} for (model, label), results in runs.items()]
    for row in rows:
        base = next((r for r in rows if r["model"] == row["model"] and r["method"] == baseline_of(row["method"])), {})
        if "ms_per_step" in row and "ms_per_step" in base:
            row["ratio"] = row["ms_per_step"] / base["ms_per_step"]
            row["cpu_ratio"] = row["cpu_ms_per_step"] / base["cpu_ms_per_step"]
            row["extra_rss_mb"] = row["peak_rss_mb"] - base["peak_rss_mb"]
    notes = []
    if not args.tf_privacy_python:
        notes.append("TF Privacy 0.9.0 was not run: pass --tf-privacy-python (see benchmarks/README.md)")
    if not args.opacus_python:
        notes.append("Opacus 1.6 was not run: pass --opacus-python (see benchmarks/README.md)")
    write_results(
        out,
        {
            "benchmark": "dp_sgd_speed",
            "batch_size": args.batch_size,
            "steps": args.steps,
            "rounds": args.rounds,
            **machine,
            "targets_ratio": TARGETS,
            "tf_privacy_best_ratio_anchor": ANCHORS,
            "rows": rows,
            "notes": notes,
        },
    )
    print(
        f"{machine['processor']}, {machine['cores']} cores; load average (1, 5, 15 min) "
        f"{' '.join(f'{v:.1f}' for v in machine['load_before'])} before, "
        f"{' '.join(f'{v:.1f}' for v in machine['load_after'])} after; median of {args.rounds} round(s)"
    )
    print(
        f"{'model':<5} {'method':<52} {'ms/step':>8} {'ratio':>6} {'CPU ms':>7} {'ratio':>6} {'peak MB':>8} "
        f"{'+MB':>6} {'data MB':>8} {'warm-up':>7} {'rows':>6}"
    )
    for row in rows:
        if "error" in row:
            print(f"{row['model']:<5} {row['method']:<52} failed: {row['error']}")
            continue
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        cpu_ratio = f"{row['cpu_ratio']:.2f}x" if "cpu_ratio" in row else ""
        extra = f"{row['extra_rss_mb']:+.0f}" if "extra_rss_mb" in row else ""
        data = f"{row['data_mb']:.0f}" if row.get("data_mb") else ""
        print(
            f"{row['model']:<5} {row['method']:<52} {row['ms_per_step']:>8.1f} {ratio:>6} "
            f"{row['cpu_ms_per_step']:>7.1f} {cpu_ratio:>6} {row['peak_rss_mb']:>8.0f} {extra:>6} {data:>8} "
            f"{row.get('warmup_steps', ''):>7} {row.get('mean_rows', ''):>6.6}"
        )
    print(
        f"targets: ppml <= {TARGETS['mlp']}x (MLP), <= {TARGETS['cnn']}x (CNN); TF Privacy's best measured here: "
        f"{ANCHORS['mlp']}x, {ANCHORS['cnn']}x"
    )
    for note in notes:
        print(f"note: {note}")
    print(f"JSON: {out}")


def paired(args, fragments) -> None:
    """``--paired``: the goal rows (fixed batches) of ``--models``, each flavour and compile mode whose private label
    ("ppml (keras3)", "ppml (tf_keras, XLA)", ...) contains a fragment of ``--only`` (all without it), each pair in
    ``--rounds`` fresh processes of `paired_worker`, the pairs interleaved process by process. Prints per pair the
    private / non-private ratio (wall and process CPU): over all processes, the median of the pooled rounds with a
    95 % interval (processes and their rounds resampled), the range of the processes' medians and whether both
    intervals' upper ends are within the goal (`TARGETS`); the JSON adds each process's median and interval."""
    from interleave import bootstrap_interval, clustered_interval

    pairs = [
        (model, flavour, xla, f"ppml ({flavour}{', XLA' if xla else ''})")
        for model in args.models.split(",")
        for flavour in ("keras3", "tf_keras")
        for xla in (False, True)
    ]
    pairs = [p for p in pairs if not fragments or any(f in p[3] for f in fragments)]
    machine = {"processor": processor(), "cores": os.cpu_count(), "load_before": os.getloadavg()}
    runs: dict[tuple, list] = {}
    for process in range(args.rounds):
        for model, flavour, xla, label in pairs:
            spec = dict(
                paired=True,
                model=model,
                flavour=flavour,
                xla=xla,
                batch_size=args.batch_size,
                warmup=args.warmup,
                pair_rounds=args.pair_rounds,
                chunk=args.chunk,
            )
            result = run_worker(sys.executable, spec)
            result["load"] = os.getloadavg()[0]
            runs.setdefault((model, label), []).append(result)
            if "error" in result:
                print(f"  process {process} {model} {label}: failed: {result['error']}", file=sys.stderr)
                continue
            wall, cpu = (statistics.median(result[f"{k}_ratios"]) for k in ("wall", "cpu"))
            print(f"  process {process} {model} {label}: {wall:.3f}x wall, {cpu:.3f}x CPU", file=sys.stderr)
    machine["load_after"] = os.getloadavg()
    print(
        f"{machine['processor']}, {machine['cores']} cores; load average (1, 5, 15 min) "
        f"{' '.join(f'{v:.1f}' for v in machine['load_before'])} before, "
        f"{' '.join(f'{v:.1f}' for v in machine['load_after'])} after; {args.rounds} process(es) per pair, "
        f"{args.pair_rounds} rounds x {args.chunk} steps per visit (first untimed); private / non-private"
    )
    rows = []
    for (model, label), results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            print(f"{model:<5} {label:<22} failed: {results[0]['error']}")
            continue
        row = {"model": model, "method": label, "processes": good, "goal": TARGETS.get(model)}
        for key in ("wall", "cpu"):
            pooled = [v for r in good for v in r[f"{key}_ratios"]]
            medians = [statistics.median(r[f"{key}_ratios"]) for r in good]
            row[key] = dict(
                ratio=statistics.median(pooled),
                interval=clustered_interval([r[f"{key}_ratios"] for r in good]),
                process_medians=medians,
                process_intervals=[bootstrap_interval(r[f"{key}_ratios"]) for r in good],
            )
        for method in ("keras", "ppml"):
            row[f"{method}_ms"] = {k: statistics.median(r[f"{method}_{k}_ms"] for r in good) for k in ("wall", "cpu")}
        rows.append(row)
        cells = []
        for key in ("wall", "cpu"):
            r = row[key]
            cells.append(
                f"{key} {r['ratio']:.3f}x [{r['interval'][0]:.3f}-{r['interval'][1]:.3f}], processes "
                f"{min(r['process_medians']):.3f}-{max(r['process_medians']):.3f}"
            )
        goal = row["goal"]
        holds = goal is not None and max(row[key]["interval"][1] for key in ("wall", "cpu")) <= goal
        keras_ms, ppml_ms = row["keras_ms"], row["ppml_ms"]
        print(
            f"{model:<5} {label:<22} ms (keras / ppml) wall {keras_ms['wall']:.1f} / {ppml_ms['wall']:.1f}, "
            f"CPU {keras_ms['cpu']:.1f} / {ppml_ms['cpu']:.1f}; {'; '.join(cells)}"
            + (f"; <= {goal}x: {'holds' if holds else 'not shown'} (both intervals)" if goal else "")
        )
    out = args.out or os.path.join(os.path.dirname(__file__), "results", "dp_sgd_speed_paired.json")
    write_results(
        out,
        {
            "benchmark": "dp_sgd_speed --paired",
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "pair_rounds": args.pair_rounds,
            "chunk": args.chunk,
            **machine,
            "targets_ratio": TARGETS,
            "rows": rows,
        },
    )
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
