"""One typed plan per pipeline run: `create_pipeline`'s settings resolved and checked once, without TFX.

`resolve_plan` checks every setting (the Trainer's ``custom_config``, the Transform's private budget,
the privacy unit against the Trainer's) and returns a `PipelinePlan`; `pipelines.pipeline.create_pipeline`
builds the TFX pipeline from it. The CLI resolves the plan before it imports TFX, so that a bad setting is
refused in about a second. This module imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

import dataclasses
import os
import types
from typing import Any, Mapping

from pipelines.components.dp_trainer.spec import DpTrainingConfig
from pipelines.components.federated_trainer import spec as federated_spec
from pipelines.components.pate_trainer.spec import PateTrainingConfig
from pipelines.components.private_evaluator import spec as gate_spec
from pipelines.datasets import breast_cancer
from pipelines.transform import spec as preprocessing_spec
from privacy import validation
from privacy.accounting import Adjacency, Sampling, resolve_adjacency
from privacy.minimization import KAnonymitySettings, ScrubSettings

MODULE = "pipelines.trainers.breast_cancer"
"""Module with ``preprocessing_fn``, ``run_fn`` and ``MODEL_INPUT_KEYS``, by dotted path (no module file to package)."""
DEFAULT_TRAINER_CONFIG: Mapping[str, Any] = types.MappingProxyType(
    {
        "private": True,
        "batch_size": 32,
        "epochs": 15,
        "l2_norm_clip": 1.0,
        "target_epsilon": 3.0,
        "learning_rate": 0.2,
    }
)
DEFAULT_TARGET_EPSILON = federated_spec.DEFAULT_TARGET_EPSILON
"""ppml's one default target epsilon (``ppml pipeline run --private``, the Federated Trainer's default)."""
DEFAULT_EPSILON_BUDGET = 3.0
"""The Evaluator's default epsilon budget (``--epsilon-budget``)."""
DEFAULT_MIN_ACCURACY = 0.85
"""The Evaluator's default least noisy held-out accuracy (``--min-accuracy``)."""
PRIVACY_KEYS = (
    "target_epsilon",
    "noise_multiplier",
    "max_epsilon",
    "decision_epsilon",
    "truncated_batch_size",
    "skip_padding",
    "batch_size_noise_multiplier",
)
"""Settings a non-private DP Trainer of a side-by-side comparison drops (the Federated Trainer's: its spec's
PRIVACY_SETTINGS)."""
TRAINERS = ("dp", "federated", "pate")
"""`DpTrainer` (DP-SGD, or ordinary training), `FederatedTrainer` (FedAvg, DP-FedAvg) or `PateTrainer` (teachers,
noisy aggregation and student; no Transform stage)."""
_TRAINER_NAMES = {"dp": "DP", "federated": "Federated", "pate": "PATE"}


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

    def composition_warning(self) -> str | None:
        """A warning when ``serving_model_dir`` holds more than one pushed model: all were trained on this root's
        data, so their guarantees compose (epsilons add up), while each ledger accounts its own run only."""
        try:
            versions = [
                v for v in os.listdir(self.serving_model_dir) if os.path.isdir(os.path.join(self.serving_model_dir, v))
            ]
        except FileNotFoundError:
            return None
        if len(versions) < 2:
            return None
        return (
            f"{self.serving_model_dir} holds {len(versions)} pushed models trained on the same data "
            f"({', '.join(sorted(versions))}): their guarantees compose (their epsilons add up); each ledger and "
            f"this report account one run only"
        )


