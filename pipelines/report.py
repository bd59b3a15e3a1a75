"""The report of a pipeline run, read from ML Metadata and the files its artifacts point to.

`load_report` takes the latest run of a pipeline in a pipeline root and follows its Trainer,
Evaluator, encrypted-inference gate (when the run has one) and Pusher executions: the Model artifact
(its MLMD custom properties and its privacy ledger), the Private Evaluator's summary (TFMA metrics,
gate checks, membership audit), the gate's figures and the PushedModel. It imports neither TensorFlow
nor TFX, so ``ppml report`` answers in about a second.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipelines import privacy_ledger
from pipelines.components.encrypted_gate import spec as encrypted_spec
from pipelines.components.private_evaluator import spec as gate_spec
from privacy.encrypted.verify import VerificationReport

REPORT_FORMAT = "ppml.pipeline_report/1"
NON_PRIVATE_SUFFIX = "_non_private"
"""Stage-id suffix of the non-private Trainer and Evaluator of a side-by-side comparison."""
ENCRYPTED_GATE = "EncryptedInferenceGate"
"""Stage id of the encrypted-inference gate between Evaluator and Pusher."""
METADATA_FILE = "metadata.sqlite"
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
_STATE_NAMES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}


class ReportError(RuntimeError):
    """The pipeline root holds no run that can be reported, or its records disagree."""


@dataclasses.dataclass(frozen=True)
class PipelineReport:
    """What one run of the pipeline produced and decided.

    Attributes:
      pipeline_name, run_id: which run.
      stages: {stage id: execution state ('complete', 'cached', 'failed', ...)} in that run.
      model_uri, model_id: the Model artifact (URI and MLMD id).
      model_properties: its privacy custom properties in MLMD (see `pipelines.privacy_ledger`).
      ledger: its privacy ledger, or None when it was trained without privacy.
      evaluation: the Private Evaluator's summary (metrics, checks, audit), or None if it did not run.
      evaluation_uri: the ModelEvaluation artifact (TFMA's metrics and validation result), or None.
      pushed_uri: where the Pusher copied the model, or None when it did not push.
      encrypted_check: the encrypted-inference gate's record (``blessed``, ``reason``, ``settings``
        and the ``report`` figures, None when it did not predict), or None when the run had no gate.
    """

    pipeline_name: str
    run_id: str
    stages: dict[str, str]
    model_uri: str
    model_id: int
    model_properties: dict[str, Any]
    ledger: privacy_ledger.PrivacyLedger | None
    evaluation: dict[str, Any] | None
    evaluation_uri: str | None
    pushed_uri: str | None
    encrypted_check: dict[str, Any] | None = None

    @property
    def blessed(self) -> bool | None:
        return None if self.evaluation is None else bool(self.evaluation["blessed"])

    @property
    def utility(self) -> dict[str, float | None]:
        """TFMA metrics of the overall slice, without the privacy gate's two."""
        metrics = (self.evaluation or {}).get("metrics", {})
        return {k: v for k, v in sorted(metrics.items()) if k not in gate_spec.CLASS_NAMES}

    def to_dict(self) -> dict[str, Any]:
        privacy = None
        if self.ledger is not None:
            privacy = (
                self.ledger.privacy_report().to_dict()
                if self.ledger.mechanism == privacy_ledger.DP_SGD
                else {"epsilon": self.ledger.epsilons, "delta": self.ledger.delta}
            )
            privacy.update(
                mechanism=self.ledger.mechanism,
                l2_norm_clip=self.ledger.parameters.get("l2_norm_clip"),
                privacy_unit=self.ledger.privacy_unit,
                truncated_batches=self.ledger.parameters.get("truncated_batches"),
            )
            privacy["outside_guarantee"] = self.ledger.parameters.get("outside_guarantee") or {}
            if self.ledger.mechanism == privacy_ledger.DP_FEDAVG:
                privacy.update(
                    num_clients=self.ledger.parameters["dataset_size"],  # public: see outside_guarantee
                    record_level=self.ledger.parameters.get("record_level"),
                )
            if self.ledger.mechanism == privacy_ledger.PATE:
                privacy.update(
                    analysis=self.ledger.parameters.get("analysis"), aggregation=pate_aggregation(self.ledger)
                )
            privacy["artifact"] = artifact_privacy(self.ledger)
        evaluation = self.evaluation or {}
        return {
            "format": REPORT_FORMAT,
            "pipeline": self.pipeline_name,
            "run_id": self.run_id,
            "stages": dict(self.stages),
            "model": {"uri": self.model_uri, "mlmd_id": self.model_id, "properties": _finite(self.model_properties)},
            "privacy": privacy,
            "utility": self.utility,
            "membership_audit": evaluation.get("membership_audit"),
            "gate": None
            if self.evaluation is None
            else {
                "blessed": self.blessed,
                "evaluation_uri": self.evaluation_uri,
                "epsilon_budget": evaluation.get("epsilon_budget"),
                "delta_budget": evaluation.get("delta_budget"),
                "privacy_unit": evaluation.get("privacy_unit"),
                "max_membership_auc": evaluation.get("max_membership_auc"),
                "privacy_checks": evaluation.get("privacy_checks"),
                "failures": evaluation.get("failures"),
                "warnings": evaluation.get("warnings", []),
                "push_decision": evaluation.get("push_decision"),
                "privacy_audit": evaluation.get("privacy_audit"),
                "implementation_audit": evaluation.get("implementation_audit"),
            },
            "outside_the_guarantee": evaluation.get("outside_the_guarantee", []),
            "encrypted_check": self.encrypted_check,
            "pushed": {"pushed": self.pushed_uri is not None, "uri": self.pushed_uri},
        }

    def format_text(self) -> str:
        lines = []
        if self.ledger is None:
            lines += [
                "No privacy ledger: the model was trained without differential privacy, so no epsilon "
                "bounds what it reveals about its training data."
            ]
        elif self.ledger.mechanism == privacy_ledger.DP_SGD:
            if self.ledger.preprocessing is not None or self.ledger.decision is not None:
                lines += artifact_lines(self.ledger) + [
                    "",
                    "The training part alone (the model's guarantee is the composed one above):",
                    "",
                ]
            lines += [
                self.ledger.privacy_report().format_text(),
                f"  {'clipping norm C':<18} {self.ledger.parameters['l2_norm_clip']:g} (per-example L2)",
            ]
            if self.ledger.parameters.get("truncated_batches") is not None:
                lines.append(
                    f"  {'batches cut':<18} {self.ledger.parameters['truncated_batches']} (truncated Poisson "
                    f"sampling, counted when drawn: prefetched batches included; not covered by "
                    f"epsilon, see outside the guarantee)"
                )
        else:
            eps = ", ".join(f"{k.upper()} {v:.4f}" for k, v in self.ledger.epsilons.items() if v is not None)
            lines += [
                f"{self.ledger.mechanism} privacy ledger: {self.ledger.privacy_unit}-level epsilon {eps} at "
                f"delta {self.ledger.delta:g}"
            ]
            if self.ledger.mechanism == privacy_ledger.DP_FEDAVG:
                label, count = f"{self.ledger.privacy_unit}s N", self.ledger.parameters["dataset_size"]
                lines.append(f"  {label:<18} {count} (treated as public: see outside the guarantee)")
            if self.ledger.mechanism == privacy_ledger.PATE:
                lines += pate_lines(self.ledger)
            record_level = self.ledger.record_level_epsilon()
            if record_level is not None:
                lines.append(f"  one record        epsilon {_number(record_level[0])} ({record_level[1]})")
            if self.ledger.preprocessing is not None or self.ledger.decision is not None:
                lines += [""] + artifact_lines(self.ledger)
        if self.ledger is not None and self.evaluation is None:  # else the Evaluator's list below holds them
            lines += [
                f"  outside the guarantee: {name}: {why}"
                for name, why in (self.ledger.parameters.get("outside_guarantee") or {}).items()
            ]
        lines += [
            "",
            f"Pipeline {self.pipeline_name}, run {self.run_id}",
            "  " + ", ".join(f"{stage} {state}" for stage, state in self.stages.items()),
            f"  model              {self.model_uri} (MLMD artifact {self.model_id})",
        ]
        props = self.model_properties
        if privacy_ledger.EPSILON in props:
            lines.append(
                f"  MLMD properties    epsilon {props[privacy_ledger.EPSILON]:.4f}, "
                f"delta {props[privacy_ledger.DELTA]:g}, private {props.get(privacy_ledger.PRIVATE)}"
            )
        if self.evaluation is None:
            lines += ["", "Not evaluated: the Evaluator did not complete in this run."]
            return "\n".join(lines)
        evaluation = self.evaluation
        count = self.utility.get("example_count")
        lines += [
            "",
            f"Utility (TFMA, overall slice{f', {count:.0f} held-out examples' if count else ''}; exact, "
            f"outside the guarantee: for the reader, they decide nothing)",
        ]
        lines += [f"  {name:<22} {_number(value)}" for name, value in self.utility.items() if name != "example_count"]
        decision = evaluation.get("push_decision")
        if decision and decision.get("noisy_rows") is not None:
            lines += [
                f"  noisy_accuracy         {_number(decision['noisy_accuracy'])}  (the push decision, inside "
                f"epsilon: {decision['noisy_correct']} of {decision['noisy_rows']} rows correct, noisy counts, "
                f"noise std {decision['noise_std']:.3g})"
            ]
        if evaluation.get("membership_audit"):
            from privacy.auditing import MembershipAudit

            lines += [""] + MembershipAudit.from_dict(evaluation["membership_audit"]).format_text().splitlines()
        lines += ["", f"Evaluator: {'BLESSED' if self.blessed else 'NOT BLESSED'}"]
        lines += [f"  {'pass' if c['passed'] else 'FAIL'}  {c['reason']}" for c in evaluation.get("privacy_checks", [])]
        lines += [f"  warn  {w}" for w in evaluation.get("warnings", [])]
        lines += [
            f"  FAIL  {f['message']}"
            for f in evaluation.get("failures", [])
            if f["metric"] not in gate_spec.CLASS_NAMES
        ]
        if self.encrypted_check is not None:
            lines += [""] + _encrypted_check_lines(self.encrypted_check)
        lines.append(
            f"Pusher: pushed to {self.pushed_uri}"
            if self.pushed_uri
            else "Pusher: not pushed (only blessed models are pushed)"
        )
        if evaluation.get("outside_the_guarantee"):
            lines += ["", "Outside the guarantee (published, but not covered by epsilon):"]
            lines += [f"  - {item}" for item in evaluation["outside_the_guarantee"]]
        return "\n".join(lines)


