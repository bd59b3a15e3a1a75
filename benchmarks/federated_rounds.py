"""Rounds of FedAvg to a target test accuracy, IID vs pathological non-IID, over an (E, B) grid:
the shape of McMahan et al. 2017, Table 2 (the first row, E = 1 and B = infinity, is FedSGD).

Data: scikit-learn's bundled digits (1,347 training / 450 test images of 8x8) by default, or MNIST
when its file is given (``--mnist mnist.npz``, the x_train/y_train/x_test/y_test arrays of
``keras.datasets.mnist``; nothing is downloaded). IID: clients of equal size drawn at random;
non-IID: McMahan's pathological split, 2 label-sorted shards per client. Model: an MLP with two
ReLU layers (the 2NN; 200 units each for MNIST as in the paper, 64 for digits). C = fraction of
clients per round, one fixed client learning rate for every cell (the paper tuned it per cell, so
compare the shape of the table, not its numbers). Prints a table, writes JSON and a PNG of test
accuracy per round to benchmarks/results/.

    make run ARGS='python benchmarks/federated_rounds.py [--max-rounds 200] [--mnist mnist.npz]'
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from federated import ClientConfig, ClientData, FedAvg, FederatedSimulation, UniformSampler
from federated.models import DenseModel
from federated.partitioners import IidPartitioner, ShardPartitioner
from results_io import write_results

GRID = ((1, None), (5, None), (1, 50), (20, None), (1, 10), (5, 50), (20, 50), (5, 10), (20, 10))
"""(E, B) in the order of McMahan et al.'s Table 2; B = None is B = infinity."""
PAPER_2NN_MNIST = {
    "target": 0.97,
    "C": 0.1,
    "E=1": {"iid": {"B=inf": 1474, "B=10": 87}, "non-iid": {"B=inf": 1796, "B=10": 664}},
}
"""McMahan et al. 2017, Table 1 (2NN, E = 1, C = 0.1): rounds to 97% on MNIST (benchmarks/README.md)."""


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return x_train, y_train, x_test, y_test.astype(np.int32)


def _mnist(path: str):
    with np.load(path) as arrays:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays.files)
        if missing:
            raise SystemExit(f"{path} lacks arrays {sorted(missing)} (expected keras.datasets.mnist's mnist.npz)")
        x_train = arrays["x_train"].reshape(len(arrays["x_train"]), -1).astype(np.float32) / 255.0
        x_test = arrays["x_test"].reshape(len(arrays["x_test"]), -1).astype(np.float32) / 255.0
        return x_train, arrays["y_train"], x_test, arrays["y_test"].astype(np.int32)


