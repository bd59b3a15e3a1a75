"""Latency, rounds and bytes of one private prediction: ppml's 3-party engine in-process and across three
TLS processes on 127.0.0.1, with plaintext Keras on the same model in the same run as the baseline.

Workload (issue 6): the MLP 784-128-128-10 and a small CNN (conv 5x5/2 x16, dense 100, dense 10) on
28x28 inputs, batch 1 and batch 100, random (seeded) weights: cost does not depend on weight values.
Goals on this 2-core CPU: MLP batch 1 <= 50 ms in-process and <= 100 ms across processes. Anchors
measured on the same MLP on this machine kind (field notes, enc.md; not re-run here): CrypTen 2-party
82 ms / 2.0 MB / 22 rounds, tf-encrypted ABY3 (patched) 410-640 ms, SPU 220-500 ms.

    make run ARGS='python benchmarks/encrypted_inference.py [--repeats 10] [--skip-processes]'
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from privacy.encrypted import InProcessCluster  # noqa: E402
from privacy.encrypted.benchmark import reference_bounds, reference_plan, time_predictions  # noqa: E402
from privacy.encrypted.network import RemoteClient  # noqa: E402
from privacy.encrypted.plan import Activation, Conv2D, Dense, Reshape  # noqa: E402
from privacy.encrypted.processes import loopback_parties  # noqa: E402
from results_io import write_results  # noqa: E402

GOALS_MS = {("mlp", "in-process", 1): 50.0, ("mlp", "3 processes", 1): 100.0}
ANCHORS = "CrypTen 2PC 82 ms / 2.0 MB / 22 rounds; tf-encrypted ABY3 410-640 ms; SPU 220-500 ms (MLP batch 1)"


def keras_model(plan):
    """The plan as a Keras 3 model with the same weights (the plaintext baseline)."""
    import keras  # noqa: PLC0415

    layers = [keras.Input(plan.architecture.input_shape)]
    for op in plan.architecture.layers:
        if isinstance(op, Dense):
            layers.append(keras.layers.Dense(op.units, name=op.name))
        elif isinstance(op, Conv2D):
            layers.append(keras.layers.Conv2D(op.filters, op.kernel_size, op.strides, op.padding, name=op.name))
        elif isinstance(op, Activation):
            layers.append(keras.layers.Activation(op.function))
        elif isinstance(op, Reshape):
            layers.append(keras.layers.Reshape(op.target_shape))
    model = keras.Sequential(layers + [keras.layers.Activation(plan.architecture.output_activation)])
    for name, (kernel, bias) in plan.weights.items():
        model.get_layer(name).set_weights([kernel, bias])
    return model


def time_keras(model, x, repeats):
    model(x, training=False)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x, training=False)
        seconds.append(time.perf_counter() - start)
    return {"batch": len(x), "median_ms": 1e3 * statistics.median(seconds), "min_ms": 1e3 * min(seconds),
            "rounds": 0, "bytes": 0, "client_bytes": 0, "repeats": repeats}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "encrypted_inference.json"))
    args = parser.parse_args()
    rows = []
    for name in ("mlp", "cnn"):
        plan = reference_plan(name)
        x = np.random.default_rng(1).random((max(args.batches),) + plan.architecture.input_shape)
        model = keras_model(plan)
        cluster = InProcessCluster(plan, reference_bounds(plan))
        for batch in args.batches:
            base = time_keras(model, x[:batch], args.repeats)
            rows.append(dict(model=name, mode="plaintext keras", **base))
            measured = time_predictions(cluster, x[:batch], repeats=args.repeats)
            error = float(np.abs(cluster.predict(x[:batch]).outputs - np.asarray(model(x[:batch]))).max())
            rows.append(dict(model=name, mode="in-process", max_abs_error=error,
                             vs_plaintext=measured["median_ms"] / base["median_ms"], **measured))
        if not args.skip_processes:
            with loopback_parties(plan, reference_bounds(plan)) as parties, RemoteClient(parties.deployment) as client:
                for batch in args.batches:
                    base = next(r for r in rows if r["model"] == name and r["mode"] == "plaintext keras"
                                and r["batch"] == batch)
                    measured = time_predictions(client, x[:batch], repeats=args.repeats)
                    rows.append(dict(model=name, mode="3 processes", vs_plaintext=measured["median_ms"] / base["median_ms"],
                                     **measured))
    for row in rows:
        goal = GOALS_MS.get((row["model"], row["mode"], row["batch"]))
        if goal is not None:
            row["goal_ms"], row["meets_goal"] = goal, row["median_ms"] <= goal
    print(f"{'model':<5} {'mode':<16} {'batch':>5} {'median ms':>10} {'x plain':>8} {'rounds':>6} {'MB':>8} {'goal':>9}")
    for r in rows:
        goal = "" if "goal_ms" not in r else f"<={r['goal_ms']:.0f} {'ok' if r['meets_goal'] else 'MISS'}"
        ratio = f"{r['vs_plaintext']:.0f}x" if "vs_plaintext" in r else ""
        print(f"{r['model']:<5} {r['mode']:<16} {r['batch']:>5} {r['median_ms']:>10.1f} {ratio:>8} {r['rounds']:>6} "
              f"{r['bytes'] / 1e6:>8.3f} {goal:>9}")
    print(f"anchors (field notes, not re-run): {ANCHORS}")
    write_results(args.out, {"repeats": args.repeats, "anchors": ANCHORS, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
