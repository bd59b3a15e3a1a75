"""Clients per second of FedAvg rounds against worker processes and clients per round: the in-process runner
(1 and 2 threads) and the Beam runner (DirectRunner in one process, and with 1 and 2 worker processes,
``--direct_running_mode=multi_processing``), side by side in one run.

Workload: synthetic MNIST-shaped data (784 features, 10 classes), 600 examples per client, E = 1, B = 10,
McMahan et al.'s 2NN (2x200 ReLU), sequential execution. Every runner trains the same clients from the same
seed (the results are bitwise equal; tests/federated/test_simulation.py checks it). A Beam round is one
pipeline: with worker processes each round starts its workers afresh (TensorFlow import and tracing
included), so its fixed cost is paid every round, not only in the first. Round 1 is reported apart; the
rates are over the later rounds. Prints a table of clients/s and round seconds, and the ratio of each
runner to the in-process runner with one thread; writes JSON to benchmarks/results/federated_scaleout.json.

    make run ARGS='python benchmarks/federated_scaleout.py [--clients-per-round 16 64] [--rounds 2]'
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from federated import ClientConfig, ClientData, FedAvg, FederatedSimulation, UniformSampler
from federated.models import DenseModel
from federated.partitioners import IidPartitioner
from federated.simulation import BeamRunner, InProcessRunner
from results_io import machine_info, write_results

DIRECT = ["--runner=DirectRunner"]
RUNNERS = {
    "in-process, 1 thread": lambda tmp: InProcessRunner(workers=1),
    "in-process, 2 threads": lambda tmp: InProcessRunner(workers=2),
    "Beam, in one process": lambda tmp: BeamRunner(
        DIRECT + ["--direct_running_mode=in_memory", "--direct_num_workers=1"], temp_location=tmp
    ),
    "Beam, 1 worker process": lambda tmp: BeamRunner(
        DIRECT + ["--direct_running_mode=multi_processing", "--direct_num_workers=1"], temp_location=tmp
    ),
    "Beam, 2 worker processes": lambda tmp: BeamRunner(
        DIRECT + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"], temp_location=tmp
    ),
}


def _data(num_clients: int) -> ClientData:
    rng = np.random.default_rng(0)
    x = rng.random((600 * num_clients, 784), dtype=np.float32)
    y = rng.integers(0, 10, 600 * num_clients)
    return ClientData.from_arrays(x, y, IidPartitioner(num_clients=num_clients, seed=0))


def _measure(runner, data, clients_per_round: int, rounds: int) -> dict:
    strategy = FedAvg(ClientConfig(local_epochs=1, batch_size=10, learning_rate=0.05))
    sim = FederatedSimulation(
        DenseModel(784, 10, (200, 200)),
        data,
        strategy,
        rounds=rounds + 1,
        seed=0,
        sampler=UniformSampler(clients_per_round / data.num_clients),
        chunk_size=8,
        runner=runner,
    )
    history = sim.run()
    timed = history.rounds[1:]
    seconds = sum(r.seconds for r in timed)
    return {
        "clients_per_s": sum(r.reported for r in timed) / seconds,
        "round_s": seconds / len(timed),
        "first_round_s": history.rounds[0].seconds,
        "weights_sha256": hashlib.sha256(b"".join(w.tobytes() for w in sim.state.weights)).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients-per-round", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds after the first")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "federated_scaleout.json"))
    args = parser.parse_args()
    data = _data(max(args.clients_per_round))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cohort in args.clients_per_round:
            for name, make in RUNNERS.items():
                result = _measure(make(tmp), data, cohort, args.rounds)
                rows.append({"runner": name, "clients_per_round": cohort, **result})
                print(
                    f"{cohort:>4} clients  {name:<26} {result['clients_per_s']:7.2f} clients/s  "
                    f"{result['round_s']:7.2f} s/round  (round 1: {result['first_round_s']:.1f} s)",
                    flush=True,
                )
    base = {r["clients_per_round"]: r["clients_per_s"] for r in rows if r["runner"] == "in-process, 1 thread"}
    for row in rows:
        row["ratio_to_inprocess_1_thread"] = row["clients_per_s"] / base[row["clients_per_round"]]
    same = {}
    for row in rows:
        same.setdefault(row["clients_per_round"], set()).add(row["weights_sha256"])
    print(f"\n{'clients/round':>13}  {'runner':<26} {'clients/s':>9} {'s/round':>8} {'x 1 thread':>10}")
    for row in rows:
        print(
            f"{row['clients_per_round']:>13}  {row['runner']:<26} {row['clients_per_s']:9.2f} {row['round_s']:8.2f} "
            f"{row['ratio_to_inprocess_1_thread']:10.2f}"
        )
    print("same weights from every runner:", all(len(v) == 1 for v in same.values()))
    info = machine_info()
    print(f"processor: {info['processor']}, {info['cpus_usable']} usable CPUs, load {info['load_average']}")
    write_results(
        args.out,
        {
            "workload": "2NN, 600 examples/client, E=1, B=10, sequential",
            "rows": rows,
            "bitwise_equal_across_runners": all(len(v) == 1 for v in same.values()),
        },
    )


if __name__ == "__main__":
    main()
