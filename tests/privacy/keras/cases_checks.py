"""Validator, sampling and noise-source cases, run on both Keras flavours."""

import os
from fractions import Fraction

import dp_accounting
import numpy as np
import tensorflow as tf
from scipy import stats
from sklearn.datasets import load_digits
from tensorflow.python.ops import gen_stateless_random_ops_v2

from privacy.accounting import DpSgdMechanism, NoiseCutoff, NoiseDraws
from privacy.accounting.noise_cutoff import noise_scale_range
from privacy.keras import (
    DPConfigurationError,
    DPKerasAdamOptimizer,
    PrivacyBudgetExceeded,
    compat,
    find_problems,
    fixed_size_batches,
    make_private,
    noise,
    noise_kernel,
    poisson_batches,
    private_training,
    sampling_of,
)
from privacy.keras.noise import (
    RADIUS_CAP,
    GaussianNoise,
    box_muller,
    box_muller_words,
    cutoff_radius,
    normal,
)

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


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 2, size=n)


def case_validator_names_what_to_use_instead():
    model = K.Sequential([K.Input((4,)), L.Dense(8), L.BatchNormalization(), L.Dense(2, activity_regularizer="l2")])
    problems = find_problems(model)
    assert len(problems) == 2
    assert "LayerNormalization or GroupNormalization" in problems[0] and "batch_normalization" in problems[0]
    assert "activity_regularizer" in problems[1]
    _raises(
        lambda: make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0),
        "BatchNormalization",
        "activity_regularizer",
    )

    class CustomStep(K.Model):
        def train_step(self, data):
            return {}

    inputs = K.Input((4,))
    custom = CustomStep(inputs, L.Dense(2)(inputs))
    _raises(lambda: make_private(custom, l2_norm_clip=1.0, noise_multiplier=1.0), "overrides train_step()")


def case_half_precision_layers_are_refused_up_front():
    """A layer computing in float16/bfloat16 (a mixed precision policy, or its own dtype) is refused by make_private,
    naming the layer and its dtypes, instead of failing inside the first step with a TypeError traceback."""
    for policy in ("mixed_float16", "mixed_bfloat16", "float16"):
        model = K.Sequential([K.Input((6, 6, 2)), L.Conv2D(2, 3, dtype=policy, name="half"), L.Flatten(), L.Dense(2)])
        problems = find_problems(model)
        assert len(problems) == 1 and "'half'" in problems[0] and "float32" in problems[0], (policy, problems)
        _raises(lambda: make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0), "'half'", policy.split("_")[-1])
    assert find_problems(K.Sequential([K.Input((4,)), L.Dense(2)])) == []


def case_stateful_recurrent_layers_are_refused_up_front():
    """A stateful RNN starts each batch row from the state the previous batch's row ended in, so one example's data
    reaches later examples' gradients and per-example clipping cannot bound its influence: make_private refuses it,
    naming the layer, also inside a Bidirectional wrapper (`fit` failed in its first step with a graph error on both
    flavours); the same layers without state are not refused."""
    for stateful in (True, False):
        for layer in (L.LSTM(4, stateful=stateful, name="carry"), L.Bidirectional(L.GRU(4, stateful=stateful))):
            model = K.Sequential([K.Input((5, 3), batch_size=8), layer, L.Dense(2)])
            problems = find_problems(model)
            if not stateful:
                assert problems == [], problems
                continue
            assert problems and all("stateful" in p and "clipping cannot bound" in p for p in problems), problems
            name = "'carry'" if isinstance(layer, L.LSTM) else "gru"
            _raises(lambda: make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0), "stateful", name)


def case_layers_keeping_weights_in_different_dtypes_are_refused_up_front():
    """float64 layers beside float32 ones are refused by make_private, naming both groups (the first step failed
    with an AddN TypeError); a model all in float64 is not."""
    model = K.Sequential([K.Input((4,)), L.Dense(3, dtype="float64", name="wide"), L.Dense(2, name="narrow")])
    problems = find_problems(model)
    assert len(problems) == 1 and "float64: 'wide'" in problems[0] and "float32: 'narrow'" in problems[0], problems
    _raises(lambda: make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0), "different dtypes", "'wide'")
    wide = K.Sequential([K.Input((4,), dtype="float64"), L.Dense(3, dtype="float64"), L.Dense(2, dtype="float64")])
    assert find_problems(wide) == []


def case_noise_multipliers_the_accountants_cannot_take_are_refused_up_front():
    """sigma = 1e-4 was accepted by make_private and the DP optimizers; fit trained a whole epoch and then
    failed to account it. Outside [1e-3, 1e6] (0, no privacy, aside) both refuse it before any step."""
    from privacy.accounting import NOISE_MULTIPLIER_RANGE

    for sigma in (1e-4, 2e6, -1.0, float("nan")):
        _raises(
            lambda: make_private(K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=sigma),
            "noise_multiplier must be in [0.001, 1e+06]",
            "or 0: no privacy",
        )
        _raises(lambda: DPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=sigma), "noise_multiplier must be in")
    for sigma in (0.0, *NOISE_MULTIPLIER_RANGE):
        DPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=sigma)


