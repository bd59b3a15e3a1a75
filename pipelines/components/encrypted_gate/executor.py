"""The gate's executor: load examples and model, compare encrypted with plaintext predictions, bless or not."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from pipelines.components.encrypted_gate import spec
from privacy.encrypted import (
    FixedPoint,
    InProcessCluster,
    InputOutOfBounds,
    LogitsOutOfRange,
    ModelRangeError,
    ResultRejected,
    UnsupportedModelError,
    import_keras_model,
)
from privacy.encrypted.model.ranges import LOGITS_BITS
from privacy.encrypted.verify import verify_model


class Executor(base_executor.BaseExecutor):
    """Writes BLESSED or NOT_BLESSED, the report JSON and the figures as custom properties."""

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        settings = spec.GateSettings.from_exec_properties(exec_properties)
        blessing = artifact_utils.get_single_instance(output_dict[spec.BLESSING_KEY])
        model_artifact = artifact_utils.get_single_instance(input_dict[spec.MODEL_KEY])
        blessing.set_string_custom_property("current_model", model_artifact.uri)
        blessing.set_int_custom_property("current_model_id", model_artifact.id)
        upstream = input_dict.get(spec.MODEL_BLESSING_KEY) or []
        if upstream:
            upstream_blessing = artifact_utils.get_single_instance(upstream)
            if not upstream_blessing.get_int_custom_property("blessed"):
                return _decide(blessing, settings, None, "the upstream blessing is NOT_BLESSED")
            blessed_id = upstream_blessing.get_int_custom_property("current_model_id")
            if blessed_id != model_artifact.id:
                return _decide(
                    blessing,
                    settings,
                    None,
                    f"the upstream blessing is for model {blessed_id}, not for this model ({model_artifact.id})",
                )
        serving_dir = path_utils.serving_model_path(
            model_artifact.uri, path_utils.is_old_model_artifact(model_artifact)
        )
        model = _graph_only(tf.keras.models.load_model(serving_dir))
        try:
            plan = import_keras_model(model)
        except UnsupportedModelError as err:
            return _decide(blessing, settings, None, f"the model cannot run encrypted: {err}")
        x, y = _load_examples(input_dict, settings, tuple(plan.architecture.input_shape))
        shape = plan.architecture.input_shape
        bounds = settings.bounds(shape, x)
        labels_only = ""
        try:
            try:
                cluster = InProcessCluster(plan, bounds, FixedPoint(settings.frac_bits), allow_logits=True)
            except LogitsOutOfRange:
                # Released logits could wrap the ring, labels cannot: the model can be served with the
                # labels-only release policy, so the gate checks and blesses it on that basis.
                cluster = InProcessCluster(plan, bounds, FixedPoint(settings.frac_bits))
                labels_only = (
                    f"labels only: the logits can need {cluster.ranges.output_bits} bits for these input "
                    f"bounds, more than the {LOGITS_BITS} a ring element holds, so the model is checked "
                    f"for the labels-only release policy (serve it without --allow-logits); "
                )
            report = verify_model(
                model, x, y, cluster, batch_size=settings.batch_size, output="label" if labels_only else "logits"
            )
        except ModelRangeError as err:
            return _decide(
                blessing, settings, None, f"the model cannot run encrypted within the ring's headroom: {err}"
            )
        except InputOutOfBounds as err:
            return _decide(blessing, settings, None, f"the examples exceed the declared input range: {err}")
        except ResultRejected as err:
            return _decide(blessing, settings, None, f"the encrypted predictions were rejected: {err}")
        thresholds = {"min_agreement": settings.min_agreement, "max_accuracy_drop": settings.max_accuracy_drop}
        passed = report.passes(**thresholds)
        reason = f"{labels_only}{report.reason(**thresholds)}"
        reason = reason if passed else f"failed: {reason}"
        _decide(blessing, settings, report, reason, passed=passed, checked=cluster.ranges.describe_check())


def _graph_only(model):
    """The model from its inputs to its outputs. A TFX module file attaches the Transform layer to the
    model it exports (``model.tft_layer``), which then counts among the model's layers but is not part
    of its graph; the gate runs that graph (on transformed features), so it leaves such layers out."""
    if type(model).__name__ == "Sequential" or not getattr(model, "inputs", None):
        return model
    return tf.keras.Model(model.inputs, model.outputs, name=model.name)


def _decide(
    blessing, settings: spec.GateSettings, report, reason: str, *, passed: bool = False, checked: str | None = None
) -> None:
    """Records the decision; `checked` (`RangePlan.describe_check`): the bounds the servers would check, and why."""
    blessing.set_int_custom_property("blessed", int(passed))
    blessing.set_int_custom_property(spec.GATE_PASSED, int(passed))
    blessing.set_string_custom_property(spec.GATE_REASON, reason)
    blessing.set_string_custom_property(spec.GATE_PRIVACY, spec.PRIVACY_NOTE)
    figures = report.to_dict() if report is not None else {}
    if report is not None:
        blessing.set_string_custom_property(spec.GATE_OUTPUT, report.output)
    if checked is not None:
        blessing.set_string_custom_property(spec.GATE_INPUT_CHECK, checked)
    for name in spec.FIGURES:
        if figures.get(name) is not None:
            blessing.set_float_custom_property(f"encrypted_{name}", float(figures[name]))
    io_utils.write_string_file(
        os.path.join(blessing.uri, spec.REPORT_FILE),
        json.dumps(
            {
                "blessed": passed,
                "reason": reason,
                "privacy": spec.PRIVACY_NOTE,
                "settings": dict(settings.exec_properties(), feature_keys=list(settings.feature_keys)),
                "report": figures or None,
                "input_check": checked,
            },
            indent=2,
        ),
    )
    with fileio.open(os.path.join(blessing.uri, "BLESSED" if passed else "NOT_BLESSED"), "w") as fh:
        fh.write("")


def _load_examples(input_dict, settings: spec.GateSettings, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The first `num_examples` examples of the split: stacked (transformed) features and labels.

    Raises:
        ValueError: if the split has no examples or a feature is missing (named).
    """
    examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
    pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], settings.split))
    records = list(tf.data.TFRecordDataset(fileio.glob(pattern), compression_type="GZIP").take(settings.num_examples))
    if not records:
        raise ValueError(f"split {settings.split!r} of {examples.uri} has no examples")
    transform = input_dict.get(spec.TRANSFORM_GRAPH_KEY) or []
    if transform:
        import tensorflow_transform as tft

        tft_output = tft.TFTransformOutput(artifact_utils.get_single_instance(transform).uri)
        parsed = tf.io.parse_example(tf.stack(records), tft_output.raw_feature_spec())
        features = tft_output.transform_features_layer()(parsed)
    else:
        feature_spec = {k: tf.io.FixedLenFeature([], tf.float32) for k in settings.feature_keys}
        feature_spec[settings.label_key] = tf.io.FixedLenFeature([], tf.int64)
        features = tf.io.parse_example(tf.stack(records), feature_spec)
    missing = [k for k in (*settings.feature_keys, settings.label_key) if k not in features]
    if missing:
        raise ValueError(f"features {missing} are not in the (transformed) examples; have {sorted(features)}")
    columns = [tf.reshape(tf.cast(features[k], tf.float64), [len(records), -1]).numpy() for k in settings.feature_keys]
    x = np.concatenate(columns, axis=1).reshape((len(records),) + input_shape)
    y = tf.reshape(features[settings.label_key], [-1]).numpy().astype(np.int64)
    return x, y
