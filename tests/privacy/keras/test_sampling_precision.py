"""The sampler's resolution at small sampling rates: inclusion probability at most q, cuts uniform without ties.

float32 variates (multiples of 2^-23) would include each example with probability ceil(q 2^23) / 2^23 > q and,
below q = 2^-23, give every drawn example the variate 0, so ranking the cut by variates keeps the lowest indices.
"""

import fractions
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from privacy.keras import DPConfigurationError, poisson_batches, sampling, sampling_of
from privacy.keras.sampling import inclusion_threshold

N = 2**22
"""Examples in the small-q test; with B = 0.25, q = 2^-24 lies below float32's grid (which would include with
probability 2^-23, doubling the batches and the cuts)."""


@pytest.mark.parametrize("n, batch", [(60000, 256), (3, 1), (7, 7), (2**40 + 1, 0.3), (10, 2.5)])
def test_the_inclusion_threshold_is_q_rounded_down(n, batch):
    t = inclusion_threshold(n, batch)
    q = fractions.Fraction(batch) / n
    assert fractions.Fraction(t, 2**64) <= q < fractions.Fraction(t + 1, 2**64)


def test_a_rate_below_the_resolution_is_refused():
    with pytest.raises(DPConfigurationError, match="below 2\\^-64"):
        inclusion_threshold(2**63, 0.25)


def _no_prefetch(dataset):
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    return dataset.with_options(options)


@pytest.mark.slow
def test_small_rates_keep_their_probability_and_cuts_are_uniform():
    """n = 2^22, B = 0.25, K = 1 (q = 2^-24). Untruncated: the mean batch size is B (float32: 0.5). Truncated: the
    non-empty and cut batches are as frequent as Binomial(n, q) says, and a cut keeps a uniformly random one of the
    drawn examples, so the kept index is uniform on [0, n) (ranking tied variates would keep the lowest)."""
    batch, steps = 0.25, 200
    x = np.arange(N, dtype=np.int32)
    plain = poisson_batches((x, x), dataset_size=N, expected_batch_size=batch, seed=11)
    sizes = [float(w.numpy().sum()) for _, _, w in plain.take(steps)]
    assert abs(np.mean(sizes) - batch) < 4 * math.sqrt(batch / steps)

    cut_batches = poisson_batches((x, x), dataset_size=N, expected_batch_size=batch, truncated_batch_size=1, seed=12)
    info = sampling_of(cut_batches)
    kept, nonempty, before = [], 0, 0
    for features, _, weight in _no_prefetch(cut_batches).take(3 * steps):
        nonempty += int(weight.numpy()[0])
        after = info.truncated_batches
        if after > before:
            kept.append(features.numpy()[0] / N)
        before = after
    q = batch / N
    for observed, p in ((nonempty, stats.binom.sf(0, N, q)), (len(kept), stats.binom.sf(1, N, q))):
        assert abs(observed - 3 * steps * p) < 4 * math.sqrt(3 * steps * p) + 2, (observed, p)
    assert len(kept) >= 5 and stats.kstest(kept, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("truncated", [None, 11])
def test_a_seed_alone_reproduces_the_batches_whatever_tensorflows_global_seed(truncated):
    """The same seed gives the same batches after different tf.random.set_seed calls (and none), a new iterator
    of the dataset (a second `fit`) draws new batches, never a replay, and another seed other batches."""
    x = np.arange(200, dtype=np.int32)

    def batches(seed, global_seed=None, iterations=1):
        if global_seed is not None:
            tf.random.set_seed(global_seed)
        dataset = poisson_batches(
            (x, x), dataset_size=200, expected_batch_size=10, seed=seed, truncated_batch_size=truncated
        )
        return [[w.numpy().astype(bool) * f.numpy() for f, _, w in dataset.take(5)] for _ in range(iterations)]

    first = batches(7, global_seed=1, iterations=2)
    for global_seed in (2, 12345, None):
        again = batches(7, global_seed=global_seed, iterations=2)
        for run, run_again in zip(first, again, strict=True):
            for a, b in zip(run, run_again, strict=True):
                np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(first[0], first[1], strict=True)
    )  # the second iterator: new batches
    assert any(not np.array_equal(a, b) for a, b in zip(first[0], batches(8, global_seed=1)[0], strict=True))


