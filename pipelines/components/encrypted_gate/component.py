"""EncryptedInferenceGate: after Trainer/Evaluator, before Pusher."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from pipelines.components.encrypted_gate import executor, spec


class EncryptedInferenceGate(base_component.BaseComponent):
    """Runs the model encrypted (3-party secret sharing, `privacy.encrypted`) and in plaintext on
    ``num_examples`` examples and blesses it only if decisions agree on at least ``min_agreement`` of
    them and accuracies differ by at most ``max_accuracy_drop`` points (and the upstream blessing, if
    given, is blessed). Wire the Pusher to ``outputs['blessing']`` to block unblessed pushes.

    The figures go into the blessing artifact: custom properties ``encrypted_<figure>`` and the JSON
    report ``encrypted_inference.json``.

    Raises:
        ValueError: at construction, for an invalid setting (the message names it).
    """

    SPEC_CLASS = spec.EncryptedInferenceGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, model: types.BaseChannel, feature_keys: list[str],
                 label_key: str, transform_graph: types.BaseChannel | None = None,
                 model_blessing: types.BaseChannel | None = None, **settings):
        """Args: the channels, and the fields of `spec.GateSettings` by keyword."""
        gate = spec.GateSettings(feature_keys=tuple(feature_keys), label_key=label_key, **settings)
        super().__init__(spec=spec.EncryptedInferenceGateSpec(
            examples=examples, model=model, transform_graph=transform_graph, model_blessing=model_blessing,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing), **gate.exec_properties()))
