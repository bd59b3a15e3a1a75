"""Private Evaluator executor: the privacy values first, then TFX's Evaluator (TFMA) checks everything."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import tensorflow_model_analysis as tfma
from absl import logging
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, path_utils, proto_utils

from pipelines import privacy_ledger
from pipelines.components.private_evaluator import audit, canary_audit, coverage, lineage, spec
from privacy.compared import compared
from privacy.decision import DecisionRelease

SUMMARY_FORMAT = "ppml.evaluation_summary/1"
# Custom properties of the ModelBlessing artifact.
GATE_PASSED = "privacy_gate_passed"  # int 1/0: epsilon and audit within their bounds
GATE_REASON = "privacy_gate_reason"  # string: why the privacy checks passed or failed
DECISION_RELEASE_FILE = "ppml_decision_release.json"
"""In the Model artifact (not the pushed serving directory): the push decision's one release, kept 0600."""
OUTSIDE_THE_GUARANTEE = (
    "membership-inference audit (AUC, mean member loss): an internal diagnostic computed from the training "
    "records themselves, not covered by epsilon; its bound (--max-membership-auc) DECIDES THE PUSH from these "
    "exact statistics, so the push decision is private only in its noisy-accuracy part",
    "exact utility metrics (TFMA's, e.g. binary_accuracy, auc): computed without noise on the held-out split's "
    "private rows, for the reader only; they decide nothing (the noisy accuracy decides, inside epsilon)",
    "encrypted-inference gate (--encrypted-check, when the pipeline runs it): its decision agreement and "
    "accuracy difference are exact statistics of the eval split's first rows (and its input bounds are read "
    "from them unless declared); they DECIDE THE PUSH and its blessing stores them in ML Metadata, not "
    "covered by epsilon",
    "schema-valid records: a held-out record the model cannot score counts as a wrong prediction (inside the "
    "noisy count), but a run that fails earlier on a malformed record (Transform, TFMA) is outside epsilon",
    "n, the number of training privacy units (records, users or clients): treated as public; it is in the "
    "ledger and sets the sampling probability q = B / n (a PATE ledger holds none: its epsilon does not use n)",
)
"""What the evaluation publishes outside the model's guarantee, labelled in its summary and in the report."""