def _rounds_to(history, target: float) -> int | None:
    return next((r.round for r in history.rounds if r.evaluation["accuracy"] >= target), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", help="path of mnist.npz (keras.datasets.mnist format); default: digits")
    parser.add_argument("--clients", type=int, default=None, help="K (default 50 for digits, 100 for MNIST)")
    parser.add_argument("--fraction", type=float, default=None, help="C (default 0.2 for digits, 0.1 for MNIST)")
    parser.add_argument("--target", type=float, default=None, help="test accuracy (default 0.95 digits, 0.97 MNIST)")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--max-rounds", type=int, default=150, help="stop a cell after this many rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--execution", choices=("auto", "sequential", "vectorized"), default="auto")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "federated_rounds"))
    args = parser.parse_args()
    mnist = args.mnist is not None
    x_train, y_train, x_test, y_test = _mnist(args.mnist) if mnist else _digits()
    clients = args.clients or (100 if mnist else 50)
    fraction = args.fraction or (0.1 if mnist else 0.2)
    target = args.target or (0.97 if mnist else 0.95)
    hidden = (200, 200) if mnist else (64, 64)
    model_fn = DenseModel(x_train.shape[1], 10, hidden, seed=args.seed)
    partitions = {
        "iid": IidPartitioner(num_clients=clients, seed=args.seed),
        "non-iid": ShardPartitioner(num_clients=clients, shards_per_client=2, seed=args.seed),
    }
    results, curves = [], {}
    for name, partitioner in partitions.items():
        data = ClientData.from_arrays(x_train, y_train, partitioner)
        for epochs, batch in GRID:
            client = ClientConfig(local_epochs=epochs, batch_size=batch, learning_rate=args.learning_rate)
            simulation = FederatedSimulation(
                model_fn,
                data,
                FedAvg(client),
                rounds=args.max_rounds,
                seed=args.seed,
                sampler=UniformSampler(fraction),
                evaluation=(x_test, y_test),
                execution=args.execution,
            )
            start = time.perf_counter()
            history = simulation.run(
                lambda record: f"reached {target}" if record.evaluation["accuracy"] >= target else None
            )
            rounds = _rounds_to(history, target)
            curves[(name, epochs, batch)] = [r.evaluation["accuracy"] for r in history.rounds]
            results.append(
                {
                    "partition": name,
                    "E": epochs,
                    "B": batch,
                    "rounds_to_target": rounds,
                    "rounds_run": len(history.rounds),
                    "final_accuracy": history.rounds[-1].evaluation["accuracy"],
                    "execution": simulation.execution,
                    "seconds": time.perf_counter() - start,
                }
            )
            print(
                f"{name:8} E={epochs:<3} B={'inf' if batch is None else batch:<4} -> "
                f"{rounds if rounds else '>' + str(args.max_rounds)} rounds",
                flush=True,
            )
    _report(results, curves, args, target, clients, fraction, hidden, mnist)


def _report(results, curves, args, target, clients, fraction, hidden, mnist):
    dataset = "MNIST" if mnist else "digits"
    fedsgd = {r["partition"]: r["rounds_to_target"] for r in results if r["E"] == 1 and r["B"] is None}
    print(
        f"\nRounds to {target:.0%} test accuracy on {dataset}: 2NN {hidden}, K={clients}, C={fraction}, "
        f"client lr {args.learning_rate}, at most {args.max_rounds} rounds (speed-up vs FedSGD)"
    )
    print(f"{'E':>3} {'B':>4}  {'IID':>14}  {'non-IID':>14}")
    for epochs, batch in GRID:
        cells = []
        for name in ("iid", "non-iid"):
            [row] = [r for r in results if r["partition"] == name and r["E"] == epochs and r["B"] == batch]
            rounds, base = row["rounds_to_target"], fedsgd[name]
            if rounds is None:
                cells.append(f"{'>' + str(args.max_rounds):>14}")
            else:
                speedup = f"({base / rounds:.1f}x)" if base else "(-)"
                cells.append(f"{rounds:>6} {speedup:>7}")
        print(f"{epochs:>3} {'inf' if batch is None else batch:>4}  {cells[0]}  {cells[1]}")
    if mnist:
        print(f"paper (2NN, E=1, C=0.1, rounds to 97%): {json.dumps(PAPER_2NN_MNIST['E=1'])}")
    write_results(
        args.out + ".json",
        {
            "dataset": dataset,
            "target": target,
            "clients": clients,
            "fraction": fraction,
            "hidden": list(hidden),
            "learning_rate": args.learning_rate,
            "max_rounds": args.max_rounds,
            "rows": results,
            "paper_2nn_mnist": PAPER_2NN_MNIST if mnist else None,
        },
    )
    _plot(curves, args.out + ".png", target, dataset)
    print("wrote", args.out + ".json", "and", args.out + ".png")


def _plot(curves, path, target, dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, name in zip(axes, ("iid", "non-iid"), strict=True):
        for (partition, epochs, batch), accuracy in curves.items():
            if partition == name:
                ax.plot(
                    range(1, len(accuracy) + 1),
                    accuracy,
                    lw=1.2,
                    label=f"E={epochs}, B={'inf' if batch is None else batch}",
                )
        ax.axhline(target, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{dataset}, {name}")
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