def test_interleaved_iterators_of_one_seeded_dataset_keep_their_own_streams():
    """A second iterator opened while the first is still drawing takes the next stream; the first keeps its own
    (its batches are those of the first iterator of a fresh dataset of the same seed), so no two share a batch."""
    x = np.arange(200, dtype=np.int32)

    def dataset():
        return poisson_batches((x, x), dataset_size=200, expected_batch_size=10, seed=7)

    def batch(element):
        f, _, w = element
        return w.numpy().astype(bool) * f.numpy()

    alone = [batch(b) for b in dataset().take(8)]
    shared = dataset()
    first = iter(shared)
    a = [batch(next(first)) for _ in range(2)]
    second = iter(shared)
    b = [batch(next(second)) for _ in range(2)]
    a += [batch(next(first)) for _ in range(6)]
    b += [batch(next(second)) for _ in range(6)]
    for mine, expected in zip(a, alone, strict=True):
        np.testing.assert_array_equal(mine, expected)
    assert not any(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def _variates(seed_pair, n, below):
    """The uniform 64-bit variates U_i <= ``below``'s high byte plus all ones, reconstructed in numpy from the
    sampler's two Philox draws (its high bytes: the little-endian bytes of n / 4 uint32 words of the seed pair after
    its first two; the candidates' low 56 bits: the top bits of one uint64 each, stream 3 folded in as int64):
    {index: U_i} for the candidates, H_i <= below >> 56."""
    words = tf.random.stateless_uniform([(n + 3) // 4 + 2], seed=seed_pair, minval=None, maxval=None, dtype=tf.uint32)
    high = words.numpy().astype("<u4").view(np.uint8)[8 : n + 8]
    candidates = np.flatnonzero(high <= below >> 56)
    low = tf.random.stateless_uniform(
        [len(candidates)],
        seed=tf.random.experimental.stateless_fold_in(seed_pair, tf.constant(3, tf.int64)),
        minval=None,
        maxval=None,
        dtype=tf.uint64,
    ).numpy()
    return {int(i): (int(high[i]) << 56) | (int(u) >> 8) for i, u in zip(candidates, low, strict=True)}


def test_a_batch_is_the_examples_whose_variate_is_below_the_threshold():
    """Thresholds at a candidate's exact variate U_k (k excluded: U_k < t fails) and U_k + 1 (included), for
    examples whose high byte ties the threshold's (3, and the extremes 0 and 255), one below it, and thresholds whose
    low bits are 0 or all ones: the batch is exactly {i : U_i < t} of the variates reconstructed independently of the
    sampler's comparison; also for n = 1."""
    n, seed_pair = 5000, tf.constant([3, 14], tf.int64)
    ties = []  # (k, U_k) as drawn at thresholds of k's high byte (the candidates, so each one's low bits, depend on it)
    for byte, count in ((3, 3), (0, 1), (255, 1)):
        ties += [(k, u) for k, u in _variates(seed_pair, n, ((byte + 1) << 56) - 1).items() if u >> 56 == byte][:count]
    lower = next(u for u in _variates(seed_pair, n, (4 << 56) - 1).values() if u >> 56 == 2)  # byte 2, below 3
    thresholds = [u + d for u in [u for _, u in ties] + [lower] for d in (0, 1)]
    thresholds += [3 << 56, (3 << 56) + 1, 4 << 56, 2**64 - 1, 2**64, 1]
    included = set()
    for t in thresholds:
        variates = _variates(seed_pair, n, t - 1)
        expected = sorted(i for i, u in variates.items() if u < t)
        got = sampling._poisson_indices(seed_pair, n, t).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"t = {t}")
        included.update((t, int(i)) for i in got)
    assert len(ties) == 5
    for k, u in ties:  # the boundary itself: U_k = t - 1 joins, U_k = t does not
        assert (u + 1, k) in included and (u, k) not in included
    assert len(sampling._poisson_indices(seed_pair, n, 2**64)) == n
    (only,) = _variates(seed_pair, 1, 2**64 - 1).values()
    assert [sampling._poisson_indices(seed_pair, 1, t).numpy().tolist() for t in (only, only + 1)] == [[], [0]]


def test_every_streams_key_holds_the_pairs_first_two_words_which_the_high_bytes_skip():
    """An int64 fold-in's key is the pair's first 64 bits of Philox output and the stream: the high bytes H skip those
    two words (`_variates`, which the batch tests compare the sampler with), so no stream's key is made of H_0..H_7."""
    seed_pair = tf.constant([3, 14], tf.int64)
    own = tf.random.stateless_uniform([2], seed=seed_pair, minval=None, maxval=None, dtype=tf.uint32)
    for stream in (0, 3):
        key = tf.random.experimental.stateless_fold_in(seed_pair, tf.constant(stream, tf.int64)).numpy()
        assert np.array([key[0]], "<i8").view(np.uint8).tolist() == own.numpy().astype("<u4").view(np.uint8).tolist()
        assert key[1] == stream


@pytest.mark.parametrize("truncated", [None, 31])
def test_poisson_batches_hold_the_examples_of_the_reconstructed_rule(truncated):
    """The first steps of a seeded `poisson_batches` hold exactly the examples whose reconstructed variate is below
    `inclusion_threshold` (step k's seed pair: `stateless_fold_in((seed, 0), k)`); truncated to K = 31 at an
    expected 30, a batch holds those when they are at most 31, else 31 of them."""
    n, batch, seed = 3000, 30, 21
    x = np.arange(n, dtype=np.int32)
    t = inclusion_threshold(n, batch)
    dataset = poisson_batches(
        (x, x), dataset_size=n, expected_batch_size=batch, seed=seed, truncated_batch_size=truncated
    )
    for step, (features, _, weight) in enumerate(dataset.take(6)):
        pair = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), tf.constant(step, tf.int64))
        expected = sorted(i for i, u in _variates(pair, n, t - 1).items() if u < t)
        got = features.numpy()[weight.numpy() != 0]
        if truncated is None or len(expected) <= truncated:
            np.testing.assert_array_equal(got, expected)
        else:
            assert len(got) == truncated and set(got) <= set(expected)


