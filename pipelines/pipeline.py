"""The pipeline factory: TFX's standard stages with the DP (or Federated) Trainer and the Private Evaluator.

CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer ->
Evaluator -> Pusher, on the bundled breast-cancer CSV by default. The Trainer is `DpTrainer` (private
or not, by ``trainer_config['private']``) or, with ``trainer="federated"``, `FederatedTrainer` (FedAvg
over clients partitioned from the training split, client-level DP when private); the Evaluator is
`PrivateEvaluator` (blessing needs accuracy >= ``min_accuracy``, epsilon <= ``epsilon_budget`` and
membership AUC <= ``max_membership_auc``), and the Pusher pushes only blessed models. With ``encrypted_check=True`` an `EncryptedInferenceGate`
runs between Evaluator and Pusher: it predicts ``encrypted_examples`` evaluation examples secret-shared
and in plaintext, and its blessing, which the Pusher then follows, holds only if the Evaluator's
blessing holds and the predictions agree. With ``compare_non_private=True`` a second, non-private
Trainer and its Evaluator run beside them on the same Transform output ("Trainer_non_private",
"Evaluator_non_private"; never pushed: without a ledger it cannot be blessed).

The Transform's analyzers are private (`pipelines.transform`) when the Trainer is: the pipeline gives
them ``preprocessing_share`` of the target epsilon (or ``preprocessing_epsilon``) under the Trainer's
adjacency, and the Trainer calibrates its noise so that preprocessing and training together meet the
target. The side-by-side non-private Trainer trains on the same (privately preprocessed) features.

Imports TFX: call `pipelines.keras_env.use_tf_keras()` first in a fresh process.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Mapping, Sequence

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from pipelines.components.dp_trainer.component import DpTrainer
from pipelines.components.dp_trainer.spec import DpTrainingConfig
from pipelines.components.encrypted_gate.component import EncryptedInferenceGate
from pipelines.components.federated_trainer import spec as federated_spec
from pipelines.components.federated_trainer.component import FederatedTrainer
from pipelines.components.private_evaluator import spec as gate_spec
from pipelines.components.private_evaluator.component import PrivateEvaluator
from pipelines.datasets import breast_cancer
from pipelines.report import ENCRYPTED_GATE, NON_PRIVATE_SUFFIX
from pipelines.transform import spec as preprocessing_spec
from privacy.accounting import Adjacency, resolve_adjacency

PIPELINE_NAME = "ppml-breast-cancer"
"""Lower case and dashes only: Kubeflow Pipelines requires [a-z0-9][a-z0-9-]{0,127}."""
MODULE = "pipelines.trainers.breast_cancer"
"""Module with ``preprocessing_fn``, ``run_fn`` and ``MODEL_INPUT_KEYS``, by dotted path (no module file to package)."""
DEFAULT_TRAINER_CONFIG: Mapping[str, Any] = {
    "private": True, "batch_size": 32, "epochs": 15, "l2_norm_clip": 1.0, "target_epsilon": 3.0,
    "learning_rate": 0.2,
}
_PRIVACY_KEYS = ("target_epsilon", "noise_multiplier", "max_epsilon")
"""Settings a non-private DP Trainer of a side-by-side comparison drops (the Federated Trainer's: its spec's
PRIVACY_SETTINGS)."""
TRAINERS = ("dp", "federated")
"""`DpTrainer` (DP-SGD, or ordinary training) or `FederatedTrainer` (FedAvg, DP-FedAvg)."""
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


@dataclasses.dataclass(frozen=True)
class PipelineLayout:
    """Where one pipeline root keeps everything: TFX artifacts, data, ML Metadata, pushed models."""

    root: str

    @property
    def data_root(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.root, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.root, "serving_model")


def eval_config(*, min_accuracy: float, epsilon_budget: float, max_membership_auc: float,
                delta_budget: float | None = None, label_key: str = breast_cancer.LABEL_KEY,
                privacy_unit: str = gate_spec.DEFAULT_PRIVACY_UNIT) -> tfma.EvalConfig:
    """Utility metrics and thresholds plus the privacy gate's, in one TFMA EvalConfig."""
    accuracy = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key=label_key, signature_name="serving_default",
                                    prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="BinaryAccuracy", threshold=accuracy),
            tfma.MetricConfig(class_name="AUC"),
            tfma.MetricConfig(class_name="BinaryCrossentropy"),
            *gate_spec.privacy_metrics(epsilon_budget=epsilon_budget, max_membership_auc=max_membership_auc,
                                       delta_budget=delta_budget, privacy_unit=privacy_unit),
        ])])


