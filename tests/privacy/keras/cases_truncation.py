"""Truncated Poisson sampling cases (the sampler, fit's accounting and counting), run on both Keras flavours."""

import math

import dp_accounting
import numpy as np
import tensorflow as tf
from scipy import stats

from privacy.keras import DPConfigurationError, compat, make_private, poisson_batches, private_training, sampling_of

K = compat.default_keras()
L = K.layers


def _raises(fn, *fragments):
    try:
        fn()
    except DPConfigurationError as err:
        for fragment in fragments:
            assert fragment in str(err), (fragment, str(err))
        return
    raise AssertionError(f"no DPConfigurationError mentioning {fragments}")


def case_truncated_batches_are_cut_to_a_uniform_subset():
    """Sizes ~ min(Binomial(n, q), K); a cut keeps a uniformly random K of the drawn examples, so every example
    joins a batch equally often (keeping the first K in dataset order would favour low indices); cuts counted."""
    n, expected, cap, steps = 30, 10.0, 10, 600
    x = np.arange(n, dtype="float32")[:, None]
    batches = poisson_batches(
        tf.data.Dataset.from_tensor_slices((x, x)),
        dataset_size=n,
        expected_batch_size=expected,
        truncated_batch_size=cap,
        seed=7,
    )
    info = sampling_of(batches)
    assert info.truncated and info.truncated_batch_size == cap == info.max_batch_size
    counts, sizes = np.zeros(n), np.zeros(cap + 1)
    for features, labels, weight in batches.take(steps):
        size = int(weight.numpy().sum())
        assert features.shape == (cap, 1) and np.array_equal(features, labels)
        assert np.all(weight.numpy()[:size] == 1) and np.all(weight.numpy()[size:] == 0)
        chosen = features.numpy()[:size, 0].astype(int)
        assert np.all(np.diff(chosen) > 0) and np.all(features.numpy()[size:] == 0)  # dataset order, zero padding
        counts[chosen] += 1
        sizes[size] += 1
    q = expected / n
    p_size = np.append(stats.binom.pmf(np.arange(cap), n, q), stats.binom.sf(cap - 1, n, q))
    assert stats.chisquare(sizes, p_size * steps).pvalue > 1e-3
    included = counts.sum() / n  # the same for every example under a uniform cut
    assert stats.chisquare(counts, np.full(n, included)).pvalue > 1e-3
    p_cut = stats.binom.sf(cap, n, q)
    cut = info.truncated_batches
    assert abs(cut - steps * p_cut) < 4 * math.sqrt(steps * p_cut * (1 - p_cut)) + 3  # + 3: batches prefetched


def case_fit_accounts_the_truncated_event_and_counts_the_cuts():
    """make_private(truncated_batch_size='default') pads fit's batches to B + 4 sd and its epsilon is PLD's for
    TruncatedSubsampledGaussianDpEvent at n + 1 (add-remove; recomputed here); RDP has no analysis, so PLD is the
    default."""
    n, batch, sigma = 400, 20, 1.5
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 3)).astype("float32"), rng.integers(0, 2, size=n)
    model = make_private(
        K.Sequential([K.Input((3,)), L.Dense(2)]),
        l2_norm_clip=1.0,
        noise_multiplier=sigma,
        expected_batch_size=batch,
        truncated_batch_size="default",
        seed=3,
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, steps_per_epoch=5, verbose=0)
    private = private_training(model)
    cap = math.ceil(batch + 4 * math.sqrt(batch * (1 - batch / n)))
    assert private.mechanism().truncated_batch_size == cap == 38
    accountant = dp_accounting.pld.PLDAccountant()
    accountant.compose(dp_accounting.TruncatedSubsampledGaussianDpEvent(n + 1, batch / n, cap, sigma), 5)
    expected = accountant.get_epsilon(private.target_delta)
    assert private.accountant_kind().value == "pld" and abs(private.epsilon() - expected) < 1e-9 * expected
    assert any("cut 0 batch(es)" in note for note in private.report().notes)


def case_a_tight_cap_cuts_batches_and_the_report_counts_them():
    n, batch = 200, 20
    x, y = np.ones((n, 2), "float32"), np.zeros(n, "int64")
    model = make_private(
        K.Sequential([K.Input((2,)), L.Dense(2)]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=batch,
        truncated_batch_size=batch,
        seed=4,
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, steps_per_epoch=10, verbose=0)
    private = private_training(model)
    # P(Binomial(200, 0.1) > 20) = 0.44 per step: about 9 of the 20 steps, more with the batches prefetched
    assert 3 <= private.truncated_batches <= 30
    note = next(note for note in private.report().notes if f"cut {private.truncated_batches} batch(es)" in note)
    assert "this count is not covered by epsilon" in note and "accounted;" not in note


def case_a_truncated_dataset_sets_the_accounting_and_mismatches_are_refused():
    n = 100
    x, y = np.ones((n, 2), "float32"), np.zeros(n, "int64")
    truncated = poisson_batches((x, y), dataset_size=n, expected_batch_size=10, truncated_batch_size=12, seed=1)

    def model(**kwargs):
        m = make_private(K.Sequential([K.Input((2,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=1.0, **kwargs)
        m.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    adopted = model()
    adopted.fit(truncated, epochs=1, steps_per_epoch=2, verbose=0)
    assert private_training(adopted).mechanism().truncated_batch_size == 12
    _raises(
        lambda: model(truncated_batch_size=14).fit(truncated, epochs=1, steps_per_epoch=2, verbose=0),
        "declared truncated_batch_size=14",
        "truncated_batch_size=12",
    )
    plain = poisson_batches((x, y), dataset_size=n, expected_batch_size=10, seed=1)
    _raises(lambda: model(truncated_batch_size=12).fit(plain, epochs=1, steps_per_epoch=2, verbose=0), "no truncation")
    _raises(lambda: model(truncated_batch_size=12, num_microbatches=2), "per-example clipping only")
    _raises(
        lambda: model(truncated_batch_size=1.5),
        "truncated_batch_size must be an integer in [expected_batch_size, dataset_size] or 'default', got 1.5",
    )
    _raises(
        lambda: model(truncated_batch_size=5, expected_batch_size=10, dataset_size=n),
        "must be an integer in [10, 100] or 'default', got 5",
    )
    numpy_k = model(truncated_batch_size=np.int64(12), expected_batch_size=10, dataset_size=n)
    numpy_k.fit(truncated, epochs=1, steps_per_epoch=2, verbose=0)
    assert type(private_training(numpy_k).mechanism().truncated_batch_size) is int
    numpy_batches = poisson_batches((x, y), dataset_size=n, expected_batch_size=10, truncated_batch_size=np.int64(12))
    assert sampling_of(numpy_batches).truncated_batch_size == 12
    _raises(lambda: model(truncated_batch_size=12, sampling="fixed"), "Poisson sampling only")
    _raises(
        lambda: poisson_batches(
            (x, y), dataset_size=n, expected_batch_size=10, truncated_batch_size=12, max_batch_size=30
        ),
        "not both",
    )
    _raises(
        lambda: poisson_batches((x, y), dataset_size=n, expected_batch_size=10.5, truncated_batch_size=101),
        "must be an integer in [11, 100] or 'default', got 101",
    )
