"""The analysis side of the private analyzers: sum each record's contribution over the data set, then
release once, with noise.

Numeric releases are tf.Transform combiners (`SummedRelease`); vocabularies, which write a file, are a
Beam PTransform (`VocabularyRelease`, for `tft.experimental.ptransform_analyzer`). Both receive
Transform's batches (one array per input tensor, records along the first axis), the last of them a marker
with one row per record, against which `check_one_row_per_record` checks the analyzer's input. The noise is drawn in
the single release step, from `privacy.preprocessing.NoiseSource` (CSPRNG-keyed unless the config has a
seed); a non-private config adds none.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tensorflow_transform import analyzer_nodes
from tensorflow_transform import analyzers as tft_analyzers
from tensorflow_transform.beam.experimental.analyzer_impls import PTransformAnalyzer

from privacy.preprocessing import GaussianThresholding, NoiseSource
from privacy.preprocessing.noise import ZeroNoise

EMPTY_VOCABULARY = tft_analyzers.get_empy_vocabulary_dummy_value("string")[1] + b"\n"
"""What an empty vocabulary file holds (tf.Transform's placeholder token: TF lookup tables cannot be empty)."""


def noise_source(private: bool, seed: int | None, stream: str):
    return NoiseSource(seed, stream) if private else ZeroNoise()


class SummedRelease(analyzer_nodes.Combiner):
    """A tf.Transform combiner: sums ``mechanism.accumulate(first input)`` over all batches, then
    ``finalize(mechanism, sums, noise)`` returns the outputs (the release, once, with its noise).

    As a combiner (rather than a PTransform) it is packed with the other analyzers' combiners into one
    Beam combine, which keeps a preprocessing_fn with one release per feature about as fast as tft's own.
    """

    def __init__(
        self,
        *,
        mechanism,
        accumulator_size: int,
        finalize: Callable,
        outputs: list[tuple[tf.DType, list[int]]],
        stream: str,
        private: bool,
        seed: int | None,
    ):
        self._mechanism = mechanism
        self._size = accumulator_size
        self._finalize = finalize
        self._outputs = outputs
        self._stream = stream
        self._private = private
        self._seed = seed

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self._size, dtype=object)  # int 0s: a mechanism's exact integer sums stay exact

    def add_input(self, accumulator, batch_values):
        values, marker = batch_values
        check_one_row_per_record(self._stream, values, marker)
        return accumulator + self._mechanism.accumulate(values)

    def merge_accumulators(self, accumulators):
        return functools.reduce(np.add, accumulators, self.create_accumulator())

    def extract_output(self, accumulator) -> list:
        return self._finalize(self._mechanism, accumulator, noise_source(self._private, self._seed, self._stream))

    def output_tensor_infos(self):
        return [analyzer_nodes.TensorInfo(dtype, shape, None) for dtype, shape in self._outputs]


class VocabularyRelease(PTransformAnalyzer):
    """Counts the records holding each token (each record's first l0 distinct tokens), keeps the tokens
    whose noisy count passes the threshold, and writes them, most frequent first, to a vocabulary file
    (one token a line) in Transform's temporary folder; outputs its path."""

    def __init__(
        self,
        *,
        mechanism: GaussianThresholding,
        top_k: int | None,
        file_name: str,
        stream: str,
        private: bool,
        seed: int | None,
    ):
        super().__init__()
        self._mechanism = mechanism
        self._top_k = top_k
        self._file_name = file_name
        self._stream = stream
        self._private = private
        self._seed = seed

    def _tokens(self, batch):
        """Each record's tokens: batch is ([records, ...] values, [records] how many of a row's values are its,
        the records' marker)."""
        check_one_row_per_record(self._stream, batch[0], batch[2])
        values, lengths = np.asarray(batch[0], dtype=object), np.asarray(batch[1])
        rows = values.reshape(values.shape[0] if values.ndim else 1, -1)
        for row, length in zip(rows, lengths.reshape(-1), strict=True):
            yield from self._mechanism.record_tokens(_token(v) for v in row[: int(length)])

    def _write(self, counts):
        noise = noise_source(self._private, self._seed, self._stream)
        if self._private:
            kept = self._mechanism.release(dict(counts), noise)
        else:
            kept = sorted(((t, float(c)) for t, c in counts), key=lambda tc: (-tc[1], tc[0]))
        tokens = [t for t, _ in kept if "\n" not in t and "\r" not in t][: self._top_k]
        text = b"".join(token_bytes(t) + b"\n" for t in tokens) or EMPTY_VOCABULARY
        tf.io.gfile.makedirs(self.base_temp_dir)
        path = os.path.join(self.base_temp_dir, self._file_name)
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(text)
        return np.array(path.encode("utf-8"), dtype=object)

    def expand(self, pcoll):
        return (
            pcoll
            | "Tokens" >> beam.FlatMap(self._tokens)
            | "Count" >> beam.combiners.Count.PerElement()
            | "Gather" >> beam.combiners.ToList()
            | "Release" >> beam.Map(self._write)
        )


def check_one_row_per_record(analyzer: str, values, marker) -> None:
    """Refuses an analyzer input whose rows are not the batch's records (``marker`` has one row per record):
    the mechanism's sensitivity counts one row per record. The message names the analyzer, never a value."""
    rows, records = np.shape(values)[0] if np.ndim(values) else 1, len(marker)
    if rows != records:
        raise ValueError(
            f"ppml analyzer {analyzer!r}: its input must hold one row per record ([records, ...]), got "
            f"{rows} rows for {records} records; do not flatten records together (tf.reshape(x, [-1]), "
            f".flat_values): pass [records, k] values (or, to vocabulary, the RaggedTensor itself)"
        )


def _token(value) -> str:
    """A token as text; bytes that are not UTF-8 are kept apart as surrogates (`token_bytes` gives them back)."""
    return value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else str(value)


def token_bytes(token: str) -> bytes:
    """The bytes of a token as the data held them (what ``tft.apply_vocabulary`` compares with)."""
    return token.encode("utf-8", errors="surrogateescape")


def finalize_mean_and_var(mechanism, sums, noise) -> list:
    """(mean, variance) as float32 scalars, then the release itself: the noisy [count, sum, sum of squares]
    (float64)."""
    released = mechanism.release(sums, noise)
    noisy = np.array([released["count"], released["sum"], released["sum_of_squares"]], dtype=np.float64)
    return [np.float32(released["mean"]), np.float32(released["variance"]), noisy]


def finalize_quantiles(mechanism, leaf_counts, noise, *, probabilities: tuple[float, ...]) -> list:
    """The values at ``probabilities`` as one float32 vector, then the release itself: the noisy counts of
    every tree node, level by level from the root (float64)."""
    levels = mechanism.release(leaf_counts, noise)
    return [mechanism.quantiles(levels, probabilities).astype(np.float32), np.concatenate(levels)]
