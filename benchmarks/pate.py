"""PATE against DP-SGD: student accuracy against epsilon, side by side in one run, with a PNG plot.

On sklearn's bundled digits and breast-cancer data. Rows are split by a keyed hash of their content into
private (teachers), public (the student's unlabeled queries) and test rows; features are scaled with the
public rows' statistics. The teachers are trained once per data set on disjoint partitions of the private
rows; each aggregator setting then labels the public rows (CSPRNG noise), the student is trained on the
answered queries, and its guarantee (data-independent, dp-accounting) and its smoothed data-dependent
epsilon are reported. DP-SGD is trained on the same private rows, calibrated to the same guarantee
(Poisson sampling, add/remove: PATE's record-level guarantee covers adding or removing a record too), and a
non-private model on the private rows gives the ceiling.

    make run ARGS='python benchmarks/pate.py'
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from results_io import write_results

DELTA = 1e-5
PUBLIC, TEST = 0.3, 0.2


def load(name: str, seed: int):
    """(x_private, y_private, x_public, y_public, x_test, y_test, classes), split by keyed content hashes."""
    from sklearn import datasets

    from federated.partitioners.keyed import content_keys, keyed_uniforms

    data = datasets.load_digits() if name == "digits" else datasets.load_breast_cancer()
    x, y = data.data.astype("float64"), data.target.astype("int64")
    u = keyed_uniforms(content_keys(x, y), seed, salt=b"pate-split")
    public, test, private = u < PUBLIC, (u >= PUBLIC) & (u < PUBLIC + TEST), u >= PUBLIC + TEST
    x = ((x - x[public].mean(axis=0)) / (x[public].std(axis=0) + 1e-6)).astype("float32")
    return x[private], y[private], x[public], y[public], x[test], y[test], int(y.max()) + 1


def dp_sgd_accuracy(data, epsilon: float, args, seed: int) -> tuple[float, float, float]:
    """(test accuracy, noise multiplier, accounted RDP epsilon) of DP-SGD calibrated to ``epsilon``."""
    import keras

    from privacy.accounting import DpSgdMechanism, calibrate_noise_multiplier, steps_for_epochs
    from privacy.keras import make_private, private_training

    x, y, _, _, x_test, y_test, classes = data
    steps = steps_for_epochs(args.dp_epochs, len(x), args.batch_size)
    sigma = calibrate_noise_multiplier(
        DpSgdMechanism(len(x), args.batch_size, 1.0, steps), target_epsilon=epsilon, target_delta=DELTA
    )
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(classes)]
    )
    make_private(
        model,
        l2_norm_clip=1.0,
        noise_multiplier=sigma,
        expected_batch_size=args.batch_size,
        target_delta=DELTA,
        secure_noise=True,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5, momentum=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=args.batch_size, epochs=args.dp_epochs, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return accuracy, sigma, private_training(model).budget.epsilon("rdp")


def settings(teachers: int):
    """Aggregators for one data set: GNMax at two noise levels and one Confident-GNMax."""
    from privacy.pate import ConfidentGNMax, GNMax

    return [GNMax(teachers / 10), GNMax(teachers / 4), ConfidentGNMax(0.6 * teachers, teachers / 5, teachers / 8)]


def run_dataset(name: str, args) -> dict:
    from privacy.pate import SmoothSensitivityRelease, analyze, release_or_refusal
    from privacy.pate import keras_training as kt
    from privacy.pate.partitions import partition_by_key

    data = load(name, args.seed)
    x, y, x_public, y_public, x_test, y_test, classes = data
    teachers = args.teachers
    parts = partition_by_key([row.tobytes() for row in x], teachers, seed=args.seed)
    votes = kt.teacher_votes(x, y, parts, x_public, classes, epochs=args.epochs, seed=args.seed)
    ceiling = kt.accuracy(kt.fit_classifier(x, y, classes, epochs=args.epochs, seed=args.seed), x_test, y_test)
    rows = []
    for aggregator in settings(teachers):
        history = aggregator.aggregate(votes)
        smoothed, refused = release_or_refusal(SmoothSensitivityRelease(), history)
        report = analyze(history, DELTA, smoothed=smoothed, smoothed_refused=refused)
        answered = history.answered
        student = (
            kt.fit_classifier(x_public[answered], history.labels[answered], classes, epochs=args.epochs, seed=args.seed)
            if answered.any()
            else None
        )
        dp_accuracy, dp_sigma, dp_epsilon = dp_sgd_accuracy(data, report.epsilon, args, args.seed)
        rows.append(
            {
                "aggregator": aggregator.to_json(),
                "queries": len(votes),
                "answered": int(answered.sum()),
                "label_accuracy": float(np.mean(history.labels[answered] == y_public[answered])),
                "student_accuracy": kt.accuracy(student, x_test, y_test) if student is not None else None,
                "epsilon_guarantee": report.epsilon,
                "epsilon_labels": report.labels_epsilon,
                "epsilon_smoothed": report.smoothed.epsilon(DELTA) if report.smoothed else None,
                "smoothed_refused": report.smoothed_refused,
                "dp_sgd_accuracy": dp_accuracy,
                "dp_sgd_noise_multiplier": dp_sigma,
                "dp_sgd_epsilon_rdp": dp_epsilon,
            }
        )
        print(f"  {name} {aggregator}: done", file=sys.stderr)
    return {
        "private_rows": len(x),
        "public_rows": len(x_public),
        "test_rows": len(x_test),
        "teachers": teachers,
        "non_private_accuracy": ceiling,
        "rows": rows,
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, result in results.items():
        rows = sorted(result["rows"], key=lambda r: r["epsilon_guarantee"])
        eps = [r["epsilon_guarantee"] for r in rows]
        line = ax.plot(eps, [r["student_accuracy"] for r in rows], marker="o", label=f"{name}: PATE student")
        ax.plot(
            eps,
            [r["dp_sgd_accuracy"] for r in rows],
            marker="s",
            linestyle=":",
            color=line[0].get_color(),
            label=f"{name}: DP-SGD at the same epsilon",
        )
        ax.axhline(result["non_private_accuracy"], linestyle="--", color=line[0].get_color(), alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel(f"epsilon guarantee (data-independent RDP, delta = {DELTA:g})")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,breast_cancer")
    parser.add_argument("--teachers", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each teacher, the student, the ceiling")
    parser.add_argument("--dp-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "pate.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
    results = {name: run_dataset(name, args) for name in args.datasets.split(",")}
    png = os.path.splitext(args.out)[0] + ".png"
    config = {k: getattr(args, k) for k in ("teachers", "epochs", "dp_epochs", "batch_size", "seed")}
    write_results(args.out, {"benchmark": "pate", "delta": DELTA, "config": config, "results": results, "plot": png})
    plot(results, png)
    print(f"{'data':<14} {'aggregator':<44} {'answered':>9} {'eps':>8} {'eps SS':>8} {'student':>8} {'DP-SGD':>8}")
    for name, result in results.items():
        for r in result["rows"]:
            a = r["aggregator"]
            label = ", ".join(f"{k}={v:g}" for k, v in a.items() if isinstance(v, (int, float)) and v is not None)
            smoothed = f"{r['epsilon_smoothed']:.3g}" if r["epsilon_smoothed"] is not None else "refused"
            student = f"{r['student_accuracy']:.4f}" if r["student_accuracy"] is not None else "-"
            print(
                f"{name:<14} {a['mechanism'] + ' ' + label:<44} {r['answered']:>4}/{r['queries']:<4} "
                f"{r['epsilon_guarantee']:>8.3g} {smoothed:>8} {student:>8} {r['dp_sgd_accuracy']:>8.4f}"
            )
        print(
            f"{name:<14} non-private on the private rows: {result['non_private_accuracy']:.4f} "
            f"({result['private_rows']} private, {result['public_rows']} public, {result['test_rows']} test rows)"
        )
    print(f"config: {config}; delta {DELTA:g}\nJSON: {args.out}\nPNG: {png}")


if __name__ == "__main__":
    main()
