"""Training cases (the full private step through compile/fit), run on both Keras flavours."""

import json
import os
import tempfile
import warnings
from fractions import Fraction

import dp_accounting
import numpy as np
import tensorflow as tf
from click.testing import CliRunner
from scipy import stats
from tensorboard.backend.event_processing import event_accumulator

from pipelines.cli.main import cli
from privacy.accounting import DpSgdMechanism, UnsupportedAccounting, compute_epsilon
from privacy.keras import (
    DPConfigurationError,
    DPKerasSGDOptimizer,
    DPSequential,
    PrivacyBudgetCallback,
    PrivacyBudgetExceeded,
    compat,
    make_private,
    poisson_batches,
    private_training,
    train_step,
)
from privacy.keras.noise import GaussianNoise, normal

K = compat.default_keras()
L = K.layers


def _mlp(inputs=8, hidden=16, outputs=3, seed=0, **dense_kwargs):
    K.utils.set_random_seed(seed)
    return K.Sequential(
        [K.Input((inputs,)), L.Dense(hidden, activation="tanh", **dense_kwargs), L.Dense(outputs, **dense_kwargs)]
    )


def _data(n=64, inputs=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, inputs)).astype("float32"), rng.integers(0, classes, size=n)


def _sgd(learning_rate):
    return K.optimizers.SGD(learning_rate)


def _scce():
    return K.losses.SparseCategoricalCrossentropy(from_logits=True)


