"""Private drop-ins for tf.Transform's analyzers, and the wrapper that checks a preprocessing_fn uses them.

A pipeline author writes::

    from pipelines.transform import private_preprocessing_fn

    @private_preprocessing_fn
    def preprocessing_fn(inputs, analyzers):
        return {"age_xf": analyzers.scale_to_z_score(inputs["age"], bounds=(0, 120), share=0.5),
                "city_xf": analyzers.compute_and_apply_vocabulary(inputs["city"], share=0.5)}

and passes the decorated function to TFX's Transform (which hands it its ``custom_config``, where the
pipeline puts the budget: `pipelines.transform.spec`). Each analyzer takes public bounds and a share of
the preprocessing budget, runs inside Transform's Beam analysis (`tft.experimental.ptransform_analyzer`)
and releases its statistics through a mechanism of `privacy.preprocessing`; its record (mechanism,
sensitivity, noise, share) is a string constant of the transform graph, tied to every output, so it
travels with every model that embeds the graph. ``analyzers.declare_public`` records constants the
author gives and states are public, with a reason (never tft analyzer outputs: they are statistics of the
training split).

The wrapper lists every analyzer output of the traced function (tf.Transform's own registry). Under a
private config, an output that is neither from these analyzers nor declared public fails the Transform,
naming the tft analyzer and its private replacement; otherwise the outputs are listed in the graph's
coverage record, which the privacy gate reads.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import analyzer_nodes
from tensorflow_transform import analyzers as tft_analyzers

from pipelines.transform import beam_analyzers
from pipelines.transform.spec import PreprocessingConfig, analyzer_scope, replacement_for
from privacy import validation
from privacy.compared import compared
from privacy.preprocessing import (
    EXACT,
    GAUSSIAN_SUMS,
    GAUSSIAN_THRESHOLDING,
    TREE_HISTOGRAM,
    Bounds,
    Component,
    CoverageRecord,
    GaussianThresholding,
    Grid,
    MeanVariance,
    MechanismRecord,
    PublicDeclaration,
    ReleaseRecord,
    TreeHistogram,
    check_share,
    to_text,
)
from privacy.preprocessing.noise import describe

DEFAULT_BINS = 1024
"""Leaves of the quantile tree (a power of `DEFAULT_BRANCHING`)."""
DEFAULT_BRANCHING = 4
DEFAULT_THRESHOLD_DELTA_FRACTION = 0.1
"""A vocabulary's threshold delta defaults to this fraction of the preprocessing delta."""