@dataclasses.dataclass(frozen=True)
class PipelinePlan:
    """What one pipeline runs, checked (see `resolve_plan` for each field; ``gate`` holds the Evaluator's)."""

    trainer: str
    trainer_config: Mapping[str, Any]
    preprocessing: preprocessing_spec.PreprocessingConfig
    gate: gate_spec.GateSettings
    encrypted_check: bool
    encrypted_examples: int
    compare_non_private: bool
    module: str
    schema_file: str | None = None
    scrub: ScrubSettings | None = None
    kanonymity: KAnonymitySettings | None = None
    generalize: bool = False

    def __post_init__(self):
        if self.generalize and (self.scrub is None or self.kanonymity is None):
            raise ValueError("generalize (--generalize) needs scrub (--scrub-pii) and kanonymity (--quasi-identifier)")
        if not isinstance(self.gate, gate_spec.GateSettings):
            raise ValueError(f"gate must be a GateSettings, got {type(self.gate).__name__}")
        members = member_split(self.trainer, self.trainer_config)
        if self.gate.member_split != members:  # the audit would attack records the model never saw
            raise ValueError(
                f"gate.member_split {self.gate.member_split!r}: the {self.trainer} Trainer fits the model on "
                f"{members!r}, the membership audit's members (`member_split`)"
            )

    @property
    def non_private_trainer_config(self) -> dict[str, Any]:
        """The side-by-side non-private Trainer's ``custom_config``: this one without its privacy settings."""
        dropped = (
            PRIVACY_KEYS
            if self.trainer == "dp"
            else (*federated_spec.PRIVACY_SETTINGS, "decision_epsilon", "budget_unit", "budget_adjacency")
        )
        return {**{k: v for k, v in self.trainer_config.items() if k not in dropped}, "private": False}