def case_sigma0_and_huge_clip_equal_the_non_private_update():
    """With sigma = 0 and C = 1e9 two XLA-compiled private steps equal two plain Keras steps."""
    x, y = _data(n=32)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
    for microbatches in (None, 4):
        reference = _mlp(kernel_regularizer=K.regularizers.L2(0.01))
        reference.compile(optimizer=_sgd(0.3), loss=_scce(), jit_compile=True)
        private = K.models.clone_model(reference)
        private.set_weights(reference.get_weights())
        make_private(
            private,
            l2_norm_clip=1e9,
            noise_multiplier=0.0,
            num_microbatches=microbatches,
            expected_batch_size=16,
            sampling="shuffle",
        )
        private.compile(optimizer=_sgd(0.3), loss=_scce(), jit_compile=True)
        reference.fit(batches, epochs=1, verbose=0, shuffle=False)
        private.fit(batches, epochs=1, verbose=0, shuffle=False)
        for want, got in zip(reference.get_weights(), private.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert private_training(private).steps == 2


def case_noise_std_is_sigma_c_over_the_expected_batch_size():
    """Updates of a zero-gradient model are pure noise: N(0, (sigma C (1 + 2^-10) / B)^2) per coordinate, never
    reused (2^-10: `params.SLACK`).

    B is the expected batch size (40); the Poisson batches realised here hold other numbers of
    examples. Inputs are 0, so both 200x200 kernels get zero gradients at every step and each step's
    update is its noise. Per compile mode (without and with XLA, whose random number generation differs)
    160 000 coordinates (2 kernels x 2 steps): the chi-square variance test has power ~1 against a 5%
    error in the std (~28 standard errors) and the KS test checks the shape. The noise of the two
    kernels and of the two steps must be independent: under independence a correlation of 40 000 pairs
    has sd 0.005, so |r| < 0.025 (5 sd), while reused draws give r = 1. Fixed seeds.
    """
    sigma, clip, expected_batch, n = 1.5, 2.0, 40, 400
    std = sigma * clip * (1 + 2**-10) / expected_batch
    examples = tf.data.Dataset.from_tensor_slices((np.zeros((n, 200), "float32"), np.zeros((n, 200), "float32")))
    K.utils.set_random_seed(1)  # the sampler's stream also depends on the global seed: earlier cases set others
    batches = poisson_batches(examples, dataset_size=n, expected_batch_size=expected_batch, seed=5)
    assert all(int(w.numpy().sum()) != expected_batch for _, _, w in batches.take(2))
    for jit_compile in (False, True):
        K.utils.set_random_seed(1)
        model = K.Sequential(
            [
                K.Input((200,)),
                L.Dense(200, use_bias=False, kernel_initializer="zeros"),
                L.Dense(200, use_bias=False, kernel_initializer="zeros"),
            ]
        )
        make_private(
            model,
            l2_norm_clip=clip,
            noise_multiplier=sigma,
            expected_batch_size=expected_batch,
            dataset_size=n,
            seed=11,
        )
        model.compile(optimizer=_sgd(1.0), loss="mse", jit_compile=jit_compile)
        weights = [model.get_weights()]
        for _ in range(2):
            model.fit(batches, epochs=1, steps_per_epoch=1, verbose=0)
            weights.append(model.get_weights())
        noise = [
            (before - after).ravel()
            for step in range(2)
            for before, after in zip(weights[step], weights[step + 1], strict=True)
        ]
        update = np.concatenate(noise)
        chi2 = (update.size - 1) * np.var(update, ddof=1) / std**2
        p_variance = 2 * min(stats.chi2.cdf(chi2, update.size - 1), stats.chi2.sf(chi2, update.size - 1))
        assert p_variance > 1e-3, (jit_compile, np.std(update), std)
        assert stats.kstest(update / std, "norm").pvalue > 1e-3, jit_compile
        assert abs(update.mean()) < 4 * std / np.sqrt(update.size), jit_compile
        for i in range(4):
            for j in range(i):
                assert abs(np.corrcoef(noise[i], noise[j])[0, 1]) < 0.025, (jit_compile, i, j)


def case_a_step_adds_noise_of_stddev_sigma_c_over_b_rounded_up():
    """One step of a model whose gradient is exactly 0 (zero kernel, targets 0, MSE) under SGD(1) moves the weights
    by exactly minus the noise: bit for bit the seed's N(0, 1) draws (replayed from the same seed) times the smallest
    float32 at least sigma C (1 + 2^-10) / B (the slack covering the clipped sum's rounding, `params.SLACK`), with
    B = 12 and sigma C = 0.9 x 1.1, where float32(sigma C (1 + 2^-10) / B) is below it."""
    sigma, clip, batch = 0.9, 1.1, 12
    exact = Fraction(sigma) * Fraction(clip) * (1 + Fraction(1, 1024)) / batch
    stddev = np.float32(float(exact))
    assert Fraction(float(stddev)) < exact
    stddev = np.nextafter(stddev, np.float32(np.inf))
    assert Fraction(float(stddev)) >= exact
    x, y = np.ones((batch, 3), np.float32), np.zeros((batch, 5), np.float32)
    for jit_compile in (False, True):
        model = K.Sequential([K.Input((3,)), L.Dense(5, use_bias=False, kernel_initializer="zeros")])
        make_private(
            model,
            l2_norm_clip=clip,
            noise_multiplier=sigma,
            expected_batch_size=batch,
            dataset_size=batch,
            sampling="shuffle",
            seed=11,
        )
        model.compile(optimizer=_sgd(1.0), loss="mse", jit_compile=jit_compile)
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch), epochs=1, verbose=0)
        replay = GaussianNoise(seed=11)
        replay.build()
        seed = replay._generator.make_seeds(1)[:, 0]
        draws = tf.function(lambda s=seed: normal(tf.constant([3, 5]), s, tf.float32), jit_compile=jit_compile)()
        np.testing.assert_array_equal(model.get_weights()[0], -(draws.numpy() * stddev), err_msg=f"XLA {jit_compile}")


