"""Batch sampling as tf.data transformations that the accountant can trust.

`poisson_batches` draws every batch by Poisson sampling (each example joins each batch independently
with probability q = B / n), the scheme whose amplification `PoissonSampledDpEvent` accounts. Batches
are padded to a fixed ``max_batch_size`` (static shapes for XLA) and come with a 0/1 weight that
masks the padding, so an empty batch is just a batch of zero weights: the step still adds noise and
the accountant still counts it. With ``truncated_batch_size`` K the padding shrinks: a batch that draws
more than K examples is cut to a uniformly random K of them (truncated Poisson sampling, accounted by
`TruncatedSubsampledGaussianDpEvent`), and the sampler counts the batches it cut. `fixed_size_batches`
draws B examples without replacement per step (accounted as such, under replace-one adjacency).

Both return an endless dataset of ``(x, y, weight)`` batches and remember how they were built, so
`make_private`'s `fit` can check that the sampling it accounts is the sampling that ran (the check
looks through `prefetch`, `take`, `repeat` and `with_options` applied afterwards). Padding rows are
zeros with weight -0.0 (never copies of an example; a real example's weight 0 is +0.0, `masking.is_padding`).
`shuffled_batches` is what `fit` runs on arrays under shuffling: epochs of a permutation that continues across
`fit` calls and resumed runs.

Memory: every step looks at all n examples, so they must be at hand. Examples given as arrays (what
`fit(x, y)` passes) are not copied: each step draws the indices of its batch in TensorFlow and gathers
those rows from the caller's numpy arrays. Examples given as a `tf.data.Dataset` are read once into
memory (one copy of all n examples, e.g. 180 MB for 60 000 MNIST-shaped float32 images).
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import secrets
from typing import Callable

import numpy as np
import tensorflow as tf

from privacy import validation
from privacy.accounting import Sampling, truncation
from privacy.keras.masking import padding_weights, select_rows
from privacy.keras.params import DPConfigurationError

DEFAULT_OVERFLOW_PROBABILITY = 1e-9
"""Per-step probability that a Poisson batch exceeds the default `max_batch_size`."""
_TAG = "_ppml_batch_sampling"
_FOREVER = 2**62
_TRANSPARENT = ("_PrefetchDataset", "_OptionsDataset", "_TakeDataset", "_RepeatDataset")


@dataclasses.dataclass(frozen=True)
class BatchSampling:
    """How a dataset of batches was drawn (what `sampling_of` reports)."""

    sampling: Sampling
    dataset_size: int
    expected_batch_size: float
    max_batch_size: int
    steps_per_epoch: int
    random_slots: bool = False
    truncated: bool = False
    """Batches of more than ``max_batch_size`` are cut to a uniformly random subset of that size."""
    cut: tf.Variable | None = dataclasses.field(default=None, compare=False, repr=False)
    """How many batches the sampler has cut (those prefetched but not yet trained on included)."""

    @property
    def truncated_batch_size(self) -> int | None:
        """K for the accountant when batches are truncated, else None."""
        return self.max_batch_size if self.truncated else None

    @property
    def truncated_batches(self) -> int:
        """Batches cut so far by this sampler (0 when it never truncates)."""
        return 0 if self.cut is None else int(self.cut.numpy())


def default_max_batch_size(
    dataset_size: int, expected_batch_size: float, overflow_probability: float = DEFAULT_OVERFLOW_PROBABILITY
) -> int:
    """Smallest m with P(Binomial(n, B / n) > m) <= ``overflow_probability``."""
    from scipy import stats

    q = expected_batch_size / dataset_size
    return max(1, int(stats.binom.isf(overflow_probability, dataset_size, q)))


def inclusion_threshold(dataset_size: int, expected_batch_size: float) -> int:
    """t = floor(q 2^64) for q = B / n (exact): an example joins a Poisson batch when its uniform 64-bit
    variate is below t, with probability t / 2^64, which is q rounded down by less than 2^-64 (never up)."""
    threshold = math.floor(fractions.Fraction(expected_batch_size) * 2**64 / dataset_size)
    if threshold < 1:
        raise DPConfigurationError(
            f"the sampling probability q = {expected_batch_size!r} / {dataset_size} is below 2^-64, "
            f"the resolution of the sampler"
        )
    return threshold


def check_truncated_batch_size(
    value, dataset_size: int | None = None, expected_batch_size: float | None = None
) -> int | str | None:
    """`privacy.accounting.truncation.check_truncated_batch_size`, refused as a `DPConfigurationError`."""
    try:
        return truncation.check_truncated_batch_size(value, dataset_size, expected_batch_size)
    except ValueError as err:
        raise DPConfigurationError(str(err)) from None


def resolve_truncated_batch_size(value, dataset_size: int, expected_batch_size: float) -> int | None:
    """``value`` (None, `truncation.DEFAULT` or an integer in [ceil(B), n]) as K or None
    (`truncation.default_truncated_batch_size` for the default)."""
    value = check_truncated_batch_size(value, dataset_size, expected_batch_size)
    return truncation.resolve_truncated_batch_size(value, dataset_size, expected_batch_size)


def poisson_batches(
    examples,
    *,
    dataset_size: int,
    expected_batch_size: float,
    max_batch_size: int | None = None,
    truncated_batch_size: int | str | None = None,
    seed: int | None = None,
    random_slots: bool = False,
) -> tf.data.Dataset:
    """Endless Poisson-sampled batches of ``examples``, padded and masked.

    Args:
      examples: ``(x, y)`` or ``(x, y, sample_weight)`` as arrays with n rows (x and y may be nested,
        e.g. a dict of feature arrays), gathered from without copying; or a finite, unbatched
        `tf.data.Dataset` of such examples, read once into memory.
      dataset_size: n, the number of examples (checked against the data).
      expected_batch_size: B; each example joins each batch with probability q = B / n, rounded down to a
        multiple of 2^-64 (`inclusion_threshold`; uniform 64-bit variates).
      max_batch_size: padded batch size; default: the (1 - 1e-9) quantile of Binomial(n, q). A batch
        that would exceed it stops the input pipeline with an error rather than being truncated
        (truncation would change the mechanism the accountant analyses). Not with ``truncated_batch_size``.
      truncated_batch_size: K for truncated Poisson sampling, or "default" for
        `truncation.default_truncated_batch_size`: batches are padded to K, and a draw of more than K examples
        keeps the first K of a uniformly random permutation of those drawn (a uniformly random K-subset, drawn
        independently of which examples were drawn). Accounted as `TruncatedSubsampledGaussianDpEvent`;
        ``sampling_of(dataset).truncated_batches`` counts the batches cut. Per-example clipping only.
      seed: seed of the sampling randomness for reproducible runs (the same batches for a seed within one version
        of ppml: `_poisson_indices`' high-byte draw, which now skips the seed pair's first two words, changed them from
        earlier versions'); default: from `secrets`.
      random_slots: put the sampled examples and the padding in uniformly random slots instead of
        examples first (in dataset order). Required when the batch is clipped in microbatches of
        consecutive slots: an added example then takes one free slot and changes one microbatch (2C),
        instead of shifting every later example into the next microbatch.

    Returns:
      A dataset of ``(x, y, weight)`` with leading dimension ``max_batch_size``; weight is 0 on padding (-0.0:
      `masking.is_padding`).
    """
    n, q = _check_sizes(dataset_size, expected_batch_size)
    cap = resolve_truncated_batch_size(truncated_batch_size, n, expected_batch_size)
    if cap is not None and max_batch_size is not None:
        raise DPConfigurationError(
            "give poisson_batches max_batch_size (never cut) or truncated_batch_size (cut to a random subset), not both"
        )
    limit = cap or (max_batch_size if max_batch_size is not None else default_max_batch_size(n, expected_batch_size))
    limit = validation.integer("max_batch_size", limit, minimum=1, error=DPConfigurationError)
    cut = None if cap is None else tf.Variable(0, dtype=tf.int64, trainable=False, name="ppml_truncated_batches")

    threshold = inclusion_threshold(n, expected_batch_size)

    def draw(seed_pair):
        index = _poisson_indices(seed_pair, n, threshold)
        count = tf.size(index)
        if cut is None:
            checks = [
                tf.debugging.assert_less_equal(
                    count,
                    limit,
                    message=f"a Poisson batch exceeded max_batch_size={limit}; pass a larger "
                    f"max_batch_size to poisson_batches",
                )
            ]
        else:  # keep the first `limit` of a random permutation of the drawn examples, in dataset order
            checks = [cut.assign_add(tf.cast(count > limit, tf.int64))]
            count = tf.minimum(count, limit)
            index = tf.sort(_permuted(index, seed_pair, 2)[:count])
        with tf.control_dependencies(checks):
            index = tf.ensure_shape(tf.pad(index, [[0, limit - count]]), [limit])
        mask = tf.sequence_mask(count, limit)
        if random_slots:
            slots = _permuted(tf.range(limit), seed_pair, 1)
            index, mask = tf.gather(index, slots), tf.gather(mask, slots)
        return index, mask

    return _tagged(
        _batches(examples, n, _seed_pairs(seed).map(draw)),
        BatchSampling(
            Sampling.POISSON,
            n,
            float(expected_batch_size),
            limit,
            max(1, round(n / expected_batch_size)),
            random_slots=bool(random_slots),
            truncated=cap is not None,
            cut=cut,
        ),
    )


def fixed_size_batches(examples, *, dataset_size: int, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Endless batches of exactly ``batch_size`` examples drawn uniformly without replacement per step.

    Arguments as in `poisson_batches`. Accounted as sampling without replacement (replace-one adjacency).
    """
    n, _ = _check_sizes(dataset_size, batch_size)
    batch_size = validation.integer("batch_size", batch_size, error=DPConfigurationError)

    def draw(seed_pair):
        index = _permuted(tf.range(n), seed_pair, 0)[:batch_size]
        return index, tf.ones([batch_size], tf.bool)

    return _tagged(
        _batches(examples, n, _seed_pairs(seed).map(draw)),
        BatchSampling(Sampling.FIXED, n, float(batch_size), batch_size, max(1, round(n / batch_size))),
    )


def shuffled_batches(
    examples, *, dataset_size: int, batch_size: int, seed: int, start_step: int = 0, shuffle: bool = True
) -> tf.data.Dataset:
    """Endless shuffle-and-iterate batches from global step ``start_step`` on (what `fit` runs under shuffling).

    Epoch e is a permutation of the n examples (derived from ``seed`` and e; the identity with
    ``shuffle=False``) cut into ceil(n / B) consecutive batches, the last one partial, so every example
    is used exactly once per epoch and no batch straddles two epochs. Step k of the run is batch k mod
    ceil(n / B) of epoch k // ceil(n / B) whichever iterator draws it: a new `fit`, or a run resumed
    from its saved state, continues the epoch where the previous one stopped instead of starting a new
    permutation (which would use some examples twice in what is accounted as one epoch). The seed is
    not secret: the once-per-epoch bound claims no amplification from the order.
    """
    n, _ = _check_sizes(dataset_size, batch_size)
    per_epoch = math.ceil(n / batch_size)
    first_epoch, offset = divmod(start_step, per_epoch)

    def epoch(e):
        order = (
            tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), e]))
            if shuffle
            else tf.range(n)
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def in_order(index):
        return index, tf.ones(tf.shape(index), tf.bool)

    indices = tf.data.Dataset.range(first_epoch, _FOREVER).flat_map(epoch).skip(offset).map(in_order)
    return _batches(examples, n, indices)