def pate_aggregation(ledger: privacy_ledger.PrivacyLedger) -> dict[str, Any]:
    """A PATE ledger's aggregation: its settings and public counts, and the events the guarantee composes."""
    params = ledger.parameters
    return {
        key: params.get(key)
        for key in (
            "aggregator",
            "teachers",
            "classes",
            "queries",
            "answered",
            "private_split",
            "public_split",
            "partition",
            "smoothed_release",
            "student_training",
        )
    } | {"events": [{"event": str(event), "count": count} for event, count in privacy_ledger.pate_events(params)]}


def pate_lines(ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    """The text report's PATE block: which analysis, the aggregation and its charged events."""
    params = ledger.parameters
    aggregator = ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in params["aggregator"].items()
        if k != "mechanism"
    )
    return [
        f"  analysis           {params.get('analysis')}",
        f"  aggregation        {params['aggregator']['mechanism']} ({aggregator}): {params['teachers']} teachers "
        f"on split {params.get('private_split')!r} ({params.get('partition')}), {params['queries']} queries of "
        f"split {params.get('public_split')!r}, {params['answered']} answered (the student's labels)",
        *[f"  charged            {count} x {event}" for event, count in privacy_ledger.pate_events(params)],
        *_student_lines(params.get("student_training")),
        *_smoothed_lines(ledger),
    ]


