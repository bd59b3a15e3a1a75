"""The Local Randomizer's executor: every split read, declared columns randomized, written GZIP'ed."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from pipelines.components.local_randomizer import spec
from privacy.atomic_files import write_atomically
from privacy.local import HashedReports

OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"


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

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        columns = spec.parse_columns(exec_properties[spec.COLUMNS_KEY])
        examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        output = artifact_utils.get_single_instance(output_dict[spec.RANDOMIZED_EXAMPLES_KEY])
        splits = artifact_utils.decode_split_names(examples.split_names)
        output.split_names = artifact_utils.encode_split_names(splits)
        for split in splits:
            pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))
            records = [tf.train.Example.FromString(r.numpy())
                       for r in tf.data.TFRecordDataset(fileio.glob(pattern), compression_type="GZIP")]
            for column in columns:
                values = [_value(record, column, split, row) for row, record in enumerate(records)]
                stored = report_values(column.oracle().randomize(values), column.mechanism)
                for record, value in zip(records, stored):
                    feature = record.features.feature[column.name]
                    feature.Clear()
                    feature.int64_list.value.extend(value)
            folder = artifact_utils.get_split_uri([output], split)
            fileio.makedirs(folder)
            with tf.io.TFRecordWriter(os.path.join(folder, OUTPUT_FILE), options="GZIP") as writer:
                for record in records:
                    writer.write(record.SerializeToString())
        content = spec.report(columns)
        write_atomically(os.path.join(output.uri, spec.REPORT_FILE), json.dumps(content, indent=2, sort_keys=True))
        output.set_float_custom_property("local_dp_epsilon_per_record", content["epsilon_per_record"])


def _value(record, column: spec.ColumnRandomizer, split: str, row: int) -> int:
    """The record's one int64 in [0, k); ValueError naming the column, split and row (never the value: it is
    private)."""
    feature = record.features.feature.get(column.name)
    values = list(feature.int64_list.value) if feature is not None else []
    if len(values) != 1 or not 0 <= values[0] < column.k:
        raise ValueError(f"column {column.name!r}, split {split!r}, record {row}: a declared column must hold one "
                         f"int64 in [0, {column.k}) per record")
    return values[0]
