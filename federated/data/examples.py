"""Reading tf.Example TFRecords (e.g. TFX ExampleGen splits), CSV files and tf.data datasets into numpy
columns, and choosing and stacking a model's feature columns. Types here come from the values (the first
record, or a whole column); a private run reads against declared columns instead (`federated.data.declared`)."""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import struct
from typing import Any, Iterable

import numpy as np


def read_tf_examples(file_pattern: str | Iterable[str], *, compression: str | None = "auto") -> dict[str, np.ndarray]:
    """All features of the tf.Examples in ``file_pattern`` as numpy columns (`read_tf_records`, then
    `examples_to_columns`).

    Args:
      file_pattern: a glob (e.g. ``.../Split-train/*``) or a list of files.
      compression: "GZIP", "" (none) or "auto" (GZIP for files ending in .gz, as ExampleGen writes).

    Raises:
      ValueError: when no file matches, a file is unreadable or empty, or a feature's length varies.
    """
    records = read_tf_records(file_pattern, compression=compression)
    if not records:
        raise ValueError(f"no records in {file_pattern}")
    return examples_to_columns(records)


def read_tf_records(
    file_pattern: str | Iterable[str], *, compression: str | None = "auto", max_record_bytes: int | None = None
) -> list[bytes]:
    """The serialized records of the TFRecord files ``file_pattern``, in file order (files sorted when a glob).
    With ``max_record_bytes`` (a private run's public bound, `federated.data.declared.MAX_RECORD_BYTES`), a
    longer record is skipped by its length header, never held in memory, and stands as b"" in its place (a
    tf.Example without features: it does not conform).

    Raises:
      ValueError: when no file matches, or the files are not readable as TFRecords of that compression.
    """
    import tensorflow as tf

    files = sorted(glob.glob(file_pattern)) if isinstance(file_pattern, str) else list(file_pattern)
    if not files:
        raise ValueError(f"no TFRecord files match {file_pattern!r}")
    if compression == "auto":
        compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    if max_record_bytes is not None:
        return [record for f in files for record in _bounded_records(f, compression, max_record_bytes)]
    records = tf.data.TFRecordDataset(files, compression_type=compression or "")
    try:
        return list(records.as_numpy_iterator())
    except tf.errors.OpError as err:  # e.g. DataLossError: not TFRecords, or another compression
        raise ValueError(
            f"{files} are not readable as TFRecord files (compression {compression or 'none'!r}): {err.message}"
        ) from None


