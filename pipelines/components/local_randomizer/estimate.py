"""Frequency estimates from the Local Randomizer's output: what downstream analysis may compute from it."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from pipelines.components.local_randomizer import spec
from pipelines.components.local_randomizer.executor import reports_from_values
from privacy.local import FrequencyEstimate


def estimate_column(
    randomized_examples_uri: str, split: str, column: str, confidence: float = 0.95
) -> FrequencyEstimate:
    """The unbiased estimate (with intervals) of the fraction of records holding each value of ``column`` in
    ``split`` of the randomized examples at ``randomized_examples_uri``.

    Raises:
      ValueError: when ``column`` was not randomized there, or ``split`` is not there or holds no records.
    """
    with open(os.path.join(randomized_examples_uri, spec.REPORT_FILE)) as f:
        described = json.load(f)["columns"]
    if column not in described:
        raise ValueError(f"column {column!r} was not randomized; randomized columns: {sorted(described)}")
    d = described[column]
    randomizer = spec.ColumnRandomizer(column, d["mechanism"], d["epsilon"], d["k"])
    splits = sorted(
        os.path.basename(f)[len("Split-") :] for f in tf.io.gfile.glob(os.path.join(randomized_examples_uri, "Split-*"))
    )
    if split not in splits:
        raise ValueError(f"split {split!r} not in {splits}")
    files = tf.io.gfile.glob(os.path.join(randomized_examples_uri, f"Split-{split}", "*"))
    values = [
        list(tf.train.Example.FromString(r.numpy()).features.feature[column].int64_list.value)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]
    if not values:
        raise ValueError(f"split {split!r} has no records")
    return randomizer.oracle().estimate(reports_from_values(values, randomizer.mechanism), confidence)
