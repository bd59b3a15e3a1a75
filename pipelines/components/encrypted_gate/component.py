"""EncryptedInferenceGate: after Trainer/Evaluator, before Pusher."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines.components.encrypted_gate import executor, spec


class EncryptedInferenceGateSpec(ComponentSpec):
    """Inputs: eval examples, the trained model, optionally its Transform graph and an upstream
    blessing (e.g. the Evaluator's). Output: a ModelBlessing for the Pusher."""

    PARAMETERS = {
        "feature_keys": ExecutionParameter(type=str),
        "label_key": ExecutionParameter(type=str),
        "split": ExecutionParameter(type=str, optional=True),
        "num_examples": ExecutionParameter(type=int, optional=True),
        "min_agreement": ExecutionParameter(type=float, optional=True),
        "max_accuracy_drop": ExecutionParameter(type=float, optional=True),
        "frac_bits": ExecutionParameter(type=int, optional=True),
        "batch_size": ExecutionParameter(type=int, optional=True),
        "input_lo": ExecutionParameter(type=float, optional=True),
        "input_hi": ExecutionParameter(type=float, optional=True),
        "input_check": ExecutionParameter(type=str, optional=True),
        "half_open": ExecutionParameter(type=int, optional=True),
        "input_frac_bits": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        spec.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        spec.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        spec.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph, optional=True),
        spec.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {spec.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing)}


class EncryptedInferenceGate(base_component.BaseComponent):
    """Runs the model encrypted (3-party secret sharing, `privacy.encrypted`) and in plaintext on
    ``num_examples`` examples and blesses it only if decisions agree on at least ``min_agreement`` of
    them and accuracies differ by at most ``max_accuracy_drop`` points (and the upstream blessing, if
    given, is blessed). A model whose values could leave the ring's headroom for the input bounds
    (``input_lo``/``input_hi``, or the examples' range; at the inputs' precision ``input_frac_bits`` if given;
    the parties check them as ``input_check`` says, by default widened to one comparison where that at most
    doubles each feature's grid values and is proven safe, else exactly, and the record says which), or whose
    encrypted results are rejected, is NOT_BLESSED with the reason. Wire the Pusher to ``outputs['blessing']``
    to block unblessed pushes.

    The figures go into the blessing artifact: custom properties ``encrypted_<figure>`` and the JSON
    report ``encrypted_inference.json``.

    Raises:
        ValueError: at construction, for an invalid setting (the message names it).
    """

    SPEC_CLASS = EncryptedInferenceGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        *,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        feature_keys: list[str],
        label_key: str,
        transform_graph: types.BaseChannel | None = None,
        model_blessing: types.BaseChannel | None = None,
        **settings,
    ):
        """Args: the channels, and the fields of `spec.GateSettings` by keyword."""
        gate = spec.GateSettings(feature_keys=tuple(feature_keys), label_key=label_key, **settings)
        super().__init__(
            spec=EncryptedInferenceGateSpec(
                examples=examples,
                model=model,
                transform_graph=transform_graph,
                model_blessing=model_blessing,
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                **gate.exec_properties(),
            )
        )