def sampling_of(dataset) -> BatchSampling | None:
    """How ``dataset``'s batches were drawn, if by `poisson_batches` / `fixed_size_batches`, else None."""
    while isinstance(dataset, tf.data.Dataset):
        found = getattr(dataset, _TAG, None)
        if found is not None:
            return found
        inputs = dataset._inputs()
        if type(dataset).__name__ not in _TRANSPARENT or len(inputs) != 1:
            return None
        dataset = inputs[0]
    return None


def batches_per_pass(dataset) -> int:
    """Batches in one pass of a caller's dataset of shuffled batches: its cardinality, or for
    ``batches.repeat()`` that of ``batches``; refused when it cannot be read from the dataset."""
    while type(dataset).__name__ in ("_PrefetchDataset", "_OptionsDataset"):
        dataset = dataset._inputs()[0]
    where = "the dataset"
    if type(dataset).__name__ == "_RepeatDataset":
        dataset, where = dataset._inputs()[0], "the repeated dataset"
    count = int(dataset.cardinality())
    if count < 1 or _repeats_inside(dataset):
        why = (
            "it is empty"
            if count == 0
            else "it repeats before it ends"
            if count > 0
            else "its cardinality is infinite"
            if count == tf.data.INFINITE_CARDINALITY
            else "its cardinality is unknown"
        )
        raise DPConfigurationError(
            f"the steps of one shuffled epoch cannot be read from {where}: {why}. Batch a finite dataset, e.g. "
            "examples.shuffle(n).batch(B), optionally followed by .repeat(); or give fit the arrays"
        )
    return count


