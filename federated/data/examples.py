"""Reading tf.Example TFRecords (e.g. TFX ExampleGen splits) and tf.data datasets into numpy columns."""

from __future__ import annotations

import glob
from typing import Any, Iterable

import numpy as np


def read_tf_examples(file_pattern: str | Iterable[str], *, compression: str | None = "auto") -> dict[str, np.ndarray]:
    """All features of the tf.Examples in ``file_pattern`` as numpy columns.

    The feature spec is read from the first record: int64 and float features of fixed length L
    become [n] (L = 1) or [n, L] arrays; bytes features become object arrays of bytes.

    Args:
      file_pattern: a glob (e.g. ``.../Split-train/*``) or a list of files.
      compression: "GZIP", "" (none) or "auto" (GZIP for files ending in .gz, as ExampleGen writes).

    Raises:
      ValueError: when no file matches, a file is empty or a feature's length varies.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    files = sorted(glob.glob(file_pattern)) if isinstance(file_pattern, str) else list(file_pattern)
    if not files:
        raise ValueError(f"no TFRecord files match {file_pattern!r}")
    if compression == "auto":
        compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    records = tf.data.TFRecordDataset(files, compression_type=compression or "")
    columns: dict[str, list[Any]] = {}
    kinds: dict[str, tuple[str, int]] = {}
    for count, raw in enumerate(records.as_numpy_iterator()):
        example = tf.train.Example.FromString(raw)
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
                raise ValueError(f"feature {key!r} has {len(values)} values in record {count}, {length} in the first; "
                                 f"only fixed-length features are supported")
            columns[key].append(values[0] if length == 1 else list(values))
    if not kinds:
        raise ValueError(f"no records in {files}")
    dtypes = {"int64_list": np.int64, "float_list": np.float32, "bytes_list": object}
    return {key: np.asarray(columns[key], dtype=dtypes[kind]) for key, (kind, _) in kinds.items()}


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
        parts.append(value.reshape(value.shape[0], -1).astype(np.float32))
    return np.concatenate(parts, axis=1)