def case_noise_that_would_flush_or_overflow_is_refused():
    """TensorFlow's CPU kernels flush subnormal results to 0: noise of standard deviation 2^-130 in float32 (sigma C / B
    for C = 1e-37) came out all zeros, a step released without noise under the accountant's sigma. `normal` refuses a
    standard deviation below tiny / eps (every draw below eps in magnitude flushed at most; 2^-103 in float32, 2^-970
    in float64) or above max / (R' (1 + eps)^2) (R' the sampler's radius rounded up to the dtype: draws overflow
    beyond). make_private refuses a sigma C (1 + SLACK) / B below float32's range when B is known there, naming
    l2_norm_clip; a fit whose B comes from its batch_size stops at its first step (the last check), in the dtype.
    Above the range (C = 1e36 at sigma 1e3: 1.0e38) the clip is beyond the largest accepted (a step's sum could
    overflow), which make_private refuses whether B is known or not."""
    seed = tf.constant([3, 4], tf.int64)
    flushed = normal([1000], seed, tf.float32, 1.0).numpy() * np.float32(2.0**-130)  # what the old product gave
    assert np.count_nonzero(tf.constant(flushed) * tf.constant(np.float32(1.0))) < 10  # the kernels flush it
    for dtype, smallest in ((tf.float32, 2.0**-103), (tf.float64, 2.0**-970)):
        info = np.finfo(dtype.as_numpy_dtype)
        radius = np.nextafter(dtype.as_numpy_dtype(cutoff_radius(dtype)), np.inf)  # above R either way
        largest = float(info.max) / (float(radius) * (1 + float(info.eps)) ** 2)
        low, high = noise_scale_range(dtype.name)
        assert low == smallest and abs(high / largest - 1) <= 4 * float(info.eps), (dtype, high, largest)
        largest = high
        below = np.nextafter(smallest, 0)
        above = float(np.nextafter(np.array(largest, dtype.as_numpy_dtype), np.inf))
        for stddev in (below, above, Fraction(smallest) - Fraction(1, 2**1100)):
            _raises(lambda: normal([4], seed, dtype, stddev), f"in {dtype.name}", "must be 0 or in [")
        for stddev in (smallest, Fraction(smallest)):
            z = normal([1000], seed, dtype, stddev).numpy()
            assert np.all(np.isfinite(z)) and np.count_nonzero(z) == 1000, dtype
            assert np.all(np.abs(z) >= info.tiny), dtype
        assert np.all(np.isfinite(normal([1000], seed, dtype, largest).numpy())), dtype
    x, y = _data()
    for batch in (10, None):
        dense = K.Sequential([K.Input((4,)), L.Dense(2)])
        options = dict(l2_norm_clip=1e36, noise_multiplier=1e3, expected_batch_size=batch)
        _raises(lambda: make_private(dense, **options), "l2_norm_clip=1e+36 must be at most")
    clip, sigma = 1e-33, 1.1  # sigma C (1 + SLACK) / B: 1.1e-34 (float32)
    _raises(
        lambda: make_private(
            K.Sequential([K.Input((4,)), L.Dense(2)]),
            l2_norm_clip=clip,
            noise_multiplier=sigma,
            expected_batch_size=10,
        ),
        f"l2_norm_clip={clip!r}",
        "the noise's standard deviation",
        "in float32",
    )
    model = make_private(K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=clip, noise_multiplier=sigma)
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    _raises(lambda: model.fit(x, y, batch_size=10, epochs=1, verbose=0), "the noise's standard deviation", "in float32")
    assert private_training(model).steps == 0


def case_losses_without_per_example_values_are_refused():
    x, y = _data()
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10
    )
    model.compile(optimizer="sgd", loss=lambda y, p: tf.reduce_mean(tf.square(p - tf.one_hot(tf.cast(y, tf.int32), 2))))
    _raises(lambda: model.fit(x, y, epochs=1, verbose=0), "one number for the whole batch", "shape (batch,)")
    assert private_training(model).steps == 0


def case_gradient_accumulation_is_refused_everywhere():
    _raises(
        lambda: DPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=1.0, gradient_accumulation_steps=4),
        "gradient_accumulation_steps > 1",
        "noise at every accumulated step",
    )
    try:
        accumulating = K.optimizers.SGD(0.1, gradient_accumulation_steps=2)
    except TypeError:  # tf-keras's optimizers do not accumulate
        return
    x, y = _data()
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10
    )
    model.compile(optimizer=accumulating, loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert any("gradient_accumulation_steps > 1" in p for p in find_problems(model))
    _raises(lambda: model.fit(x, y, epochs=1, verbose=0), "noise at every accumulated step")
    assert private_training(model).steps == 0


def case_custom_loop_with_a_dp_optimizer_is_refused():
    x, y = _data()
    model = K.Sequential([K.Input((4,)), L.Dense(2)])
    optimizer = DPKerasAdamOptimizer(l2_norm_clip=1.0, noise_multiplier=1.0, learning_rate=0.01)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(K.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    before = [w.copy() for w in model.get_weights()]
    _raises(
        lambda: optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True)),
        "make_private(model)",
        "optimizer.minimize(per_example_losses, variables, tape=tape)",
    )
    with tf.GradientTape() as tape:  # minimize with the tape, but of the batch's mean loss
        loss = tf.reduce_mean(K.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))
    _raises(lambda: optimizer.minimize(loss, model.trainable_variables, tape=tape), "one loss per example")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def case_sampling_that_ran_must_match_the_accounting():
    x, y = _data()
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(40).batch(10)
    _raises(lambda: model.fit(shuffled, epochs=1, verbose=0), "poisson_batches did not build", "sampling='shuffle'")
    other_size = poisson_batches(
        tf.data.Dataset.from_tensor_slices((x[:30], y[:30])), dataset_size=30, expected_batch_size=10
    )
    model.fit(other_size.prefetch(1), epochs=1, verbose=0)  # sampling_of looks through prefetch
    assert private_training(model).dataset_size == 30
    assert private_training(model).steps == 3
    _raises(lambda: model.fit(x, y, epochs=1, verbose=0), "dataset_size=40", "dataset_size=30")


def case_shuffled_batches_are_accounted_under_replace_one():
    """Shuffled batches have no add/remove analysis (one added example shifts every later batch): refused by
    make_private; by default they are accounted under replace-one, one Gaussian of sensitivity 2C per epoch."""
    _raises(
        lambda: make_private(
            K.Sequential([K.Input((4,)), L.Dense(2)]),
            l2_norm_clip=1.0,
            noise_multiplier=1.0,
            sampling="shuffle",
            adjacency="add-remove",
        ),
        "adjacency='add-remove' with sampling='shuffle'",
        "use adjacency='replace-one' or Poisson sampling",
    )
    x, y = _data()
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=1.2, sampling="shuffle", seed=0
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    private = private_training(model)
    report = private.report().to_dict()
    assert private.steps == 8 and (report["sampling"], report["adjacency"]) == ("shuffle", "replace-one")
    # Independently: 2 epochs x Gaussian with noise multiplier 1.2 / 2 relative to the sensitivity 2C.
    expected = (
        dp_accounting.rdp.RdpAccountant()
        .compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(0.6), 2))
        .get_epsilon(0.01)
    )
    assert private.target_delta == 0.01 and abs(private.epsilon("rdp") - expected) < 1e-9, (
        private.epsilon("rdp"),
        expected,
    )


