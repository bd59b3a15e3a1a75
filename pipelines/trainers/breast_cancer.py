"""TFX module for the bundled breast-cancer data: Transform's ``preprocessing_fn`` and a DP Trainer ``run_fn``.

Transform z-scores the log10 of each of the 30 measurements with a private mean and variance
(`pipelines.transform.analyzers`): the statistics the model carries are released with differential
privacy and accounted with the training. The public clipping bounds are declared, not read from the
data (`LOG10_BOUNDS`). The model is
a small MLP (30 -> hidden ReLU -> 1 sigmoid) with no cross-example layers, so per-example clipping is
well defined. ``run_fn`` reads its privacy settings through `DpTrainer`'s spec; its own
``custom_config`` keys are ``learning_rate`` (SGD, default 0.2), ``hidden_units`` (default 16) and
``seed`` (default 0; weight initialisation and batch order, not the DP noise). ``build_model`` and ``fit_private``
are also its audit hooks: the Private Evaluator's implementation check trains the model of the first with canaries
through the second (`pipelines.components.private_evaluator.canary_audit`), with the hyperparameters the ledger records.

The exported SavedModel's ``serving_default`` signature takes serialized raw tf.Examples, applies
the Transform graph and returns ``{"probabilities": P(benign)}``, as in any TFX pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from pipelines.components.dp_trainer import fn_args_utils
from pipelines.components.dp_trainer.spec import DpTrainingPlan
from pipelines.datasets.breast_cancer import LABEL_KEY, feature_keys
from pipelines.keras_env import require_tf_keras
from pipelines.transform.analyzers import PrivateAnalyzers, private_preprocessing_fn
from privacy import validation

FEATURE_KEYS = tuple(feature_keys())
PREDICTION_KEY = "probabilities"
HYPERPARAMETERS = {"learning_rate": 0.2, "hidden_units": 16, "seed": 0}
LOG10_BOUNDS = (-6.0, 6.0)
"""Declared domain of log10 of every measurement, the private statistics' clipping bounds: the 30 features
are non-negative sizes, areas, grey-level spreads, ratios and fractal dimensions of cell nuclei, and
1e-6 .. 1e6 in the data's units is a range chosen wide enough not to be informed by the data (values
outside it are clipped for the statistics; zeros count as 1e-6). Not derived from the data set or its
documented minima and maxima."""
LOG10_FLOOR = 10.0 ** LOG10_BOUNDS[0]


def transformed_name(key: str) -> str:
    return f"{key}_xf"


MODEL_INPUT_KEYS = tuple(transformed_name(key) for key in FEATURE_KEYS)
"""The transformed features stacked, in this order, into the model's input (for the encrypted check)."""


@private_preprocessing_fn
def preprocessing_fn(inputs: dict[str, tf.Tensor], analyzers: PrivateAnalyzers) -> dict[str, tf.Tensor]:
    """z-scores log10 of every measurement with a private mean and variance (an equal share of the
    preprocessing budget each); passes the label through."""
    share = 1 / len(FEATURE_KEYS)
    outputs = {}
    for key in FEATURE_KEYS:
        log10 = tf.math.log(tf.maximum(tf.cast(inputs[key], tf.float32), LOG10_FLOOR)) / tf.math.log(10.0)
        outputs[transformed_name(key)] = analyzers.scale_to_z_score(log10, bounds=LOG10_BOUNDS, share=share, name=key)
    outputs[LABEL_KEY] = inputs[LABEL_KEY]
    return outputs


def run_fn(fn_args) -> None:
    """Trains on the transformed training split and exports the serving model (and, when private, its ledger)."""
    require_tf_keras()
    plan = fn_args_utils.plan_from_fn_args(fn_args)
    hp = _hyperparameters(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    features, labels = _load(fn_args.train_files, fn_args.data_accessor, tft_output)
    if len(labels) != plan.dataset_size:
        raise RuntimeError(f"read {len(labels)} training examples, planned for {plan.dataset_size}")
    tf.keras.utils.set_random_seed(hp["seed"])
    model = build_model(hp)
    if not plan.private:
        _fit(model, features, labels, plan, hp)
        _export(model, tft_output, fn_args.serving_model_dir)
        return
    training = fit_private(model, features, labels, plan, hp)
    _export(model, tft_output, fn_args.serving_model_dir)
    truncated = training.truncated_batches if plan.mechanism.truncated_batch_size is not None else None
    fn_args_utils.write_run_ledger(
        fn_args,
        plan,
        steps_taken=training.steps,
        budget=training.budget,
        truncated_batches=truncated,
        noise_draws=training.noise.draws,
        validation_decisions=training.validation_decisions,
        uncovered_padding=training.uncovered_padding,
        trainer={
            "run_fn": f"{__name__}.run_fn",
            "optimizer": "SGD",
            "hyperparameters": hp,  # build_model's and fit_private's: the Evaluator's implementation check
            "keras": "tf-keras",
            "tensorflow": tf.__version__,
            "noise": "CSPRNG-seeded Gaussian",
        },
    )


def _hyperparameters(custom_config: dict[str, Any] | None) -> dict[str, Any]:
    hp = dict(HYPERPARAMETERS)
    for key in HYPERPARAMETERS:
        if (custom_config or {}).get(key) is not None:
            hp[key] = custom_config[key]
    validation.positive("custom_config['learning_rate']", hp["learning_rate"])
    for key, minimum in (("hidden_units", 1), ("seed", 0)):
        validation.integer(f"custom_config[{key!r}]", hp[key], minimum=minimum)
    return hp


def _load(file_patterns, data_accessor, tft_output) -> tuple[np.ndarray, np.ndarray]:
    """All transformed training examples as (features [n, 30] float32, labels [n, 1] float32).

    Labels have the predictions' shape, so the loss is one number per example (what DP-SGD clips).
    """
    dataset = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=1024, num_epochs=1, shuffle=False),
        tft_output.transformed_metadata.schema,
    )
    features, labels = [], []
    for batch in dataset:
        features.append(stack_features(batch).numpy())
        labels.append(tf.reshape(batch[LABEL_KEY], [-1]).numpy())
    return np.concatenate(features), np.concatenate(labels).astype(np.float32)[:, None]