def resolve_plan(
    *,
    trainer: str = "dp",
    trainer_config: Mapping[str, Any] | None = None,
    epsilon_budget: float = DEFAULT_EPSILON_BUDGET,
    max_membership_auc: float = gate_spec.DEFAULT_MAX_MEMBERSHIP_AUC,
    min_accuracy: float | None = DEFAULT_MIN_ACCURACY,
    delta_budget: float | None = None,
    privacy_unit: str = gate_spec.DEFAULT_PRIVACY_UNIT,
    preprocessing_share: float = preprocessing_spec.DEFAULT_SHARE,
    preprocessing_epsilon: float | None = None,
    encrypted_check: bool = False,
    encrypted_examples: int = 200,
    compare_non_private: bool = False,
    module: str = MODULE,
    scrub: ScrubSettings | None = None,
    kanonymity: KAnonymitySettings | None = None,
    generalize: bool = False,
    schema_file: str | None = None,
    decision_share: float = gate_spec.DEFAULT_DECISION_SHARE,
    audit_canaries: int | None = None,
    budget_adjacency: str | None = None,
) -> PipelinePlan:
    """Checks the settings of one pipeline and resolves them into a `PipelinePlan`.

    Args:
      trainer: one of `TRAINERS`.
      trainer_config: the Trainer's ``custom_config`` (see `pipelines.components.dp_trainer.spec`,
        `pipelines.components.federated_trainer.spec` or `pipelines.components.pate_trainer.spec`; the federated
        and PATE ones' ``label_key`` defaults to the bundled dataset's label, with its ``num_classes`` and, for
        PATE, its ``feature_keys``). Default: `DEFAULT_TRAINER_CONFIG` for the DP Trainer, the spec's own
        defaults for the others.
      epsilon_budget, max_membership_auc, min_accuracy: the Evaluator's thresholds; the push decision compares
        a noisy held-out accuracy with ``min_accuracy`` (None or 0: no utility threshold, nothing released).
      decision_share: the fraction of the Trainer's target epsilon reserved for that noisy accuracy (its
        ``decision_epsilon``, unless the Trainer's config names one); the target covers it.
      delta_budget: the largest delta the Evaluator blesses (None: below 1/n, as every ledger is).
      privacy_unit: the unit of privacy ``epsilon_budget`` is stated in (example, user or client): the
        Federated Trainer's ledger is client-level (user-level with a client key), so its budget says so; a
        budget per example meets a keyed partition's record-level epsilon (one record replaces a client).
      budget_adjacency: the neighbouring relation ``epsilon_budget`` is stated in, 'add-remove' or 'replace-one'
        (`privacy.accounting.Adjacency`); None: the ledger's own. A private Trainer whose ledger accounts the
        other relation is refused (its ledger would meet no such budget), except that a budget per example meets
        a keyed Federated Trainer's ledger in either: add-remove through its record-level figure, replace-one
        through its replaced-record figure (one record replaced moves to another client: two clients change).
      preprocessing_share: the fraction of the Trainer's ``target_epsilon`` the Transform's private
        analyzers are calibrated to spend (alone); see `pipelines.transform.spec`.
      preprocessing_epsilon: the Transform's budget itself, instead of a share (needed when the Trainer
        takes a ``noise_multiplier`` rather than a ``target_epsilon``).
      encrypted_check: run the `EncryptedInferenceGate` after the Evaluator; push only if both bless.
      encrypted_examples: how many evaluation examples the gate predicts, encrypted and in plaintext.
      compare_non_private: also train and evaluate a non-private model side by side.
      module: dotted module path with ``preprocessing_fn`` and ``run_fn`` (and, for the encrypted
        check, ``MODEL_INPUT_KEYS``: the transformed features stacked, in order, into the model's input).
      scrub: run the `PiiScrubber` after ExampleGen with these settings; every later stage reads its output.
      kanonymity: run the `KAnonymityValidator` for these quasi-identifiers (on the scrubbed examples).
      generalize: the scrubber also generalizes ``kanonymity``'s quasi-identifiers to its ``target_k`` (Mondrian).
      schema_file: a schema (.pbtxt) fixed before the data is read, imported (``ImportSchemaGen``) instead of
        inferred from the data by SchemaGen; a private Federated Trainer may then declare it with
        ``public_schema`` (once the examples' feature kinds are fixed too); the DP Trainer gets
        ``public_schema`` set (unless its config says otherwise), so its ledger lists no inferred spec.
        Without it a trainer config declaring ``public_schema`` is refused (SchemaGen infers the schema).
      audit_canaries: the Evaluator also audits a canary-augmented copy of the private DP Trainer's run with this
        many white-box canaries, and one full-batch step at its C and sigma with 10,000
        (`pipelines.components.private_evaluator.canary_audit`; Poisson sampling and per-example clipping only),
        and blesses nothing when a measured lower bound exceeds the epsilon claimed for its run; None: no audit.

    Raises:
      ValueError, InvalidPrivacySetting, InvalidFederatedSetting: for an invalid setting, naming it.
    """
    validation.choice("trainer", trainer, TRAINERS)
    try:
        gate_spec.check_audit_canaries(audit_canaries)
    except ValueError as err:
        raise ValueError(f"--audit-canaries: {err}") from None
    gate = gate_spec.GateSettings(  # the Evaluator's settings, checked before anything imports TFMA
        epsilon_budget=epsilon_budget,
        max_membership_auc=max_membership_auc,
        delta_budget=delta_budget,
        privacy_unit=privacy_unit,
        min_accuracy=min_accuracy,
        audit_canaries=audit_canaries,
        budget_adjacency=budget_adjacency,
    )  # the pipeline adds its ML Metadata path (`pipelines.pipeline.create_pipeline`)
    if gate.min_accuracy == 0:  # checked first (False is refused); the noisy accuracy is in [0, 1]: 0 decides nothing
        gate = dataclasses.replace(gate, min_accuracy=None)
    if trainer == "federated" and encrypted_check:
        raise ValueError(
            "the encrypted check runs Keras models; the Federated Trainer exports a SavedModel "
            "without one (use trainer='dp')"
        )
    if trainer_config is None:
        trainer_config = DEFAULT_TRAINER_CONFIG if trainer == "dp" else {}
    if trainer == "pate":
        trainer_config = _pate_config(
            trainer_config,
            privacy_unit=privacy_unit,
            encrypted_check=encrypted_check,
            compare_non_private=compare_non_private,
            preprocessing_epsilon=preprocessing_epsilon,
        )
        gate = dataclasses.replace(gate, member_split=member_split(trainer, trainer_config))
    if trainer == "federated":
        if "label_key" not in trainer_config:  # the bundled data's label, and its classes (public)
            trainer_config = {
                "label_key": breast_cancer.LABEL_KEY,
                "num_classes": breast_cancer.NUM_CLASSES,
                **trainer_config,
            }
        federated = federated_spec.FederatedTrainingConfig.for_trainer(trainer_config)
        per_record = federated.privacy_unit == "client" and privacy_unit == "example"  # its record-level figure
        if federated.private and federated.privacy_unit != privacy_unit and not per_record:  # else only the gate
            raise ValueError(
                f"privacy_unit (--privacy-unit) {privacy_unit!r}: the Federated Trainer's epsilon is "
                f"{federated.privacy_unit}-level (clients: {federated.clients}), and a ledger in another "
                f"unit meets no budget; state the budget per {federated.privacy_unit}"
            )
        if federated.private and per_record and federated.budget_unit is None:  # calibrate for the gate's figure
            trainer_config = {**trainer_config, "budget_unit": "example"}
        if federated.private and per_record and budget_adjacency is not None and federated.budget_unit == "client":
            raise ValueError(
                f"budget_adjacency (--budget-adjacency) {budget_adjacency!r}: the Federated Trainer's budget_unit "
                f"is 'client', so it calibrates its noise for the client-level figure, not the record-level one a "
                f"budget per example in a stated relation meets; drop budget_unit or state the budget per client"
            )
        if federated.private and per_record and None not in (budget_adjacency, federated.budget_adjacency):
            if federated.budget_adjacency != budget_adjacency:  # it would calibrate z for a figure the gate skips
                raise ValueError(
                    f"budget_adjacency (--budget-adjacency) {budget_adjacency!r}: the Federated Trainer's "
                    f"budget_adjacency is {federated.budget_adjacency!r}, so it would calibrate its noise for "
                    f"another figure than the gate checks; give one relation"
                )
        if federated.private and per_record and budget_adjacency is not None and federated.budget_adjacency is None:
            trainer_config = {**trainer_config, "budget_adjacency": budget_adjacency}
    _check_audit(audit_canaries, trainer, trainer_config)
    _check_budget_adjacency(budget_adjacency, trainer, trainer_config, privacy_unit)
    if schema_file is not None:
        schema_features(schema_file)  # fails here, naming the file, before TFX is imported
    elif trainer_config.get("public_schema") is True:
        raise ValueError(
            "public_schema: true declares the schema fixed before the data was read, but without schema_file "
            "(--schema-file) this pipeline infers it from the private examples (SchemaGen)"
        )
    if schema_file is not None and trainer == "dp" and "public_schema" not in trainer_config:
        trainer_config = {**trainer_config, "public_schema": True}  # fixed before the data is read
    preprocessing = preprocessing_config(
        trainer, trainer_config, share=preprocessing_share, epsilon=preprocessing_epsilon
    )
    trainer_config = decision_config(trainer, trainer_config, min_accuracy=gate.min_accuracy, share=decision_share)
    return PipelinePlan(
        trainer=trainer,
        trainer_config=types.MappingProxyType(dict(trainer_config)),
        preprocessing=preprocessing,
        gate=gate,
        encrypted_check=encrypted_check,
        encrypted_examples=encrypted_examples,
        compare_non_private=compare_non_private,
        module=module,
        scrub=scrub,
        kanonymity=kanonymity,
        generalize=generalize,
        schema_file=schema_file,
    )


