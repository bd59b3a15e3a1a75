"""What a pipeline author configures for the privacy gate: two TFMA metrics with upper bounds.

The gate is expressed in TFMA's own terms, next to the utility metrics of the same EvalConfig::

    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="diagnosis")],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="BinaryAccuracy", threshold=...),
            *spec.privacy_metrics(epsilon_budget=3.0, max_membership_auc=0.6),
        ])])

``dp_epsilon`` is the epsilon of the model's privacy ledger: the whole artifact's, preprocessing and
training composed (for a budget per example and a keyed Federated Trainer's ledger, its record-level figure);
infinite when it has no ledger, when its unit of privacy is not the budget's, when its
noise was seeded (see `budget_epsilon`), or when the model carries statistics no epsilon covers (see
`pipelines.components.private_evaluator.coverage`). ``membership_inference_auc`` is the AUC of the
loss-threshold attack on training vs held-out examples, an internal diagnostic that epsilon does not
cover (it is computed from the training records themselves). With a ``delta_budget``, ``dp_delta`` is the
ledger's delta (1 without a ledger). With a ``min_accuracy``, ``noisy_accuracy`` is the push decision's
release: the held-out accuracy with the Gaussian noise the trainer reserved in the ledger
(`privacy.decision.NoisyAccuracy`, composed into its epsilon); -inf when the ledger reserved none. TFMA
checks their thresholds like any other, so the blessing requires noisy accuracy >= min_accuracy AND
epsilon <= budget AND AUC <= its bound (AND delta <= its budget), and the values appear in the
ModelEvaluation artifact. Exact utility metrics (BinaryAccuracy, AUC, ...) may be computed for the
reader but are outside the guarantee: a threshold on any of them is refused (`gate_settings`), so they
never decide the push.
With ``audit_canaries`` the gate also runs the privacy audits (`canary_audit`): a canary-augmented copy of the
training run, and one full-batch step at its C and sigma, whose measured lower bounds on epsilon must not exceed the
epsilons claimed for them.
`GateSettings` holds these settings, checked on construction; this module imports TFMA only in
`GateSettings.metrics` (and `privacy_metrics`), after the settings have been checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from pipelines import privacy_ledger
from privacy import validation
from privacy.accounting import Adjacency
from privacy.auditing.canaries import MAX_CANARIES
from privacy.auditing.one_run import MIN_CANARIES

DP_EPSILON = "dp_epsilon"
MEMBERSHIP_AUC = "membership_inference_auc"
DP_DELTA = "dp_delta"
NOISY_ACCURACY = "noisy_accuracy"
METRICS_MODULE = "pipelines.components.private_evaluator.metrics"
CLASS_NAMES = {
    DP_EPSILON: "DpEpsilon",
    MEMBERSHIP_AUC: "MembershipInferenceAuc",
    DP_DELTA: "DpDelta",
    NOISY_ACCURACY: "NoisyAccuracy",
}
REQUIRED = (DP_EPSILON, MEMBERSHIP_AUC)
"""The gate's metrics every EvalConfig must hold (``dp_delta`` is there when a delta budget is set)."""
DEFAULT_MEMBER_SPLIT = "train"
DEFAULT_MAX_MEMBERSHIP_AUC = 0.6
"""The largest loss-threshold attack AUC the gate blesses unless told otherwise."""
DEFAULT_PRIVACY_UNIT = "example"
DEFAULT_DECISION_SHARE = 0.2
"""Fraction of the Trainer's target epsilon the pipeline reserves for the push decision (calibrated alone)."""
SUMMARY_FILE = "ppml_evaluation.json"
"""JSON summary the Private Evaluator writes into the ModelEvaluation artifact: metrics, checks, audit."""


