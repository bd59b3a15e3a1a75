"""skip_padding leaves out the sampler's padding only: the rows a step computes depend on the draw, not on weights.

Real examples of sample weight 0 (or NaN) must stay in the batch: were they left out like padding, a step's row count
(hence its duration) would show how many drawn examples have weight 0, a value of the data.
"""

import numpy as np
import pytest
import tensorflow as tf

from privacy.accounting.noisy_padding import NOISY_ROWS_MULTIPLE
from privacy.keras import poisson_batches
from privacy.keras.masking import is_padding, padding_weights
from privacy.keras.train_step import PADDED_ROWS_MULTIPLE, without_padding

N, STEPS = 200, 12


def _steps(weights, extra=None):
    """Per step of Poisson batches (seed 3): (examples drawn, the padded batch's rows, the example ids
    `without_padding` keeps, in order), with noisy padding's ``extra`` rows where given."""
    ids = np.arange(1, N + 1, dtype="float32")[:, None]  # padding rows are zeros
    batches = poisson_batches((ids, ids[:, 0], weights), dataset_size=N, expected_batch_size=32, seed=3)
    out = []
    for x, _, w in batches.take(STEPS):
        kept, _, _ = without_padding(x, None, w, None if extra is None else tf.constant(extra))
        out.append((int(np.sum(x.numpy() != 0)), int(w.shape[0]), kept.numpy()[:, 0]))
    return out


@pytest.mark.parametrize("extra", [None, 3])
def test_real_examples_of_weight_0_do_not_change_the_rows_kept(extra):
    """Plain skip_padding (``extra`` None: m rounded up to 32) and noisy padding (3 padding rows drawn: min(cap,
    m + 3) rounded up to `NOISY_ROWS_MULTIPLE`) keep the same rows whatever the drawn examples' weights."""
    weights = np.ones(N, "float32")
    weights[::2] = 0.0  # half the examples: every batch draws some
    weights[1::10] = -0.0  # a real weight 0 of either sign
    weights[3::10] = np.nan
    weights[5::10] = 3e38  # huge
    multiple = PADDED_ROWS_MULTIPLE if extra is None else NOISY_ROWS_MULTIPLE
    plain, zeroed = _steps(np.ones(N, "float32"), extra), _steps(weights, extra)
    for (drawn, cap, kept), (drawn_zeroed, _, kept_zeroed) in zip(plain, zeroed, strict=True):
        assert drawn == drawn_zeroed  # the same draws
        np.testing.assert_array_equal(kept, kept_zeroed)  # the same rows, in the same order
        rounded = min(cap, -(-(drawn + (extra or 0)) // multiple) * multiple)
        assert len(kept) == rounded and np.count_nonzero(kept) == drawn, (len(kept), drawn)
    assert len({len(kept) for _, _, kept in plain}) > 1  # the rows follow the draw (so the test can see a change)


def test_plain_skip_padding_rounds_to_32_rows_and_noisy_padding_to_its_own_multiple():
    """A padded batch of 100 rows holding 33 drawn examples: plain skip_padding keeps 64 rows (its multiple stays 32,
    which the READMEs' epsilon of the uncovered sizes prices); noisy padding with 5 padding rows drawn keeps 38
    rounded up to `NOISY_ROWS_MULTIPLE` (1: 38), finer than 32; with 70 drawn, K = min(100, 103) = the whole
    batch."""
    drawn = tf.range(100) < 33
    ids = tf.where(drawn, tf.range(1, 101, dtype=tf.float32), 0.0)  # the sampler's padding rows are zeros
    weights = padding_weights(drawn, tf.ones(100))
    assert PADDED_ROWS_MULTIPLE == 32 and NOISY_ROWS_MULTIPLE < 32
    for extra, want in ((None, 64), (5, -(-38 // NOISY_ROWS_MULTIPLE) * NOISY_ROWS_MULTIPLE), (70, 100)):
        x, _, w = without_padding(ids, None, weights, None if extra is None else tf.constant(extra))
        assert len(w) == want, (extra, len(w), want)
        np.testing.assert_array_equal(x.numpy()[:33], np.arange(1, 34))  # the drawn examples, in order
        assert not np.any(x.numpy()[33:]) and np.all(is_padding(w[33:]).numpy())


def test_padding_is_weight_minus_0_and_a_real_weight_0_is_plus_0():
    weights = padding_weights(tf.constant([True, True, True, False, True]), [1.0, 0.0, -0.0, 2.0, np.nan])
    np.testing.assert_array_equal(is_padding(weights).numpy(), [False, False, False, True, False])
    got = weights.numpy()
    np.testing.assert_array_equal(got[:4], [1.0, 0.0, 0.0, 0.0])
    assert np.isnan(got[4]) and list(np.signbit(got[:4])) == [False, False, False, True]
