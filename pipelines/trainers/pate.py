"""TFX ``run_fn`` of the PATE Trainer: teachers, noisy aggregation and the student, in the Trainer stage.

The Trainer reads two splits of ExampleGen's raw examples (``fn_args.train_files``: the private split,
``fn_args.eval_files``: the public split; `pipelines.components.pate_trainer.component` names them from the
settings), each record alone against the declared spec (``feature_keys`` one float each, the label, the
``holder_key`` as text: `federated.data.declared`), so no record decides another's features.

1. Public statistics. Each feature is z-scored with the mean and standard deviation of the public split's
   records (those with finite features); they are the student's only preprocessing constants, and no private
   record enters them. There is no Transform stage under this trainer.
2. Teachers. The private records are dealt to ``teachers`` disjoint partitions (`privacy.pate.partition_by_key`)
   by holder key, or by the record's raw content (`federated.partitioners.record_keys`), so adding or removing
   one record changes one teacher. A record it cannot train on (a non-finite feature, a label outside
   0..classes-1) is left out of its teacher alone; a teacher with no record votes from its seeded initialisation.
3. Aggregation. Each teacher votes on every public query; the aggregator (`privacy.pate`, noise from the OS
   CSPRNG) answers some queries with noisy labels. A private record whose serialized bytes equal a public record's is
   left out of its teacher (a filter of that record alone, its parameter the public split): never a refusal.
4. Student. An MLP of the same shape is fitted on the answered queries and their noisy labels; with
   ``semi_supervised`` it is then self-trained on the unanswered queries it pseudo-labels itself
   (`privacy.pate.student`: post-processing of the release, no event charged, the same epsilon).

Outputs, like the other trainers': ``serving_model_dir`` holds a SavedModel whose ``serving_default`` takes
serialized raw tf.Examples and returns ``{"probabilities": ...}`` (P(label = 1), [n, 1], for two classes;
[n, classes] otherwise), and the privacy ledger (`pipelines.privacy_ledger`, mechanism ``pate``) with the
aggregation's events: the data-independent guarantee. ``model_run_dir/pate.json`` holds the run's public facts
(queries, answered, teachers); the votes themselves (private) are not written, nor is the private split's record or
holder count (the epsilon does not use it; the gate judges delta against no n: `coverage.delta_findings`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from pipelines import privacy_ledger
from pipelines.components.pate_trainer.spec import PateTrainingConfig

PREDICTION_KEY = "probabilities"
PUBLIC_SPLIT_CAVEAT = {
    "public split": "the student is fitted on the public split's records and z-scores its inputs with that split's "
    "mean and standard deviation, both assumed public and not covered by epsilon; in the bundled pipeline the "
    "public split is a deterministic hash split of the same data set (an assumption of the demo: a deployment "
    "gives it a genuinely public data set)",
    "feature kinds inferred from the data": "the Trainer reads each feature value alone (a float, an int, or text "
    "that parses as a number; NaN otherwise), but CsvExampleGen types each CSV column from all its values, private "
    "ones included, and the pushed student's serving signature parses float features: one record with a "
    "non-numeric cell makes that column text in every split, so the student cannot serve those examples and the "
    "Evaluator fails; give the pipeline examples whose feature kinds are fixed before the data is read",
    "replacing one record": "epsilon covers adding or removing one privacy unit (one teacher's partition changes); "
    "replacing one can move it to another teacher, two teachers' change, covered only as a "
    "group of two (about twice the epsilon)",
}
"""Listed outside the guarantee of every PATE ledger."""


def run_fn(fn_args) -> None:
    """Trains teachers on ``fn_args.train_files``, labels ``fn_args.eval_files`` through the aggregator, fits and
    exports the student, and writes the ledger."""
    from federated.data.screen import trainable
    from privacy.pate import partition_by_key

    config = PateTrainingConfig.from_custom_config(fn_args.custom_config)
    private, private_keys, private_raw = read_split(fn_args.train_files, config)
    public, _, public_raw = read_split(fn_args.eval_files, config)
    in_public = set(public_raw)
    queries = _stack(public, config)
    queries = queries[np.isfinite(queries).all(axis=1)]  # public rows it cannot read are left out
    if len(queries) == 0:
        raise ValueError(
            f"the public split {config.public_split!r} has no record with finite features: nothing to "
            f"label for the student"
        )
    mean, std = queries.mean(axis=0), queries.std(axis=0) + 1e-6  # public statistics only
    with np.errstate(over="ignore", invalid="ignore"):  # no warning decided by one huge record: screened below
        x = (_stack(private, config) - mean) / std
    labels = np.asarray(private[config.label_key], np.float64)
    usable = trainable(x, labels, config.num_classes)
    usable &= np.array([raw not in in_public for raw in private_raw], bool)  # a public record teaches no teacher
    y = np.where(usable, labels, 0).astype(np.int64)
    holders = private[config.holder_key] if config.holder_key else private_keys
    partitions = [rows[usable[rows]] for rows in partition_by_key(list(holders), config.teachers, seed=config.seed)]

    from privacy.pate import keras_training

    scaled_queries = (queries - mean) / std
    votes = keras_training.teacher_votes(
        x,
        y,
        partitions,
        scaled_queries,
        config.num_classes,
        epochs=config.epochs,
        seed=config.seed,
        hidden=config.hidden_units,
    )
    aggregator = config.make_aggregator()
    history = aggregator.aggregate(votes)  # CSPRNG noise: no seed
    answered = history.answered
    analysis, smoothed = privacy_ledger.PATE_ANALYSIS, None
    if config.smoothed_release:  # its refusal depends on the settings only (conditions C5, C6), not on the votes
        from privacy.pate import release_or_refusal
        from privacy.pate.analysis import COMPOSED, SMOOTHED

        release, refused = release_or_refusal(config.smoothing(), history)
        smoothed = {**release.to_json(), "analysis": SMOOTHED} if release else {"refused": refused}
        analysis = COMPOSED if release else analysis
    student, training = keras_training.fit_student(
        scaled_queries,
        history.labels,
        answered,
        config.num_classes,
        epochs=config.epochs,
        seed=config.seed,
        hidden=config.hidden_units,
        self_training=config.self_training(),
    )
    export(student.get_weights(), mean, std, config, fn_args.serving_model_dir)
    facts = {
        "teachers": config.teachers,
        "classes": config.num_classes,
        "answered": history.num_answered,
        "private_split": config.private_split,
        "public_split": config.public_split,
        "holder_key": config.holder_key,
        "privacy_unit": config.privacy_unit,
        "adjacency": "add-remove",
        "partition": "by holder key" if config.holder_key else "by raw record content (keyed hash)",
        "analysis": analysis,
        "student_training": training.to_json(),
        "outside_guarantee": {**privacy_ledger.SEPARATE_RUNS, **PUBLIC_SPLIT_CAVEAT},
        **({"smoothed_release": smoothed} if smoothed else {}),
    }
    ledger = privacy_ledger.PrivacyLedger.for_pate(
        aggregator,
        queries=len(queries),
        delta=config.delta,
        parameters=facts,
        decision=_decision(config),
        trainer={"run_fn": f"{__name__}.run_fn"},
    )
    privacy_ledger.write_ledger(fn_args.serving_model_dir, ledger)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with open(os.path.join(fn_args.model_run_dir, "pate.json"), "w", encoding="utf-8") as f:
        outside = ledger.parameters["outside_guarantee"]  # the ledger's: what every PATE ledger lists too
        json.dump(
            {**facts, "outside_guarantee": outside, "queries": len(queries), "epsilon": ledger.epsilons}, f, indent=2
        )


def _decision(config: PateTrainingConfig):
    if config.decision_epsilon is None:
        return None
    from privacy.decision import NoisyAccuracy

    return NoisyAccuracy.calibrate(config.decision_epsilon, config.delta)


def declared_spec(config: PateTrainingConfig):
    """The public spec each record is read against: the features (one number each, read from a float, an int or
    text parsed alone: `NUMBER_OR_TEXT`, so no record's kind decides another's value), the label, the holder id."""
    from federated.data.declared import NUMBER_OR_TEXT, Column

    return (
        [Column(key, "float", accepts=NUMBER_OR_TEXT) for key in config.feature_keys]
        + [Column(config.label_key)]
        + ([Column(config.holder_key, "text")] if config.holder_key else [])
    )


def read_split(file_patterns, config: PateTrainingConfig) -> tuple[dict[str, np.ndarray], list[bytes], list[bytes]]:
    """(columns, record keys of the declared columns, serialized records) of the records in the files matching
    ``file_patterns``, each read alone against `declared_spec` (a record without a readable holder id is left
    out; a value that does not conform is NaN in its record only; a record over MAX_RECORD_BYTES stands as b"").

    Raises:
      ValueError: when no file matches.
    """
    import tensorflow as tf

    from federated.data.declared import MAX_RECORD_BYTES, read_examples
    from federated.data.examples import read_tf_records
    from federated.partitioners import record_keys

    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no example files match {list(file_patterns)}")
    raw = read_tf_records(files, max_record_bytes=MAX_RECORD_BYTES)
    read = read_examples(raw, declared_spec(config))
    return read.columns, (record_keys(read.columns) if len(read.kept) else []), [raw[i] for i in read.kept]


def _stack(columns: dict[str, np.ndarray], config: PateTrainingConfig) -> np.ndarray:
    return np.stack([np.asarray(columns[k], np.float64) for k in config.feature_keys], axis=1).reshape(
        -1, len(config.feature_keys)
    )


def export(weights, mean: np.ndarray, std: np.ndarray, config: PateTrainingConfig, serving_model_dir: str) -> None:
    """Saves the student as a serving SavedModel: serialized raw tf.Examples -> public z-score -> MLP ->
    probabilities (the student's weights and the public statistics as constants; no Keras object)."""
    import tensorflow as tf

    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(w, np.float32), trainable=False) for w in weights]
    module.mean = tf.Variable(mean.astype(np.float32), trainable=False)
    module.std = tf.Variable(std.astype(np.float32), trainable=False)
    raw_spec = {k: tf.io.FixedLenFeature([1], tf.float32) for k in config.feature_keys}
    keys = list(config.feature_keys)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        features = tf.io.parse_example(serialized, raw_spec)
        x = (tf.concat([features[k] for k in keys], axis=1) - module.mean) / module.std
        kernel, bias, out_kernel, out_bias = module.weights
        logits = tf.nn.relu(x @ kernel + bias) @ out_kernel + out_bias
        probabilities = tf.nn.softmax(logits)
        return {PREDICTION_KEY: probabilities[:, 1:] if config.num_classes == 2 else probabilities}

    tf.saved_model.save(module, serving_model_dir, signatures={"serving_default": serve})