def stack_features(transformed: dict[str, tf.Tensor]) -> tf.Tensor:
    """The model's input matrix [n, 30] (float32) of Transform's output columns, in `MODEL_INPUT_KEYS` order."""
    return tf.concat([tf.reshape(tf.cast(transformed[k], tf.float32), [-1, 1]) for k in MODEL_INPUT_KEYS], axis=1)


def build_model(hp: dict[str, Any]) -> tf.keras.Model:
    """The model ``run_fn`` trains: [batch, 30] transformed features to [batch, 1] P(benign) (sigmoid). With
    `fit_private`, the audit hook the Private Evaluator's implementation check trains with canaries."""
    hidden_units = hp["hidden_units"]
    inputs = tf.keras.Input(shape=(len(FEATURE_KEYS),), name="features")
    hidden = tf.keras.layers.Dense(hidden_units, activation="relu")(inputs)
    outputs = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    return tf.keras.Model(inputs, outputs)


def _fit(
    model: tf.keras.Model, features: np.ndarray, labels: np.ndarray, plan: DpTrainingPlan, hp: dict[str, Any]
) -> None:
    """Non-private SGD: ``plan.steps`` steps of shuffled batches of ``batch_size``."""
    model.compile(
        optimizer=tf.keras.optimizers.SGD(hp["learning_rate"]),
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=["binary_accuracy"],
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(len(labels), seed=hp["seed"], reshuffle_each_iteration=True)
        .repeat()
        .batch(plan.config.batch_size)
    )
    model.fit(dataset, steps_per_epoch=plan.steps, epochs=1, verbose=2)


def fit_private(
    model: tf.keras.Model,
    features: np.ndarray,
    labels: np.ndarray,
    plan: DpTrainingPlan,
    hp: dict[str, Any],
    noise_seed: int | None = None,
):
    """DP-SGD with ppml's `privacy.keras` (an audit hook, with `build_model`): returns its
    `privacy.keras.PrivateTraining` (the noisy steps taken, the PrivacyBudget they composed, the batches truncated
    Poisson sampling cut).

    Poisson and fixed-size batches are drawn by `privacy.keras` from the arrays (exactly ``plan.steps``
    of them; Poisson batches padded to a multiple of the microbatches, or to ``truncated_batch_size`` with
    larger draws cut to a random subset of that size; with the config's ``skip_padding`` the padding is left out of
    each step, and with its ``batch_size_noise_multiplier`` a Gaussian number of rows is kept, as make_private
    does: compiled without XLA, which noisy padding needs); shuffled ones are whole epochs
    of Keras' own batching, accounted by the once-per-epoch bound. The noise generator is seeded from
    the OS CSPRNG (``noise_seed`` seeds it instead, for benchmarks: such a model is not private to whoever
    knows the seed, and ``run_fn`` never passes one). Keras prints nothing (verbose=0): its per-epoch
    training loss and accuracy are exact statistics of the training data, and the Trainer's log is not
    covered by epsilon.
    """
    from privacy.keras import make_private, private_training

    mechanism = plan.mechanism
    make_private(
        model,
        mechanism,
        l2_norm_clip=plan.config.l2_norm_clip,
        target_delta=plan.delta,
        skip_padding=plan.config.skip_padding,
        secure_noise=noise_seed is None,
        seed=noise_seed,
    )
    model.compile(
        optimizer=tf.keras.optimizers.SGD(hp["learning_rate"]),
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=["binary_accuracy"],
    )
    if mechanism.steps_per_epoch is None:  # Poisson or fixed: one Keras epoch of all the planned steps
        model.fit(features, labels, steps_per_epoch=plan.steps, epochs=1, verbose=0)
    else:
        model.fit(features, labels, epochs=plan.steps // mechanism.steps_per_epoch, shuffle=True, verbose=0)
    return private_training(model)


def _export(model: tf.keras.Model, tft_output, serving_model_dir: str) -> None:
    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()
    raw_spec.pop(LABEL_KEY)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        transformed = model.tft_layer(tf.io.parse_example(serialized, raw_spec))
        return {PREDICTION_KEY: model(stack_features(transformed))}

    model.save(serving_model_dir, save_format="tf", signatures={"serving_default": serve})