@pytest.mark.parametrize("n, batch", [(1000, 40), (300, 271.5), (2000, 0.7)])
def test_batch_sizes_follow_the_binomial_and_examples_join_independently(n, batch):
    """4 000 seeded draws: the batch sizes against Binomial(n, t / 2^64) (chi-square over bins of expected count >= 20),
    each example's joins against Binomial(4 000, p) (chi-square over the n examples), and the examples 4j and
    4j + 1 (high bytes of one Philox word) joining together p^2 of the time."""
    steps, t = 4000, inclusion_threshold(n, batch)
    p = t / 2**64

    def joins(i):
        index = sampling._poisson_indices(tf.stack([i, tf.constant(77, tf.int64)]), n, t)
        return tf.scatter_nd(tf.expand_dims(index, 1), tf.ones_like(index), [n])

    draws = tf.data.Dataset.range(steps).map(joins)
    joined = np.stack([d.numpy() for d in draws.batch(500)]).reshape(steps, n).astype(bool)
    sizes = joined.sum(axis=1)
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    edges, mass = [0], 0.0
    for k in range(n + 1):  # bins of expected count >= 20, the last one open
        mass += pmf[k]
        if mass * steps >= 20 and stats.binom.sf(k, n, p) * steps >= 20:
            edges.append(k + 1)
            mass = 0.0
    observed = np.add.reduceat(np.bincount(sizes, minlength=n + 1), edges)
    expected = np.add.reduceat(pmf, edges) * steps
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-4
    per_example = joined.sum(axis=0)
    statistic = np.sum((per_example - steps * p) ** 2) / (steps * p * (1 - p))
    assert stats.chi2.sf(statistic, n) > 1e-4 and stats.chi2.cdf(statistic, n) > 1e-4
    pairs = np.sum(joined[:, 0::4][:, : n // 4] & joined[:, 1::4][:, : n // 4])
    trials = steps * (n // 4)
    assert abs(pairs - trials * p * p) < 5 * math.sqrt(trials * p * p * (1 - p * p)) + 1


def test_shuffles_are_keyed_by_64_bits_of_the_seed_pair():
    """`_permuted` (fixed-size batches, truncation's random subset, random slots) keys its shuffle with a 64-bit word
    of the batch's seed pair and the stream, as this reconstruction does: folded in as an int32 the word had 32 bits,
    so about S^2 / 2^33 pairs of a run's S steps shared a permutation (~100 pairs in a million steps)."""
    values = tf.range(50)
    for first in range(4):
        pair = tf.constant([first, 99], tf.int64)
        for stream in (1, 2):
            key = tf.random.experimental.stateless_fold_in(pair, tf.constant(stream, tf.int64))
            assert key.dtype == tf.int64
            expected = tf.random.experimental.stateless_shuffle(values, seed=key)
            np.testing.assert_array_equal(sampling._permuted(values, pair, stream), expected)
