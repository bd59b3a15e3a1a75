"""The PiiScrubber and KAnonymityValidator executors on adversarial tf.Examples (no pipeline): numbers,
multi-valued and non-UTF-8 text, declared columns that no record has, a record lacking a quasi-identifier."""

import json
import os

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from pipelines.components.kanonymity_validator import spec as validator_spec
from pipelines.components.kanonymity_validator.executor import Executor as Validator
from pipelines.components.pii_scrubber import spec
from pipelines.components.pii_scrubber.executor import Executor as ScrubberExecutor
from privacy.minimization import KAnonymitySettings, ScrubSettings

ROWS = 6
NOTE = "Zo\u00eb: mail ann@example.com".encode("latin-1")  # not UTF-8


def _raw(tmp_path, empty_eval=False):
    raw = standard_artifacts.Examples()
    raw.uri, raw.split_names = str(tmp_path / "raw"), '["train", "eval"]' if empty_eval else '["train"]'
    if empty_eval:
        os.makedirs(os.path.join(raw.uri, "Split-eval"))
        with tf.io.TFRecordWriter(os.path.join(raw.uri, "Split-eval", "data.gz"), options="GZIP"):
            pass
    os.makedirs(os.path.join(raw.uri, "Split-train"))
    with tf.io.TFRecordWriter(os.path.join(raw.uri, "Split-train", "data.gz"), options="GZIP") as writer:
        for i in range(ROWS):
            example = tf.train.Example()
            feature = example.features.feature
            feature["phone"].int64_list.value.append(5558675309)  # an all-digit CSV column is INT
            feature["emails"].bytes_list.value.extend([b"ann@example.com", b"bob@example.com"])
            feature["note"].bytes_list.value.append(NOTE)
            feature["text"].bytes_list.value.append(b"call 555-867-5309")
            if i:
                feature["age"].int64_list.value.append(30 + i // 3)  # the first record lacks 'age'
            writer.write(example.SerializeToString())
    return raw


def _scrub(tmp_path, settings, empty_eval=False):
    raw = _raw(tmp_path, empty_eval)
    out = standard_artifacts.Examples()
    out.uri = str(tmp_path / "scrubbed")
    ScrubberExecutor().Do(
        {spec.EXAMPLES_KEY: [raw]}, {spec.SCRUBBED_EXAMPLES_KEY: [out]}, {spec.SETTINGS_KEY: settings.to_json()}
    )
    path = os.path.join(out.uri, "Split-train", "data_tfrecord-00000-of-00001.gz")
    records = [
        tf.train.Example.FromString(r)
        for r in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator()
    ]
    with open(os.path.join(out.uri, spec.REPORT_FILE)) as fh:
        return out, records, open(path, "rb").read(), json.load(fh)


def test_multi_valued_and_non_utf8_text_is_scrubbed_and_numbers_are_reported_unscanned(tmp_path):
    _, records, _, report = _scrub(tmp_path, ScrubSettings(operator="replace"))
    feature = records[0].features.feature
    assert list(feature["emails"].bytes_list.value) == [b"<EMAIL_ADDRESS>"] * 2
    assert list(feature["note"].bytes_list.value) == ["Zo\u00eb: mail <EMAIL_ADDRESS>".encode("latin-1")]
    assert list(feature["text"].bytes_list.value) == [b"call <PHONE_NUMBER>"]
    assert report["entities"] == {
        "emails": {"EMAIL_ADDRESS": 2 * ROWS},
        "note": {"EMAIL_ADDRESS": ROWS},
        "text": {"PHONE_NUMBER": ROWS},
    }
    assert report["unscanned_values"] == {"age": ROWS - 1, "phone": ROWS}


def test_a_declared_column_holding_numbers_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="column 'phone' holds numbers"):
        _scrub(tmp_path, ScrubSettings(columns=(("phone", "hash"),)))


@pytest.mark.parametrize(
    "settings, absent",
    [
        (ScrubSettings(columns=(("txt", "hash"),)), "['txt']"),
        (ScrubSettings(columns=(("text", "hash"),), drop_columns=("emial",)), "['emial']"),
    ],
)
def test_a_declared_column_that_no_record_has_is_an_error_naming_it(tmp_path, settings, absent):
    with pytest.raises(
        ValueError,
        match=rf"column\(s\) {absent.replace('[', '.').replace(']', '.')} are in no "
        r"record of split train \(columns: \['age', 'emails'",
    ):
        _scrub(tmp_path, settings)


def test_an_empty_split_is_scrubbed_to_an_empty_split_not_refused_for_declared_columns(tmp_path):
    out, records, _, report = _scrub(
        tmp_path, ScrubSettings(columns=(("text", "hash"),), drop_columns=("emails",)), empty_eval=True
    )
    assert len(records) == ROWS and report["rows"] == ROWS
    path = os.path.join(out.uri, "Split-eval", "data_tfrecord-00000-of-00001.gz")
    assert list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator()) == []


def test_the_validator_counts_a_record_lacking_a_quasi_identifier_as_missing(tmp_path):
    scrubbed, _, _, _ = _scrub(tmp_path, ScrubSettings())
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    Validator().Do(
        {validator_spec.EXAMPLES_KEY: [scrubbed]},
        {validator_spec.ANOMALIES_KEY: [anomalies]},
        {validator_spec.SETTINGS_KEY: KAnonymitySettings(("age",), target_k=2).to_json()},
    )
    with open(os.path.join(anomalies.uri, "Split-train", validator_spec.REPORT_FILE)) as fh:
        report = json.load(fh)
    assert (report["k"], report["classes"], report["smallest_classes"]) == (1, 3, [1, 2, 3])
