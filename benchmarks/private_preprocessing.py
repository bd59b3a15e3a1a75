"""Utility cost of private preprocessing in the bundled pipeline: accuracy and AUC at total epsilon 1, 3, 8.

For each total epsilon, the bundled pipeline's Transform code (`pipelines.trainers.breast_cancer.
preprocessing_fn` through tf.Transform) analyses the training rows with private analyzers at each
preprocessing share, and once with exact statistics; the bundled Trainer's code then trains the same
model (DP-SGD, 15 epochs of expected batch 32, C = 1, Poisson sampling), with sigma from the DP
Trainer's plan: calibrated so that preprocessing, the push decision the pipeline reserves (its noisy
accuracy, `pipelines.plan.decision_config`) and training together meet the target (with exact
statistics, the decision and training alone meet it, and the model as a whole has no finite epsilon). Accuracy and AUC
are measured on the held-out rows through the transform graph. Same seeds: one split (2/3 of the rows
for training, seeded, like CsvExampleGen's 2:1), and for repeat r the same weight initialisation, batch
sampling, DP-SGD noise and preprocessing noise seeds in every configuration. Seeded noise is for
measuring only: the pipeline itself draws both from the OS CSPRNG.

    make run ARGS='python benchmarks/private_preprocessing.py'
    make run ARGS='python benchmarks/private_preprocessing.py --epsilons 3 --shares 0.5 --repeats 1'
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the bundled Trainer trains with tf-keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from results_io import write_results


def rows_and_split(seed: int):
    """The bundled CSV's rows, split 2:1 into (train, eval) with a seeded permutation."""
    from pipelines.datasets import breast_cancer

    path = breast_cancer.write_csv(tempfile.mkdtemp(prefix="ppml-bench-data-"))
    with open(path) as f:
        rows = [
            {k: int(v) if k == breast_cancer.LABEL_KEY else float(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = round(len(rows) * 2 / 3)
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def analyze(train_rows, custom_config: dict) -> str:
    """tf.Transform's analysis of the training rows with the bundled preprocessing_fn; the output folder."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    from pipelines.trainers import breast_cancer as module

    spec = {
        k: tf.io.FixedLenFeature([], tf.int64 if isinstance(v, int) else tf.float32) for k, v in train_rows[0].items()
    }
    out = tempfile.mkdtemp(prefix="ppml-bench-transform-")
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(prefix="ppml-bench-tmp-")):
        with beam.Pipeline() as pipeline:
            transform_fn = (
                pipeline | beam.Create(train_rows, reshuffle=False),
                tft.DatasetMetadata.from_feature_spec(spec),
            ) | tft_beam.AnalyzeDataset(functools.partial(module.preprocessing_fn, custom_config=custom_config))
            _ = transform_fn | tft_beam.WriteTransformFn(out)
    return out


def features(transform_output: str, rows) -> tuple[np.ndarray, np.ndarray]:
    """(model inputs, labels [n, 1]) of ``rows`` through the transform graph."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipelines.trainers import breast_cancer as module

    raw = {k: tf.constant([r[k] for r in rows], tf.int64 if k == module.LABEL_KEY else tf.float32) for k in rows[0]}
    transformed = tft.TFTransformOutput(transform_output).transform_raw_features(raw)
    labels = np.array([r[module.LABEL_KEY] for r in rows], dtype=np.float32)[:, None]
    return module.stack_features(transformed).numpy(), labels


def run_one(train_rows, eval_rows, *, epsilon: float, share: float | None, repeat: int) -> dict:
    """One configuration: ``share`` of ``epsilon`` to private preprocessing, or None for exact statistics."""
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from pipelines import pipeline
    from pipelines.components.dp_trainer.spec import DpTrainingConfig
    from pipelines.components.private_evaluator.spec import DEFAULT_DECISION_SHARE
    from pipelines.plan import DEFAULT_MIN_ACCURACY
    from pipelines.trainers import breast_cancer as module
    from pipelines.transform.artifact import transform_graph_account
    from pipelines.transform.spec import PreprocessingConfig

    trainer_config = pipeline.decision_config(
        "dp",
        {**pipeline.DEFAULT_TRAINER_CONFIG, "target_epsilon": epsilon},
        min_accuracy=DEFAULT_MIN_ACCURACY,
        share=DEFAULT_DECISION_SHARE,
    )
    if share is None:
        transform_config = PreprocessingConfig(private=False)
    else:
        private = pipeline.preprocessing_config("dp", trainer_config, share=share)
        transform_config = PreprocessingConfig(
            epsilon=private.epsilon, delta=private.delta, adjacency=private.adjacency, noise_seed=repeat
        )
    started = time.perf_counter()
    out = analyze(train_rows, transform_config.to_custom_config())
    x_train, y_train = features(out, train_rows)
    x_eval, y_eval = features(out, eval_rows)
    plan = DpTrainingConfig.from_custom_config(trainer_config).plan(
        dataset_size=len(train_rows), preprocessing=transform_graph_account(out)
    )
    hp = dict(module.HYPERPARAMETERS, seed=repeat)
    tf.keras.utils.set_random_seed(repeat)
    model = module.build_model(hp)
    module.fit_private(model, x_train, y_train, plan, hp, noise_seed=1000 + repeat)
    probabilities = model.predict(x_eval, verbose=0)[:, 0]
    ledger = plan.ledger()
    return {
        "epsilon": epsilon,
        "share": share,
        "repeat": repeat,
        "sigma": plan.noise_multiplier,
        "accuracy": float(np.mean((probabilities > 0.5) == (y_eval[:, 0] > 0.5))),
        "auc": float(roc_auc_score(y_eval[:, 0], probabilities)),
        "artifact_epsilon": _finite(ledger.epsilons),
        "parts": {part: _finite(eps) for part, eps in ledger.parts.items()},
        "seconds": time.perf_counter() - started,
    }


def _finite(epsilons: dict) -> dict:
    return {k: (v if v is not None and np.isfinite(v) else None) for k, v in epsilons.items()}


def summary(runs: list[dict]) -> list[dict]:
    """Mean and spread of accuracy and AUC per (epsilon, share); the best share per epsilon flagged."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["epsilon"], run["share"]), []).append(run)
    rows = []
    for (epsilon, share), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or 0)):
        acc, auc = np.array([g["accuracy"] for g in group]), np.array([g["auc"] for g in group])
        rows.append(
            {
                "epsilon": epsilon,
                "share": share,
                "accuracy_mean": float(acc.mean()),
                "accuracy_min": float(acc.min()),
                "auc_mean": float(auc.mean()),
                "sigma": group[0]["sigma"],
                "repeats": len(group),
                "best": False,
            }
        )
    for epsilon in {r["epsilon"] for r in rows}:
        private = [r for r in rows if r["epsilon"] == epsilon and r["share"] is not None]
        max(private, key=lambda r: (r["accuracy_mean"], r["auc_mean"]))["best"] = True
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument(
        "--output", default=os.path.join(os.path.dirname(__file__), "results", "private_preprocessing.json")
    )
    args = parser.parse_args()
    train_rows, eval_rows = rows_and_split(args.split_seed)
    runs = []
    for epsilon in args.epsilons:
        for share in [*args.shares, None]:
            for repeat in range(args.repeats):
                runs.append(run_one(train_rows, eval_rows, epsilon=epsilon, share=share, repeat=repeat))
                r = runs[-1]
                print(
                    f"  epsilon {epsilon:g} share {'exact' if share is None else f'{share:g}'} repeat {repeat}: "
                    f"accuracy {r['accuracy']:.4f} AUC {r['auc']:.4f} sigma {r['sigma']:.4f} "
                    f"({r['seconds']:.0f} s)",
                    flush=True,
                )
    table = summary(runs)
    print(
        f"\nBundled pipeline, n = {len(train_rows)} training / {len(eval_rows)} held-out rows, "
        f"{args.repeats} repeats (same seeds in every configuration)\n"
    )
    print(f"{'total eps':>9} {'preprocessing':>14} {'sigma':>7} {'accuracy':>9} {'(min)':>7} {'AUC':>7}")
    for row in table:
        share = "exact stats" if row["share"] is None else f"share {row['share']:g}"
        mark = "  <- best share" if row["best"] else ""
        print(
            f"{row['epsilon']:>9g} {share:>14} {row['sigma']:>7.4f} {row['accuracy_mean']:>9.4f} "
            f"{row['accuracy_min']:>7.4f} {row['auc_mean']:>7.4f}{mark}"
        )
    write_results(
        args.output,
        {
            "benchmark": "private_preprocessing",
            "train_rows": len(train_rows),
            "eval_rows": len(eval_rows),
            "repeats": args.repeats,
            "summary": table,
            "runs": runs,
        },
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