def case_a_planned_mechanism_stands_for_its_parts():
    """make_private(model, mechanism, l2_norm_clip=C) trains as the call with the mechanism's parts: the same
    weights under one seed, the planned mechanism accounted, and epsilon as dp-accounting composes it."""
    from privacy.accounting import DpSgdMechanism

    x, y = _data()
    poisson = DpSgdMechanism(dataset_size=40, batch_size=10, noise_multiplier=1.3, steps=4, num_microbatches=2)
    fixed = DpSgdMechanism(dataset_size=40, batch_size=8, noise_multiplier=0.9, steps=3, sampling="fixed")
    for planned in (poisson, fixed):
        parts = dict(
            noise_multiplier=planned.noise_multiplier,
            num_microbatches=planned.num_microbatches,
            expected_batch_size=planned.batch_size,
            dataset_size=planned.dataset_size,
            sampling=planned.sampling.value,
            adjacency=planned.adjacency.value,
        )
        models = [K.Sequential([K.Input((4,)), L.Dense(2)]) for _ in range(2)]
        models[1].set_weights(models[0].get_weights())
        make_private(models[0], planned, l2_norm_clip=1.0, target_delta=1e-3, seed=3)
        make_private(models[1], l2_norm_clip=1.0, target_delta=1e-3, seed=3, **parts)
        for model in models:
            model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(x, y, steps_per_epoch=planned.steps, epochs=1, verbose=0)
        by_plan, by_parts = (private_training(model) for model in models)
        assert by_plan.mechanism() == by_parts.mechanism() == planned, (by_plan.mechanism(), planned)
        for a, b in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
            assert np.allclose(a, b, rtol=0, atol=1e-6), (a, b)
    # Independently: 4 Poisson-sampled steps at q = 10/40; a microbatch of several examples moves the sum by
    # 2C, so the Gaussian's noise multiplier relative to it is 1.3 / 2.
    event = dp_accounting.PoissonSampledDpEvent(0.25, dp_accounting.GaussianDpEvent(0.65))
    expected = dp_accounting.rdp.RdpAccountant().compose(dp_accounting.SelfComposedDpEvent(event, 4))
    model = make_private(K.Sequential([K.Input((4,)), L.Dense(2)]), poisson, l2_norm_clip=1.0, target_delta=1e-3)
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, steps_per_epoch=4, epochs=1, verbose=0)
    assert abs(private_training(model).epsilon("rdp") - expected.get_epsilon(1e-3)) < 1e-9


def case_a_mechanism_with_its_parts_or_without_a_clip_is_refused():
    """A mechanism and any of the arguments it stands for, a mechanism without l2_norm_clip, one with group
    privacy, or something else in its place: one-line errors naming the setting, and the model stays as it was."""
    from privacy.accounting import DpSgdMechanism

    planned = DpSgdMechanism(dataset_size=40, batch_size=10, noise_multiplier=1.3, steps=4)
    model = K.Sequential([K.Input((4,)), L.Dense(2)])
    for call, fragments in [
        (
            lambda: make_private(model, planned, l2_norm_clip=1.0, noise_multiplier=1.1),
            ("make_private got a mechanism and noise_multiplier=1.1", "not both"),
        ),
        (
            lambda: make_private(model, planned, l2_norm_clip=1.0, sampling="poisson", dataset_size=40),
            ("dataset_size=40, sampling='poisson'",),
        ),
        (lambda: make_private(model, planned), ("needs l2_norm_clip",)),
        (
            lambda: make_private(model, planned.replace(max_examples_per_user=2), l2_norm_clip=1.0),
            ("mechanism.max_examples_per_user=2", "per-example"),
        ),
        (
            lambda: make_private(model, {"noise_multiplier": 1.3}, l2_norm_clip=1.0),
            ("mechanism must be a privacy.accounting.DpSgdMechanism, got dict",),
        ),
    ]:
        try:
            call()
        except DPConfigurationError as err:
            assert "\n" not in str(err) and all(f in str(err) for f in fragments), (fragments, str(err))
        else:
            raise AssertionError(f"no DPConfigurationError mentioning {fragments}")
    make_private(model, planned, l2_norm_clip=1.0)  # none of the refusals left the model private
    assert private_training(model).mechanism(4) == planned


def case_poisson_batches_are_poisson():
    """Inclusion counts ~ Binomial(S, q) per example and batch sizes ~ Binomial(n, q); padding masked."""
    n, expected, steps = 50, 5.0, 400
    x = np.arange(n, dtype="float32")[:, None]
    batches = poisson_batches(
        tf.data.Dataset.from_tensor_slices((x, x)), dataset_size=n, expected_batch_size=expected, seed=4
    )
    info = sampling_of(batches)
    assert info.max_batch_size == int(stats.binom.isf(1e-9, n, expected / n))
    counts, sizes = np.zeros(n), []
    for features, labels, weight in batches.take(steps):
        assert features.shape == (info.max_batch_size, 1) and np.array_equal(features, labels)
        size = int(weight.numpy().sum())
        assert np.all(weight.numpy()[:size] == 1) and np.all(weight.numpy()[size:] == 0)
        chosen = features.numpy()[:size, 0].astype(int)
        assert len(set(chosen)) == size
        counts[chosen] += 1
        sizes.append(size)
    q = expected / n
    # Pearson chi-square of inclusion counts against Binomial(steps, q): mean q*S, variance S q (1-q).
    statistic = np.sum((counts - steps * q) ** 2 / (steps * q * (1 - q)))
    assert stats.chi2.sf(statistic, n) > 1e-3
    assert abs(np.mean(sizes) - expected) < 4 * np.sqrt(expected * (1 - q) / steps)
    assert min(sizes) == 0  # empty batches happen (P = 0.9**50 per step) and are kept