def _repeats_inside(dataset) -> bool:
    """Whether a `repeat` hides inside (e.g. ``repeat().take(k)``, whose cardinality is no pass)."""
    inputs = dataset._inputs()
    return any(type(d).__name__ == "_RepeatDataset" or _repeats_inside(d) for d in inputs)


def checked_passes(dataset, *, batch_size: int, batches_per_pass: int, dataset_size: int | None):
    """``dataset`` with every batch checked to hold at most ``batch_size`` examples and every pass (its
    ``batches_per_pass`` consecutive batches from the start of an iterator, or of a repetition) at most
    ``dataset_size`` examples; an error stops the input pipeline otherwise (before the batch is used).

    A pass holding more examples than the data set has uses some of them twice in what is accounted as
    one epoch (e.g. ``one_pass.concatenate(one_pass)``). That no example repeats within a pass is what
    ``sampling='shuffle'`` declares and cannot be checked here.
    """

    def check(state, element):
        index, in_pass = state
        size = tf.cast(tf.shape(tf.nest.flatten(element)[0])[0], tf.int64)
        in_pass = tf.where(index % batches_per_pass == 0, tf.constant(0, tf.int64), in_pass) + size
        checks = [
            tf.debugging.assert_less_equal(
                size,
                tf.constant(batch_size, tf.int64),
                message=f"a batch holds more examples than expected_batch_size={batch_size}, the batch size the run "
                f"is accounted with",
            )
        ]
        if dataset_size is not None:
            checks.append(
                tf.debugging.assert_less_equal(
                    in_pass,
                    tf.constant(dataset_size, tf.int64),
                    message=f"one pass over the dataset ({batches_per_pass} batches) holds more examples than "
                    f"dataset_size={dataset_size}, so some are used twice in what is accounted as one epoch",
                )
            )
        with tf.control_dependencies(checks):
            element = tf.nest.map_structure(tf.identity, element)
        return (index + 1, in_pass), element

    return dataset.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), check)