@dataclasses.dataclass(frozen=True)
class GateSettings:
    """The privacy gate's settings: what `privacy_metrics` puts in an EvalConfig and `gate_settings` reads back.
    Checked on construction without TFMA or TFX: a ValueError naming the first bad one, in one line.

    Attributes:
      epsilon_budget: largest epsilon to bless, at the delta of the model's ledger.
      max_membership_auc: largest loss-threshold attack AUC to bless, in [0, 1] (0.5: the attack's guess).
      member_split: the split the model was trained on (the attack's members); its non-members
        are the Evaluator's ``example_splits`` (default 'eval').
      max_audit_examples: attack at most this many examples of each kind (the first ones).
      delta_budget: largest delta to bless; None: any delta below 1/n (which every ledger has).
      privacy_unit: what the budget protects, one of `privacy_ledger.PRIVACY_UNITS` (example, user,
        client); a ledger in another unit does not meet it, except that a budget per example meets a
        Federated Trainer's keyed client-level ledger through its record-level epsilon (`budget_epsilon`).
      min_accuracy: least noisy held-out accuracy to bless (the push decision, inside the guarantee: the
        trainer must reserve its budget, see `privacy.decision`); None: no utility threshold.
      metadata_path: the pipeline's ML Metadata SQLite file, for the lineage check (`lineage`): every
        Transform graph upstream of the model must be the one its ledger accounts. Without it the gate
        fails closed (epsilon inf) unless ``lineage_unchecked`` says why the check is skipped.
      lineage_unchecked: the reason the lineage check is skipped (e.g. an orchestrator's own ML Metadata
        the gate cannot read); shown in the evaluation summary and the report. Ignored with a metadata_path.
      audit_canaries: run the privacy audits (`canary_audit`): a copy of the training run with this many white-box
        canaries, and one full-batch step with `canary_audit.IMPLEMENTATION_CANARIES` (fewer above about 5,000
        training rows, `canary_audit.implementation_canaries`; above 4,687,468 rows too few, which fails the check
        closed): bless only when each measured lower bound on epsilon is at most the epsilon claimed for its
        audited run; None: no audit.
      budget_adjacency: the neighbouring relation the budget is stated in, 'add-remove' or 'replace-one'; None:
        the ledger's own. A ledger accounted in the other relation does not meet it, except that a per-example
        replace-one budget meets a keyed client-level ledger through its replaced-record figure (two clients).
    """

    epsilon_budget: float
    max_membership_auc: float = DEFAULT_MAX_MEMBERSHIP_AUC
    member_split: str = DEFAULT_MEMBER_SPLIT
    max_audit_examples: int | None = None
    delta_budget: float | None = None
    privacy_unit: str = DEFAULT_PRIVACY_UNIT
    min_accuracy: float | None = None
    metadata_path: str | None = None
    lineage_unchecked: str | None = None
    audit_canaries: int | None = None
    budget_adjacency: str | None = None

    def __post_init__(self):
        validation.positive("epsilon_budget", self.epsilon_budget)
        validation.probability("max_membership_auc", self.max_membership_auc, zero=True, one=True)
        if not (isinstance(self.member_split, str) and self.member_split.strip()):
            raise ValueError(f"member_split must be a split name, got {validation.shown(self.member_split)}")
        if self.max_audit_examples is not None:
            validation.integer("max_audit_examples", self.max_audit_examples, minimum=1)
        if self.delta_budget is not None:
            validation.probability("delta_budget", self.delta_budget)
        validation.choice("privacy_unit", self.privacy_unit, privacy_ledger.PRIVACY_UNITS)
        if self.min_accuracy is not None:
            validation.probability("min_accuracy", self.min_accuracy, zero=True, one=True)
        if self.metadata_path is not None and not (isinstance(self.metadata_path, str) and self.metadata_path):
            raise ValueError(f"metadata_path must be a file path, got {validation.shown(self.metadata_path)}")
        reason = self.lineage_unchecked
        if reason is not None and not (isinstance(reason, str) and reason.strip()):
            raise ValueError(f"lineage_unchecked must be a non-empty reason, got {validation.shown(reason)}")
        check_audit_canaries(self.audit_canaries)
        if self.budget_adjacency is not None:
            validation.choice("budget_adjacency", self.budget_adjacency, [a.value for a in Adjacency])

    def metrics(self) -> list:
        """The `tfma.MetricConfig`s of the privacy gate (two, plus one with a ``delta_budget`` and one with a
        ``min_accuracy``), which `gate_settings` reads back into these settings. Imports TFMA."""
        import tensorflow_model_analysis as tfma

        audit_config = {"member_split": self.member_split}
        if self.max_audit_examples is not None:
            audit_config["max_examples"] = int(self.max_audit_examples)

        def config(name: str, bound: float, extra: dict[str, Any], side: str = "upper_bound"):
            return tfma.MetricConfig(
                class_name=CLASS_NAMES[name],
                module=METRICS_MODULE,
                config=json.dumps({"name": name, **extra}),
                threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(**{side: {"value": bound}})),
            )

        epsilon_config = {
            "privacy_unit": self.privacy_unit,
            **({"metadata_path": self.metadata_path} if self.metadata_path else {}),
            **({"lineage_unchecked": self.lineage_unchecked} if self.lineage_unchecked else {}),
            **({"audit_canaries": self.audit_canaries} if self.audit_canaries is not None else {}),
            **({"adjacency": self.budget_adjacency} if self.budget_adjacency else {}),
        }
        metrics = [
            config(DP_EPSILON, float(self.epsilon_budget), epsilon_config),
            config(MEMBERSHIP_AUC, float(self.max_membership_auc), audit_config),
        ]
        if self.delta_budget is not None:
            metrics.append(config(DP_DELTA, float(self.delta_budget), {}))
        if self.min_accuracy is not None:
            metrics.append(config(NOISY_ACCURACY, float(self.min_accuracy), {}, side="lower_bound"))
        return metrics


