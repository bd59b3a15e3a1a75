"""LocalRandomizer: after ExampleGen, before anything that should see only randomized columns."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines.components.local_randomizer import executor, spec


class LocalRandomizerSpec(ComponentSpec):
    """Input: ExampleGen's examples; output: the same splits with the declared columns randomized."""

    PARAMETERS = {spec.COLUMNS_KEY: ExecutionParameter(type=str)}
    INPUTS = {spec.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {spec.RANDOMIZED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class LocalRandomizer(base_component.BaseComponent):
    """Replaces each declared column of every record by a local DP report (`spec` says what that covers);
    `pipelines.components.local_randomizer.estimate.estimate_column` turns a split back into frequency
    estimates with intervals.

    Raises:
      ValueError: at construction, naming the column and setting that is invalid.
    """

    SPEC_CLASS = LocalRandomizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, columns: dict):
        """Args: ExampleGen's examples, and ``columns``: {name: {"mechanism", "epsilon", "k"}}."""
        super().__init__(
            spec=LocalRandomizerSpec(
                examples=examples,
                columns=spec.columns_json(spec.parse_columns(columns)),
                randomized_examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
