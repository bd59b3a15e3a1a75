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

from privacy.keras import DPConfigurationError, poisson_batches, sampling_of
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