def case_microbatched_poisson_batches_take_random_slots():
    """Microbatches are consecutive slots: with the examples first, one added example would shift every
    later microbatch. So microbatched Poisson batches put examples and padding in random slots, and fit
    refuses Poisson batches laid out examples-first when it clips in microbatches."""
    n = 40
    x = np.arange(n, dtype="float32")[:, None]
    batches = poisson_batches((x, x), dataset_size=n, expected_batch_size=8, seed=5, random_slots=True)
    assert sampling_of(batches).random_slots
    interleaved = 0
    for features, labels, weight in batches.take(50):
        kept = weight.numpy() > 0
        assert np.array_equal(features, labels) and len(set(features.numpy()[kept, 0])) == kept.sum()
        interleaved += int(kept.any() and not np.all(kept[: kept.sum()]))  # a padding slot before an example
    assert interleaved > 40
    model = make_private(
        K.Sequential([K.Input((1,)), L.Dense(2)]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        num_microbatches=4,
        expected_batch_size=8,
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.arange(n) % 2
    examples_first = poisson_batches((x, y), dataset_size=n, expected_batch_size=8, max_batch_size=24)
    _raises(lambda: model.fit(examples_first, steps_per_epoch=2, epochs=1, verbose=0), "random_slots=True")
    model.fit(x, y, epochs=1, verbose=0)  # fit's own Poisson batches take random slots
    assert private_training(model).steps == 5


def case_more_microbatches_than_expected_examples_are_refused():
    """num_microbatches above the expected batch size was accepted under Poisson sampling: most microbatches
    would be empty. make_private refuses it before any step; M = B is fine."""
    refused = [
        ("poisson", 9, 8, "num_microbatches=9 exceeds expected_batch_size=8"),
        ("fixed", 9, 8, "num_microbatches=9 exceeds expected_batch_size=8"),
        # ``:g`` printed this bound as 8: "num_microbatches=8 exceeds expected_batch_size=8"
        ("poisson", 8, 7.9999999, "num_microbatches=8 exceeds expected_batch_size=7.9999999:"),
    ]
    for sampling, microbatches, batch_size, message in refused:
        _raises(
            lambda: make_private(
                K.Sequential([K.Input((1,)), L.Dense(2)]),
                l2_norm_clip=1.0,
                noise_multiplier=1.0,
                num_microbatches=microbatches,
                expected_batch_size=batch_size,
                sampling=sampling,
            ),
            message,
        )
    make_private(
        K.Sequential([K.Input((1,)), L.Dense(2)]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        num_microbatches=8,
        expected_batch_size=8,
    )


def case_array_examples_are_gathered_in_place():
    """Arrays give the same batches as a dataset of the same examples, read from the caller's memory.

    A change to the caller's array after the batches were built shows in the next batch: the rows are
    gathered from it, not from a copy. Nested features, string features and sample weights included.
    """
    n = 30
    x = {"dense": np.arange(2 * n, dtype="float32").reshape(n, 2), "word": np.array([f"w{i}" for i in range(n)])}
    y, w = np.arange(n), np.linspace(0.5, 2.0, n).astype("float32")
    for build, kwargs in ((poisson_batches, {"expected_batch_size": 6}), (fixed_size_batches, {"batch_size": 6})):
        from_arrays = build((x, y, w), dataset_size=n, seed=7, **kwargs)
        from_dataset = build(tf.data.Dataset.from_tensor_slices((x, y, w)), dataset_size=n, seed=7, **kwargs)
        assert sampling_of(from_arrays) == sampling_of(from_dataset)
        for a, b in zip(from_arrays.take(5), from_dataset.take(5), strict=True):
            for leaf_a, leaf_b in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
                assert leaf_a.shape == leaf_b.shape and np.array_equal(leaf_a.numpy(), leaf_b.numpy())
        x["dense"] += 1000.0
        features, labels, weight = next(iter(from_arrays))
        chosen = weight.numpy() > 0
        assert chosen.any() and np.all(features["dense"].numpy()[chosen] >= 1000.0)
        assert np.array_equal(features["dense"].numpy()[chosen, 0], 1000.0 + 2 * labels.numpy()[chosen])
        x["dense"] -= 1000.0
    _raises(lambda: poisson_batches((x, y[:-1]), dataset_size=n, expected_batch_size=6), "dataset_size=30 rows")
    _raises(lambda: poisson_batches((x, None), dataset_size=n, expected_batch_size=6), "tuple (x, y)")


def case_secure_noise_state_comes_from_os_urandom():
    _raises(lambda: GaussianNoise(seed=1, secure=True), "do not pass a seed")
    calls = []
    real = os.urandom

    def recording_urandom(size):
        calls.append(size)
        return real(size)

    os.urandom = recording_urandom
    try:
        first, second = GaussianNoise(secure=True), GaussianNoise(secure=True)
        first.build()
        second.build()
    finally:
        os.urandom = real
    assert calls == [8] * 6
    a = first.add([tf.zeros([1000])], 1.0)[0].numpy()
    b = second.add([tf.zeros([1000])], 1.0)[0].numpy()
    assert not np.allclose(a, b) and 0.9 < a.std() < 1.1


def _assert_standard_normal(z, what):
    """Mean, variance (chi-square), shape (KS) and the mass beyond 3 of N(0, 1), each at p > 1e-3 or 5 sd."""
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n), (what, z.mean())
    chi2 = (n - 1) * np.var(z, ddof=1)
    assert 2 * min(stats.chi2.cdf(chi2, n - 1), stats.chi2.sf(chi2, n - 1)) > 1e-3, (what, z.std())
    assert stats.kstest(z, "norm").pvalue > 1e-3, what
    beyond = int(np.sum(np.abs(z) > 3))
    assert stats.binomtest(beyond, n, 2 * stats.norm.sf(3)).pvalue > 1e-3, (what, beyond)


def _assert_uncorrelated(a, b, what):
    """Under independence a correlation of n pairs has sd 1/sqrt(n): |r| < 5 sd, for the values and squares."""
    bound = 5 / np.sqrt(min(a.size, b.size))
    for f in (lambda v: v, np.square):
        r = np.corrcoef(f(a[: b.size]), f(b[: a.size]))[0, 1]
        assert abs(r) < bound, (what, r)


def _cpu_only() -> bool:
    """Whether no GPU or TPU is visible: a step outside XLA then draws float32 noise with the compiled kernel (the
    TensorFlow ops otherwise, which the kernel-against-ops checks then compare across devices)."""
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def case_noise_source_draws_independent_standard_normals():
    """`GaussianNoise.add` on zero tensors is its noise: N(0, stddev^2) per coordinate, independent everywhere.

    Box-Muller gives coordinates in pairs (the first half of a tensor's draws with the second): those pairs,
    the tensors of one step and consecutive steps must be uncorrelated, in the values and in their squares
    (a shared radius or angle would correlate the squares). An odd-sized tensor uses half of its last pair;
    float64 tensors are drawn in float64. The same seed replays the same noise, another does not.
    """
    stddev, shapes = 2.0, [(200_001,), (300, 201), (20_000,)]
    assert noise.compiled_kernel_applies() == _cpu_only()  # the compiled kernel's draws on CPU, else the ops'

    def draws(seed):
        noise = GaussianNoise(seed=seed)
        noise.build()
        zeros = [tf.zeros(shapes[0]), tf.zeros(shapes[1]), tf.zeros(shapes[2], tf.float64)]
        steps = [noise.add(zeros, stddev) for _ in range(2)]
        assert [t.dtype for t in steps[0]] == [tf.float32, tf.float32, tf.float64]
        assert [tuple(t.shape) for t in steps[0]] == shapes
        return [[t.numpy().ravel() / stddev for t in step] for step in steps]

    first, second = draws(7)
    for step, tensors in enumerate((first, second)):
        for i, z in enumerate(tensors):
            _assert_standard_normal(z, (step, i))
        pairs = (shapes[0][0] + 1) // 2
        _assert_uncorrelated(tensors[0][:pairs], tensors[0][pairs:], ("Box-Muller pairs", step))
        _assert_uncorrelated(tensors[0], tensors[1], ("tensors", step))
    for i in range(3):
        _assert_uncorrelated(first[i], second[i], ("steps", i))
    replay, _ = draws(7)
    other, _ = draws(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, replay, strict=True))
    _assert_uncorrelated(first[0], other[0], "seeds")


def case_empty_tensors_draw_no_noise_pairs():
    """`GaussianNoise.expect` on empty tensors alone records no draws (none were drawn: no pairs=0 `NoiseDraws`,
    which its validation refuses); with other tensors, their pairs at the smallest cut-off of all."""
    noise = GaussianNoise(seed=5)
    noise.expect([tf.zeros([0]), tf.zeros([4, 0])])
    assert noise.draws is None
    noise.expect([tf.zeros([0]), tf.zeros([3], tf.float64)])
    assert noise.draws == NoiseDraws(radius=cutoff_radius(tf.float32), pairs=2)


def case_box_muller_pairs_have_rayleigh_radii_and_uniform_angles():
    """The float32 transform's pairs: radius^2 ~ chi-square(2), angle uniform (KS), beyond 4 sigma as often as
    N(0, 1) (binomial), and `GaussianNoise.draws` counts what was drawn with the smallest cut-off."""
    assert noise.compiled_kernel_applies() == _cpu_only()  # the compiled kernel's draws on CPU, else the ops'
    source = GaussianNoise(seed=5)
    source.build()
    z = source.add([tf.zeros([2_000_000]), tf.zeros([3], tf.float64)], 1.0)[0].numpy().astype(np.float64)
    assert source.draws == NoiseDraws(radius=cutoff_radius(tf.float32), pairs=1_000_000 + 2)
    assert cutoff_radius(tf.float64) > 12 and cutoff_radius(tf.float32) == np.sqrt(128 * np.log(2))
    cos, sin = z[:1_000_000], z[1_000_000:]
    assert stats.kstest(cos * cos + sin * sin, "chi2", args=(2,)).pvalue > 1e-3
    assert stats.kstest(np.arctan2(sin, cos) / (2 * np.pi) % 1.0, "uniform").pvalue > 1e-3
    beyond = int(np.sum(np.abs(z) > 4))
    assert stats.binomtest(beyond, z.size, 2 * stats.norm.sf(4)).pvalue > 1e-3, beyond


def _words_expected(words):
    """numpy's float64 Box-Muller of uint32 words (3, n): w = words[0] 2^-32 + (words[1] + 1) 2^-64."""
    w = words.astype(np.float64)
    radius = np.sqrt(-2 * np.log(w[0] * 2.0**-32 + (w[1] + 1) * 2.0**-64))
    angle = 2 * np.pi * (words[2] >> 8).astype(np.float64) * 2.0**-24
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])