def check_audit_canaries(value: int | None) -> None:
    """Raises ValueError unless ``value`` is None (no audit) or a canary count the audit accepts."""
    if value is not None:
        validation.integer("audit_canaries", value, minimum=MIN_CANARIES, maximum=MAX_CANARIES)


def privacy_metrics(**settings: Any) -> list:
    """``GateSettings(**settings).metrics()``: the privacy gate's `tfma.MetricConfig`s from its settings by keyword
    (`GateSettings`' fields, e.g. ``privacy_metrics(epsilon_budget=3.0, max_membership_auc=0.6)``), checked
    before TFMA is imported."""
    return GateSettings(**settings).metrics()


def gate_settings(eval_config) -> GateSettings:
    """Finds the privacy thresholds in a `tfma.EvalConfig`.

    Raises:
      ValueError: naming the metric when either is missing, given twice or has no upper-bound threshold, when
        ``noisy_accuracy`` has no lower bound, when any other metric has a threshold (an exact metric
        of the private held-out split would decide the push outside the guarantee), or when a setting read back
        is invalid (`GateSettings`).
    """
    bounds: dict[str, float] = {}
    audit_config: dict[str, Any] = {}
    epsilon_config: dict[str, Any] = {}
    for metrics_spec in eval_config.metrics_specs:
        thresholded = sorted(
            {*metrics_spec.thresholds, *metrics_spec.per_slice_thresholds, *metrics_spec.cross_slice_thresholds}
        )
        if thresholded:
            raise ValueError(
                f"the MetricsSpec thresholds {thresholded} would decide the push "
                f"from exact metrics of the held-out split, outside the guarantee; use "
                f"spec.privacy_metrics(min_accuracy=...)"
            )
        for metric in metrics_spec.metrics:
            name = next((n for n, c in CLASS_NAMES.items() if c == metric.class_name), None)
            if name is None:
                if metric.HasField("threshold") or metric.per_slice_thresholds or metric.cross_slice_thresholds:
                    raise ValueError(
                        f"a threshold on {metric.class_name} would decide the push from an exact "
                        f"metric of the held-out split, outside the guarantee; compute it without a "
                        f"threshold and gate on spec.privacy_metrics(min_accuracy=...) (a noisy accuracy)"
                    )
                continue
            if name in bounds:  # the settings below are read from one, the value is checked against each
                raise ValueError(
                    f"the EvalConfig has two {metric.class_name} metrics ({name}): the gate would read one's "
                    f"settings while TFMA checks both thresholds; give one"
                )
            threshold = metric.threshold.value_threshold
            if name == NOISY_ACCURACY:
                if not threshold.HasField("lower_bound"):
                    raise ValueError(
                        f"the privacy gate's metric {name} needs a lower-bound value threshold; build "
                        f"it with privacy_metrics(min_accuracy=...)"
                    )
                bounds[name] = threshold.lower_bound.value
                continue
            if not threshold.HasField("upper_bound"):
                raise ValueError(
                    f"the privacy gate's metric {name} ({metric.class_name}) needs an upper-bound "
                    f"value threshold; build it with privacy_metrics(...)"
                )
            bounds[name] = threshold.upper_bound.value
            if name == MEMBERSHIP_AUC and metric.config:
                audit_config = json.loads(metric.config)
            if name == DP_EPSILON and metric.config:
                epsilon_config = json.loads(metric.config)
    for name in REQUIRED:
        if name not in bounds:
            raise ValueError(
                f"the EvalConfig has no {CLASS_NAMES[name]} metric ({name}): the privacy gate needs "
                f"{', '.join(CLASS_NAMES[n] for n in REQUIRED)}; add spec.privacy_metrics("
                f"epsilon_budget=...) to a MetricsSpec"
            )
    return GateSettings(
        epsilon_budget=bounds[DP_EPSILON],
        max_membership_auc=bounds[MEMBERSHIP_AUC],
        member_split=audit_config.get("member_split", DEFAULT_MEMBER_SPLIT),
        max_audit_examples=audit_config.get("max_examples"),
        delta_budget=bounds.get(DP_DELTA),
        privacy_unit=epsilon_config.get("privacy_unit", DEFAULT_PRIVACY_UNIT),
        min_accuracy=bounds.get(NOISY_ACCURACY),
        metadata_path=epsilon_config.get("metadata_path"),
        lineage_unchecked=epsilon_config.get("lineage_unchecked"),
        audit_canaries=epsilon_config.get("audit_canaries"),
        budget_adjacency=epsilon_config.get("adjacency"),
    )


