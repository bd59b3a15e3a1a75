"""Predictions of a TFX model on tf.Example files: the membership-inference audit and the push decision's counts.

The model is called through its serving signature on serialized raw tf.Examples (so the Transform
graph inside it applies, as at serving time). The audit's loss is the cross-entropy of its predicted
probabilities against the label read from each example (the attack itself is
`privacy.auditing.loss_threshold_audit`); `correct_predictions` counts the examples whose most likely
class (probability >= 0.5 for one output) is the label, the exact counts the push decision noises.
"""

from __future__ import annotations

import numpy as np

from privacy.auditing import MembershipAudit, loss_threshold_audit, per_example_cross_entropy

BATCH_SIZE = 256


def audit_saved_model(serving_model_dir: str, *, member_files: list[str], nonmember_files: list[str],
                      label_key: str, prediction_key: str | None = None, signature: str = "serving_default",
                      max_examples: int | None = None) -> MembershipAudit:
    """Runs the loss-threshold attack on the model in ``serving_model_dir``.

    Args:
      member_files: TFRecord files (GZIP or plain) of the examples the model was trained on.
      nonmember_files: TFRecord files of held-out examples.
      label_key: feature holding the integer label.
      prediction_key: output of the signature holding probabilities; may be omitted when the
        signature has a single output.
      max_examples: use at most this many examples of each kind (the first ones).
    """
    predict = _predictor(serving_model_dir, label_key, prediction_key, signature)

    def losses(files: list[str]) -> np.ndarray:
        return per_example_cross_entropy(*predict(files, max_examples))

    return loss_threshold_audit(losses(member_files), losses(nonmember_files))


def correct_predictions(serving_model_dir: str, files: list[str], *, label_key: str, prediction_key: str | None = None,
                        signature: str = "serving_default") -> tuple[int, int]:
    """(correct predictions, examples) of the model on every example of ``files`` (exact: private counts)."""
    labels, probabilities = _predictor(serving_model_dir, label_key, prediction_key, signature)(files, None)
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        predicted = np.argmax(probabilities, axis=1)
    else:
        predicted = (probabilities.reshape(len(labels)) >= 0.5).astype(int)
    return int(np.sum(predicted == labels.astype(int))), int(len(labels))


def _predictor(serving_model_dir: str, label_key: str, prediction_key: str | None, signature: str):
    """A function of (files, max_examples) giving (labels, predicted probabilities) of the model's signature."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    model = tf.saved_model.load(serving_model_dir)
    if signature not in model.signatures:
        raise ValueError(f"the model in {serving_model_dir} has no signature {signature!r} "
                         f"(it has {sorted(model.signatures)})")
    fn = model.signatures[signature]
    inputs = list(fn.structured_input_signature[1])
    if len(inputs) != 1:
        raise ValueError(f"signature {signature!r} must take one input (serialized tf.Examples), takes {inputs}")

    def predict(files: list[str], max_examples: int | None) -> tuple[np.ndarray, np.ndarray]:
        serialized = _read_records(files, max_examples)
        if not serialized:
            raise ValueError(f"no examples in {files}")
        labels = np.array([_label(record, label_key) for record in serialized])
        probabilities = []
        for start in range(0, len(serialized), BATCH_SIZE):
            outputs = fn(**{inputs[0]: tf.constant(serialized[start:start + BATCH_SIZE])})
            probabilities.append(_pick(outputs, prediction_key, signature).numpy())
        return labels, np.concatenate(probabilities)

    return predict


def _read_records(files: list[str], limit: int | None) -> list[bytes]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    records: list[bytes] = []
    for path in sorted(files):
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        for record in dataset.as_numpy_iterator():
            if limit is not None and len(records) >= limit:
                return records
            records.append(record)
    return records


def _label(record: bytes, label_key: str) -> float:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    feature = tf.train.Example.FromString(record).features.feature.get(label_key)
    values = None if feature is None else (feature.int64_list.value or feature.float_list.value)
    if not values or len(values) != 1:
        raise ValueError(f"every audited example needs exactly one value of label {label_key!r}")
    return values[0]


def _pick(outputs: dict, prediction_key: str | None, signature: str):
    if prediction_key is not None:
        if prediction_key not in outputs:
            raise ValueError(f"signature {signature!r} has no output {prediction_key!r} (it has {sorted(outputs)})")
        return outputs[prediction_key]
    if len(outputs) != 1:
        raise ValueError(f"signature {signature!r} has outputs {sorted(outputs)}: set the ModelSpec's "
                         f"prediction_key to the one holding probabilities")
    return next(iter(outputs.values()))
