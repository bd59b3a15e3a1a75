"""The Local Randomizer's executor: every split read, declared columns randomized, written GZIP'ed."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils

from pipelines.components.local_randomizer import spec
from privacy.atomic_files import write_atomically
from privacy.local import HashedReports

OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"
FILE_FORMAT = "tfrecords_gzip"
"""The only file format read and written."""
EPSILON_PROPERTY = "local_dp_epsilon_per_record_declared_columns"
"""Custom property: the epsilon per record that covers the declared columns only (undeclared ones are raw)."""
COLUMNS_PROPERTY = "local_dp_declared_columns"
"""Custom property: the declared (randomized) columns, comma-separated; every other column is raw."""
CHUNK_RECORDS = 4096
"""Records randomized at once: a split is streamed, never held in memory whole."""


def report_values(reports, mechanism: str) -> list[list[int]]:
    """One int64 list per record: what is stored in the column's place (`spec`'s layout)."""
    if mechanism == "oue":
        return np.asarray(reports, np.int64).tolist()
    if mechanism == "olh":
        return np.stack([reports.a, reports.b, reports.y], axis=1).tolist()
    return [[int(v)] for v in reports]


def reports_from_values(values: list[list[int]], mechanism: str):
    """The inverse of `report_values`."""
    array = np.asarray(values, np.int64)
    if mechanism == "olh":
        return HashedReports(a=array[:, 0], b=array[:, 1], y=array[:, 2])
    return array.astype(bool) if mechanism == "oue" else array[:, 0]


class Executor(base_executor.BaseExecutor):
    """Randomizes the declared columns of every split; writes `spec.REPORT_FILE` beside the splits."""

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        columns = spec.parse_columns(exec_properties[spec.COLUMNS_KEY])
        examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        output = artifact_utils.get_single_instance(output_dict[spec.RANDOMIZED_EXAMPLES_KEY])
        _check_format(examples)
        splits = artifact_utils.decode_split_names(examples.split_names)
        output.split_names = artifact_utils.encode_split_names(splits)
        examples_utils.set_payload_format(output, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(output, FILE_FORMAT)
        for split in splits:
            pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))
            folder = artifact_utils.get_split_uri([output], split)
            fileio.makedirs(folder)
            dataset = tf.data.TFRecordDataset(fileio.glob(pattern), compression_type="GZIP").batch(CHUNK_RECORDS)
            with tf.io.TFRecordWriter(os.path.join(folder, OUTPUT_FILE), options="GZIP") as writer:
                for chunk, raw in enumerate(dataset):
                    first = chunk * CHUNK_RECORDS
                    records = [_parse(r, split, first + i) for i, r in enumerate(raw.numpy())]
                    for column in columns:
                        values = [_value(record, column, split, first + i) for i, record in enumerate(records)]
                        stored = report_values(column.oracle().randomize(values), column.mechanism)
                        for record, value in zip(records, stored, strict=True):
                            feature = record.features.feature[column.name]
                            feature.Clear()
                            feature.int64_list.value.extend(value)
                    for record in records:
                        writer.write(record.SerializeToString())
        content = spec.report(columns)
        write_atomically(os.path.join(output.uri, spec.REPORT_FILE), json.dumps(content, indent=2, sort_keys=True))
        output.set_float_custom_property(EPSILON_PROPERTY, content["epsilon_per_record"])
        output.set_string_custom_property(COLUMNS_PROPERTY, ",".join(c.name for c in columns))


def _check_format(examples) -> None:
    """ValueError unless ``examples`` holds GZIP'ed tf.Example records: any other payload (a SequenceExample's
    feature_lists would parse as an unknown field and pass through raw) is refused, naming the format."""
    payload = examples_utils.get_payload_format(examples)
    if payload != example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE:
        raise ValueError(
            f"LocalRandomizer reads tf.Example records only, got payload format "
            f"{example_gen_pb2.PayloadFormat.Name(payload)}"
        )
    file_format = examples_utils.get_file_format(examples)
    if file_format != FILE_FORMAT:
        raise ValueError(f"LocalRandomizer reads {FILE_FORMAT} files only, got file format {file_format!r}")


def _parse(raw: bytes, split: str, row: int) -> tf.train.Example:
    """The record as a tf.Example; ValueError naming split and row when it carries fields tf.Example does not
    define (they would be written back out raw: a SequenceExample's feature_lists, for one)."""
    record = tf.train.Example.FromString(raw)
    size = record.ByteSize()
    record.DiscardUnknownFields()
    if record.ByteSize() != size:
        raise ValueError(
            f"split {split!r}, record {row}: not a tf.Example (fields tf.Example does not define); "
            f"LocalRandomizer reads tf.Example records only"
        )
    return record


def _value(record, column: spec.ColumnRandomizer, split: str, row: int) -> int:
    """The record's one int64 in [0, k); ValueError naming the column, split and row (never the value: it is
    private)."""
    feature = record.features.feature.get(column.name)
    values = list(feature.int64_list.value) if feature is not None else []
    if len(values) != 1 or not 0 <= values[0] < column.k:
        raise ValueError(
            f"column {column.name!r}, split {split!r}, record {row}: a declared column must hold one "
            f"int64 in [0, {column.k}) per record"
        )
    return values[0]
