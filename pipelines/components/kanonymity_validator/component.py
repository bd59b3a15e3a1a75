"""KAnonymityValidator: after the PII scrubber, beside ExampleValidator."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines.components.kanonymity_validator import executor, spec
from privacy.minimization import KAnonymitySettings


class KAnonymityValidatorSpec(ComponentSpec):
    """Input: examples. Output: ExampleAnomalies (one Anomalies proto and one JSON report per split)."""

    PARAMETERS = {spec.SETTINGS_KEY: ExecutionParameter(type=str)}
    INPUTS = {spec.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {spec.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}


class KAnonymityValidator(base_component.BaseComponent):
    """Computes k (and distinct l) of each split for the declared quasi-identifiers and raises a ``k_anonymity``
    anomaly (severity ERROR) where k is below ``target_k``, as ExampleValidator raises schema anomalies. It
    reports class sizes, never quasi-identifier values. k-anonymity is no privacy guarantee (linkage attacks);
    the report says so and points to DP.

    Raises:
        ValueError: at construction, for an invalid setting (the message names it).
    """

    SPEC_CLASS = KAnonymityValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, settings: KAnonymitySettings):
        super().__init__(
            spec=KAnonymityValidatorSpec(
                examples=examples,
                kanonymity_settings=settings.to_json(),
                anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
            )
        )