def create_pipeline(*, pipeline_root: str, data_root: str, serving_model_dir: str,
                    metadata_path: str | None = None, trainer: str = "dp",
                    trainer_config: Mapping[str, Any] | None = None,
                    epsilon_budget: float = 3.0, max_membership_auc: float = 0.6, min_accuracy: float = 0.85,
                    delta_budget: float | None = None, privacy_unit: str = gate_spec.DEFAULT_PRIVACY_UNIT,
                    preprocessing_share: float = preprocessing_spec.DEFAULT_SHARE,
                    preprocessing_epsilon: float | None = None,
                    encrypted_check: bool = False, encrypted_examples: int = 200, compare_non_private: bool = False,
                    module: str = MODULE, pipeline_name: str = PIPELINE_NAME,
                    beam_pipeline_args: Sequence[str] = LOCAL_BEAM_ARGS, enable_cache: bool = True) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
      pipeline_root: folder (or bucket URI) for TFX artifacts.
      data_root: folder holding the CSV file(s), and nothing else.
      serving_model_dir: where the Pusher copies blessed models.
      metadata_path: SQLite ML Metadata file for local runs; None for orchestrators with their own.
      trainer: one of `TRAINERS`.
      trainer_config: the Trainer's ``custom_config`` (see `pipelines.components.dp_trainer.spec` or
        `pipelines.components.federated_trainer.spec`; the federated one's ``label_key`` defaults to
        the dataset's label). Default: `DEFAULT_TRAINER_CONFIG` for the DP Trainer, the spec's own
        defaults for the Federated Trainer.
      epsilon_budget, max_membership_auc, min_accuracy: the Evaluator's thresholds.
      delta_budget: the largest delta the Evaluator blesses (None: below 1/n, as every ledger is).
      privacy_unit: the unit of privacy ``epsilon_budget`` is stated in (example, user or client): the
        Federated Trainer's ledger is client-level (user-level with a client key), so its budget says so.
      preprocessing_share: the fraction of the Trainer's ``target_epsilon`` the Transform's private
        analyzers are calibrated to spend (alone); see `pipelines.transform.spec`.
      preprocessing_epsilon: the Transform's budget itself, instead of a share (needed when the Trainer
        takes a ``noise_multiplier`` rather than a ``target_epsilon``).
      encrypted_check: run the `EncryptedInferenceGate` after the Evaluator; push only if both bless.
      encrypted_examples: how many evaluation examples the gate predicts, encrypted and in plaintext.
      compare_non_private: also train and evaluate a non-private model side by side.
      module: dotted module path with ``preprocessing_fn`` and ``run_fn`` (and, for the encrypted
        check, ``MODEL_INPUT_KEYS``: the transformed features stacked, in order, into the model's input).

    Raises:
      ValueError, InvalidPrivacySetting, InvalidFederatedSetting: for an invalid setting, naming it.
    """
    if trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {', '.join(TRAINERS)}, got {trainer!r}")
    if trainer == "federated" and encrypted_check:
        raise ValueError("the encrypted check runs Keras models; the Federated Trainer exports a SavedModel "
                         "without one (use trainer='dp')")
    if trainer == "federated":
        federated = federated_spec.FederatedTrainingConfig.for_trainer(
            {"label_key": breast_cancer.LABEL_KEY, **(trainer_config or {})})
        if federated.private and federated.privacy_unit != privacy_unit:   # else only the gate would say, at the end
            raise ValueError(f"privacy_unit (--privacy-unit) {privacy_unit!r}: the Federated Trainer's epsilon is "
                             f"{federated.privacy_unit}-level (clients: {federated.clients}), and a ledger in another "
                             f"unit meets no budget; state the budget per {federated.privacy_unit}")
    config = eval_config(min_accuracy=min_accuracy, epsilon_budget=epsilon_budget,
                         max_membership_auc=max_membership_auc, delta_budget=delta_budget, privacy_unit=privacy_unit)
    if trainer_config is None:
        trainer_config = DEFAULT_TRAINER_CONFIG if trainer == "dp" else {}
    preprocessing = preprocessing_config(trainer, trainer_config, share=preprocessing_share,
                                         epsilon=preprocessing_epsilon)
    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
                                         preprocessing_fn=f"{module}.preprocessing_fn",
                                         custom_config=preprocessing.to_custom_config(),
                                         # its cache would keep the private analyzers' exact pre-noise sums
                                         disable_analyzer_cache=preprocessing.private)

    def train_and_evaluate(custom_config: Mapping[str, Any], suffix: str):
        # The Federated Trainer keys records by their raw content (before Transform's data-dependent
        # constants) and applies the transform graph itself: it reads ExampleGen's examples.
        examples = transform.outputs["transformed_examples"] if trainer == "dp" else example_gen.outputs["examples"]
        inputs = dict(examples=examples,
                      transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
                      train_args=tfx.proto.TrainArgs(splits=["train"]), eval_args=tfx.proto.EvalArgs(splits=["eval"]))
        if trainer == "dp":
            trained = DpTrainer(run_fn=f"{module}.run_fn", custom_config=dict(custom_config), **inputs)
        else:
            trained = FederatedTrainer(custom_config={"label_key": breast_cancer.LABEL_KEY, **custom_config}, **inputs)
        trained = trained.with_id("Trainer" + suffix)
        evaluator = PrivateEvaluator(examples=example_gen.outputs["examples"], model=trained.outputs["model"],
                                     eval_config=config).with_id("Evaluator" + suffix)
        return trained, evaluator

    trained, evaluator = train_and_evaluate(trainer_config, "")
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform, trained, evaluator]
    blessing = evaluator.outputs["blessing"]
    if encrypted_check:
        gate = EncryptedInferenceGate(examples=example_gen.outputs["examples"], model=trained.outputs["model"],
                                      transform_graph=transform.outputs["transform_graph"], model_blessing=blessing,
                                      feature_keys=_model_input_keys(module), label_key=breast_cancer.LABEL_KEY,
                                      num_examples=encrypted_examples).with_id(ENCRYPTED_GATE)
        components.append(gate)
        blessing = gate.outputs["blessing"]
    components.append(tfx.components.Pusher(
        model=trained.outputs["model"], model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir))))
    if compare_non_private:
        dropped = _PRIVACY_KEYS if trainer == "dp" else federated_spec.PRIVACY_SETTINGS
        public = {k: v for k, v in trainer_config.items() if k not in dropped}
        components += train_and_evaluate({**public, "private": False}, NON_PRIVATE_SUFFIX)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components, enable_cache=enable_cache,
        metadata_connection_config=(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                                    if metadata_path else None),
        beam_pipeline_args=list(beam_pipeline_args))


def preprocessing_config(trainer: str, trainer_config: Mapping[str, Any], *, share: float,
                         epsilon: float | None = None) -> preprocessing_spec.PreprocessingConfig:
    """The Transform's private preprocessing settings for a Trainer with ``trainer_config``.

    Private when the Trainer is; the budget is ``epsilon`` or ``share`` x the target epsilon, calibrated at
    the Trainer's delta (or `pipelines.transform.spec.CALIBRATION_DELTA`); the adjacency is the DP
    Trainer's (from its sampling), add-remove for the Federated Trainer (which accounts the releases for
    groups of a client's records).

    Raises:
      ValueError: naming the setting, for a share outside (0, 1] or a budget that cannot be set.
      InvalidPrivacySetting, InvalidFederatedSetting: for an invalid Trainer setting, naming it.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f"preprocessing_share must be in (0, 1], got {share!r}")
    if trainer == "dp":
        config = DpTrainingConfig.from_custom_config(trainer_config)
        adjacency = resolve_adjacency(config.sampling)
    else:
        config = federated_spec.FederatedTrainingConfig.for_trainer({"label_key": breast_cancer.LABEL_KEY,
                                                                     **trainer_config})
        adjacency = Adjacency.ADD_REMOVE
    if not config.private:
        return preprocessing_spec.PreprocessingConfig(private=False)
    if epsilon is None:
        target = config.target_epsilon
        if target is None and trainer != "dp" and config.noise_multiplier is None:
            target = federated_spec.DEFAULT_TARGET_EPSILON   # what the Federated Trainer's plan calibrates for
        if target is None:
            raise ValueError("a Trainer with a noise_multiplier instead of a target_epsilon needs "
                             "preprocessing_epsilon: the budget of the Transform's private analyzers")
        epsilon = share * target
    if trainer != "dp" and config.max_examples_per_client is None:
        raise federated_spec.InvalidFederatedSetting(
            "max_examples_per_client", "the private Transform's releases are accounted per record; set a public "
                                       "bound K on each client's records so that they can be accounted per client")
    delta = config.delta or preprocessing_spec.CALIBRATION_DELTA
    values = {"epsilon": epsilon, "delta": delta, "adjacency": adjacency.value}
    return preprocessing_spec.PreprocessingConfig.from_custom_config({preprocessing_spec.CONFIG_KEY: values})