class Executor(evaluator_executor.Executor):
    """Computes epsilon (from the ledger) and the membership audit, then runs TFX's Evaluator.

    The values are written into the EvalConfig's ``DpEpsilon``, ``MembershipInferenceAuc`` (and ``DpDelta``,
    ``NoisyAccuracy``) metric configs, so TFMA reports them and checks their thresholds: the model is blessed
    only if every threshold passes. The push decision is `privacy.decision`'s noisy held-out accuracy,
    released with the noise the ledger reserved (-inf when it reserved none); exact utility metrics
    decide nothing (`spec.gate_settings` refuses thresholds on them). A model without a ledger gets
    epsilon = inf, which no budget admits; so does a model that carries statistics its ledger does not
    cover (`coverage.artifact_problems`: analyzer outputs neither private nor declared public, exact or
    seeded preprocessing, records that differ from the ledger's, adapted Keras preprocessing layers) or a
    delta >= 1/n. A delta close to 1/n is a warning in the summary. With the gate's ``audit_canaries`` the
    privacy audits (`canary_audit`: a copy of the training run, and one full-batch step) run first: a measured
    lower bound above the epsilon claimed for an audited run (accounting inconsistent), or an audit that cannot
    run, sets epsilon to inf too.
    """

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        eval_config = tfma.EvalConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
        settings = spec.gate_settings(eval_config)
        model_spec = next(m for m in eval_config.model_specs if not m.is_baseline)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        serving_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))

        epsilon, ledger, ledger_note = _epsilon(serving_dir, settings)
        problems, warnings = _coverage(serving_dir, ledger, settings.privacy_unit)
        lineage_problems, lineage_warnings = _lineage(settings, model.id, ledger)
        problems, warnings = problems + lineage_problems, warnings + lineage_warnings
        if problems:
            epsilon = math.inf
            ledger_note = "the model carries statistics of its training data that no epsilon covers"
        audit_checks, audit_figures = [], {}
        if settings.audit_canaries is not None:  # canary-augmented copies of the training run, then discarded
            audit_checks, audit_figures = canary_audit.audit_checks(ledger, settings.audit_canaries)
            failed = [check["reason"] for check in audit_checks if not check["passed"]]
            if failed:
                epsilon, ledger_note = math.inf, "; ".join(failed)
        delta = 1.0 if ledger is None else ledger.delta
        nonmember_splits = json_utils.loads(
            exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY) or "null"
        ) or ["eval"]
        examples = input_dict[standard_component_specs.EXAMPLES_KEY]
        membership = audit.audit_saved_model(
            serving_dir,
            member_files=_split_files(examples, [settings.member_split]),
            nonmember_files=_split_files(examples, nonmember_splits),
            label_key=model_spec.label_key,
            prediction_key=model_spec.prediction_key or None,
            signature=model_spec.signature_name or "serving_default",
            max_examples=settings.max_audit_examples,
        )
        decision = _push_decision(
            serving_dir,
            ledger,
            settings,
            _split_files(examples, nonmember_splits),
            model_spec,
            release_path=os.path.join(model.uri, DECISION_RELEASE_FILE),
        )
        logging.info("Privacy gate: epsilon %s (%s); %s", epsilon, ledger_note, membership.format_text())
        for warning in warnings:
            logging.warning("Privacy gate: %s", warning)

        _set_values(
            eval_config,
            {
                spec.DP_EPSILON: epsilon,
                spec.MEMBERSHIP_AUC: membership.auc,
                spec.DP_DELTA: delta,
                spec.NOISY_ACCURACY: decision["noisy_accuracy"] if decision else None,
            },
            model_spec.name,
        )
        exec_properties = dict(exec_properties)
        exec_properties[standard_component_specs.EVAL_CONFIG_KEY] = proto_utils.proto_to_json(eval_config)
        super().Do(input_dict, output_dict, exec_properties)

        evaluation_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.EVALUATION_KEY])
        checks = [
            _check("epsilon", epsilon, settings.epsilon_budget, ledger_note),
            _coverage_check(problems),
            *audit_checks,
            *(
                [_check("delta", delta, settings.delta_budget, "the ledger's: accountant + additive + cut-off")]
                if settings.delta_budget is not None
                else []
            ),
            _check(
                "membership_inference_auc",
                membership.auc,
                settings.max_membership_auc,
                f"loss-threshold attack, {settings.member_split} vs {', '.join(nonmember_splits)}; an internal "
                f"diagnostic, not covered by epsilon, whose exact bound decides the push",
            ),
            *(
                [
                    _check(
                        spec.NOISY_ACCURACY,
                        decision["noisy_accuracy"],
                        settings.min_accuracy,
                        decision["note"],
                        at_least=True,
                    )
                ]
                if decision
                else []
            ),
        ]
        summary = _summary(evaluation_uri, model, ledger, membership, checks, settings)
        summary.update(
            warnings=warnings,
            outside_the_guarantee=outside_the_guarantee(ledger),
            lineage_check=(
                f"ML Metadata {settings.metadata_path}"
                if settings.metadata_path
                else f"skipped, as declared: {settings.lineage_unchecked}"
                if settings.lineage_unchecked
                else "not possible (no ML Metadata path): nothing is blessed"
            ),
            push_decision=None
            if decision is None
            else {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in decision.items()},
        )
        summary.update(audit_figures)
        io_utils.write_string_file(
            os.path.join(evaluation_uri, spec.SUMMARY_FILE), json.dumps(summary, indent=2, allow_nan=False)
        )
        if output_dict.get(standard_component_specs.BLESSING_KEY):
            blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
            passed = all(c["passed"] for c in checks)
            blessing.set_int_custom_property(GATE_PASSED, int(passed))
            blessing.set_string_custom_property(GATE_REASON, "; ".join(c["reason"] for c in checks))
            if math.isfinite(epsilon):
                blessing.set_float_custom_property(privacy_ledger.EPSILON, privacy_ledger.mlmd_upper_bound(epsilon))
                blessing.set_float_custom_property(privacy_ledger.DELTA, privacy_ledger.mlmd_upper_bound(delta))
            blessing.set_float_custom_property(spec.MEMBERSHIP_AUC, membership.auc)
            if decision and math.isfinite(decision["noisy_accuracy"]):
                blessing.set_float_custom_property(spec.NOISY_ACCURACY, decision["noisy_accuracy"])
        logging.info("Privacy gate: %s", "; ".join(c["reason"] for c in checks))


def _epsilon(serving_dir: str, settings: spec.GateSettings) -> tuple[float, privacy_ledger.PrivacyLedger | None, str]:
    """(epsilon, ledger, note); epsilon is inf when there is no valid ledger or it does not bound the
    budget's unit and relation (`spec.budget_epsilon`), and the note says why."""
    try:
        ledger = privacy_ledger.read_ledger(serving_dir)
    except privacy_ledger.LedgerError as err:
        return math.inf, None, f"the privacy ledger is invalid: {err}"
    epsilon, note = spec.budget_epsilon(ledger, settings.privacy_unit, settings.budget_adjacency)
    return epsilon, ledger, note


