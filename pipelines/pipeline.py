"""The pipeline factory: TFX's standard stages with the DP, Federated or PATE Trainer and the Private Evaluator.

CsvExampleGen [-> PiiScrubber] -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer ->
Evaluator -> Pusher, on the bundled breast-cancer CSV by default (no Transform with the PATE Trainer). With
``scrub`` every stage after ExampleGen reads the `PiiScrubber`'s examples (`pipelines.minimization`); with
``kanonymity`` a `KAnonymityValidator` runs on them. The Trainer is `DpTrainer` (private or not, by
``trainer_config['private']``) or, with ``trainer="federated"``, `FederatedTrainer` (FedAvg over clients partitioned
from the training split, client-level DP when private) or, with ``trainer="pate"``, `PateTrainer` (teachers on
ExampleGen's private split, their noisy votes labelling its public split, the student exported; ExampleGen then
writes three splits, `_output_config`); the Evaluator is `PrivateEvaluator` (blessing needs a noisy held-out
accuracy >= ``min_accuracy``, released within the Trainer's epsilon from ``decision_share`` of its target, epsilon
<= ``epsilon_budget`` and membership AUC <= ``max_membership_auc``), and the Pusher pushes only blessed models. With
``encrypted_check=True`` an `EncryptedInferenceGate` runs between Evaluator and Pusher: it predicts
``encrypted_examples`` evaluation examples secret-shared and in plaintext, and its blessing, which the Pusher then
follows, holds only if the Evaluator's blessing holds and the predictions agree. With ``compare_non_private=True`` a
second, non-private Trainer and its Evaluator run beside them on the same Transform output ("Trainer_non_private",
"Evaluator_non_private"; never pushed: without a ledger it cannot be blessed).

With ``audit_canaries`` the (pushed model's) Evaluator also audits a canary-augmented copy of the DP Trainer's run,
and one full-batch step at its C and sigma (`pipelines.components.private_evaluator.canary_audit`), and blesses
nothing when a bound exceeds its claim.

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
from pipelines.components.encrypted_gate.component import EncryptedInferenceGate
from pipelines.components.federated_trainer.component import FederatedTrainer
from pipelines.components.pate_trainer.component import PateTrainer
from pipelines.components.pate_trainer.spec import EVAL_SPLIT, PateTrainingConfig
from pipelines.components.private_evaluator import spec as gate_spec
from pipelines.components.private_evaluator.component import PrivateEvaluator
from pipelines.datasets import breast_cancer
from pipelines.minimization import minimization_stages
from pipelines.plan import (  # noqa: F401  (DEFAULT_TRAINER_CONFIG, MODULE, TRAINERS and the configs are re-exported)
    DEFAULT_TRAINER_CONFIG,
    MODULE,
    TRAINERS,
    PipelineLayout,
    PipelinePlan,
    decision_config,
    preprocessing_config,
    resolve_plan,
)
from pipelines.report import ENCRYPTED_GATE, NON_PRIVATE_SUFFIX
from pipelines.runners import LOCAL_BEAM_ARGS

PIPELINE_NAME = "ppml-breast-cancer"
"""Lower case and dashes only: Kubeflow Pipelines requires [a-z0-9][a-z0-9-]{0,127}."""


def eval_config(gate: gate_spec.GateSettings, *, label_key: str = breast_cancer.LABEL_KEY) -> tfma.EvalConfig:
    """Exact utility metrics (for the reader, no thresholds: outside the guarantee) plus the privacy gate's of
    ``gate`` (`gate_spec.GateSettings.metrics`), whose noisy accuracy >= ``min_accuracy`` is the push decision, in
    one TFMA EvalConfig."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(label_key=label_key, signature_name="serving_default", prediction_key="probabilities")
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="BinaryAccuracy"),
                    tfma.MetricConfig(class_name="AUC"),
                    tfma.MetricConfig(class_name="BinaryCrossentropy"),
                    *gate.metrics(),
                ]
            )
        ],
    )