def case_box_muller_tails_reach_the_cutoff():
    """float32 radii come from 64 bits, so noise is cut at sqrt(128 ln 2) = 9.42 sigma (one float32 uniform: 5.65;
    two: 7.99; what each adds to delta: privacy.accounting.noise_cutoff). Extreme and random words against numpy's
    float64 computation, finite at every extreme, in the TensorFlow ops and the compiled kernel; the largest
    radius is `RADIUS_CAP`, just below the cut-off; float64 radii from 1 - u0 - eps u1 >= eps^2 reach 12.0."""
    top = 2**32 - 1
    extreme = np.array(
        [[0, 0, 0, 1, top, top, 2**24, 7], [0, top, 1, 0, top, 0, 12345, top], [0, 0, top, 2**31, 0, top, 2**8, 255]],
        dtype=np.uint32,
    )
    words = np.concatenate([extreme, np.random.default_rng(3).integers(0, 2**32, (3, 5000), dtype=np.uint32)], 1)
    expected = _words_expected(words)
    n = words.shape[1]
    for z in (box_muller_words(tf.constant(words)).numpy(), noise_kernel.box_muller_words(words)):
        assert z.dtype == np.float32 and np.all(np.isfinite(z))
        # float32 rounds w to 24 bits: -2 ln w is off by about 2^-23 where w is near 1, so radii below ~3e-4 are
        # coarse.
        squares = z[:n].astype(np.float64) ** 2 + z[n:].astype(np.float64) ** 2
        np.testing.assert_allclose(squares, expected[:n] ** 2 + expected[n:] ** 2, rtol=4e-6, atol=2.0**-21)
        np.testing.assert_allclose(z, expected, rtol=2e-6, atol=3e-4)
        assert z[0] == np.float32(RADIUS_CAP) and np.abs(z).max() == z[0]
        np.testing.assert_allclose(z[0], cutoff_radius(tf.float32), rtol=2e-6)
    eps = 2.0**-52
    top = 1 - eps  # the largest float64 uniform below 1
    u0 = [top, top, top, 0.0, 0.0, 0.5]
    u1 = [top, 0.5, 0.0, 0.0, top, 0.0]
    angle = [0.0, 0.0, 0.0, 0.0, 0.25, 0.5]
    z = box_muller(tf.constant([u0, u1, angle], tf.float64)).numpy()
    w = 1 - np.array(u0) - eps * np.array(u1)
    radius = np.sqrt(-2 * np.log(w))
    expected = np.concatenate(
        [radius * np.cos(2 * np.pi * np.array(angle)), radius * np.sin(2 * np.pi * np.array(angle))]
    )
    np.testing.assert_allclose(z, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z.max(), cutoff_radius(tf.float64), rtol=1e-12)


def case_box_muller_stays_finite_if_a_backend_returns_one():
    """A float64 uniform of exactly 1 (outside what TensorFlow's CPU and XLA kernels draw) gives the largest radius,
    not NaN."""
    z = box_muller(tf.constant([[1.0, 1.0], [0.0, 0.5], [0.0, 0.0]], tf.float64)).numpy()
    np.testing.assert_allclose(z[:2], cutoff_radius(tf.float64), rtol=1e-12)