def member_split(trainer: str, trainer_config: Mapping[str, Any]) -> str:
    """The split ``trainer`` fits the pushed model on, the membership audit's members: the PATE student's public
    split (its ``public_split``), every other Trainer's 'train'."""
    if trainer == "pate":
        return PateTrainingConfig.from_custom_config(trainer_config).public_split
    return gate_spec.DEFAULT_MEMBER_SPLIT


def _check_budget_adjacency(
    adjacency: str | None, trainer: str, trainer_config: Mapping[str, Any], privacy_unit: str
) -> None:
    """Refuses a budget relation that the private Trainer's ledger can never meet (ValueError naming
    --budget-adjacency): its ledger accounts the other relation (`gate_spec.budget_epsilon` would give inf)."""
    if adjacency is None:
        return
    if trainer == "dp":
        config = DpTrainingConfig.from_custom_config(trainer_config)
        accounted, how = resolve_adjacency(config.sampling).value, f"its {config.sampling} sampling"
    elif trainer == "pate":
        config = PateTrainingConfig.from_custom_config(trainer_config)
        accounted, how = Adjacency.ADD_REMOVE.value, "its teachers' noisy votes"
    else:
        config = federated_spec.FederatedTrainingConfig.for_trainer(trainer_config)
        if config.privacy_unit == "client" and privacy_unit == "example":  # its record-level figures: both
            return
        accounted, how = config.sampler().accounting[1].value, f"its {config.sampling} sampling of clients"
    if config.private and accounted != adjacency:
        raise ValueError(
            f"budget_adjacency (--budget-adjacency) {adjacency!r}: the {_TRAINER_NAMES[trainer]} Trainer's ledger "
            f"accounts {accounted} neighbours ({how}), and a ledger in another relation meets no budget; state "
            f"the budget {accounted}"
        )