def create_pipeline(
    *,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    metadata_path: str | None = None,
    plan: PipelinePlan | None = None,
    pipeline_name: str = PIPELINE_NAME,
    beam_pipeline_args: Sequence[str] = LOCAL_BEAM_ARGS,
    enable_cache: bool = True,
    lineage_unchecked: str | None = None,
    **settings: Any,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline of ``plan``.

    Args:
      pipeline_root: folder (or bucket URI) for TFX artifacts.
      data_root: folder holding the CSV file(s), and nothing else.
      serving_model_dir: where the Pusher copies blessed models.
      metadata_path: SQLite ML Metadata file for local runs; None for orchestrators with their own (the gate
        then blesses nothing unless ``lineage_unchecked`` gives the reason its lineage check is skipped).
      plan: the settings, checked (`pipelines.plan.resolve_plan`).
      settings: instead of ``plan``, the keyword arguments of `pipelines.plan.resolve_plan` (trainer,
        trainer_config, the Evaluator's thresholds, the Transform's budget, encrypted_check, ...).

    Raises:
      ValueError, InvalidPrivacySetting, InvalidFederatedSetting: for an invalid setting, naming it.
    """
    if plan is None:
        plan = resolve_plan(**settings)
    elif settings:
        raise TypeError(f"give a plan or its settings, not both (got {', '.join(sorted(settings))})")
    trainer, module = plan.trainer, plan.module
    privacy_gate = dataclasses.replace(plan.gate, metadata_path=metadata_path, lineage_unchecked=lineage_unchecked)
    example_gen = tfx.components.CsvExampleGen(input_base=data_root, output_config=_output_config(plan))
    examples, minimization = minimization_stages(
        example_gen.outputs["examples"], plan.scrub, plan.kanonymity, plan.generalize
    )
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = (
        tfx.components.ImportSchemaGen(schema_file=plan.schema_file)
        if plan.schema_file
        # pinned
        else tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = (
        None
        if trainer == "pate"
        else tfx.components.Transform(
            examples=examples,
            schema=schema_gen.outputs["schema"],
            preprocessing_fn=f"{module}.preprocessing_fn",
            custom_config=plan.preprocessing.to_custom_config(),
            disable_analyzer_cache=plan.preprocessing.private,
            disable_statistics=True,  # exact pre-/post-transform statistics that nothing reads
        )
    )  # its cache would keep the exact pre-noise sums

    def train_and_evaluate(custom_config: Mapping[str, Any], suffix: str, privacy_gate: gate_spec.GateSettings):
        config = eval_config(privacy_gate)
        if trainer == "pate":  # raw examples, no Transform: the student's constants are public statistics
            trained = PateTrainer(examples=examples, custom_config=dict(custom_config)).with_id("Trainer" + suffix)
            return trained, PrivateEvaluator(
                examples=examples, model=trained.outputs["model"], eval_config=config
            ).with_id("Evaluator" + suffix)
        # The Federated Trainer keys records by their raw content (before Transform's data-dependent
        # constants) and applies the transform graph itself: it reads ExampleGen's (or the scrubber's) examples.
        inputs = dict(
            examples=transform.outputs["transformed_examples"] if trainer == "dp" else examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        )
        if trainer == "dp":
            trained = DpTrainer(run_fn=f"{module}.run_fn", custom_config=dict(custom_config), **inputs)
        else:
            trained = FederatedTrainer(custom_config={"label_key": breast_cancer.LABEL_KEY, **custom_config}, **inputs)
        trained = trained.with_id("Trainer" + suffix)
        evaluator = PrivateEvaluator(examples=examples, model=trained.outputs["model"], eval_config=config).with_id(
            "Evaluator" + suffix
        )
        return trained, evaluator

    trained, evaluator = train_and_evaluate(plan.trainer_config, "", privacy_gate)  # the pushed model's
    components = [
        example_gen,
        *minimization,
        statistics_gen,
        schema_gen,
        example_validator,
        *([transform] if transform else []),
        trained,
        evaluator,
    ]
    blessing = evaluator.outputs["blessing"]
    if plan.encrypted_check:
        gate = EncryptedInferenceGate(
            examples=examples,
            model=trained.outputs["model"],
            transform_graph=transform.outputs["transform_graph"],
            model_blessing=blessing,
            feature_keys=_model_input_keys(module),
            label_key=breast_cancer.LABEL_KEY,
            num_examples=plan.encrypted_examples,
        ).with_id(ENCRYPTED_GATE)
        components.append(gate)
        blessing = gate.outputs["blessing"]
    components.append(
        tfx.components.Pusher(
            model=trained.outputs["model"],
            model_blessing=blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)
            ),
        )
    )
    if plan.compare_non_private:
        components += train_and_evaluate(  # no ledger: nothing to audit
            plan.non_private_trainer_config, NON_PRIVATE_SUFFIX, dataclasses.replace(privacy_gate, audit_canaries=None)
        )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path) if metadata_path else None
        ),
        beam_pipeline_args=list(beam_pipeline_args),
    )


def _output_config(plan: PipelinePlan):
    """ExampleGen's splits: TFX's default (train 2/3, eval 1/3 by hash) or, for the PATE Trainer, its private split
    (1/2), its public split (1/4) and the Evaluator's eval split (1/4), each record placed by a hash of its content
    alone (equal records share a split; that the public split is public is an assumption, see the README)."""
    if plan.trainer != "pate":
        return None
    config = PateTrainingConfig.from_custom_config(plan.trainer_config)
    split = tfx.proto.SplitConfig.Split
    return tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                split(name=config.private_split, hash_buckets=2),
                split(name=config.public_split, hash_buckets=1),
                split(name=EVAL_SPLIT, hash_buckets=1),
            ]
        )
    )


def _model_input_keys(module: str) -> list[str]:
    keys = getattr(importlib.import_module(module), "MODEL_INPUT_KEYS", None)
    if not keys:
        raise ValueError(
            f"the encrypted check needs MODEL_INPUT_KEYS in the trainer module {module}: the "
            f"transformed features stacked, in order, into the model's input"
        )
    return list(keys)


def bundled_pipeline(pipeline_root: str, **kwargs: Any) -> tfx.dsl.Pipeline:
    """The pipeline on the bundled breast-cancer data, with everything under one local folder.

    Writes the CSV into ``<root>/data`` if it is not there yet (rewriting it would change its
    fingerprint and defeat the cache) and keeps ML Metadata in ``<root>/metadata.sqlite`` and pushed
    models in ``<root>/serving_model``; see `PipelineLayout`. ``kwargs`` go to `create_pipeline`.
    """
    layout = PipelineLayout(os.path.abspath(pipeline_root))
    pipeline = create_pipeline(
        pipeline_root=layout.root,
        data_root=layout.data_root,
        serving_model_dir=layout.serving_model_dir,
        metadata_path=layout.metadata_path,
        **kwargs,
    )  # checks the settings before anything is written
    if not os.path.exists(os.path.join(layout.data_root, breast_cancer.FILE_NAME)):
        breast_cancer.write_csv(layout.data_root)
    return pipeline
