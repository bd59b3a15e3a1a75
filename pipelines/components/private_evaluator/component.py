"""Private Evaluator component: TFX's Evaluator with a privacy gate checked when the pipeline is built."""

from __future__ import annotations

from typing import Any

from tfx.components import Evaluator
from tfx.dsl.components.base import executor_spec

from pipelines.components.private_evaluator import executor, spec


class PrivateEvaluator(Evaluator):
    """TFX's Evaluator (same inputs, outputs and EvalConfig) whose blessing also needs privacy.

    The EvalConfig must contain `spec.privacy_metrics(...)`: upper bounds on the model's epsilon and
    on the membership-inference attack AUC, and with a ``min_accuracy`` a lower bound on the noisy held-out
    accuracy (the push decision, within the ledger's epsilon; thresholds on exact metrics are refused). The
    values are reported among the TFMA metrics of the ModelEvaluation artifact and checked by TFMA; the
    blessing also gets
    the custom properties ``privacy_gate_passed`` and ``privacy_gate_reason``, and the evaluation a
    ``ppml_evaluation.json`` summary.

    Raises:
      ValueError: at construction, when ``model`` or either privacy threshold is missing, a privacy-gate metric is
        given twice, or a gate setting is invalid (`spec.gate_settings`).
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, *, examples, model, eval_config, **kwargs: Any):
        """Takes `tfx.v1.components.Evaluator`'s arguments, by keyword; ``model`` and ``eval_config`` are required."""
        if model is None:
            raise ValueError("PrivateEvaluator needs the model to audit (model=trainer.outputs['model'])")
        spec.gate_settings(eval_config)
        super().__init__(examples=examples, model=model, eval_config=eval_config, **kwargs)