def schema_features(schema_file: str) -> dict[str, str]:
    """``{feature name: type name}`` (INT, FLOAT, BYTES) of the tf.metadata Schema in text format (.pbtxt) at
    ``schema_file``; ValueError naming the file for a missing or unparsable one, or one with no typed feature.
    Reads protos only (no TensorFlow)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if not os.path.isfile(schema_file):
        raise ValueError(f"schema_file: no file {schema_file!r}")
    schema = schema_pb2.Schema()
    try:
        with open(schema_file, encoding="utf-8") as f:
            text_format.Parse(f.read(), schema)
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise ValueError(f"schema_file: {schema_file!r} is not a tf.metadata Schema in text format ({err})") from None
    features = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    untyped = sorted(name for name, kind in features.items() if kind == "TYPE_UNKNOWN")
    if not features or untyped:
        raise ValueError(
            f"schema_file: {schema_file!r} declares "
            f"{f'no type for the features {untyped}' if untyped else 'no feature'} (INT, FLOAT or BYTES each)"
        )
    return features


def _check_audit(audit_canaries: int | None, trainer: str, trainer_config: Mapping[str, Any]) -> None:
    """Refuses an audit the Evaluator could not run on this Trainer's run (ValueError naming --audit-canaries)."""
    if audit_canaries is None:
        return
    config = DpTrainingConfig.from_custom_config(trainer_config) if trainer == "dp" else None
    if config is None or not config.private:
        raise ValueError("--audit-canaries audits a private DP Trainer's DP-SGD run (--trainer dp --dp)")
    if config.sampling != Sampling.POISSON.value or config.num_microbatches is not None:
        raise ValueError(
            f"--audit-canaries: the audit includes or leaves out each canary and clips it alone, so it "
            f"needs --sampling poisson without --num-microbatches, got --sampling {config.sampling}"
            f"{f' --num-microbatches {config.num_microbatches}' if config.num_microbatches else ''}"
        )
    if config.truncated_batch_size is not None:
        raise ValueError(
            "--audit-canaries: the audit re-runs whole Poisson batches and cannot reproduce truncated "
            "ones; leave out --truncated-batch-size to audit"
        )


def _pate_config(
    trainer_config: Mapping[str, Any],
    *,
    privacy_unit: str,
    encrypted_check: bool,
    compare_non_private: bool,
    preprocessing_epsilon: float | None,
) -> Mapping[str, Any]:
    """The PATE Trainer's ``custom_config`` with the bundled data's public facts, checked against the pipeline."""
    for given, name, why in (
        (encrypted_check, "encrypted_check", "runs Keras models; the PATE Trainer exports a SavedModel without one"),
        (
            compare_non_private,
            "compare_non_private",
            "trains a non-private twin on the same Transform output; PATE has none",
        ),
        (
            preprocessing_epsilon is not None,
            "preprocessing_epsilon",
            "budgets the Transform stage, which the PATE pipeline does not run (the student's "
            "constants are the public split's statistics)",
        ),
    ):
        if given:
            raise ValueError(f"{name}: {why}")
    if "label_key" not in trainer_config:  # the bundled data's public facts
        trainer_config = {
            "label_key": breast_cancer.LABEL_KEY,
            "num_classes": breast_cancer.NUM_CLASSES,
            "feature_keys": breast_cancer.feature_keys(),
            **trainer_config,
        }
    config = PateTrainingConfig.from_custom_config(trainer_config)
    if config.privacy_unit != privacy_unit:
        how = f"holder_key {config.holder_key!r}" if config.holder_key else "records partitioned by content"
        raise ValueError(
            f"privacy_unit (--privacy-unit) {privacy_unit!r}: the PATE Trainer's epsilon is "
            f"{config.privacy_unit}-level ({how}), and a ledger in another unit meets no budget; state "
            f"the budget per {config.privacy_unit}"
        )
    return trainer_config


