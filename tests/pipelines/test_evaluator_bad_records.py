"""One malformed held-out record never stops the push decision: it counts as a row predicted wrong, so the exact
counts of D and of D plus that record still differ by at most (0, 1), as the decision's sensitivity assumes."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines.components.private_evaluator import audit


def _example(x: list[float] | None, label: list[int] | None) -> bytes:
    feature = {}
    if x is not None:
        feature["x"] = tf.train.Feature(float_list=tf.train.FloatList(value=x))
    if label is not None:
        feature["y"] = tf.train.Feature(int64_list=tf.train.Int64List(value=label))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _save_model(path: str) -> None:
    """A serving signature on serialized tf.Examples: p = sigmoid(4 x), x a required float."""
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32)}

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return {"p": tf.sigmoid(4.0 * tf.io.parse_example(examples, spec)["x"])}

    model = Model()
    tf.saved_model.save(model, path, signatures={"serving_default": model.serve})


def _write(path: str, records: list[bytes]) -> str:
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model"))
    _save_model(path)
    return path


@pytest.mark.parametrize(
    "bad",
    [
        _example([1.0], None),
        _example([1.0], [1, 0]),
        _example(None, [1]),
        _example([1.0, 2.0], [1]),
        b"\xffnot a tf.Example",
    ],
    ids=["no label", "two labels", "no feature", "two feature values", "undecodable"],
)
@pytest.mark.parametrize("position", [0, 300], ids=["first", "last"])
def test_a_malformed_record_counts_as_a_wrong_row(model_dir, tmp_path, bad, position):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=300)
    good = [_example([x], [int(x > 0.3)]) for x in xs]  # the model predicts x > 0, so some rows are wrong
    expected = int(np.sum((xs > 0) == (xs > 0.3)))
    d = _write(str(tmp_path / "d.tfrecord"), good)
    with_bad = _write(str(tmp_path / "bad.tfrecord"), good[:position] + [bad] + good[position:])
    assert audit.correct_predictions(model_dir, [d], label_key="y", prediction_key="p") == (expected, 300)
    assert audit.correct_predictions(model_dir, [with_bad], label_key="y", prediction_key="p") == (expected, 301)
    membership = audit.audit_saved_model(
        model_dir, member_files=[d], nonmember_files=[with_bad], label_key="y", prediction_key="p"
    )
    assert 0.4 < membership.auc < 0.6  # the bad record is left out of the audit, which still runs
