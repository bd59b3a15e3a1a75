"""Flower's simulation on the workload of federated_throughput.py, for its side-by-side table.

Runs in its own interpreter with ``flwr[simulation]`` and TensorFlow installed (Flower is not a ppml
dependency); `federated_throughput.py` starts it with ``--flower-python`` and reads the JSON line it
prints last. To be fair to Flower, its client is compiled like ppml's: one `tf.function` runs the
whole local epoch (fixed batches of B, Keras 3 ``stateless_call``), traced once per actor process,
and each client's data is made inside the actor from its partition id (nothing is shipped). Flower
1.42's Message API: `flwr.serverapp.strategy.FedAvg` in a ServerApp, Ray backend with one CPU per
ClientApp actor. Steady state: the time from the end of round 1 to the end of the last round.

    /tmp/flwr-venv/bin/python benchmarks/federated_flower.py --model 2nn --clients-per-round 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLES, INPUTS, CLASSES = 600, 784, 10


def _model(hidden):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((INPUTS,))]
        + [keras.layers.Dense(h, activation="relu") for h in hidden]
        + [keras.layers.Dense(CLASSES)]
    )


def _client_data(partition: int):
    import numpy as np

    rng = np.random.default_rng(partition)
    return (rng.random((EXAMPLES, INPUTS), dtype=np.float32), rng.integers(0, CLASSES, EXAMPLES).astype("int32"))


def _local_epoch(hidden, batch_size: int, learning_rate: float):
    """The compiled local run of this actor process: one call trains one client for one epoch.

    Flower pickles the ClientApp's functions by value into each call, so a module global would be
    fresh every time: the cache lives in a module registered in ``sys.modules`` of the actor process.
    """
    import sys
    import types

    compiled = sys.modules.setdefault("_federated_flower_cache", types.ModuleType("_federated_flower_cache")).__dict__
    key = (tuple(hidden), batch_size, learning_rate)
    if key not in compiled:
        import keras
        import tensorflow as tf

        model = _model(hidden)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in model.trainable_variables]

        @tf.function(
            input_signature=[specs, tf.TensorSpec([EXAMPLES, INPUTS]), tf.TensorSpec([EXAMPLES], tf.int32)],
            jit_compile=True,
        )
        def run(weights, x, y):
            def step(s, w):
                xb = tf.slice(x, [s * batch_size, 0], [batch_size, INPUTS])
                yb = tf.slice(y, [s * batch_size], [batch_size])
                with tf.GradientTape() as tape:
                    tape.watch(w)
                    loss = loss_fn(yb, model.stateless_call(w, [], xb, training=True)[0])
                return s + 1, [a - learning_rate * g for a, g in zip(w, tape.gradient(loss, w), strict=True)]

            return tf.while_loop(
                lambda s, _: s < EXAMPLES // batch_size, step, (0, list(weights)), parallel_iterations=1
            )[1]

        compiled[key] = run
    return compiled[key]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("2nn", "linear"), default="2nn")
    parser.add_argument("--clients-per-round", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--cpus-per-client", type=float, default=1.0)
    args = parser.parse_args()
    hidden = (200, 200) if args.model == "2nn" else ()

    import numpy as np
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        x, y = _client_data(int(context.node_config["partition-id"]))
        weights = msg.content["arrays"].to_numpy_ndarrays()
        new = _local_epoch(hidden, 10, 0.05)(weights, x, y)
        content = RecordDict(
            {"arrays": ArrayRecord([np.asarray(w) for w in new]), "metrics": MetricRecord({"num-examples": EXAMPLES})}
        )
        return Message(content=content, reply_to=msg)

    ends = []
    server_app = ServerApp()

    @server_app.main()
    def server(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=args.clients_per_round,
            min_evaluate_nodes=0,
            min_available_nodes=args.clients_per_round,
        )
        initial = ArrayRecord([v.numpy() for v in _model(hidden).trainable_variables])
        strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=args.rounds + 1,
            evaluate_fn=lambda rnd, arrays: ends.append(time.perf_counter()) or None,
        )

    start = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=args.clients_per_round,
        backend_config={"client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0}},
    )
    ends = ends[1:]  # evaluate_fn also runs once before round 1
    if len(ends) != args.rounds + 1:
        raise SystemExit(f"expected {args.rounds + 1} rounds, Flower ran {len(ends)}")
    print(
        json.dumps(
            {
                "model": args.model,
                "clients_per_s": args.clients_per_round * args.rounds / (ends[-1] - ends[0]),
                "first_round_s": ends[0] - start,
                "flwr": __import__("flwr").__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