def case_the_kernel_makes_tensorflows_philox_words():
    """The compiled kernel's Philox4x32-10 words equal TensorFlow's bit for bit: for random keys and 128-bit
    counters, counters whose low 32 or 64 bits carry within the draw, and sizes that end inside a 4-word block;
    and its seeded draws are its transform of `tf.random.stateless_uniform`'s words for that seed (so the seed is
    scrambled into key and counter as TensorFlow does), negative seeds included; with a scale, each draw times it
    (one float32 product), bit for bit."""
    rng = np.random.default_rng(11)
    ends = [0, 2**32 - 2, 2**64 - 3, 2**64 - 1]
    for size in (1, 2, 3, 4, 5, 7, 8, 9, 1001, 40_003):
        for low in [*ends, int(rng.integers(0, 2**63)) * 2]:
            key, high = (int(v) for v in rng.integers(0, 2**64, 2, dtype=np.uint64))
            expected = gen_stateless_random_ops_v2.stateless_random_uniform_full_int_v2(
                [size],
                key=tf.constant([key], tf.uint64),
                counter=tf.constant([low, high], tf.uint64),
                dtype=tf.uint32,
                alg=tf.random.Algorithm.PHILOX.value,
            ).numpy()
            words = np.empty(size, np.uint32)
            noise_kernel.philox_words(np.uint64(key), np.uint64(low), np.uint64(high), words)
            assert np.array_equal(words, expected), (size, low)
    seeds = [(0, 0), (-1, -1), (2**63 - 1, -(2**63)), *rng.integers(-(2**63), 2**63, (5, 2))]
    for size in (1, 2, 3, 5, 8, 4097):
        for seed in seeds:
            words = tf.random.stateless_uniform(
                [3, (size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox"
            )
            z = noise_kernel.normal(int(seed[0]), int(seed[1]), size, 1.0)
            assert np.array_equal(z, noise_kernel.box_muller_words(words.numpy())[:size]), (size, seed)
            for scale in (np.float32(1.1), np.float32(3e-3), np.float32(7.5)):  # scaled in: one float32 product
                scaled = noise_kernel.normal(int(seed[0]), int(seed[1]), size, float(scale))
                assert np.array_equal(scaled, z * scale), (size, seed, scale)


def case_kernel_draws_equal_the_tensorflow_ops_draws_within_two_ulps():
    """The two implementations of the float32 sampler: a training step's graph (on CPU, without XLA) draws with the
    kernel (a stateless numpy_function) and its draws differ from the TensorFlow ops' for the same seed by at most
    2 float32 ulps of max(radius, 1), on 10 seeds x 100 001 draws and 30 x 200 000 pairs of random words (where a GPU
    or TPU is visible the step draws with the ops, and the random words compare the kernel with that device's ops)."""
    step = tf.function(lambda seed: normal(tf.constant([100_001]), seed, tf.float32))
    graph = step.get_concrete_function(tf.TensorSpec([2], tf.int64)).graph
    assert ("PyFuncStateless" in {op.type for op in graph.get_operations()}) == _cpu_only()
    rng = np.random.default_rng(5)
    pairs = []
    for seed in rng.integers(-(2**63), 2**63, (10, 2)):
        words = tf.random.stateless_uniform([3, 50_001], seed=seed, minval=None, maxval=None, dtype=tf.uint32)
        pairs.append((step(tf.constant(seed)).numpy(), box_muller_words(words).numpy()[:100_001]))
    for _ in range(30):
        words = rng.integers(0, 2**32, (3, 200_000), dtype=np.uint32)
        pairs.append((noise_kernel.box_muller_words(words), box_muller_words(tf.constant(words)).numpy()))
    for kernel, ops in pairs:
        n = (ops.size + 1) // 2
        radius = np.hypot(ops[:n], np.pad(ops[n:], (0, 2 * n - ops.size))).astype(np.float32)
        ulp = np.spacing(np.maximum(np.concatenate([radius, radius])[: ops.size], np.float32(1)))
        assert np.all(np.abs(kernel.astype(np.float64) - ops) <= 2 * ulp.astype(np.float64))


def case_no_pair_leaves_the_cutoff_radius():
    """`privacy.accounting.noise_cutoff` is given R = sqrt(128 ln 2): no pair either implementation can draw lies
    beyond it. The radius is largest at the least w (words 0 and 1 zero), capped at `RADIUS_CAP`; at that radius
    every one of the 2^24 angles gives a pair of norm <= R (computed in float64 from the float32 draws); the next
    w gives a radius below the cap."""
    radius = cutoff_radius(tf.float32)
    assert RADIUS_CAP < radius and np.float32(RADIUS_CAP) == RADIUS_CAP
    chunk = 2**22
    for start in range(0, 2**24, chunk):
        words = np.zeros((3, chunk), np.uint32)
        words[2] = (np.arange(start, start + chunk, dtype=np.uint32)) << 8
        for z in (noise_kernel.box_muller_words(words), box_muller_words(tf.constant(words)).numpy()):
            norms = np.hypot(z[:chunk].astype(np.float64), z[chunk:].astype(np.float64))
            assert norms.max() <= radius, (start, norms.max() - radius)
    next_w = np.array([[0], [1], [0]], np.uint32)
    for z in (noise_kernel.box_muller_words(next_w), box_muller_words(tf.constant(next_w)).numpy()):
        assert z[0] < np.float32(RADIUS_CAP) and z[0] > radius * np.sqrt(63 / 64) - 1e-5, z


def case_no_float64_pair_leaves_the_cutoff_radius():
    """float64 tensors' pairs (`box_muller`, also the federated noise) lie within R = sqrt(208 ln 2) = 12.0, which
    `privacy.accounting.noise_cutoff` is given: at the least w (eps^2) the radius is capped just below R, so no angle's
    rounding takes a pair beyond it (norms in extended precision; 2^20 random angles and the multiples of pi / 4)."""
    eps, n = 2.0**-52, 2**20
    angles = np.concatenate([np.random.default_rng(7).integers(0, 2**52, n) * eps, np.arange(8) / 8])
    u = np.stack([np.full(angles.size, 1 - eps), np.full(angles.size, 1 - eps), angles])
    z = box_muller(tf.constant(u, tf.float64)).numpy().astype(np.longdouble)
    norms = np.sqrt(z[: angles.size] ** 2 + z[angles.size :] ** 2)
    assert norms.max() <= np.longdouble(cutoff_radius(tf.float64)), norms.max() - cutoff_radius(tf.float64)
    assert norms.max() > cutoff_radius(tf.float64) * (1 - 1e-12)


def _at_least(stddev, dtype):
    """The smallest ``dtype`` value >= ``stddev`` (exactly), by numpy's nextafter."""
    value = dtype(float(stddev))
    return np.nextafter(value, dtype(np.inf)) if Fraction(float(value)) < Fraction(stddev) else value


def case_noise_with_a_standard_deviation_is_the_standard_draws_times_it_rounded_up():
    """`normal` with ``stddev`` (the kernel multiplies it in on CPU; the ops multiply after the draw) is bit for bit
    its N(0, 1) draws times the smallest float32 (float64) at least ``stddev``, in a traced step, for float32 and
    float64 tensors, and `GaussianNoise.add` adds exactly that to the tensors: 1.1 / 1000 (a step's sigma C / B)
    rounds to a float32 below it, and a Fraction 0.7 / 3 to a float64 below it; the noise uses the next value up."""
    shape, seed = tf.constant([999, 7]), tf.constant([5, -9], tf.int64)
    below = (Fraction(1.1) / 1000, Fraction(0.7) / 3)
    assert Fraction(float(np.float32(float(below[0])))) < below[0] and Fraction(float(below[1])) < below[1]
    for dtype in (tf.float32, tf.float64):
        for stddev in (1.1, 0.004296875, 3.0, *below):
            draws = tf.function(lambda s=stddev, d=dtype: (normal(shape, seed, d, s), normal(shape, seed, d)))
            scaled, standard = (t.numpy() for t in draws())
            assert scaled.dtype == dtype.as_numpy_dtype
            assert np.array_equal(scaled, standard * _at_least(stddev, dtype.as_numpy_dtype)), (dtype, stddev)
    source, replay = GaussianNoise(seed=3), GaussianNoise(seed=3)
    source.build()
    replay.build()
    offset = tf.fill([999, 7], 0.25)
    added = tf.function(lambda: source.add([offset], below[0])[0])().numpy()
    seeds = replay._generator.make_seeds(1)
    standard = tf.function(lambda: normal(shape, seeds[:, 0], tf.float32))().numpy()
    assert np.array_equal(added, offset.numpy() + standard * _at_least(below[0], np.float32))


def case_noise_under_xla_is_the_same_sampler():
    """Under ``jit_compile=True`` the noise is the same 64-bit-radius Box-Muller draw (9.42 sigma, not XLA's 5.68),
    by the TensorFlow ops (XLA cannot compile the kernel's numpy_function): checked against numpy's Box-Muller of the
    Philox words drawn from the same seed in the same compiled function, and equal to the draws without XLA
    (the compiled kernel's; the raw words agree) within 2 ulps of max(radius, 1)."""
    seed, n = tf.constant([3, 11], tf.int64), 1001

    def draws():
        words = tf.random.stateless_uniform(
            [3, (n + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=tf.random.Algorithm.PHILOX
        )
        return words, normal(tf.constant([n]), seed, tf.float32)

    compiled = tf.function(draws, jit_compile=True)
    words, z = (t.numpy() for t in compiled())
    assert "PyFuncStateless" not in {op.type for op in compiled.get_concrete_function().graph.get_operations()}
    np.testing.assert_allclose(z, _words_expected(words)[:n], rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(z, draws()[1].numpy(), rtol=0, atol=2 * 2.0**-23 * max(1.0, np.abs(z).max()))


def case_digits_reach_a_sensible_accuracy():
    """sklearn digits (1500 train / 297 test), MLP 64-64-10, C=1, sigma=1, B=64, 8 epochs, delta=1e-5.

    Non-private training of this MLP reaches about 97%; at this budget (epsilon 4.4 by RDP) we ask
    for at least 85% test accuracy (five data splits and seeds gave 92-94% on both Keras flavours).
    """
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    K.utils.set_random_seed(0)
    model = make_private(
        K.Sequential([K.Input((64,)), L.Dense(64, activation="relu"), L.Dense(10)]),
        l2_norm_clip=1.0,
        noise_multiplier=1.0,
        expected_batch_size=64,
        target_delta=1e-5,
        seed=0,
    )
    model.compile(
        optimizer=K.optimizers.SGD(0.5, momentum=0.5),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x[train], y[train], epochs=8, verbose=0)
    accuracy = model.evaluate(x[test], y[test], verbose=0)[1]
    epsilon = history.history["epsilon"][-1]
    assert epsilon < 5.0, epsilon
    assert accuracy >= 0.85, (accuracy, epsilon)
    # The guarantee adds the noise cut-off's delta: 9.42 stds, ceil(size / 2) pairs per tensor, every step run.
    private = private_training(model)
    report = private.report()
    pairs = (64 * 64) // 2 + 64 // 2 + (64 * 10) // 2 + 10 // 2
    assert private.noise.draws == NoiseDraws(radius=np.sqrt(128 * np.log(2)), pairs=pairs)
    assert private.mechanism().sampling.value == "poisson"  # add-remove: the cut-off credits q = 64 / 1500
    cutoff = NoiseCutoff(
        radius=np.sqrt(128 * np.log(2)), pairs=pairs, steps=private.steps, unit_shift=1.0, moves=64 / 1500
    )
    added = cutoff.added_delta(1e-5, report.guarantee_epsilon)
    assert report.added_delta == added and 0 < report.added_delta < 1e-12
    assert f"1e-05 + {report.added_delta:.3g})-DP" in report.format_text()


def case_a_noise_cutoff_over_one_percent_of_delta_is_refused_up_front():
    """At sigma 0.2 one example moves the noise by 5 stds, 4.4 short of the 9.42-std cut-off: 50 planned epochs add
    more than 1 % of delta."""
    x, y = _data()
    model = make_private(K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=0.2, seed=0)
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    _raises(
        lambda: model.fit(x, y, batch_size=8, epochs=50, verbose=0),
        "noise sampler's cut-off at 9.42 stds",
        "more than 1% of delta",
        "raise noise_multiplier",
    )
    assert private_training(model).steps == 0


def case_a_target_epsilon_run_stops_where_the_noise_cutoff_would_pass_one_percent():
    """With a target epsilon out of reach (1e4), sigma 0.2 stops at the last step whose cut-off adds at most 1 % of
    delta (recomputed here), and the next fit says that the cut-off, not epsilon, left no step."""
    x, y = _data()
    model = make_private(
        K.Sequential([K.Input((4,)), L.Dense(2)]), l2_norm_clip=1.0, noise_multiplier=0.2, target_epsilon=1e4, seed=0
    )
    model.compile(optimizer="sgd", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=20, verbose=0)
    private = private_training(model)
    steps, delta = private.steps, private.target_delta

    def added(t):
        mechanism = DpSgdMechanism(dataset_size=40, batch_size=8, noise_multiplier=0.2, steps=t)
        return NoiseCutoff.for_mechanism(mechanism, NoiseDraws(radius=np.sqrt(128 * np.log(2)), pairs=5)).added_delta(
            delta
        )

    assert 0 < steps < 100 and added(steps) <= 0.01 * delta < added(steps + 1), (steps, delta)
    assert private.epsilon() < 1e4
    try:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    except PrivacyBudgetExceeded as err:
        assert f"no step is left after {steps} private steps: the noise sampler's cut-off" in str(err), str(err)
    else:
        raise AssertionError("a fit past the noise cut-off's limit ran")


def case_a_clip_beyond_the_largest_lets_a_huge_record_overflow_the_noisy_sum_and_is_refused():
    """Without the refusal, C = 1e37 (noise sigma C (1 + SLACK) / B = 1e34 at sigma 1e-3, B = 1: drawable) lets a
    Poisson step of expected batch size 1 over a padded batch of 512 rows release a non-finite sum for k records whose
    two positions cancel (a_1 = a_2 = c e_1, g_1 = -g_2 = d e_1, each just inside float32's norm checks: unclipped at
    this C, so each adds c d and -c d at the same entry) and a finite one for its neighbour of k - 1 (the k-th row
    padding), k the fewest that overflow with this CPU's matmul order (searched: the order is the kernel's); at the
    largest accepted C both are finite; make_private refuses C = 1e37 naming l2_norm_clip before any step."""
    from privacy.accounting import noise_cutoff
    from privacy.keras import layer_rules, recording
    from privacy.keras.noise import GaussianNoise
    from privacy.keras.params import DPParams
    from privacy.keras.train_step import released_sums

    rows, positions, width = 512, 2, 8  # ghost norms: T (d_in + d_out) = 32 < d_in d_out = 64
    side = np.float32(np.sqrt(float(np.finfo(np.float32).max)) / positions / 4)  # c = d

    def built():
        inputs = K.Input((positions, width))
        model = K.Model(inputs, L.Dense(width, use_bias=False, kernel_initializer="zeros")(inputs))
        model.compile(optimizer="sgd", loss="mse")
        return model

    model = built()
    units = recording.find_units(model, layer_rules.rule_for)
    x = np.zeros((rows, positions, width), np.float32)
    x[:, :, 0] = side
    y = np.zeros((rows, positions, width), np.float32)  # mse's d / dz at z = 0: -2 y / (T d_out) = (d, -d)
    y[:, :, 0] = -float(side) * positions * width / 2 * np.array([1.0, -1.0])
    noise = GaussianNoise(seed=5)
    noise.build()

    def release(clip, records):
        params = object.__new__(DPParams)  # the refusal left out: DPParams(1e37, ...) raises
        object.__setattr__(params, "l2_norm_clip", clip)
        object.__setattr__(params, "noise_multiplier", 1e-3)
        object.__setattr__(params, "num_microbatches", None)
        weights = (np.arange(rows) < records).astype(np.float32)
        weights[records:] = -0.0  # the sampler's padding
        _, sums = released_sums(
            model, units, tf.constant(x), tf.constant(y), tf.constant(weights), params, noise, expected_batch_size=1.0
        )
        return bool(np.all(np.isfinite(sums[0].numpy())))

    assert release(1e37, 1) and not release(1e37, rows), "512 cancelling records did not overflow"
    low, high = 1, rows  # finite at low, not at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if release(1e37, middle) else (low, middle)
    largest = noise_cutoff.max_l2_norm_clip()
    assert not release(1e37, high) and release(1e37, high - 1), high
    assert release(largest, high) and release(largest, rows)
    _raises(
        lambda: make_private(built(), l2_norm_clip=1e37, noise_multiplier=1e-3, expected_batch_size=1.0),
        "l2_norm_clip=1e+37 must be at most",
        repr(largest),
    )
    above = float(np.nextafter(largest, np.inf))
    DPKerasAdamOptimizer(l2_norm_clip=largest, noise_multiplier=1e6)
    _raises(lambda: DPKerasAdamOptimizer(l2_norm_clip=above, noise_multiplier=1.0), f"l2_norm_clip={above!r}")
    _raises(lambda: DPParams(above, 0.0), f"must be at most {largest!r}")


def case_a_layer_summing_more_positions_than_the_clip_bound_covers_is_refused():
    """max_l2_norm_clip holds for sums of at most 2^23 terms (all replicas): an embedding's clipped sum adds every
    row's positions, so a static batch of 2^12 rows of 2^11 + 1 ids is refused when the step is traced, naming the
    variable and the count, and 2^11 ids pass; a Dense over 2^12 positions per row materialises each row's gradient
    (T^2 (d_in + d_out) > T d_in d_out) and sums the 2^12 rows alone, so it passes at 2^24 rows times positions. A
    size known only when the step runs is checked then (tf.debugging assertion). Traced only: nothing is allocated."""
    from privacy.keras import clipping, layer_rules, recording
    from privacy.keras.params import DPParams
    from privacy.keras.train_step import released_sums

    rows = 2**12
    noise = GaussianNoise(seed=5)
    noise.build()

    def traced(layer, positions, dtype):
        inputs = K.Input((positions,), dtype=dtype)
        model = K.Model(inputs, layer(inputs if dtype == "int32" else inputs[..., None]))
        model.compile(optimizer="sgd", loss="mse")
        units = recording.find_units(model, layer_rules.rule_for)
        params = DPParams(1.0, 1.0)
        spec = tf.TensorSpec((rows, positions), dtype)
        y_spec = tf.TensorSpec(model.output.shape[1:], tf.float32)
        y_spec = tf.TensorSpec((rows, *y_spec.shape), tf.float32)

        def step(x, y, w):
            return released_sums(model, units, x, y, w, params, noise, expected_batch_size=float(rows))[1]

        signature = [spec, y_spec, tf.TensorSpec((rows,), tf.float32)]
        tf.function(step, input_signature=signature).get_concrete_function()

    traced(L.Embedding(4, 2), 2**11, "int32")
    _raises(
        lambda: traced(L.Embedding(4, 2), 2**11 + 1, "int32"),
        f"over {rows * (2**11 + 1)} rows (times positions) in ",
        "beyond the 8388608 that l2_norm_clip's bound",
    )
    traced(L.Dense(2), 2**12, "float32")  # materialised: the sum runs over the 2^12 rows

    @tf.function(input_signature=[tf.TensorSpec((), tf.int32)])
    def dynamic(positions):
        with tf.control_dependencies(clipping.checked_positions((tf.constant(rows), positions), "ids")):
            return tf.identity(positions)

    assert int(dynamic(tf.constant(2**11))) == 2**11
    try:
        dynamic(tf.constant(2**11 + 1))
    except tf.errors.InvalidArgumentError as err:
        assert "a DP-SGD step sums more than 8388608 ids" in str(err), str(err)
    else:
        raise AssertionError("a dynamic sum over 2^23 + 1 terms ran")


def case_an_expected_batch_below_one_on_several_replicas_is_refused():
    """B < 1 multiplies the noisy sums by 2^k (1 / B = m 2^k, m <= 1): on one replica a function of the released sum;
    on several, every replica's part (noiseless but on replica 0) would be multiplied before the replicas' sum, where
    a huge record could overflow its replica's part and its neighbour not: refused, naming expected_batch_size; the
    same step on one replica, and B = 1 on two, run."""
    from privacy.keras import layer_rules, recording
    from privacy.keras.params import DPParams
    from privacy.keras.train_step import released_sums

    model = K.Sequential([K.Input((4,)), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    units = recording.find_units(model, layer_rules.rule_for)
    x, y, w = tf.ones((3, 4)), tf.ones((3, 2)), tf.ones((3,))

    def release(batch, replicas):
        params, noise = DPParams(1.0, 0.0), GaussianNoise(seed=1)  # sigma 0: no draw
        return released_sums(model, units, x, y, w, params, noise, expected_batch_size=batch, replicas=replicas)

    _raises(lambda: release(0.5, 2), "expected_batch_size=0.5 is below 1 on 2 replicas", "2^1 ")
    for batch, replicas in ((0.5, 1), (1.0, 2)):
        assert all(np.all(np.isfinite(g)) for g in release(batch, replicas)[1]), (batch, replicas)