class PrivateAnalyzers:
    """The private analyzers of one trace of a preprocessing function (see the module docstring).

    Every analyzer accounts one row of its input per record: each analysis batch carries a marker with one
    row per record (``records``, from `private_preprocessing_fn`'s inputs) beside the analyzer's input, and an
    input with another number of rows (flattened across records: ``tf.reshape(x, [-1])``, a ragged tensor's
    ``flat_values``) fails the Transform with a one-line error naming the analyzer
    (`beam_analyzers.check_one_row_per_record`; no data in it), instead of being accounted as one record a row.

    Args:
      config: the preprocessing settings (budget, adjacency, noise seed).
      records: the number of records in the batch being analysed (a scalar int64 tensor).
    """

    def __init__(self, config: PreprocessingConfig, records: tf.Tensor):
        self.config = config
        self._marker = tf.zeros(tf.reshape(records, [1]), tf.int8)  # one row per record of the batch
        self._budget = config.budget() if config.private else None
        self._spent = 0.0
        self._private: list[str] = []
        self._ours: set[str] = set()
        self._public: list[PublicDeclaration] = []
        self._records: list[tf.Tensor] = []

    # --- the analyzers ------------------------------------------------------------------------------
    def mean_and_var(self, x: tf.Tensor, *, bounds, share: float, name: str | None = None):
        """Private (mean, variance) of ``x`` clipped into ``bounds`` (`privacy.preprocessing.MeanVariance`)."""
        with tf.name_scope(name or "mean_and_var") as scope:
            bounds, share = Bounds.of(bounds), self._share(share, scope)
            mechanism = MeanVariance(bounds, self._noise_multiplier(share), self.config.adjacency, _per_record(x))
            parameters = {"bounds": bounds.to_list(), "values_per_record": mechanism.values_per_record}
            mean, var = self._combine(
                [x],
                beam_analyzers.SummedRelease(
                    mechanism=mechanism,
                    accumulator_size=3,
                    finalize=beam_analyzers.finalize_mean_and_var,
                    outputs=[(tf.float32, []), (tf.float32, []), (tf.float64, [3])],
                    **self._record(scope, "mean_and_var", GAUSSIAN_SUMS, mechanism, parameters, share),
                ),
            )
            return mean, var

    def scale_to_z_score(self, x: tf.Tensor, *, bounds, share: float, name: str | None = None) -> tf.Tensor:
        """(x - mean) / sqrt(variance) with a private mean and variance (x is not clipped)."""
        with tf.name_scope(name or "scale_to_z_score"):
            mean, var = self.mean_and_var(x, bounds=bounds, share=share, name="mean_and_var")
            return (tf.cast(x, tf.float32) - mean) / tf.sqrt(var)

    def quantiles(
        self,
        x: tf.Tensor,
        probabilities: Sequence[float],
        *,
        bounds,
        share: float,
        bins: int = DEFAULT_BINS,
        branching: int = DEFAULT_BRANCHING,
        scale: str = "linear",
        name: str | None = None,
    ) -> tf.Tensor:
        """Private values of ``x`` at ``probabilities`` in [0, 1] (`privacy.preprocessing.TreeHistogram` on
        ``bins`` bins over ``bounds``, on a linear or log ``scale``), as a float32 vector."""
        with tf.name_scope(name or "quantiles") as scope:
            probabilities = tuple(_probabilities(probabilities))
            bounds, share = Bounds.of(bounds), self._share(share, scope)
            mechanism = TreeHistogram(
                Grid(bounds, bins, scale),
                self._noise_multiplier(share),
                branching,
                self.config.adjacency,
                _per_record(x),
            )
            parameters = {
                "bounds": bounds.to_list(),
                "bins": bins,
                "scale": scale,
                "branching": branching,
                "values_per_record": mechanism.values_per_record,
                "probabilities": list(probabilities),
            }
            nodes = sum(branching**level for level in range(mechanism.height + 1))
            [values] = self._combine(
                [x],
                beam_analyzers.SummedRelease(
                    mechanism=mechanism,
                    accumulator_size=bins,
                    finalize=functools.partial(beam_analyzers.finalize_quantiles, probabilities=probabilities),
                    outputs=[(tf.float32, [len(probabilities)]), (tf.float64, [nodes])],
                    **self._record(scope, "quantiles", TREE_HISTOGRAM, mechanism, parameters, share),
                ),
            )
            return values

    def bucketize(
        self, x: tf.Tensor, num_buckets: int, *, bounds, share: float, name: str | None = None, **grid
    ) -> tf.Tensor:
        """Bucket ids 0 .. num_buckets - 1 of ``x`` at private quantile boundaries (as `tft.bucketize`)."""
        validation.integer("num_buckets", num_buckets, minimum=2)
        with tf.name_scope(name or "bucketize"):
            boundaries = self.quantiles(
                x,
                [i / num_buckets for i in range(1, num_buckets)],
                bounds=bounds,
                share=share,
                name="quantiles",
                **grid,
            )
            return tft.apply_buckets(tf.cast(x, tf.float32), tf.expand_dims(boundaries, 0))

    def scale_by_min_max(
        self,
        x: tf.Tensor,
        *,
        bounds,
        share: float,
        output_min: float = 0.0,
        output_max: float = 1.0,
        tail: float = 0.0,
        name: str | None = None,
        **grid,
    ) -> tf.Tensor:
        """x clipped into its private [tail, 1 - tail] quantiles, scaled linearly onto [output_min, output_max]."""
        if not output_min < output_max:
            raise ValueError(f"output_min must be below output_max, got {output_min!r} and {output_max!r}")
        validation.number("tail", tail, low=0, high=0.5, high_open=True)
        with tf.name_scope(name or "scale_by_min_max"):
            low_high = self.quantiles(x, [tail, 1 - tail], bounds=bounds, share=share, name="min_max", **grid)
            low, high = low_high[0], low_high[1]
            width = tf.maximum(high - low, 1e-12 * (abs(float(Bounds.of(bounds).upper)) + 1.0))
            unit = (tf.clip_by_value(tf.cast(x, tf.float32), low, high) - low) / width
            return output_min + unit * (output_max - output_min)

    def vocabulary(
        self,
        x: tf.Tensor,
        *,
        share: float,
        max_tokens_per_record: int = 1,
        threshold_delta: float | None = None,
        top_k: int | None = None,
        name: str | None = None,
    ):
        """A private vocabulary file of ``x``'s tokens (`privacy.preprocessing.GaussianThresholding`): its
        path, for `tft.apply_vocabulary`. Tokens most records hold come first; ``top_k`` keeps the first.

        ``x`` holds one row per record: [records] or [records, k] dense, or a 2-D `tf.RaggedTensor` /
        `tf.SparseTensor` (e.g. ``tf.strings.split(text)``); each record contributes its first
        ``max_tokens_per_record`` distinct tokens."""
        if top_k is not None:
            validation.integer("top_k", top_k, minimum=1)
        with tf.name_scope(name or "vocabulary") as scope:
            share = self._share(share, scope)
            if threshold_delta is None:
                threshold_delta = DEFAULT_THRESHOLD_DELTA_FRACTION * self.config.delta
            mechanism = GaussianThresholding(
                self._noise_multiplier(share), threshold_delta, max_tokens_per_record, self.config.adjacency
            )
            file_name = "ppml_vocabulary_" + scope.rstrip("/").replace("/", "_")
            parameters = {**mechanism.parameters(), "top_k": top_k}
            ptransform = beam_analyzers.VocabularyRelease(
                mechanism=mechanism,
                top_k=top_k,
                file_name=file_name,
                **self._record(scope, "vocabulary", GAUSSIAN_THRESHOLDING, mechanism, parameters, share),
            )
            values, lengths = _rows_and_lengths(x, scope)
            before = len(_sinks())
            [path] = tft.experimental.ptransform_analyzer(
                [values, lengths, self._marker],
                ptransform,
                [tf.string],
                [[]],
                output_asset_default_values=[beam_analyzers.EMPTY_VOCABULARY],
                name="release",
            )
            self._ours.update(_sink_name(s) for s in _sinks()[before:])
            return path

    def compute_and_apply_vocabulary(
        self,
        x: tf.Tensor,
        *,
        share: float,
        default_value: int = -1,
        num_oov_buckets: int = 0,
        name: str | None = None,
        **vocabulary,
    ) -> tf.Tensor:
        """Integer ids of ``x`` in its private vocabulary (as `tft.compute_and_apply_vocabulary`)."""
        with tf.name_scope(name or "compute_and_apply_vocabulary"):
            path = self.vocabulary(x, share=share, name="vocabulary", **vocabulary)
            return tft.apply_vocabulary(x, path, default_value=default_value, num_oov_buckets=num_oov_buckets)

    def declare_public(self, value, *, reason: str, name: str) -> tf.Tensor:
        """Constants the author gives and states are public (domain knowledge, a public data set), recorded
        with ``reason``; returned as a tensor.

        Only values are accepted: inside a preprocessing_fn every tft analyzer runs over the analysed (training)
        split, so its output is an exact statistic of the private data, never a public one. A function is
        refused, naming the private replacement of each tft analyzer it calls.
        """
        if callable(value):
            before = len(_sinks())
            value()
            called = sorted({_analyzer_of(s) for s in _sinks()[before:]})
            raise ValueError(
                f"declare_public({name!r}) takes constant values only, not a function: "
                + (
                    "; ".join(
                        f"tft.{a} computes an exact statistic of the training split (instead: {replacement_for(a)})"
                        for a in called
                    )
                    or "pass the public values themselves"
                )
            )
        array = np.asarray(value)
        self._public.append(PublicDeclaration(name, reason, array.tolist()))
        return tf.constant(array)

    # --- the whole function --------------------------------------------------------------------------
    def finish(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Checks that every analyzer output is covered and ties the coverage record to ``outputs``.

        Raises:
          ValueError: under a private config, naming each uncovered tft analyzer and its replacement.
        """
        sinks = _sinks()
        uncovered = [
            {
                "output": _sink_name(s),
                "analyzer": f"tft.{_analyzer_of(s)}",
                "replacement": replacement_for(_analyzer_of(s)),
            }
            for s in sinks
            if _sink_name(s) not in self._ours
        ]
        if uncovered and self.config.private:
            calls: dict[str, dict[str, str]] = {}
            for u in uncovered:  # one line per analyzer call (its top name scope), however many outputs it has
                calls.setdefault(u["output"].split("/")[0], u)
            raise ValueError(
                "the preprocessing_fn computes statistics of the training data that no epsilon covers:\n"
                + "\n".join(
                    f"  - {u['analyzer']} (name scope {scope!r}): use {u['replacement']}" for scope, u in calls.items()
                )
            )
        budget = None
        if self.config.private:
            budget = {
                "epsilon": self.config.epsilon,
                "delta": self.config.delta,
                "adjacency": self.config.adjacency.value,
                "shares": self._spent,
            }
        coverage = CoverageRecord(
            analyzer_outputs=len(sinks),
            private=tuple(self._private),
            public=tuple(self._public),
            uncovered=tuple(uncovered),
            budget=budget,
        )
        records = tf.stack(self._records + [tf.constant(to_text(coverage))])
        check = tf.debugging.assert_greater(
            tf.reduce_min(tf.strings.length(records)), 0, message="ppml preprocessing records"
        )
        return {key: _tied(value, check) for key, value in outputs.items()}

    # --- helpers -------------------------------------------------------------------------------------
    def _share(self, share, scope: str) -> float:
        share = check_share(share)
        if self._spent + share > 1 + 1e-9:
            total, whole = compared(self._spent + share, 1)
            raise ValueError(
                f"{scope.rstrip('/')}: share {share:g} would take the analyzers' shares to "
                f"{total} > {whole} of the preprocessing budget"
            )
        self._spent += share
        return share

    def _noise_multiplier(self, share: float) -> float:
        return 1.0 if self._budget is None else self._budget.noise_multiplier_for(share)

    def _record(
        self, scope: str, analyzer: str, kind: str, mechanism, parameters: dict[str, Any], share: float
    ) -> dict[str, Any]:
        """Records the release (a string constant of the graph); returns the PTransform's noise settings."""
        name = scope.rstrip("/")
        private, seed = self.config.private, self.config.noise_seed
        components = (
            tuple(mechanism.components)
            if private
            else tuple(Component(c.name, c.sensitivity, 0.0) for c in mechanism.components)
        )
        record = MechanismRecord(
            name=name,
            analyzer=analyzer,
            mechanism=kind if private else EXACT,
            adjacency=mechanism.adjacency.value,
            components=components,
            parameters=parameters,
            noise=describe(private=private, seed=seed),
            share=share if private else None,
        )
        self._private.append(name)
        self._records.append(tf.constant(to_text(record)))
        return {"stream": name, "private": private, "seed": seed}

    def _combine(self, inputs: list[tf.Tensor], combiner) -> list[tf.Tensor]:
        """Runs ``combiner`` in the analysis; returns its outputs but the last, the mechanism's noisy release
        itself (float64), which is recorded as a `privacy.preprocessing.ReleaseRecord` of the graph once the
        analysis has computed it (the final trace; see `artifact.released_values`)."""
        before = len(_sinks())
        with tf.name_scope("release"):
            nodes = tft_analyzers.apply_cacheable_combine_operation(combiner, *inputs, self._marker)
            *outputs, release = [analyzer_nodes.wrap_as_tensor(node) for node in nodes]
        self._ours.update(_sink_name(s) for s in _sinks()[before:])
        if hasattr(release, "numpy"):  # the final trace: the analysis' values are known
            noisy = [float(v) for v in release.numpy().ravel()]
            self._records.append(tf.constant(to_text(ReleaseRecord(self._private[-1], noisy))))
        return outputs


def private_preprocessing_fn(fn: Callable[[dict, PrivateAnalyzers], dict]) -> Callable:
    """Turns ``fn(inputs, analyzers)`` into a TFX ``preprocessing_fn(inputs, custom_config)``.

    The returned function reads the config (`pipelines.transform.spec`), builds the `PrivateAnalyzers`,
    calls ``fn`` and checks and records what it computed (`PrivateAnalyzers.finish`).
    """

    def preprocessing_fn(inputs, custom_config=None):
        analyzers = PrivateAnalyzers(PreprocessingConfig.from_custom_config(custom_config), _records_in(inputs))
        return analyzers.finish(fn(inputs, analyzers))

    preprocessing_fn.__name__ = getattr(fn, "__name__", "preprocessing_fn")
    preprocessing_fn.__qualname__ = getattr(fn, "__qualname__", preprocessing_fn.__name__)
    preprocessing_fn.__doc__ = fn.__doc__
    preprocessing_fn.__module__ = fn.__module__
    return preprocessing_fn


def _sinks() -> list:
    """tf.Transform's registry of analyzer outputs in the graph being traced (every trace, TF2 or TF1)."""
    graph = tf.compat.v1.get_default_graph()
    key = analyzer_nodes.ALL_REPLACEMENTS if tf.inside_function() else analyzer_nodes.TENSOR_REPLACEMENTS
    return list(graph.get_collection(key))


def _sink_name(sink) -> str:
    return sink.tensor.name


def _analyzer_of(sink) -> str:
    return analyzer_scope(sink.tensor.name)


def _tied(value, check):
    """``value`` computed only after ``check`` (of the records), so that the records stay in every graph
    that computes it (tf.Transform prunes what the outputs do not depend on) and travel with the model."""
    if not isinstance(value, tf.Tensor):
        return value
    with tf.control_dependencies([check]):
        return tf.identity(value)


def _records_in(inputs: Mapping[str, Any]) -> tf.Tensor:
    """The number of records in the batch tf.Transform feeds the preprocessing_fn (its inputs' first axis)."""
    if not inputs:
        raise ValueError("the preprocessing_fn has no inputs")
    first = inputs[sorted(inputs)[0]]
    if isinstance(first, tf.RaggedTensor):
        return tf.cast(first.nrows(), tf.int64)
    if isinstance(first, tf.SparseTensor):
        return first.dense_shape[0]
    return tf.shape(first, out_type=tf.int64)[0]


def _rows_and_lengths(x, scope: str) -> tuple[tf.Tensor, tf.Tensor]:
    """A vocabulary input as ([records, width] values, [records] number of values of each record's row)."""
    if isinstance(x, tf.SparseTensor):
        if x.shape.rank != 2:
            raise ValueError(
                f"ppml analyzer {scope.rstrip('/')!r}: a SparseTensor input must be 2-D ([records, "
                f"tokens]), got shape {x.shape}"
            )
        x = tf.RaggedTensor.from_sparse(x)
    if isinstance(x, tf.RaggedTensor):
        if x.shape.rank != 2:
            raise ValueError(
                f"ppml analyzer {scope.rstrip('/')!r}: a RaggedTensor input must be 2-D ([records, "
                f"(tokens)]), got shape {x.shape}; merge its inner dimensions per record first"
            )
        return x.to_tensor(), tf.cast(x.row_lengths(), tf.int64)
    x = tf.convert_to_tensor(x)
    width = tf.reduce_prod(tf.shape(x, out_type=tf.int64)[1:])
    return x, tf.fill(tf.shape(x, out_type=tf.int64)[:1], width)


def _per_record(x: tf.Tensor) -> int:
    """Values per record, from ``x``'s static shape (records along the first axis)."""
    if isinstance(x, (tf.SparseTensor, tf.RaggedTensor)):
        raise ValueError(
            "private numeric analyzers take dense features (densify sparse or ragged ones first, "
            "e.g. with tft.sparse_tensor_to_dense_with_shape)"
        )
    inner = x.shape[1:]
    if not inner.is_fully_defined():
        raise ValueError(f"private numeric analyzers need a static size per record, got shape {x.shape}")
    return int(math.prod(inner.as_list())) if inner.rank else 1


def _probabilities(values) -> list[float]:
    out = [float(p) for p in values]
    if not out or any(not 0 <= p <= 1 for p in out):
        raise ValueError(f"probabilities must be a non-empty list of numbers in [0, 1], got {values!r}")
    return out