def _push_decision(
    serving_dir: str, ledger, settings: spec.GateSettings, files: list[str], model_spec, release_path: str | None = None
) -> dict[str, Any] | None:
    """The push decision's release on the held-out ``files`` (None without a ``min_accuracy``): the noisy accuracy
    drawn with the noise the ledger reserved, or -inf when it reserved none (no decision within the guarantee).

    The ledger accounts one release per model: with a ``release_path`` (in the Model artifact, never pushed) the
    first release is kept there (mode 0600) with a digest of the held-out records, a re-evaluation on the same
    records returns it unchanged (post-processing), and one on other records is refused (-inf)."""
    if settings.min_accuracy is None:
        return None
    if ledger is None or ledger.decision is None:
        return {
            "noisy_accuracy": -math.inf,
            "note": "the model's ledger reserves no budget for the push decision "
            "(train with decision_epsilon), so no utility decision can be "
            "made within the guarantee",
        }
    digest = _records_digest(files) if release_path else None
    kept = _kept_release(release_path)
    if kept is not None and kept["records_sha256"] != digest:
        return {
            "noisy_accuracy": -math.inf,
            "note": "the model's one accounted push-decision release was already "
            "drawn on other held-out records; a second draw would spend "
            "budget its ledger does not hold",
        }
    if kept is not None:
        release = DecisionRelease(**kept["release"])
    else:
        correct, rows = audit.correct_predictions(
            serving_dir,
            files,
            label_key=model_spec.label_key,
            prediction_key=model_spec.prediction_key or None,
            signature=model_spec.signature_name or "serving_default",
        )
        release = ledger.decision.release(correct, rows)
        if release_path:
            _keep_release(release_path, {"records_sha256": digest, "release": release.to_dict()})
    return {
        "noisy_accuracy": release.accuracy,
        "noisy_correct": release.correct,
        "noisy_rows": release.rows,
        "noise_std": ledger.decision.std,
        "epsilon_alone": _finite(ledger.parts["decision"]),
        "reused": kept is not None,
        "note": f"the push decision: {release.correct} of {release.rows} held-out rows correct, noisy (Gaussian "
        f"noise of std {ledger.decision.std:.3g} on each count, reserved in the ledger and composed "
        f"into its epsilon{'; the release kept from the first evaluation' if kept else ''})",
    }