def _student_lines(training: dict[str, Any] | None) -> list[str]:
    """How the student was trained (older ledgers do not say: no line)."""
    if not training:
        return []
    how = (
        f"self-training (confidence {training['confidence']:g}, {training['rounds']} rounds): "
        f"{training['answered_labels']} answered + {training['pseudo_labels']} pseudo-labelled queries"
        if training.get("method") == "self-training"
        else f"supervised on {training['answered_labels']} answered queries"
    )
    return [f"  student            {how} (post-processing: no privacy cost)"]


def _smoothed_lines(ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    stored = ledger.parameters.get("smoothed_release")
    if not stored:
        return []
    smoothed = ledger.smoothed_release()
    if smoothed is None:
        return [f"  smoothed release   not made ({stored.get('refused')})"]
    labels = ", ".join(f"{k.upper()} {_number(v)}" for k, v in ledger.parts["training"].items() if v is not None)
    return [
        f"  labels only        epsilon {labels} (data-independent, without the smoothed release)",
        f"  smoothed data-dependent: epsilon {smoothed.epsilon(ledger.accountant_delta):.4f} at delta "
        f"{ledger.accountant_delta:g} (order {smoothed.settings.order:g}, beta {smoothed.settings.beta:g}, "
        f"sigma_ss {smoothed.settings.sigma_ss:g}) [{stored.get('analysis')}]: a noisy estimate of a tighter "
        f"bound, NOT the guarantee",
    ]


def artifact_privacy(ledger: privacy_ledger.PrivacyLedger) -> dict[str, Any]:
    """The whole artifact's epsilon and delta, and each part's epsilon alone (JSON values)."""
    out = {
        "epsilon": _finite(ledger.epsilons),
        "delta": ledger.delta,
        "accountant_delta": ledger.accountant_delta,
        "additive_delta": ledger.additive_delta,
        **ledger.added_deltas,
        "accountant": ledger.epsilon_accountant,
        "parts": {name: _finite(eps) for name, eps in ledger.parts.items()},
        "preprocessing": None,
        "decision": None if ledger.decision is None else ledger.decision.to_dict(),
    }
    if ledger.preprocessing is not None:
        account = ledger.preprocessing.account
        budget = account.coverage.budget if account.coverage is not None else None
        out["preprocessing"] = {
            "releases": [
                {
                    "name": m.name,
                    "analyzer": m.analyzer,
                    "mechanism": m.mechanism,
                    "noise_multiplier": m.noise_multiplier,
                }
                for m in account.mechanisms
            ],
            "public": [d.to_dict() for d in account.declarations],
            "configured_epsilon": None if budget is None else budget.get("epsilon"),
            "problems": account.problems(),
        }
    return out


def artifact_lines(ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    """The artifact block of the text report: composed epsilon, then each part alone."""

    def shown(epsilons):
        return ", ".join(f"{k.upper()} {_number(v)}" for k, v in epsilons.items() if v is not None) or "n/a"

    parts = ledger.parts
    delta = f"{ledger.delta:g}"
    added = [
        (name, value)
        for name, value in (
            ("partition selection", ledger.additive_delta),
            ("noise cut-off", ledger.cutoff_delta),
            ("noisy padding's clamp", ledger.clamp_delta),
        )
        if value
    ]
    if added:
        delta += f" (accountant {ledger.accountant_delta:g}" + "".join(f" + {n} {v:.3g}" for n, v in added) + ")"
    lines = [
        "Privacy of the model as a whole: what it carries and what decided its push, composed in one accountant",
        f"  epsilon            {shown(ledger.epsilons)} at delta {delta}",
    ]
    if ledger.preprocessing is not None:
        lines += _preprocessing_lines(ledger.preprocessing.account, shown(parts["preprocessing"]))
    if ledger.decision is not None:
        lines.append(
            f"  push decision      noisy held-out accuracy (Gaussian std {ledger.decision.std:.3g} on each "
            f"count, reserved by the trainer); alone: epsilon {shown(parts['decision'])}"
        )
    lines += [
        f"  training           {ledger.mechanism} alone: epsilon {shown(parts['training'])}",
        "  (composed, the parts spend less than the sum of their epsilons)",
    ]
    if ledger.preprocessing is not None:
        account = ledger.preprocessing.account
        lines += [f"  declared public    {d.name}: {d.reason}" for d in account.declarations]
        lines += [f"  NOT COVERED        {p}" for p in account.problems()]
    return lines


def _preprocessing_lines(account, epsilon_alone: str) -> list[str]:
    analyzers: dict[str, int] = {}
    for m in account.mechanisms:
        analyzers[m.analyzer] = analyzers.get(m.analyzer, 0) + 1
    budget = account.coverage.budget if account.coverage is not None else None
    configured = f"; calibrated to epsilon {budget['epsilon']:g} alone" if budget else ""
    return [
        f"  preprocessing      {len(account.mechanisms)} private release(s) "
        f"({', '.join(f'{k} x{v}' for k, v in sorted(analyzers.items())) or 'none'}){configured}; "
        f"alone: epsilon {epsilon_alone}"
    ]


def _encrypted_check_lines(check: dict[str, Any]) -> list[str]:
    settings = check["settings"]
    lines = [
        f"Encrypted inference gate: {'BLESSED' if check['blessed'] else 'NOT BLESSED'} (3-party secret "
        f"sharing, {settings['frac_bits']} fractional bits, up to {settings['num_examples']} "
        f"{settings['split']} examples)"
    ]
    if check["report"] is not None:
        lines += ["  " + line for line in VerificationReport(**check["report"]).format_text().splitlines()]
    lines.append(f"  {'pass' if check['blessed'] else 'FAIL'}  {check['reason']}")
    return lines


def comparison_text(private: PipelineReport, non_private: PipelineReport) -> str:
    """The private and non-private branches of one ``--compare-non-private`` run, side by side."""
    if private.run_id != non_private.run_id:
        raise ReportError(f"runs {private.run_id} and {non_private.run_id} differ: compare branches of one run")

    def epsilon(report: PipelineReport) -> str:
        if report.ledger is None:
            return "none (no ledger)"
        return f"{report.ledger.epsilon:.4f} (delta {report.ledger.delta:g})"

    def audit(report: PipelineReport, key: str) -> str:
        value = ((report.evaluation or {}).get("membership_audit") or {}).get(key)
        return _number(value)

    rows = [("epsilon", epsilon(private), epsilon(non_private))]
    for name in sorted(set(private.utility) | set(non_private.utility)):
        if name != "example_count":
            rows.append((name, _number(private.utility.get(name)), _number(non_private.utility.get(name))))
    rows += [
        ("membership-inference AUC", audit(private, "auc"), audit(non_private, "auc")),
        ("blessed", str(private.blessed), str(non_private.blessed)),
        ("pushed", str(private.pushed_uri is not None), str(non_private.pushed_uri is not None)),
    ]
    lines = [
        f"Side by side: {private.pipeline_name}, run {private.run_id}",
        "",
        f"  {'':<26} {'private (DP-SGD)':>20} {'non-private':>20}",
    ]
    lines += [f"  {name:<26} {a:>20} {b:>20}" for name, a, b in rows]
    return "\n".join(lines)


def load_report(
    pipeline_root: str,
    *,
    pipeline_name: str | None = None,
    non_private_variant: bool = False,
    run_id: str | None = None,
    trainer: str = "Trainer",
    evaluator: str = "Evaluator",
    encrypted_gate: str = ENCRYPTED_GATE,
    pusher: str = "Pusher",
) -> PipelineReport:
    """Reads the latest run (that includes ``trainer``) of the pipeline whose ML Metadata is
    ``pipeline_root/metadata.sqlite``.

    Args:
      pipeline_name: needed only when several pipelines share the metadata file.
      non_private_variant: report the non-private Trainer and Evaluator of a side-by-side run.
      run_id: report this run instead of the latest.
      trainer, evaluator, encrypted_gate, pusher: stage ids to follow.

    Raises:
      ReportError: no metadata, no completed Trainer in the latest run, or records that disagree.
    """
    path = os.path.join(pipeline_root, METADATA_FILE)
    if not os.path.exists(path):
        raise ReportError(f"no ML Metadata at {path}: run the pipeline with --pipeline-root {pipeline_root} first")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    name = _pipeline_name(store, pipeline_name)
    if non_private_variant:
        trainer, evaluator = trainer + NON_PRIVATE_SUFFIX, evaluator + NON_PRIVATE_SUFFIX
    run, stages = _latest_run(store, name, trainer, run_id)
    train = stages.get(trainer)
    if train is None or train.last_known_state not in _DONE:
        state = "not run" if train is None else _STATE_NAMES.get(train.last_known_state, "?")
        raise ReportError(f"the latest run ({run.name}) of {name} has no completed {trainer} ({state})")
    [model] = _outputs(store, train, "model")
    blessing_model = evaluation = evaluation_uri = None
    evaluate = stages.get(evaluator)
    if evaluate is not None and evaluate.last_known_state in _DONE:
        [evaluation_artifact] = _outputs(store, evaluate, "evaluation")
        [blessing_model] = _inputs(store, evaluate, "model")
        evaluation_uri = evaluation_artifact.uri
        evaluation = _read_json(os.path.join(evaluation_uri, gate_spec.SUMMARY_FILE))
    if blessing_model is not None and blessing_model.id != model.id:
        raise ReportError(f"{evaluator} evaluated model {blessing_model.id}, but {trainer} produced {model.id}")
    encrypted_check = None
    gate = stages.get(encrypted_gate)
    if not non_private_variant and gate is not None and gate.last_known_state in _DONE:
        if _inputs(store, gate, encrypted_spec.MODEL_KEY)[0].id != model.id:
            raise ReportError(f"{encrypted_gate} checked another model than {trainer}'s {model.id}")
        [gate_blessing] = _outputs(store, gate, encrypted_spec.BLESSING_KEY)
        encrypted_check = _read_json(os.path.join(gate_blessing.uri, encrypted_spec.REPORT_FILE))
    pushed_uri = None
    push = stages.get(pusher)
    if push is not None and push.last_known_state in _DONE and _inputs(store, push, "model")[0].id == model.id:
        [pushed] = _outputs(store, push, "pushed_model")
        if _property(pushed, "pushed") == 1:
            pushed_uri = _property(pushed, "pushed_destination")
    ledger_uri = _property(model, privacy_ledger.PRIVACY_LEDGER_URI)
    ledger = privacy_ledger.read_ledger_file(ledger_uri) if ledger_uri else None
    return PipelineReport(
        pipeline_name=name,
        run_id=run.name,
        stages={stage: _STATE_NAMES.get(e.last_known_state, "?") for stage, e in stages.items()},
        model_uri=model.uri,
        model_id=model.id,
        model_properties=privacy_ledger.model_properties(model),
        ledger=ledger,
        evaluation=evaluation,
        evaluation_uri=evaluation_uri,
        pushed_uri=pushed_uri,
        encrypted_check=encrypted_check,
    )


def _pipeline_name(store, wanted: str | None) -> str:
    names = sorted(c.name for c in store.get_contexts_by_type("pipeline"))
    if wanted is not None:
        if wanted not in names:
            raise ReportError(f"no pipeline named {wanted!r} in this metadata (it has {names})")
        return wanted
    if len(names) != 1:
        raise ReportError(f"the metadata holds pipelines {names}: choose one with --pipeline-name")
    return names[0]


def _latest_run(store, pipeline_name: str, trainer: str, run_id: str | None):
    """The most recent run of the pipeline that includes ``trainer`` (or the run ``run_id``), and
    {stage: its execution in that run}."""
    prefix = pipeline_name + "."
    node_of = {}
    for context in store.get_contexts_by_type("node"):
        if context.name.startswith(prefix):
            for execution in store.get_executions_by_context(context.id):
                node_of[execution.id] = context.name[len(prefix) :]
    runs = []
    for run in store.get_contexts_by_type("pipeline_run"):
        if run_id is not None and run.name != run_id:
            continue
        executions = [e for e in store.get_executions_by_context(run.id) if e.id in node_of]
        if any(node_of[e.id] == trainer for e in executions):
            runs.append((max(e.id for e in executions), run, executions))
    if not runs:
        which = f"run {run_id}" if run_id is not None else "recorded run"
        raise ReportError(f"no {which} of pipeline {pipeline_name} includes the stage {trainer}")
    _, run, executions = max(runs, key=lambda item: item[0])
    stages = {node_of[e.id]: e for e in sorted(executions, key=lambda e: e.id)}
    return run, stages


def _artifacts(store, execution, key: str, event_types) -> list:
    events = [
        e
        for e in store.get_events_by_execution_ids([execution.id])
        if e.type in event_types and e.path.steps and e.path.steps[0].key == key
    ]
    return store.get_artifacts_by_id([e.artifact_id for e in events])


def _outputs(store, execution, key: str) -> list:
    return _artifacts(store, execution, key, (metadata_store_pb2.Event.OUTPUT,))


def _inputs(store, execution, key: str) -> list:
    return _artifacts(store, execution, key, (metadata_store_pb2.Event.INPUT,))


def _property(artifact, name: str):
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _finite(props: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in props.items()}
