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
from privacy.minimization import KAnonymitySettings, Scrubber, ScrubSettings, mondrian_generalize

OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"


class Executor(base_executor.BaseExecutor):
    """Writes the scrubbed splits, the report JSON and the report's counts as custom properties."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        settings = ScrubSettings.from_json(exec_properties[spec.SETTINGS_KEY])
        generalization = exec_properties.get(spec.GENERALIZATION_KEY)
        generalization = KAnonymitySettings.from_json(generalization) if generalization else None
        suppressed = 0
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
            records = (scrubber.scrub_record(_to_record(tf.train.Example.FromString(r))) for r in
                       tf.data.TFRecordDataset(fileio.glob(pattern), compression_type="GZIP").as_numpy_iterator())
            if generalization is not None:
                records = list(records)
                generalized = mondrian_generalize(records, generalization.quasi_identifiers, generalization.target_k)
                suppressed += len(records) - len(generalized)
                records = generalized
            with tf.io.TFRecordWriter(os.path.join(out_dir, OUTPUT_FILE), options="GZIP") as writer:
                for record in records:
                    writer.write(_to_example(record).SerializeToString())
        report = scrubber.report.to_dict()
        if generalization is not None:
            report["generalization"] = {"quasi_identifiers": list(generalization.quasi_identifiers),
                                        "k": generalization.target_k, "suppressed_rows": suppressed}
        io_utils.write_string_file(os.path.join(scrubbed.uri, spec.REPORT_FILE), json.dumps(report, indent=2))
        for name in spec.REPORT_PROPERTIES:
            scrubbed.set_int_custom_property(f"pii_{name}", report[name])
        logging.info("PII scrubber: %d of %d records touched; entities per column: %s", report["rows_touched"],
                     report["rows"], report["entities"])


def _to_record(example: tf.train.Example) -> dict:
    """Feature name -> value: a str (one UTF-8 bytes value), an int or a float (one value), else the feature's
    ``(kind, values)``, kept as is."""
    record = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if len(values) == 1 and kind in ("int64_list", "float_list"):
            record[name] = values[0]
            continue
        if len(values) == 1 and kind == "bytes_list":
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
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        elif value[0]:
            getattr(feature, value[0]).value.extend(value[1])
    return example
