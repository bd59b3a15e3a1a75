"""The privacy gate's TFMA metrics: values computed before the TFMA run, checked by TFMA.

TFMA metrics see extracts (examples, predictions, labels) of the evaluation split only, while
epsilon lives in the model's ledger and the membership audit needs the *training* examples too.
So the Private Evaluator's executor computes both values and writes them into these metrics'
configs; TFMA then reports them with the utility metrics and checks their thresholds with the same
machinery. Used from a plain Evaluator (no value), they fail with an error saying so.
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types

from pipelines.components.private_evaluator.spec import DP_DELTA, DP_EPSILON, MEMBERSHIP_AUC, NOISY_ACCURACY


class _ValueFromPrivateEvaluator(metric_types.Metric):
    """A per-model value that the Private Evaluator computes; the same on every slice."""

    def __init__(self, name: str, value: float | None = None, model_name: str | None = None, **details: Any):
        """Args: name: metric name. value, model_name: set by the Private Evaluator for its candidate
        model. details: the metric's settings (kept in its config)."""
        details.pop("class_name", None)
        super().__init__(
            _value_computations,
            name=name,
            value=value,
            model_name=model_name,
            class_name=type(self).__name__,
            **details,
        )

    @property
    def compute_confidence_interval(self) -> bool:
        return False


class DpEpsilon(_ValueFromPrivateEvaluator):
    """Epsilon of the model's privacy ledger at the ledger's delta; infinite without a ledger."""

    def __init__(self, name: str = DP_EPSILON, **kwargs: Any):
        super().__init__(name, **kwargs)


class DpDelta(_ValueFromPrivateEvaluator):
    """Delta of the model's privacy ledger (the accountant's plus what partition selection adds); 1 without one."""

    def __init__(self, name: str = DP_DELTA, **kwargs: Any):
        super().__init__(name, **kwargs)


class MembershipInferenceAuc(_ValueFromPrivateEvaluator):
    """ROC AUC of the loss-threshold membership-inference attack, training vs held-out examples: an internal
    diagnostic, computed from the training records and not covered by epsilon."""

    def __init__(self, name: str = MEMBERSHIP_AUC, **kwargs: Any):
        super().__init__(name, **kwargs)


class NoisyAccuracy(_ValueFromPrivateEvaluator):
    """The push decision's release: held-out accuracy with the noise the trainer reserved in the ledger (inside
    the guarantee); -inf when the ledger reserved none."""

    def __init__(self, name: str = NOISY_ACCURACY, **kwargs: Any):
        super().__init__(name, **kwargs)


def _value_computations(
    name: str,
    value: float | None,
    model_name: str | None,
    class_name: str,
    model_names=None,
    output_names=None,
    example_weighted: bool = False,
    **unused_details,
) -> metric_types.MetricComputations:
    if value is None:
        raise ValueError(
            f"TFMA metric {class_name} ({name}) gets its value from "
            f"pipelines.components.private_evaluator.PrivateEvaluator; use that component "
            f"instead of tfx Evaluator"
        )
    # Only the candidate carries the value: a baseline model's ledger is not looked at.
    models = [model_name] if model_name is not None else (model_names or [""])
    keys = [
        metric_types.MetricKey(name=name, model_name=model, output_name=output_name, example_weighted=example_weighted)
        for model in models
        for output_name in output_names or [""]
    ]
    return [
        metric_types.MetricComputation(
            keys=keys,
            preprocessors=[
                metric_types.StandardMetricInputsPreprocessor(
                    include_filter={constants.EXAMPLE_WEIGHTS_KEY: {}}, include_default_inputs=False
                )
            ],
            combiner=_ConstantCombiner(keys, float(value)),
        )
    ]


class _ConstantCombiner(beam.CombineFn):
    """Emits ``value`` for every key, whatever the slice's examples."""

    def __init__(self, keys: list[metric_types.MetricKey], value: float):
        self._keys = keys
        self._value = value

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, accumulator: int, element: Any) -> int:
        return accumulator + 1

    def merge_accumulators(self, accumulators: Iterable[int]) -> int:
        return sum(accumulators)

    def extract_output(self, accumulator: int) -> dict[metric_types.MetricKey, float]:
        return {key: self._value for key in self._keys}
