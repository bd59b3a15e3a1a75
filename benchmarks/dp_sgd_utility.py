"""Privacy-utility of ppml's DP-SGD: test accuracy against epsilon, with a PNG plot.

On sklearn's bundled digits (always) and on MNIST when ``--mnist PATH`` names Keras' ``mnist.npz``
(x_train, y_train, x_test, y_test; nothing is downloaded). For each noise multiplier the same model is
trained with Poisson sampling through `make_private(...)` + `fit`, for a fixed number of epochs, and the
epsilon reported is the one its privacy budget callback accounted (RDP and PLD, delta 1e-5), beside a
non-private baseline trained the same way. Several seeds give mean and spread.

    make run ARGS='python benchmarks/dp_sgd_utility.py'
    make run ARGS='python benchmarks/dp_sgd_utility.py --mnist /data/mnist.npz --epochs 15'
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from results_io import write_results

DELTA = 1e-5


def load(name: str, mnist_path: str | None):
    """(x_train, y_train, x_test, y_test, hidden units)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype("float32")
        order = np.random.default_rng(0).permutation(len(x))
        train, test = order[:1500], order[1500:]
        return x[train], y[train], x[test], y[test], 64
    with np.load(mnist_path) as data:
        x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    scale = lambda a: (a.reshape(len(a), -1) / 255.0).astype("float32")  # noqa: E731
    return scale(x_train), y_train, scale(x_test), y_test, 512


def train(data, *, noise_multiplier, args, seed):
    """Test accuracy and (epsilon RDP, epsilon PLD) of one run; epsilon is None without noise."""
    import keras

    from privacy.keras import make_private, private_training

    x_train, y_train, x_test, y_test, hidden = data
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((x_train.shape[1],)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)]
    )
    if noise_multiplier is not None:
        make_private(
            model,
            l2_norm_clip=args.clip,
            noise_multiplier=noise_multiplier,
            expected_batch_size=args.batch_size,
            target_delta=DELTA,
            seed=seed,
        )
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    if noise_multiplier is None:
        return accuracy, None, None
    budget = private_training(model).budget
    return accuracy, budget.epsilon("rdp"), budget.epsilon("pld")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for dataset, result in results.items():
        rows = [r for r in result["rows"] if r["noise_multiplier"] is not None]
        line = ax.errorbar(
            [r["epsilon_rdp"] for r in rows],
            [r["accuracy_mean"] for r in rows],
            yerr=[r["accuracy_std"] for r in rows],
            marker="o",
            capsize=3,
            label=f"{dataset}: ppml DP-SGD",
        )
        baseline = next(r for r in result["rows"] if r["noise_multiplier"] is None)
        ax.axhline(
            baseline["accuracy_mean"], linestyle="--", color=line[0].get_color(), label=f"{dataset}: non-private"
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"epsilon (RDP, delta = {DELTA:g}, Poisson sampling, add/remove)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="path to Keras' mnist.npz (optional)")
    parser.add_argument("--noise-multipliers", default="0.6,0.8,1.0,1.5,2.5,4.0")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "dp_sgd_utility.json"))
    args = parser.parse_args(argv)
    sigmas = [float(s) for s in args.noise_multipliers.split(",")]
    datasets = ["digits"] + (["mnist"] if args.mnist else [])
    results = {}
    for dataset in datasets:
        data = load(dataset, args.mnist)
        rows = []
        for sigma in [None] + sigmas:
            runs = [train(data, noise_multiplier=sigma, args=args, seed=seed) for seed in range(args.seeds)]
            accuracies = [r[0] for r in runs]
            rows.append(
                {
                    "noise_multiplier": sigma,
                    "accuracy_mean": float(np.mean(accuracies)),
                    "accuracy_std": float(np.std(accuracies)),
                    "accuracies": accuracies,
                    "epsilon_rdp": runs[0][1],
                    "epsilon_pld": runs[0][2],
                }
            )
            print(f"  {dataset} sigma={sigma}: {rows[-1]['accuracy_mean']:.4f}", file=sys.stderr)
        results[dataset] = {
            "train_size": len(data[0]),
            "test_size": len(data[2]),
            "hidden_units": data[4],
            "rows": rows,
        }
    png = os.path.splitext(args.out)[0] + ".png"
    config = {k: getattr(args, k) for k in ("epochs", "batch_size", "clip", "learning_rate", "seeds")}
    write_results(
        args.out,
        {
            "benchmark": "dp_sgd_utility",
            "delta": DELTA,
            "sampling": "poisson",
            "adjacency": "add-remove",
            "config": config,
            "results": results,
            "plot": png,
        },
    )
    plot(results, png)
    print(f"{'data':<7} {'sigma':>6} {'eps RDP':>8} {'eps PLD':>8} {'accuracy':>16}")
    for dataset, result in results.items():
        for row in result["rows"]:
            sigma = "none" if row["noise_multiplier"] is None else f"{row['noise_multiplier']:g}"
            eps = [f"{row[k]:.3g}" if row[k] is not None else "inf" for k in ("epsilon_rdp", "epsilon_pld")]
            print(
                f"{dataset:<7} {sigma:>6} {eps[0]:>8} {eps[1]:>8} "
                f"{row['accuracy_mean']:>9.4f} +-{row['accuracy_std']:.4f}"
            )
    print(f"config: {config}; delta {DELTA:g}, Poisson sampling, add/remove adjacency")
    print(f"JSON: {args.out}\nPNG: {png}")


if __name__ == "__main__":
    main()