def _records_digest(files: list[str]) -> str:
    """SHA-256 over the held-out files' bytes, in sorted order (kept privately with the release)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(os.path.basename(path).encode() + b"\0")
        with fileio.open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _kept_release(path: str | None) -> dict[str, Any] | None:
    if not path or not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def _keep_release(path: str, record: dict[str, Any]) -> None:
    """Writes ``record`` to ``path`` readable by its owner only (0600 on a local file system)."""
    if "://" in path:
        io_utils.write_string_file(path, json.dumps(record))
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(record, handle)


def outside_the_guarantee(ledger: privacy_ledger.PrivacyLedger | None) -> list[str]:
    """`OUTSIDE_THE_GUARANTEE`, then what the trainer listed in its ledger (``parameters['outside_guarantee']``:
    e.g. the Federated Trainer's evaluation split and the classes read from the labels), but n or N, listed above."""
    listed = {} if ledger is None else ledger.parameters.get("outside_guarantee") or {}
    listed = {name: why for name, why in listed.items() if name not in privacy_ledger.PUBLIC_SIZE_NAMES}
    return list(OUTSIDE_THE_GUARANTEE) + [f"{name} (listed by the trainer): {why}" for name, why in listed.items()]


def _coverage(serving_dir: str, ledger, privacy_unit: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the model as an artifact (none without a ledger: its epsilon is inf anyway); delta
    is judged in the budget's ``privacy_unit``."""
    if ledger is None:
        return [], []
    problems, warnings = coverage.delta_findings(ledger, privacy_unit)
    return coverage.artifact_problems(serving_dir, ledger) + problems, warnings


def _lineage(settings: spec.GateSettings, model_id: int, ledger) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the lineage check; without an ML Metadata path it fails closed (a problem) unless
    the settings declare it skipped with a reason (then a warning)."""
    if ledger is None:
        return [], []
    if settings.metadata_path:
        return lineage.lineage_problems(lineage.open_store(settings.metadata_path), model_id, ledger), []
    if settings.lineage_unchecked:
        return [], [
            f"lineage not checked, as declared ({settings.lineage_unchecked}): a Transform output upstream "
            f"of the model that its ledger does not account would go unseen"
        ]
    return [
        "lineage not checked: the gate has no ML Metadata path (privacy_metrics(metadata_path=...)), so a "
        "Transform output upstream of the model could be unaccounted; give it the path, or declare the check "
        "skipped with privacy_metrics(lineage_unchecked=REASON)"
    ], []


def _coverage_check(problems: list[str]) -> dict[str, Any]:
    reason = (
        "coverage: every statistic the model carries is covered by its ledger"
        if not problems
        else "coverage: " + "; ".join(problems)
    )
    return {"name": "coverage", "value": len(problems), "bound": 0, "passed": not problems, "reason": reason}


def _set_values(eval_config, values: dict[str, float], model_name: str) -> None:
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            name = next((n for n, c in spec.CLASS_NAMES.items() if c == metric.class_name), None)
            if name is not None:
                config = json.loads(metric.config) if metric.config else {}
                config.update(name=name, value=values[name], model_name=model_name)
                metric.config = json.dumps(config)


def _split_files(examples: list[Any], splits: list[str]) -> list[str]:
    files = []
    for split in splits:
        for uri in artifact_utils.get_split_uris(examples, split):
            files += [os.path.join(uri, name) for name in sorted(fileio.listdir(uri))]
    return files


def _check(name: str, value: float, bound: float, context: str, at_least: bool = False) -> dict[str, Any]:
    passed = value >= bound if at_least else value <= bound
    shown, bound_shown = compared(value, bound)
    relation = (">=" if passed else "<") if at_least else ("<=" if passed else ">")
    return {
        "name": name,
        "value": value if math.isfinite(value) else None,
        "bound": bound,
        "passed": passed,
        "reason": f"{name} {shown} {relation} {bound_shown} ({context})",
    }


def _summary(evaluation_uri: str, model, ledger, membership, checks, settings) -> dict[str, Any]:
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append(
                {
                    "metric": failure.metric_key.name,
                    "value": _metric_value(failure.metric_value),
                    "message": failure.message or _failure_message(failure),
                }
            )
    metrics = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if not metrics_for_slice.slice_key.single_slice_keys:  # the overall slice
            for entry in metrics_for_slice.metric_keys_and_values:
                metrics[entry.key.name] = _metric_value(entry.value)
    return {
        "format": SUMMARY_FORMAT,
        "blessed": bool(validation.validation_ok),
        "model_uri": model.uri,
        "metrics": metrics,
        "failures": failures,
        "privacy_checks": checks,
        "epsilon_budget": settings.epsilon_budget,
        "privacy_unit": settings.privacy_unit,
        "budget_adjacency": settings.budget_adjacency,
        "max_membership_auc": settings.max_membership_auc,
        "delta_budget": settings.delta_budget,
        "ledger": None
        if ledger is None
        else {
            "epsilon": _finite(ledger.epsilons),
            "delta": ledger.delta,
            "accountant": ledger.epsilon_accountant,
            "mechanism": ledger.mechanism,
            "privacy_unit": ledger.privacy_unit,
            "parts": {k: _finite(v) for k, v in ledger.parts.items()} if ledger.preprocessing is not None else None,
        },
        "membership_audit": membership.to_dict(),
    }


def _finite(epsilons: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v if v is not None and math.isfinite(v) else None for k, v in epsilons.items()}


def _failure_message(failure) -> str:
    """A TFMA ValidationFailure as text, e.g. 'binary_accuracy 0.81 does not meet >= 0.85'. Each bound is shown
    beside the value as `compared` prints the two for it, so every pair orders as the numbers do; where two bounds
    need different widths of the value, each pair gets its own: 0.0166238438608439 in [0.016623843590135228,
    0.01662384786565881] shows as 'm does not meet 0.016624 >= 0.01662384 and 0.01662 <= 0.0166238'."""
    name = failure.metric_key.name
    threshold = failure.metric_threshold.value_threshold
    value = failure.metric_value.double_value.value if failure.metric_value.HasField("double_value") else None
    bounds = [
        (op, getattr(threshold, field).value)
        for op, field in ((">=", "lower_bound"), ("<=", "upper_bound"))
        if threshold.HasField(field)
    ]
    if not bounds:
        shown, rule = "n/a" if value is None else f"{value:.4g}", str(failure.metric_threshold).replace("\n", " ")
        return f"{name} {shown} does not meet {rule}"
    pairs = [("n/a", f"{bound:g}") if value is None else compared(value, bound) for _, bound in bounds]
    if len({shown for shown, _ in pairs}) == 1:
        return f"{name} {pairs[0][0]} does not meet " + " and ".join(
            f"{op} {text}" for (op, _), (_, text) in zip(bounds, pairs, strict=True)
        )
    return f"{name} does not meet " + " and ".join(
        f"{shown} {op} {text}" for (op, _), (shown, text) in zip(bounds, pairs, strict=True)
    )


def _metric_value(value) -> float | None:
    if value.HasField("double_value"):
        number = value.double_value.value
        return number if math.isfinite(number) else None
    return None