def budget_epsilon(
    ledger: privacy_ledger.PrivacyLedger | None, privacy_unit: str, adjacency: str | None = None
) -> tuple[float, str]:
    """(epsilon to check against a budget in ``privacy_unit`` and ``adjacency`` (None: the ledger's), why): the
    ledger's epsilon, or inf when there is no ledger, when its unit of privacy or its neighbouring relation differs
    from the budget's, or when its noise was drawn from a recorded seed (no guarantee for a released model).
    One conversion is made: a budget per example meets a client-level ledger of clients ppml dealt records to
    through the ledger's record-level figure (`privacy_ledger.PrivacyLedger.record_level_epsilon`: one record
    added or removed replaces a client's data), never through the smaller add/remove client-level epsilon, and
    a replace-one budget per example through its replaced-record figure (two clients' data change); only when
    the ledger gives a public bound on the records (N x K), against which the gate judges delta
    (`coverage.delta_findings`)."""
    if ledger is None:
        return math.inf, (
            "the model has no privacy ledger: it was not trained by a DP trainer, so no epsilon bounds its privacy loss"
        )
    if ledger.parameters.get("noise") == "seeded":
        return math.inf, (
            "the ledger's noise was drawn from a recorded seed (research mode): anyone with the seed "
            "can remove it, so its epsilon is no guarantee for a released model"
        )
    record_level = ledger.record_level_epsilon()
    if privacy_unit == "example" and record_level is not None:
        if ledger.record_count_bound() is None and math.isfinite(record_level[0]):
            return math.inf, (
                "the ledger's record-level figure has no public bound on the number of records "
                "(max_examples_per_client): its delta cannot be judged per record, so it meets no "
                "budget per example"
            )
        if adjacency == Adjacency.REPLACE_ONE.value:
            return ledger.replaced_record_epsilon()
        return record_level
    if ledger.privacy_unit != privacy_unit:
        return math.inf, (
            f"the ledger's epsilon is {ledger.privacy_unit}-level, the budget is {privacy_unit}-level: "
            f"a guarantee in one unit is not one in another (state the budget's unit as "
            f"{ledger.privacy_unit!r} if that is what it means)"
        )
    accounted = ledger.parameters.get("adjacency")
    if adjacency is not None and accounted != adjacency:
        return math.inf, (
            f"the ledger accounts {accounted} neighbours, the budget is stated {adjacency}: a "
            f"guarantee for one relation is not one for the other"
        )
    return ledger.epsilon, f"{ledger.describe_epsilon()}, {ledger.privacy_unit}-level"