def _check_sizes(dataset_size, batch_size) -> tuple[int, float]:
    dataset_size = validation.integer("dataset_size", dataset_size, minimum=1, error=DPConfigurationError)
    batch_size = validation.number(
        "the batch size",
        batch_size,
        low=0,
        high=dataset_size,
        low_open=True,
        note="dataset_size",
        error=DPConfigurationError,
    )
    return dataset_size, batch_size / dataset_size


def _batches(examples, n: int, indices: tf.data.Dataset) -> tf.data.Dataset:
    """A batch of rows for every ``(index, keep)`` of ``indices``; rows where ``keep`` is False are padding."""
    if isinstance(examples, tf.data.Dataset):

        def from_memory(*element):
            x, y, w = _split(element)
            size = tf.shape(tf.nest.flatten(x)[0])[0]
            size_check = tf.debugging.assert_equal(
                size,
                n,
                message=f"the dataset does not hold dataset_size={n} examples (it must be finite and "
                f"unbatched, and dataset_size must count it exactly)",
            )

            def gather(index, keep):
                with tf.control_dependencies([size_check]):
                    index = tf.identity(index)
                take = lambda t: tf.gather(t, index)  # noqa: E731
                weight = None if w is None else take(tf.reshape(w, [-1]))
                return _padded(tf.nest.map_structure(take, x), tf.nest.map_structure(take, y), weight, keep)

            return indices.map(gather)

        return examples.batch(n + 1).take(1).flat_map(from_memory)
    return indices.map(_in_place_gather(examples, n))


