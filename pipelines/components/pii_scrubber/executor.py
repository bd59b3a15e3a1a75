"""The scrubber's executor: read each split's tf.Examples, scrub them, write them in the same layout."""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from pipelines.components.pii_scrubber import spec
from privacy.minimization import Scrubber, ScrubSettings

OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"


class Executor(base_executor.BaseExecutor):
    """Writes the scrubbed splits, the report JSON and the report's counts as custom properties."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        settings = ScrubSettings.from_json(exec_properties[spec.SETTINGS_KEY])
        raw = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        scrubbed = artifact_utils.get_single_instance(output_dict[spec.SCRUBBED_EXAMPLES_KEY])
        splits = artifact_utils.decode_split_names(raw.split_names)
        scrubbed.split_names = raw.split_names
        scrubbed.span = raw.span
        examples_utils.set_payload_format(scrubbed, examples_utils.get_payload_format(raw))
        scrubber = Scrubber(settings)
        for split in splits:
            pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([raw], split))
            out_dir = artifact_utils.get_split_uri([scrubbed], split)
            fileio.makedirs(out_dir)
            with tf.io.TFRecordWriter(os.path.join(out_dir, OUTPUT_FILE), options="GZIP") as writer:
                for record in tf.data.TFRecordDataset(fileio.glob(pattern),
                                                      compression_type="GZIP").as_numpy_iterator():
                    example = tf.train.Example.FromString(record)
                    writer.write(_to_example(scrubber.scrub_record(_to_record(example))).SerializeToString())
        report = scrubber.report.to_dict()
        io_utils.write_string_file(os.path.join(scrubbed.uri, spec.REPORT_FILE), json.dumps(report, indent=2))
        for name in spec.REPORT_PROPERTIES:
            scrubbed.set_int_custom_property(f"pii_{name}", report[name])
        logging.info("PII scrubber: %d of %d records touched; entities per column: %s", report["rows_touched"],
                     report["rows"], report["entities"])


def _to_record(example: tf.train.Example) -> dict:
    """Feature name -> value: a str for one UTF-8 bytes value, else the feature's value list (kept as is)."""
    record = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if kind == "bytes_list" and len(values) == 1:
            try:
                record[name] = values[0].decode("utf-8")
                continue
            except UnicodeDecodeError:
                pass
        record[name] = (kind, values)
    return record


def _to_example(record: dict) -> tf.train.Example:
    example = tf.train.Example()
    for name, value in record.items():
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode("utf-8"))
        elif value[0]:
            getattr(feature, value[0]).value.extend(value[1])
    return example