def decision_config(
    trainer: str, trainer_config: Mapping[str, Any], *, min_accuracy: float | None, share: float
) -> Mapping[str, Any]:
    """The Trainer's ``custom_config`` with the push decision's budget reserved: ``decision_epsilon`` = ``share`` x
    the target epsilon (x `DEFAULT_TARGET_EPSILON` for a Trainer given a noise multiplier: its epsilon is then
    what the ledger composes, this included), for a private Trainer, a ``min_accuracy`` and a config that names no
    ``decision_epsilon``.

    Raises:
      ValueError: naming the setting, for a share outside (0, 1) or a decision that cannot be reserved.
    """
    validation.probability("decision_share", share)
    if min_accuracy is None or trainer_config.get("decision_epsilon") is not None:
        return trainer_config
    if trainer == "dp":
        config = DpTrainingConfig.from_custom_config(trainer_config)
    elif trainer == "pate":
        config = PateTrainingConfig.from_custom_config(trainer_config)
        if config.holder_key is not None:
            raise ValueError(
                f"min_accuracy {min_accuracy!r}: with a holder_key a holder's held-out records are not "
                f"bounded, so no private push decision can be accounted per user; set min_accuracy to 0 "
                f"(--min-accuracy 0: no utility threshold)"
            )
    else:
        config = federated_spec.FederatedTrainingConfig.for_trainer(trainer_config)
        if config.private and config.client_key is not None:
            raise ValueError(
                f"min_accuracy {min_accuracy!r}: with a client_key a user's held-out records are not "
                f"bounded, so no private push decision can be accounted per user; set min_accuracy to 0 "
                f"(--min-accuracy 0: no utility threshold)"
            )
    if not config.private:
        return trainer_config
    return {**trainer_config, "decision_epsilon": share * (config.target_epsilon or DEFAULT_TARGET_EPSILON)}


def preprocessing_config(
    trainer: str, trainer_config: Mapping[str, Any], *, share: float, epsilon: float | None = None
) -> preprocessing_spec.PreprocessingConfig:
    """The Transform's private preprocessing settings for a Trainer with ``trainer_config``.

    Private when the Trainer is; the budget is ``epsilon`` or ``share`` x the target epsilon, calibrated at
    the Trainer's delta (or `pipelines.transform.spec.CALIBRATION_DELTA`); the adjacency is the DP
    Trainer's (from its sampling), add-remove for the Federated Trainer (which accounts the releases for
    groups of a client's records). Not private for the PATE Trainer, whose pipeline runs no Transform.

    Raises:
      ValueError: naming the setting, for a share outside (0, 1] or a budget that cannot be set.
      InvalidPrivacySetting, InvalidFederatedSetting: for an invalid Trainer setting, naming it.
    """
    validation.probability("preprocessing_share", share, one=True)
    if trainer == "pate":  # no Transform stage: the student's constants are public statistics
        return preprocessing_spec.PreprocessingConfig(private=False)
    if trainer == "dp":
        config = DpTrainingConfig.from_custom_config(trainer_config)
        adjacency = resolve_adjacency(config.sampling)
    else:
        config = federated_spec.FederatedTrainingConfig.for_trainer(
            {"label_key": breast_cancer.LABEL_KEY, **trainer_config}
        )
        adjacency = Adjacency.ADD_REMOVE
    if not config.private:
        return preprocessing_spec.PreprocessingConfig(private=False)
    if epsilon is None:
        target = config.target_epsilon
        if target is None and trainer != "dp" and config.noise_multiplier is None:
            target = federated_spec.DEFAULT_TARGET_EPSILON  # what the Federated Trainer's plan calibrates for
        if target is None:
            raise ValueError(
                "a Trainer with a noise_multiplier instead of a target_epsilon needs "
                "preprocessing_epsilon: the budget of the Transform's private analyzers"
            )
        epsilon = share * target
    if trainer != "dp" and config.max_examples_per_client is None:
        raise federated_spec.InvalidFederatedSetting(
            "max_examples_per_client",
            "the private Transform's releases are accounted per record; set a public "
            "bound K on each client's records so that they can be accounted per client",
        )
    delta = config.delta or preprocessing_spec.CALIBRATION_DELTA
    values = {"epsilon": epsilon, "delta": delta, "adjacency": adjacency.value}
    return preprocessing_spec.PreprocessingConfig.from_custom_config({preprocessing_spec.CONFIG_KEY: values})