def _in_place_gather(examples, n: int) -> Callable:
    """``gather(index, mask)`` of rows of the caller's arrays, nothing copied up front.

    Numeric arrays are read through numpy; string arrays (rare, small) are held as tensors.
    """
    if not isinstance(examples, (tuple, list)) or any(part is None for part in examples):
        raise DPConfigurationError(
            f"examples must be a tf.data.Dataset or a tuple (x, y) / (x, y, sample_weight) of arrays, got "
            f"{examples!r:.80}"
        )
    examples = _tuples(tuple(examples))  # tf.data would stack a list of outputs' targets into one tensor
    _split(examples)
    arrays = [np.asarray(leaf) for leaf in tf.nest.flatten(examples)]
    sizes = sorted({len(a) if a.ndim else 0 for a in arrays})
    if sizes != [n]:
        raise DPConfigurationError(f"the example arrays must all have dataset_size={n} rows, got {sizes}")
    strings = {i: tf.constant(a) for i, a in enumerate(arrays) if a.dtype.kind in "OSU"}
    numeric = [i for i in range(len(arrays)) if i not in strings]

    def gather(index, keep):
        taken = (
            tf.numpy_function(
                lambda i: [np.take(arrays[k], i, axis=0) for k in numeric],
                [index],
                [tf.as_dtype(arrays[k].dtype) for k in numeric],
                stateful=False,
            )
            if numeric
            else []
        )
        rows = {
            k: tf.ensure_shape(t, [index.shape[0], *arrays[k].shape[1:]]) for k, t in zip(numeric, taken, strict=True)
        }
        rows.update({k: tf.gather(t, index) for k, t in strings.items()})
        x, y, w = _split(tf.nest.pack_sequence_as(examples, [rows[k] for k in range(len(arrays))]))
        return _padded(x, y, w, keep)

    return gather


def _tuples(structure):
    """``structure`` with its lists as tuples (tf.data reads a list as one tensor, a tuple as a structure)."""
    if isinstance(structure, (list, tuple)):
        return tuple(_tuples(part) for part in structure)
    if isinstance(structure, dict):
        return {key: _tuples(part) for key, part in structure.items()}
    return structure


def _split(element):
    if len(element) == 2:
        return element[0], element[1], None
    if len(element) == 3:
        return element
    raise DPConfigurationError(f"expected examples (x, y) or (x, y, sample_weight), got a {len(element)}-tuple")


def _seed_pairs(seed):
    """Per-batch seed pairs drawn statelessly from ``seed`` alone (TensorFlow's global seed plays no part), so a
    seed reproduces a run; every new iterator (each `fit`) takes the next stream of the seed, never a replay."""
    if seed is None:
        seed = secrets.randbits(63)
    key = tf.constant(seed, tf.int64)
    streams = tf.Variable(-1, dtype=tf.int64, trainable=False, name="ppml_sampling_streams")

    def pair(stream, step):  # the scan's state is the iterator's own: its stream, taken at its first element
        stream = tf.cond(stream < 0, lambda: streams.assign_add(1), lambda: stream)
        return stream, tf.random.experimental.stateless_fold_in(tf.stack([key, stream]), step)

    return tf.data.Dataset.counter().scan(tf.constant(-1, tf.int64), pair)


