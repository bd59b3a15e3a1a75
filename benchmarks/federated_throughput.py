"""Clients per second of one FedAvg round: ppml in-process (sequential, vectorized), ppml on Beam's
DirectRunner; Flower's simulation is not run yet (see FLOWER_NOTE).

Workload (issue 5, McMahan et al. 2017): synthetic MNIST-shaped data, 600 examples per client,
E = 1, B = 10 (60 SGD steps per client), the 2NN (2x200 ReLU, 199,210 parameters) and the linear
784 -> 10 model. Warm-up rounds (tracing, XLA compilation) are excluded. Prints a table and writes
JSON to benchmarks/results/federated_throughput.json.

    make run ARGS='python benchmarks/federated_throughput.py [--clients-per-round 10] [--rounds 3]'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from federated import ClientConfig, ClientData, FedAvg, FederatedSimulation, UniformSampler  # noqa: E402
from federated.models import DenseModel  # noqa: E402
from federated.partitioners import IidPartitioner  # noqa: E402

GOALS = {"2nn": 15.0, "linear": 500.0}   # clients/s on 2 cores (issue 5)


def _data(num_clients: int) -> ClientData:
    rng = np.random.default_rng(0)
    x = rng.random((600 * num_clients, 784), dtype=np.float32)
    y = rng.integers(0, 10, 600 * num_clients)
    return ClientData.from_arrays(x, y, IidPartitioner(num_clients=num_clients, seed=0))


def _ppml(model_fn, data, clients_per_round, rounds, execution, runner=None) -> float:
    strategy = FedAvg(ClientConfig(epochs=1, batch_size=10, learning_rate=0.05))
    sim = FederatedSimulation(model_fn, data, strategy, rounds=rounds + 1, execution=execution, seed=0,
                              sampler=UniformSampler(clients_per_round / data.num_clients),
                              chunk_size=clients_per_round, runner=runner)
    history = sim.run()
    timed = history.rounds[1:]        # round 1 traces/compiles
    return sum(r.reported for r in timed) / sum(r.seconds for r in timed)


FLOWER_NOTE = ("Flower anchor not run: flwr is not in the runtime and no Flower harness is written yet; the field "
               "notes measured Flower 1.42 + Ray with a compiled client at 3.0-3.2 (2NN) and 7.6-8.5 (linear) clients/s "
               "on this machine kind")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients-per-round", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--skip-beam", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "federated_throughput.json"))
    args = parser.parse_args()
    data = _data(args.clients_per_round * 2)
    rows, notes = [], [FLOWER_NOTE]
    for name, hidden in (("2nn", (200, 200)), ("linear", ())):
        model_fn = DenseModel(784, 10, hidden)
        row = {"model": name, "goal_clients_per_s": GOALS[name]}
        for execution in ("sequential", "vectorized"):
            row[f"ppml_{execution}"] = _ppml(model_fn, data, args.clients_per_round, args.rounds, execution)
        if not args.skip_beam:
            from federated.simulation.beam import BeamRunner  # pylint: disable=import-outside-toplevel
            row["ppml_beam_direct"] = _ppml(model_fn, data, args.clients_per_round, args.rounds, "sequential",
                                            BeamRunner())
        row["flower"] = None
        best = max(row["ppml_sequential"], row["ppml_vectorized"])
        row["best_vs_goal"] = best / GOALS[name]
        rows.append(row)
    columns = ["ppml_sequential", "ppml_vectorized", "ppml_beam_direct", "flower"]
    print(f"clients/s, {args.clients_per_round} clients per round, 600 examples each, E=1, B=10 "
          f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})")
    print(f"{'model':<8}" + "".join(f"{c:>18}" for c in columns) + f"{'goal':>8}{'best/goal':>11}")
    for row in rows:
        cells = "".join(f"{row[c]:>18.1f}" if row.get(c) is not None else f"{'n/a':>18}" for c in columns)
        print(f"{row['model']:<8}{cells}{row['goal_clients_per_s']:>8.0f}{row['best_vs_goal']:>11.2f}")
    for note in sorted(set(notes)):
        print("note:", note)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "notes": sorted(set(notes)), "clients_per_round": args.clients_per_round,
                   "timed_rounds": args.rounds, "cpus": os.cpu_count()}, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
