"""PiiScrubber: Examples in, Examples without the detected PII out (same splits, same tf.Example format)."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines.components.pii_scrubber import executor, spec
from privacy.minimization import KAnonymitySettings, ScrubSettings


class PiiScrubberSpec(ComponentSpec):
    """Input: ExampleGen's examples. Output: the scrubbed examples."""

    PARAMETERS = {
        spec.SETTINGS_KEY: ExecutionParameter(type=str),
        spec.GENERALIZATION_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {spec.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {spec.SCRUBBED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class PiiScrubber(base_component.BaseComponent):
    """Scrubs every split with `privacy.minimization.Scrubber`: declared identifying columns dropped, scanned
    string columns redacted, masked, replaced or keyed-hashed where Presidio's pattern recognizers (or a value of
    a dropped column) match. Wire StatisticsGen, Transform, Trainer and Evaluator to
    ``outputs['scrubbed_examples']``. The counts-only report is ``pii_scrub_report.json`` in that artifact.
    With ``generalization``, each split's quasi-identifiers are then generalized to reach its ``target_k``
    (`privacy.minimization.mondrian_generalize`: ranges and category sets, as strings; a split with fewer
    records than k is suppressed whole); the split is held in memory for that.

    ExampleGen's own output still holds the raw records, as the source CSV does: protect the pipeline root as
    the source data is protected.

    Raises:
        ValueError: at construction, for an invalid setting (the message names it).
    """

    SPEC_CLASS = PiiScrubberSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self, *, examples: types.BaseChannel, settings: ScrubSettings, generalization: KAnonymitySettings | None = None
    ):
        super().__init__(
            spec=PiiScrubberSpec(
                examples=examples,
                scrub_settings=settings.to_json(),
                generalization=generalization.to_json() if generalization is not None else None,
                scrubbed_examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
