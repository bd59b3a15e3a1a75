"""tf.Example splits as records (feature name -> value) and back, for the data-minimization components."""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import tensorflow as tf
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"


ENCODING = ("utf-8", "surrogateescape")
"""Bytes values become str and back losslessly: bytes that are not UTF-8 become lone surrogates."""


def to_record(example: tf.train.Example) -> dict:
    """Feature name -> value: a str (one bytes value), an int or a float (one value), else the feature's
    ``(kind, values)`` (a tuple, kept as is by `to_example`; bytes values as str there too). Bytes decode with
    `ENCODING`."""
    record = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = tuple(getattr(feature, kind).value) if kind else ()
        if kind == "bytes_list":
            values = tuple(v.decode(*ENCODING) for v in values)
        record[name] = values[0] if len(values) == 1 else (kind, values)
    return record


def to_example(record: dict) -> tf.train.Example:
    """The inverse of `to_record` (str -> bytes, int -> int64, float -> float)."""
    example = tf.train.Example()
    for name, value in record.items():
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode(*ENCODING))
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        elif value[0] == "bytes_list":
            feature.bytes_list.value.extend(v.encode(*ENCODING) for v in value[1])
        elif value[0]:
            getattr(feature, value[0]).value.extend(value[1])
    return example


def read_split(examples, split: str) -> Iterator[dict]:
    """The records of ``split`` of the Examples artifact ``examples`` (gzipped TFRecords of tf.Examples)."""
    pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))
    for record in tf.data.TFRecordDataset(fileio.glob(pattern), compression_type="GZIP").as_numpy_iterator():
        yield to_record(tf.train.Example.FromString(record))


def write_split(examples, split: str, records: Iterable[dict]) -> None:
    """Writes ``records`` as ``split`` of the Examples artifact ``examples`` (one gzipped TFRecord file)."""
    out_dir = artifact_utils.get_split_uri([examples], split)
    fileio.makedirs(out_dir)
    with tf.io.TFRecordWriter(os.path.join(out_dir, OUTPUT_FILE), options="GZIP") as writer:
        for record in records:
            writer.write(to_example(record).SerializeToString())