def _bounded_records(path: str, compression: str, max_bytes: int) -> Iterable[bytes]:
    """The records of one TFRecord file (each: an 8-byte length, its masked CRC-32C, the data, the data's
    masked CRC-32C), a record longer than ``max_bytes`` read past in chunks and given as b""."""
    import tensorflow as tf

    def corrupt(what):
        return ValueError(f"{path}: not readable as TFRecord files (compression {compression or 'none'!r}): {what}")

    with tf.io.gfile.GFile(path, "rb") as raw, gzip.GzipFile(fileobj=raw) if compression else raw as f:
        try:
            while header := f.read(12):
                if len(header) < 12 or _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
                    raise corrupt("a corrupted record length")
                length = struct.unpack("<Q", header[:8])[0]
                if length > max_bytes:
                    while length > 0:
                        chunk = len(f.read(min(length, max_bytes)))
                        if not chunk:
                            raise corrupt("a truncated record")
                        length -= chunk
                    f.read(4)
                    yield b""
                    continue
                data, crc = f.read(length), f.read(4)
                if len(data) < length or len(crc) < 4 or _masked_crc(data) != struct.unpack("<I", crc)[0]:
                    raise corrupt("a truncated or corrupted record")
                yield data
        except (OSError, EOFError, tf.errors.OpError) as err:  # not gzip, truncated, unreadable
            raise corrupt(err) from None


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def examples_to_columns(records: Iterable[bytes]) -> dict[str, np.ndarray]:
    """Serialized tf.Examples as numpy columns. The feature spec is read from the first record: int64 and
    float features of fixed length L become [n] (L = 1) or [n, L] arrays; bytes features become object
    arrays of bytes.

    Raises:
      ValueError: when there is no record, a record is not a serialized tf.Example, or a record lacks a
        feature or changes its length.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    columns: dict[str, list[Any]] = {}
    kinds: dict[str, tuple[str, int]] = {}
    for count, raw in enumerate(records):
        try:
            example = tf.train.Example.FromString(raw)
        except DecodeError:
            raise ValueError(f"record {count} is not a serialized tf.Example") from None
        features = example.features.feature
        if count == 0:
            for key, feature in features.items():
                kind = feature.WhichOneof("kind")
                kinds[key] = (kind, len(getattr(feature, kind).value))
                columns[key] = []
        for key, (kind, length) in kinds.items():
            if key not in features:
                raise ValueError(f"record {count} lacks feature {key!r}")
            values = getattr(features[key], kind).value
            if len(values) != length:
                raise ValueError(
                    f"feature {key!r} has {len(values)} values in record {count}, {length} in the first; "
                    f"only fixed-length features are supported"
                )
            columns[key].append(values[0] if length == 1 else list(values))
    if not kinds:
        raise ValueError("no records")
    dtypes = {"int64_list": np.int64, "float_list": np.float32, "bytes_list": object}
    return {key: np.asarray(columns[key], dtype=dtypes[kind]) for key, (kind, _) in kinds.items()}


def read_csv_columns(path: str) -> dict[str, np.ndarray]:
    """The columns of a CSV file with a header row: int64 where every value is an integer, float32
    where every value is a number, else strings (object arrays).

    Raises:
      ValueError: for a file without a header or rows, a line that is not UTF-8 CSV (naming it), a row
        whose length differs from the header's, or a column of numbers with empty cells.
    """
    with open(path, "rb") as f:
        data = f.read().removeprefix(codecs.BOM_UTF8)
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        rows = list(reader)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 ({err.reason})") from None
    except csv.Error as err:
        raise ValueError(f"{path}: line {reader.line_num} is not readable as CSV ({err})") from None
    if len(rows) < 2:
        raise ValueError(f"{path} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    bad = [i + 2 for i, row in enumerate(body) if len(row) != len(header)]
    if bad:
        raise ValueError(f"{path}: line {bad[0]} has a different number of fields than the header ({len(header)})")
    columns = {}
    for j, name in enumerate(header):
        values = [row[j] for row in body]
        columns[name] = _parse_column(values)
        if columns[name].dtype == object and "" in values and _parse_column([v for v in values if v]).dtype != object:
            raise ValueError(f"{path}: column {name!r} holds numbers but line {values.index('') + 2} is empty")
    return columns


def _parse_column(values: list[str]) -> np.ndarray:
    """int64 if every value is an integer that fits, float32 if every value is a number, else strings."""
    for dtype in (np.int64, np.float32):
        try:
            with np.errstate(over="ignore"):  # a number beyond float32's range reads as infinite
                return np.array(values, dtype=dtype)
        except (ValueError, OverflowError):
            continue
    return np.array(values, dtype=object)


def feature_columns(columns: dict[str, np.ndarray], exclude: Iterable[str | None]) -> list[str]:
    """Every numeric column except those in ``exclude`` (e.g. the label and the client key), sorted.

    Raises:
      ValueError: when no such column is left.
    """
    excluded = set(exclude)
    keys = [k for k in sorted(columns) if k not in excluded and np.asarray(columns[k]).dtype != object]
    if not keys:
        raise ValueError(f"no numeric feature columns besides {sorted(k for k in excluded if k)} in {sorted(columns)}")
    return keys


def class_labels(columns: dict[str, np.ndarray], key: str, *, setting: str) -> np.ndarray:
    """Column ``key`` as int64 class labels (not narrowed: a label beyond int32 stays out of the classes
    rather than wrapping into one); ``setting`` names the option or config key in errors.

    The values are not checked here (a negative one included): a private run leaves such records out
    one by one (`federated.data.screen`), others refuse them where the labels are used.

    Raises:
      ValueError: for a missing column, or one that is not one integer per example.
    """
    if key not in columns:
        raise ValueError(f"{setting}: no column {key!r}; the columns are {sorted(columns)}")
    labels = np.asarray(columns[key])
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{setting}: column {key!r} must hold one integer class per example, got dtype "
            f"{labels.dtype} and shape {labels.shape}"
        )
    return labels.astype(np.int64)


def dataset_to_numpy(dataset) -> dict[str, np.ndarray] | tuple[np.ndarray, ...]:
    """Materialises a finite, unbatched tf.data dataset of dicts or tuples as stacked numpy arrays."""
    rows = list(dataset.as_numpy_iterator())
    if not rows:
        raise ValueError("the dataset is empty")
    first = rows[0]
    if isinstance(first, dict):
        return {key: np.stack([row[key] for row in rows]) for key in first}
    if isinstance(first, tuple):
        return tuple(np.stack([row[i] for row in rows]) for i in range(len(first)))
    raise ValueError(f"dataset elements must be dicts or tuples, got {type(first).__name__}")


def stack_features(columns: dict[str, np.ndarray], keys: Iterable[str]) -> np.ndarray:
    """[n, d] float32 matrix of the named columns, each flattened, concatenated in ``keys`` order."""
    keys = list(keys)
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ValueError(f"no feature(s) {missing}; available: {sorted(columns)}")
    parts = []
    for key in keys:
        value = np.asarray(columns[key])
        if value.dtype == object:
            raise ValueError(f"feature {key!r} is bytes; only numeric features can be model inputs")
        parts.append(value.reshape(len(value), int(np.prod(value.shape[1:]))).astype(np.float32))
    return np.concatenate(parts, axis=1)