def _model_input_keys(module: str) -> list[str]:
    keys = getattr(importlib.import_module(module), "MODEL_INPUT_KEYS", None)
    if not keys:
        raise ValueError(f"the encrypted check needs MODEL_INPUT_KEYS in the trainer module {module}: the "
                         f"transformed features stacked, in order, into the model's input")
    return list(keys)


def bundled_pipeline(pipeline_root: str, **kwargs: Any) -> tfx.dsl.Pipeline:
    """The pipeline on the bundled breast-cancer data, with everything under one local folder.

    Writes the CSV into ``<root>/data`` if it is not there yet (rewriting it would change its
    fingerprint and defeat the cache) and keeps ML Metadata in ``<root>/metadata.sqlite`` and pushed
    models in ``<root>/serving_model``; see `PipelineLayout`. ``kwargs`` go to `create_pipeline`.
    """
    layout = PipelineLayout(os.path.abspath(pipeline_root))
    pipeline = create_pipeline(pipeline_root=layout.root, data_root=layout.data_root,
                               serving_model_dir=layout.serving_model_dir, metadata_path=layout.metadata_path,
                               **kwargs)  # checks the settings before anything is written
    if not os.path.exists(os.path.join(layout.data_root, breast_cancer.FILE_NAME)):
        breast_cancer.write_csv(layout.data_root)
    return pipeline

