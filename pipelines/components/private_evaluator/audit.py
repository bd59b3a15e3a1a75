"""Predictions of a TFX model on tf.Example files: the membership-inference audit and the push decision's counts.

The model is called through its serving signature on serialized raw tf.Examples (so the Transform
graph inside it applies, as at serving time). The audit's loss is the cross-entropy of its predicted
probabilities against the label read from each example (the attack itself is
`privacy.auditing.loss_threshold_audit`); `correct_predictions` counts the examples whose most likely
class (probability >= 0.5 for one output) is the label, the exact counts the push decision noises.
"""

from __future__ import annotations

import math

import numpy as np

from privacy.auditing import MembershipAudit, loss_threshold_audit, per_example_cross_entropy

BATCH_SIZE = 256


def audit_saved_model(
    serving_model_dir: str,
    *,
    member_files: list[str],
    nonmember_files: list[str],
    label_key: str,
    prediction_key: str | None = None,
    signature: str = "serving_default",
    max_examples: int | None = None,
) -> MembershipAudit:
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
        labels, probabilities, scored = predict(files, max_examples)
        if not scored.any():
            raise ValueError(f"the model scored none of the examples in {files}")
        return per_example_cross_entropy(labels[scored], probabilities[scored])

    return loss_threshold_audit(losses(member_files), losses(nonmember_files))


def correct_predictions(
    serving_model_dir: str,
    files: list[str],
    *,
    label_key: str,
    prediction_key: str | None = None,
    signature: str = "serving_default",
) -> tuple[int, int]:
    """(correct predictions, examples) of the model on every example of ``files`` (exact: private counts); an
    example it cannot score counts as a wrong prediction."""
    labels, probabilities, scored = _predictor(serving_model_dir, label_key, prediction_key, signature)(files, None)
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        predicted = np.argmax(probabilities, axis=1)
    else:
        predicted = (probabilities.reshape(len(labels)) >= 0.5).astype(int)
    return int(np.sum(scored & (predicted == np.nan_to_num(labels, nan=-1).astype(int)))), int(len(labels))


def _predictor(serving_model_dir: str, label_key: str, prediction_key: str | None, signature: str):
    """A function of (files, max_examples) giving (labels, predicted probabilities, scored) of the model's
    signature; ``scored`` is False (and the label or probabilities NaN) for a record it cannot score."""
    import tensorflow as tf

    model = tf.saved_model.load(serving_model_dir)
    if signature not in model.signatures:
        raise ValueError(
            f"the model in {serving_model_dir} has no signature {signature!r} (it has {sorted(model.signatures)})"
        )
    fn = model.signatures[signature]
    inputs = list(fn.structured_input_signature[1])
    if len(inputs) != 1:
        raise ValueError(f"signature {signature!r} must take one input (serialized tf.Examples), takes {inputs}")

    def scores(batch: list[bytes]) -> np.ndarray:
        return _pick(fn(**{inputs[0]: tf.constant(batch)}), prediction_key, signature).numpy()

    def predict(files: list[str], max_examples: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels, probabilities, scored): NaN label and probabilities where the model cannot score a record."""
        serialized = _read_records(files, max_examples)
        if not serialized:
            raise ValueError(f"no examples in {files}")
        labels = np.array([_label(record, label_key) for record in serialized], dtype=float)
        rows: list[np.ndarray | None] = []
        for start in range(0, len(serialized), BATCH_SIZE):
            batch = serialized[start : start + BATCH_SIZE]
            try:
                rows += list(scores(batch))
            except (tf.errors.InvalidArgumentError, UnicodeDecodeError):  # a bad record fails its batch: score each
                rows += [_score_or_none(scores, record) for record in batch]
        shape = next((np.shape(row) for row in rows if row is not None), ())
        probabilities = np.array([np.full(shape, np.nan) if row is None else row for row in rows], dtype=float)
        scored = ~np.isnan(labels) & ~np.isnan(probabilities.reshape(len(labels), -1)).any(axis=1)
        return labels, probabilities, scored

    return predict


def _score_or_none(scores, record: bytes) -> np.ndarray | None:
    import tensorflow as tf

    try:
        return scores([record])[0]
    except (tf.errors.InvalidArgumentError, UnicodeDecodeError):  # (undecodable bytes break the message)
        return None


def _read_records(files: list[str], limit: int | None) -> list[bytes]:
    import tensorflow as tf

    records: list[bytes] = []
    for path in sorted(files):
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        for record in dataset.as_numpy_iterator():
            if limit is not None and len(records) >= limit:
                return records
            records.append(record)
    return records


def _label(record: bytes, label_key: str) -> float:
    """The record's label; NaN without exactly one value (or an unparsable record)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        feature = tf.train.Example.FromString(record).features.feature.get(label_key)
    except DecodeError:
        return math.nan
    values = None if feature is None else (feature.int64_list.value or feature.float_list.value)
    return values[0] if values and len(values) == 1 else math.nan  # unreadable: scored as wrong


def _pick(outputs: dict, prediction_key: str | None, signature: str):
    if prediction_key is not None:
        if prediction_key not in outputs:
            raise ValueError(f"signature {signature!r} has no output {prediction_key!r} (it has {sorted(outputs)})")
        return outputs[prediction_key]
    if len(outputs) != 1:
        raise ValueError(
            f"signature {signature!r} has outputs {sorted(outputs)}: set the ModelSpec's "
            f"prediction_key to the one holding probabilities"
        )
    return next(iter(outputs.values()))