def case_epsilon_in_history_equals_ppml_epsilon():
    n, batch, sigma, delta = 300, 30, 1.2, 1e-4
    x, y = _data(n=n)
    model = make_private(
        _mlp(), l2_norm_clip=1.0, noise_multiplier=sigma, expected_batch_size=batch, target_delta=delta, seed=5
    )
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    history = model.fit(x, y, epochs=2, verbose=0)
    private = private_training(model)
    assert private.steps == 20 and len(history.history["epsilon"]) == 2
    result = CliRunner().invoke(
        cli,
        [
            "epsilon",
            "--n",
            str(n),
            "--batch-size",
            str(batch),
            "--noise-multiplier",
            str(sigma),
            "--steps",
            str(private.steps),
            "--target-delta",
            str(delta),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert history.history["epsilon"][-1] == report["epsilon_rdp"]
    assert private.budget.epsilon("rdp") == report["epsilon_rdp"]
    assert private.budget.epsilon("pld") == report["epsilon_pld"]
    first_epoch = compute_epsilon(
        DpSgdMechanism(dataset_size=n, batch_size=batch, noise_multiplier=sigma, steps=10), delta, "rdp"
    )
    assert history.history["epsilon"][0] == first_epoch


def case_target_epsilon_stops_before_it_is_exceeded():
    n, batch, sigma, target = 200, 20, 1.5, 2.0
    x, y = _data(n=n)
    model = make_private(
        _mlp(),
        l2_norm_clip=1.0,
        noise_multiplier=sigma,
        expected_batch_size=batch,
        target_delta=1e-4,
        target_epsilon=target,
        seed=1,
    )
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    model.fit(x, y, epochs=50, verbose=0)
    private = private_training(model)
    budget = private.budget
    mechanism = private.mechanism()
    assert 10 < private.steps < 500
    assert budget.epsilon("rdp") <= target < budget.epsilon_after(mechanism.unit_event(), 1, "rdp")
    try:
        model.fit(x, y, epochs=1, verbose=0)
    except PrivacyBudgetExceeded as err:
        assert "target epsilon 2 is spent" in str(err)
    else:
        raise AssertionError("training past the target epsilon was allowed")


def case_resumed_run_neither_loses_nor_double_counts():
    """A crash in epoch 3 of 3; the rerun resumes from BackupAndRestore and the saved budget state."""
    n, batch = 120, 20  # 6 steps per epoch
    x, y = _data(n=n)

    class Crash(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.crash and batch == 2 and self.epoch == 2:
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "private_training.json")

        def run(crash):
            model = make_private(
                _mlp(),
                l2_norm_clip=1.0,
                noise_multiplier=1.0,
                expected_batch_size=batch,
                target_delta=1e-4,
                state_path=state,
            )
            model.compile(optimizer=_sgd(0.1), loss=_scce())
            callback = Crash()
            callback.crash = crash
            model.fit(
                x,
                y,
                epochs=3,
                verbose=0,
                callbacks=[K.callbacks.BackupAndRestore(os.path.join(tmp, "backup")), callback],
            )
            return private_training(model)

        try:
            run(crash=True)
        except KeyboardInterrupt:
            pass
        with open(state) as f:
            assert json.load(f)["steps"] == 12  # two whole epochs were saved
        resumed = run(crash=False)
        assert resumed.steps == 18
        # Checkpoints within an epoch would restore weights from steps the saved state never counted.
        model = make_private(
            _mlp(),
            l2_norm_clip=1.0,
            noise_multiplier=1.0,
            expected_batch_size=batch,
            target_delta=1e-4,
            state_path=os.path.join(tmp, "other.json"),
        )
        model.compile(optimizer=_sgd(0.1), loss=_scce())
        backup = K.callbacks.BackupAndRestore(os.path.join(tmp, "backup2"), save_freq=2)
        try:
            model.fit(x, y, epochs=1, verbose=0, callbacks=[backup])
        except DPConfigurationError as err:
            assert "BackupAndRestore(save_freq=2)" in str(err) and "save_freq='epoch'" in str(err)
        else:
            raise AssertionError("a mid-epoch checkpoint was allowed beside a state_path")
        assert private_training(model).steps == 0
        # Another adjacency would mix relations in one ledger; shuffled batches count epochs, not steps.
        for other in ({"adjacency": "replace-one"}, {"sampling": "shuffle"}):
            try:  # refused before any step, at make_private or at the start of fit
                model = make_private(
                    _mlp(),
                    l2_norm_clip=1.0,
                    noise_multiplier=1.0,
                    expected_batch_size=batch,
                    target_delta=1e-4,
                    state_path=state,
                    **other,
                )
                model.compile(optimizer=_sgd(0.1), loss=_scce())
                model.fit(x, y, epochs=1, verbose=0, batch_size=batch)
            except DPConfigurationError as err:
                declared = "poisson under replace-one" if "adjacency" in other else "shuffle under replace-one"
                assert "it accounted poisson batches under add-remove adjacency" in str(err), str(err)
                assert f"this training declares {declared}" in str(err), str(err)
            else:
                raise AssertionError(f"a budget was resumed with {other}")
        with open(state) as f:
            assert json.load(f)["steps"] == 18  # the saved state is untouched
        assert resumed.budget.units == 18 and len(resumed.budget.ledger) == 1
        uninterrupted = DpSgdMechanism(dataset_size=n, batch_size=batch, noise_multiplier=1.0, steps=18)
        assert resumed.epsilon("rdp") == compute_epsilon(uninterrupted, 1e-4, "rdp")


def case_epsilon_reaches_callbacks_after_it():
    """History, and any callback listed by the user (TensorBoard, EarlyStopping...), read epsilon in logs."""
    x, y = _data(n=60)
    seen = []

    class Reader(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["epsilon"])

    model = make_private(_mlp(), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=20, target_delta=1e-3)
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[Reader()])
    assert seen == history.history["epsilon"] and seen[0] < seen[1]


def _ppml_epsilon(n, batch, sigma, steps, delta, accountant):
    """Epsilon from the `ppml epsilon` command, as TensorBoard stores it (float32)."""
    result = CliRunner().invoke(
        cli,
        [
            "epsilon",
            "--n",
            str(n),
            "--batch-size",
            str(batch),
            "--noise-multiplier",
            str(sigma),
            "--steps",
            str(steps),
            "--target-delta",
            str(delta),
            "--accountant",
            accountant,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return np.float32(json.loads(result.output)[f"epsilon_{accountant}"])


def _scalars(run_dir):
    """{tag: {step: value}} of the scalar summaries in a TensorBoard run directory, read back by tensorboard."""
    events = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {
        tag: {e.step: tf.make_ndarray(e.tensor_proto).item() for e in events.Tensors(tag)}
        for tag in events.Tags()["tensors"]
    }


def case_epsilon_reaches_tensorboard_event_files():
    """keras.callbacks.TensorBoard writes epsilon (RDP, or PLD when configured) per epoch and every N steps.

    Our callback is listed after TensorBoard on purpose: fit moves it first. The values read back
    from the event files equal `ppml epsilon --steps s` for the steps s each summary was written at.
    """
    n, batch, sigma, delta = 120, 20, 1.2, 1e-4  # 6 steps per epoch
    x, y = _data(n=n)
    with tempfile.TemporaryDirectory() as tmp:
        rdp_dir, pld_dir = os.path.join(tmp, "rdp"), os.path.join(tmp, "pld")
        model = make_private(
            _mlp(), l2_norm_clip=1.0, noise_multiplier=sigma, expected_batch_size=batch, target_delta=delta, seed=3
        )
        model.compile(optimizer=_sgd(0.1), loss=_scce())
        # Every 3 steps: Keras 3's TensorBoard drops epoch summaries at steps its update_freq skips.
        model.fit(
            x,
            y,
            epochs=2,
            verbose=0,
            callbacks=[K.callbacks.TensorBoard(rdp_dir, update_freq=3), PrivacyBudgetCallback(update_freq=3)],
        )
        written = _scalars(os.path.join(rdp_dir, "train"))
        assert written["epoch_epsilon"] == {
            0: _ppml_epsilon(n, batch, sigma, 6, delta, "rdp"),
            1: _ppml_epsilon(n, batch, sigma, 12, delta, "rdp"),
        }
        assert written["batch_epsilon"] == {s: _ppml_epsilon(n, batch, sigma, s, delta, "rdp") for s in (3, 6, 9, 12)}
        assert not {"batch_loss", "epoch_loss"} & set(written)  # the training loss never reaches TensorBoard

        model = make_private(
            _mlp(),
            l2_norm_clip=1.0,
            noise_multiplier=sigma,
            expected_batch_size=batch,
            target_delta=delta,
            accountant="pld",
            seed=3,
        )
        model.compile(optimizer=_sgd(0.1), loss=_scce())
        model.fit(x, y, epochs=1, verbose=0, callbacks=[K.callbacks.TensorBoard(pld_dir)])
        written = _scalars(os.path.join(pld_dir, "train"))
        assert written["epoch_epsilon"] == {0: _ppml_epsilon(n, batch, sigma, 6, delta, "pld")}
        assert "batch_epsilon" not in written


def case_empty_poisson_batches_still_step_and_count():
    """q = 0.5 / 100: most batches are empty; each still adds noise and is accounted."""
    n = 100
    x, y = _data(n=n)
    model = make_private(
        _mlp(), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=0.5, target_delta=1e-3, seed=2
    )
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    before = model.get_weights()
    history = model.fit(x, y, epochs=1, steps_per_epoch=10, verbose=0)
    assert private_training(model).steps == 10
    assert all(np.any(a != b) for a, b in zip(before, model.get_weights(), strict=True))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights()) and set(history.history) == {"epsilon"}


def case_padding_left_out_without_xla_steps_like_every_row_under_xla():
    """With ``skip_padding`` a step outside XLA leaves most of a Poisson batch's padding (weight -0.0) out
    (`train_step.without_padding`: the forward pass sees the drawn examples, those of weight 0 included, rounded
    up to a multiple of 32);
    by default, and with ``skip_padding`` under XLA, it computes on every padded row (no row left out). On the same
    batches, with a binding clip, real examples of weight 0 and of weight NaN, all three take the same steps and
    drop the same examples."""
    n, steps, multiple = 100, 6, train_step.PADDED_ROWS_MULTIPLE
    x, y = _data(n=n)
    weights = np.ones(n, "float32")
    weights[:5], weights[5:10] = 0.0, np.nan  # fixed seeds: some of both are sampled

    def batches():
        # seed 8: each of the 6 batches draws one of examples 0-9 (the first assertion below checks it)
        return poisson_batches((x, y, weights), dataset_size=n, expected_batch_size=20, seed=8)

    padded = [w for _, _, w in batches().take(steps).as_numpy_iterator()]
    drawn = [int(np.sum(~((w == 0) & np.signbit(w)))) for w in padded]  # real examples: not weight -0.0
    assert all(d > np.sum((w != 0) & np.isfinite(w)) for d, w in zip(drawn, padded, strict=True))
    kept_rows = sum(min(len(w), max(1, -(-d // multiple)) * multiple) for d, w in zip(drawn, padded, strict=True))
    assert kept_rows < sum(len(w) for w in padded), (kept_rows, [len(w) for w in padded])
    rows = tf.Variable(0, dtype=tf.int64)
    without_padding = train_step.without_padding

    def counted(x, y, w, extra=None):
        x, y, w = without_padding(x, y, w, extra)
        rows.assign_add(tf.cast(tf.size(w), tf.int64))
        return x, y, w

    results = []
    train_step.without_padding = counted
    try:
        for skip_padding, jit_compile in ((True, False), (False, False), (True, True)):
            options = {} if not skip_padding else {"skip_padding": True}  # the default: every padded row
            model = make_private(
                _mlp(),
                l2_norm_clip=0.05,
                noise_multiplier=0.0,
                expected_batch_size=20,
                dataset_size=n,
                seed=0,
                **options,
            )
            model.compile(optimizer=_sgd(0.5), loss=_scce(), jit_compile=jit_compile)
            assert private_training(model).steps == 0 and batches().element_spec[2].shape[0] > multiple
            before = int(rows.numpy())
            model.fit(batches(), epochs=1, steps_per_epoch=steps, verbose=0)
            results.append((model.get_weights(), private_training(model).dropped_examples, int(rows.numpy()) - before))
    finally:
        train_step.without_padding = without_padding
    (skip_weights, skip_dropped, skip_rows), *others = results
    assert skip_rows == kept_rows and [rows for _, _, rows in others] == [0, 0], (kept_rows, results)
    for weights_, dropped, _ in others:
        assert dropped == skip_dropped > 0, (dropped, skip_dropped)
        for want, got in zip(weights_, skip_weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def case_dp_optimizer_drop_in():
    """TF Privacy's names: DPKerasSGDOptimizer with DPSequential, and with make_private(model)."""
    x, y = _data(n=64)
    model = DPSequential(layers=[K.Input((8,)), L.Dense(3)], expected_batch_size=16, target_delta=1e-3)
    model.compile(
        optimizer=DPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=1.1, num_microbatches=8, learning_rate=0.1),
        loss=_scce(),
    )
    history = model.fit(x, y, epochs=1, verbose=0)
    mechanism = private_training(model).mechanism()
    assert (mechanism.num_microbatches, mechanism.sensitivity, mechanism.noise_multiplier) == (8, 2.0, 1.1)
    assert history.history["epsilon"][0] == compute_epsilon(mechanism, 1e-3, "rdp")

    plain = make_private(_mlp(), expected_batch_size=16)  # Poisson sampling, hyperparameters from the optimizer
    plain.compile(optimizer=DPKerasSGDOptimizer(1.0, 1.1, learning_rate=0.1), loss=_scce())
    plain.fit(x, y, epochs=1, verbose=0)
    assert private_training(plain).steps == 4 and private_training(plain).sampling.value == "poisson"


def case_a_target_epsilon_that_cannot_be_accounted_is_refused():
    """Shuffled batches of a dataset without dataset_size cannot be accounted: with a target epsilon (or a
    state_path) fit refuses before any step, instead of running unchecked (300 steps ran against a target
    of 1.0 whose epsilon was about 320)."""
    x, y = _data(n=100, inputs=8)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(100).batch(10)
    with tempfile.TemporaryDirectory() as tmp:
        for kwargs in (
            {"noise_multiplier": 1.0, "target_epsilon": 1.0},
            {"noise_multiplier": 1.0, "state_path": os.path.join(tmp, "never.json")},
            {"noise_multiplier": 0.0, "target_epsilon": 1.0, "dataset_size": 100},
        ):
            model = make_private(
                _mlp(), l2_norm_clip=1.0, sampling="shuffle", expected_batch_size=10, target_delta=1e-3, **kwargs
            )
            model.compile(optimizer=_sgd(0.1), loss=_scce())
            try:
                model.fit(batches, epochs=30, verbose=0)
            except DPConfigurationError as err:
                needed = "noise_multiplier is 0" if kwargs["noise_multiplier"] == 0 else "dataset_size"
                assert "cannot account" in str(err) and needed in str(err), str(err)
            else:
                raise AssertionError(f"fit ran without accounting under {kwargs}")
            assert private_training(model).steps == 0
            assert not os.listdir(tmp)


def case_pld_cost_limit_crossed_by_the_planned_fit_is_refused_before_any_step():
    """Without a target epsilon, a fit whose planned steps cross PLD's cost limits (here RDP's rough epsilon
    above 100 after 200 steps) raised UnsupportedAccounting from the callback mid-fit. It is refused before the
    first step; a fit within the limits runs; and where the limit is crossed anyway, the callback saves the
    steps and raises a one-line DPConfigurationError."""
    from privacy.keras import callback

    x, y = _data(n=100, inputs=8)
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.json")
        model = make_private(
            _mlp(dtype="float64"),  # float32 noise, cut at 9.42 stds, would add over 1 % of delta at 4 stds a step
            l2_norm_clip=1.0,
            noise_multiplier=0.5,
            expected_batch_size=10,
            adjacency="replace-one",
            target_delta=1e-3,
            state_path=state,
        )
        model.compile(optimizer=_sgd(0.1), loss=_scce())
        planned = DpSgdMechanism(
            dataset_size=100, batch_size=10, noise_multiplier=0.5, steps=200, adjacency="replace-one"
        )
        assert planned.cost_reason("pld", 1e-3) and not planned.replace(steps=100).cost_reason("pld", 1e-3)
        try:
            model.fit(x, y, epochs=20, verbose=0)
        except DPConfigurationError as err:
            assert "fit plans 200 private steps" in str(err) and "PLD" in str(err), str(err)
        else:
            raise AssertionError("a fit beyond PLD's cost limits started")
        private = private_training(model)
        assert private.steps == 0
        # One epoch of the 100 steps: the callback composes one PLD epsilon (seconds each), not one per epoch.
        model.fit(x, y, epochs=1, steps_per_epoch=100, verbose=0)
        assert private.steps == 100
        expected = (
            dp_accounting.pld.PLDAccountant(
                neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
            )
            .compose(
                dp_accounting.SelfComposedDpEvent(
                    dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(0.5)), 100
                )
            )
            .get_epsilon(1e-3)
        )
        assert abs(private.epsilon() - expected) < 1e-9

        class Crossed:  # the training as the callback sees it once the limit is crossed mid-fit
            state_path, steps, saved = state, 250, False

            def epsilon(self):
                raise UnsupportedAccounting("PLD is not asked for an epsilon of about 130")

            def save_state(self):
                Crossed.saved = True

        try:
            callback._epsilon(Crossed())
        except DPConfigurationError as err:
            assert "after 250 private steps" in str(err) and state in str(err) and "\n" not in str(err)
        else:
            raise AssertionError("no DPConfigurationError")
        assert Crossed.saved


def case_pld_cost_limits_hold_for_training_too():
    """PLD is not asked for Poisson-sampled steps whose noise multiplier per step is below 0.2 (minutes and
    gigabytes), as in privacy.accounting.compute_epsilon: a training only PLD could account (Poisson
    replace-one, microbatched at sigma 0.3: 0.15 per step) is refused before any step, and epsilon('pld') of
    one that RDP accounts says why instead of computing."""
    x, y = _data(n=100, inputs=8)
    model = make_private(
        _mlp(),
        l2_norm_clip=1.0,
        noise_multiplier=0.3,
        num_microbatches=2,
        expected_batch_size=10,
        adjacency="replace-one",
        target_delta=1e-3,
    )
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    try:
        model.fit(x, y, epochs=1, verbose=0)
    except DPConfigurationError as err:
        assert "with the PLD accountant" in str(err) and "0.15 per step" in str(err), str(err)
        assert "no other accountant covers it here" in str(err), str(err)
    else:
        raise AssertionError("a training beyond PLD's cost limits was accounted with PLD")
    assert private_training(model).steps == 0
    # float64 weights: float32 noise, cut at 9.42 stds, would add over 1 % of delta at 6.7 stds a step; 12 do not.
    model = make_private(
        _mlp(dtype="float64"), l2_norm_clip=1.0, noise_multiplier=0.15, expected_batch_size=10, target_delta=1e-3
    )
    model.compile(optimizer=_sgd(0.1), loss=_scce())
    model.fit(x, y, epochs=1, verbose=0)
    private = private_training(model)
    try:
        private.epsilon("pld")
    except UnsupportedAccounting as err:
        assert "0.15 per step" in str(err) and "the RDP accountant covers it" in str(err), str(err)
    else:
        raise AssertionError("PLD was asked beyond its cost limits")
    event = dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(0.15))
    expected = dp_accounting.rdp.RdpAccountant().compose(dp_accounting.SelfComposedDpEvent(event, 10))
    assert abs(private.epsilon("rdp") - expected.get_epsilon(1e-3)) < 1e-9


def case_a_delta_close_to_one_over_n_is_warned_at_fit():
    """target_delta above 1/(2n) lets a mechanism publish about n * delta examples in full: fit warns (and
    the report says so); the default, at most 1/(2n), does not."""
    x, y = _data(n=100, inputs=8)
    for target_delta, warned in ((6e-3, True), (None, False)):
        model = make_private(
            _mlp(), l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=10, target_delta=target_delta
        )
        model.compile(optimizer=_sgd(0.1), loss=_scce())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, epochs=1, verbose=0)
        said = [str(w.message) for w in caught if "close to 1/n" in str(w.message)]
        assert bool(said) is warned, (target_delta, said)
        report = private_training(model).report()
        assert bool(report.warnings) is warned, report.warnings
        if not warned:
            assert report.delta == 1e-3


def case_dp_model_classes_take_make_privates_skip_padding_and_truncation():
    """DPSequential takes make_private's skip_padding and truncated_batch_size (not Sequential's: a TypeError)."""
    model = DPSequential(
        1.0,
        1.1,
        layers=[K.Input((8,)), L.Dense(3)],
        expected_batch_size=16,
        dataset_size=1000,
        skip_padding=True,
        truncated_batch_size=40,
    )
    private = private_training(model)
    assert private.skip_padding is True and private.truncated_batch_size == 40, vars(private)


def case_the_report_says_when_steps_left_their_padding_out():
    """A report of a run with ``skip_padding`` whose steps left padding out (no XLA) notes that the steps' durations
    followed the batch sizes drawn (not covered by epsilon); one without it, or whose steps ran under XLA, does
    not, unless it resumed steps that did (the state file records it)."""
    x, y = _data(n=100)
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.json")
        runs = ((False, False, None), (True, True, None), (True, False, state), (True, True, state))
        for skip, jit_compile, state_path in runs:
            model = make_private(
                _mlp(),
                l2_norm_clip=1.0,
                noise_multiplier=1.1,
                expected_batch_size=20,
                dataset_size=100,
                skip_padding=skip,
                state_path=state_path,
            )
            model.compile(optimizer=_sgd(0.1), loss=_scce(), jit_compile=jit_compile)
            model.fit(x, y, epochs=1, steps_per_epoch=2, verbose=0)
            notes = [note for note in private_training(model).report().notes if "skip_padding" in note]
            assert len(notes) == (skip and (not jit_compile or state_path is not None)), (skip, jit_compile, notes)
            if notes:
                assert "not covered by epsilon" in notes[0] and "32" in notes[0], notes
                assert "batch size drawn" in notes[0] and "real examples of sample weight 0 stay" in notes[0], notes