def _poisson_indices(seed_pair, n: int, threshold: int):
    """The examples (int32 indices in [0, n), ascending) that join the batch of ``seed_pair``: example i joins when
    its uniform 64-bit variate U_i = H_i 2^56 + R_i is below ``threshold`` t (probability t / 2^64, independently).

    The high bytes H_i are drawn for all n examples (the bytes of n / 4 Philox words of the seed pair after its first
    two: an eighth of the words that 64-bit variates take), the low 56 bits R_i only for the candidates,
    H_i <= (t - 1) >> 56 (at most B + n / 256 of them on average; all n as q nears 1), one per candidate in index
    order (the top 56 bits of a uniform 64-bit word) from stream 3 (`_stream`: a key of the pair's first two words
    and 3, which two steps share with probability 2^-64). No key is made of values that decide membership: the two
    words every stream's key holds are skipped (they were H_0..H_7 before). With Philox taken as a random function,
    as for every draw of the sampler, R is independent of H, so every U_i is a uniform 64-bit variate, independent of
    the others, and the rule is U_i <= t - 1 exactly.
    """
    below = threshold - 1
    high, low = tf.constant(below >> 56, tf.uint8), tf.constant(below & (2**56 - 1), tf.uint64)
    words = tf.random.stateless_uniform([(n + 3) // 4 + 2], seed=seed_pair, minval=None, maxval=None, dtype=tf.uint32)
    bytes_ = tf.reshape(tf.bitcast(words, tf.uint8), [-1])[8 : n + 8]  # not the first 64 bits: the streams' keys
    candidates = tf.where(bytes_ <= high)[:, 0]
    rest = tf.bitwise.right_shift(
        tf.random.stateless_uniform(
            tf.shape(candidates),
            seed=_stream(seed_pair, 3),
            minval=None,
            maxval=None,
            dtype=tf.uint64,
        ),
        tf.constant(8, tf.uint64),
    )
    joins = (tf.gather(bytes_, candidates) < high) | (rest <= low)
    return tf.cast(tf.boolean_mask(candidates, joins), tf.int32)


def _permuted(values, seed_pair, stream: int):
    """``values`` in a uniformly random order (`_stream` ``stream`` of the batch's seed pair; no ties)."""
    return tf.random.experimental.stateless_shuffle(values, seed=_stream(seed_pair, stream))


def _stream(seed_pair, stream: int):
    """The Philox key of stream ``stream`` of a batch's seed pair (0, 1, 2: `_permuted`; 3: `_poisson_indices`),
    folded in as int64: the first 64 bits of the pair's own Philox output and ``stream``, so two steps share a key
    with probability 2^-64 (an int32 fold-in's 32 bits would repeat among the steps of a long run)."""
    return tf.random.experimental.stateless_fold_in(seed_pair, tf.constant(stream, tf.int64))


def _padded(x, y, w, keep):
    """``(x, y, weight)`` with the padding rows (``keep`` False) replaced by zeros and weight -0.0, the padding
    marker (`masking.padding_weights`: a real example's weight 0 is +0.0).

    Padding is selected away, never multiplied by 0: a copy of a real example could hold inf or NaN,
    and 0 x inf is NaN, which would reach every step whether that example was sampled or not.
    """

    def blank(structure):
        return tf.nest.map_structure(lambda t: select_rows(keep, t), structure)

    weight = tf.ones(tf.shape(keep), tf.float32) if w is None else tf.cast(tf.reshape(w, [-1]), tf.float32)
    return blank(x), blank(y), padding_weights(keep, weight)


def _tagged(dataset, sampling: BatchSampling):
    setattr(dataset, _TAG, sampling)
    return dataset
