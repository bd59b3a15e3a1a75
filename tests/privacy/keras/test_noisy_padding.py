"""Noisy padding in the step: K = min(cap, m + max(0, ceil(mu + Z))) rows, Z from the gradient noise's generator.

What the step's duration can show is its row count; these tests check that the rows follow ceil(mu + Z) drawn
independently of the batch (K - m independent of m), that the padding rows change nothing the step computes, that
the run is accounted as the joint Gaussian, and that the combinations the analysis does not cover are refused.
"""

import json
import math

import dp_accounting as dpa
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from privacy.accounting import noisy_padding as npad
from privacy.keras import DPConfigurationError, compat, make_private, poisson_batches, private_training, train_step
from privacy.keras.masking import is_padding
from privacy.keras.noise import GaussianNoise, normal, pairs_of

K = compat.default_keras()
SIGMA_C = 3.0
MU = npad.padding_offset(SIGMA_C)


def _noise(seed):
    noise = GaussianNoise(seed=seed)
    noise.build()
    return noise


def test_padding_rows_are_ceil_mu_plus_z_clamped_at_0():
    """Each draw equals max(0, ceil(mu + Z)) for Z replayed from a generator of the same seed, and 2000 draws
    follow the law of ceil(mu + Z) (chi-square, fixed seed); Z's Box-Muller pair is counted for the cut-off
    with a step's gradient noise."""
    noise, replay = _noise(11), _noise(11)
    draws = []
    for _ in range(2000):
        got = int(noise.padding_rows(SIGMA_C, MU).numpy())
        z = float(normal([1], replay._generator.make_seeds(1)[:, 0], tf.float64, SIGMA_C).numpy()[0])
        assert got == max(0, math.ceil(MU + z)), (got, z)
        draws.append(got)
    noise.add([tf.zeros([3], tf.float64)], 1.0)  # counts the last Z's pair with its 2
    assert noise.draws.pairs == 3 and noise.draws.radius >= 12.0, noise.draws
    values, counts = np.unique(draws, return_counts=True)
    edges = np.arange(values.min(), values.max() + 1)
    cdf = stats.norm.cdf((np.append(edges, edges[-1] + 1) - 1 - MU) / SIGMA_C)  # P(ceil(mu + Z) <= k - 1)
    expected = np.diff(cdf)
    expected[0] += cdf[0]
    expected[-1] += 1 - cdf[-1]
    observed = np.array([counts[values == k].sum() for k in edges])
    # merge the thin tails so every bin expects at least 5
    keep = expected * len(draws) >= 5
    obs = np.concatenate([observed[keep], [observed[~keep].sum()]])
    exp = np.concatenate([expected[keep], [expected[~keep].sum()]]) * len(draws)
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    assert abs(np.mean(draws) - npad.mean_padding(SIGMA_C)) < 4 * SIGMA_C / math.sqrt(len(draws))


def test_rows_kept_are_m_plus_the_padding_drawn_and_k_minus_m_is_independent_of_m(monkeypatch):
    """Without rounding to a row multiple (noisy padding's multiple 1) a step keeps exactly min(cap, m + padding)
    rows: its m drawn examples first, in order, then padding (weight -0.0, zeros); K - m does not follow m (Spearman
    and a two-sample KS test over 400 Poisson batches of widely varying m). With a multiple patched in (plain
    skip_padding's 32, noisy padding's before), K rounded up, the same rows first."""
    n, steps = 400, 400
    ids = np.arange(1, n + 1, dtype="float32")[:, None]
    batches = poisson_batches((ids, ids[:, 0]), dataset_size=n, expected_batch_size=40, seed=5)
    multiples = sorted({1, npad.NOISY_ROWS_MULTIPLE, npad.PADDED_ROWS_MULTIPLE})
    sources = [_noise(3) for _ in multiples]  # one generator of the same seed per multiple: the same draws
    ms, pads, rounded = [], [], set()
    for x, _, w in batches.take(steps):
        m = int(np.count_nonzero(x.numpy()))
        cap = int(w.shape[0])
        for multiple, source in zip(multiples, sources, strict=True):
            monkeypatch.setattr(npad, "NOISY_ROWS_MULTIPLE", multiple)
            kept_x, _, kept_w = train_step.without_padding(x, None, w, source.padding_rows(SIGMA_C, MU))
            rows = len(kept_w)
            np.testing.assert_array_equal(kept_x.numpy()[:m, 0], x.numpy()[:m, 0])
            assert np.all(is_padding(kept_w[m:]).numpy()) and not np.any(kept_x.numpy()[m:])
            if multiple == 1:
                extra = rows - m
                assert rows == min(cap, m + extra) and extra >= 0
                if rows < cap:
                    ms.append(m)
                    pads.append(extra)
            else:
                want = min(cap, m + extra)
                assert rows == min(cap, -(-want // multiple) * multiple), (rows, want)
                if rows != want:
                    rounded.add(multiple)
    assert rounded == set(multiples[1:])  # each multiple rounded some steps up: the test sees which one ran
    assert len(ms) > 300 and max(ms) - min(ms) > 20
    assert stats.spearmanr(ms, pads).pvalue > 1e-3
    median = np.median(ms)
    low = [p for m, p in zip(ms, pads, strict=True) if m <= median]
    high = [p for m, p in zip(ms, pads, strict=True) if m > median]
    assert stats.ks_2samp(low, high).pvalue > 1e-3


def _mlp():
    K.utils.set_random_seed(0)
    return K.Sequential([K.Input((8,)), K.layers.Dense(16, activation="tanh"), K.layers.Dense(3)])


def _data(n):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 3, size=n)


def _compiled(run_eagerly=False, **options):
    """A private MLP (C = 1, sigma 1.1, B = 30 of n = 300, ``options``) compiled with SGD(0.1)."""
    model = make_private(
        _mlp(), l2_norm_clip=1.0, noise_multiplier=1.1, expected_batch_size=30, dataset_size=300, **options
    )
    model.compile(
        optimizer=K.optimizers.SGD(0.1),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
    )
    return model


def _fit(n=300, batch=30, epochs=2, noise_multiplier=1.1, jit_compile=False, **options):
    x, y = _data(n)
    model = make_private(
        _mlp(),
        l2_norm_clip=0.05,
        noise_multiplier=noise_multiplier,
        expected_batch_size=batch,
        dataset_size=n,
        seed=0,
        **options,
    )
    model.compile(
        optimizer=K.optimizers.SGD(0.5),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    model.fit(x, y, epochs=epochs, verbose=0)
    return model


def test_padding_rows_never_change_the_update():
    """Noise 0, a binding clip: noisy padding, padding left out to a multiple of 32 and the whole padded batch
    train to the same weights (the padding rows add exactly nothing to the clipped sum)."""
    runs = [
        _fit(noise_multiplier=0.0),
        _fit(noise_multiplier=0.0, skip_padding=True),
        _fit(noise_multiplier=0.0, skip_padding=True, batch_size_noise_multiplier=SIGMA_C),
    ]
    for other in runs[1:]:
        for want, got in zip(runs[0].get_weights(), other.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_run_is_accounted_as_the_joint_gaussian():
    model = _fit(skip_padding=True, batch_size_noise_multiplier=SIGMA_C)
    private = private_training(model)
    report = private.report()
    m = report.mechanism
    assert m.batch_size_noise_multiplier == SIGMA_C and m.steps == private.steps > 0
    # the step drew Z (one Box-Muller pair beside the gradients'), so the noise cut-off's delta counts it
    assert private.noise.draws.pairs == sum(pairs_of(v.shape) for v in model.trainable_variables) + 1
    joint = (1.1**-2 + SIGMA_C**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(30 / 300, dpa.GaussianDpEvent(joint)), m.steps)
    expected = dpa.rdp.RdpAccountant().compose(event).get_epsilon(report.delta)
    assert report.epsilon["rdp"] == pytest.approx(expected, rel=1e-12)
    assert report.clamp_delta == pytest.approx(
        m.steps * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(report.guarantee_epsilon)), rel=1e-12
    )
    assert report.guarantee_delta >= report.delta + report.clamp_delta
    (note,) = [note for note in report.notes if note.startswith("noisy padding:")]
    assert npad.covered_rows(SIGMA_C, joint) in note, note
    assert not any(note.startswith("skip_padding:") for note in report.notes), report.notes


@pytest.mark.parametrize(
    "options, named",
    [
        (dict(batch_size_noise_multiplier=3.0), "skip_padding=False"),
        (dict(skip_padding=True, batch_size_noise_multiplier=3.0, truncated_batch_size=40), "truncated_batch_size"),
        (dict(skip_padding=True, batch_size_noise_multiplier=3.0, num_microbatches=5), "num_microbatches=5"),
        (dict(skip_padding=True, batch_size_noise_multiplier=3.0, sampling="shuffle"), "sampling='shuffle'"),
        (dict(skip_padding=True, batch_size_noise_multiplier=3.0, sampling="fixed"), "sampling='fixed'"),
        (dict(skip_padding=True, batch_size_noise_multiplier=3.0, adjacency="replace-one"), "adjacency='replace-one'"),
        (dict(skip_padding=True, batch_size_noise_multiplier=0.0), "batch_size_noise_multiplier"),
        (dict(skip_padding=True, batch_size_noise_multiplier="3"), "batch_size_noise_multiplier"),
    ],
)
def test_refused_combinations(options, named):
    with pytest.raises(DPConfigurationError, match=named) as err:
        make_private(
            _mlp(), l2_norm_clip=1.0, noise_multiplier=1.1, expected_batch_size=30, dataset_size=300, **options
        )
    assert "\n" not in str(err.value)


def test_refused_under_xla():
    with pytest.raises(DPConfigurationError, match="batch_size_noise_multiplier=3.0 needs a step"):
        _fit(epochs=1, jit_compile=True, skip_padding=True, batch_size_noise_multiplier=SIGMA_C)


def test_dp_model_classes_take_it():
    from privacy.keras import DPSequential

    layers = [K.Input((8,)), K.layers.Dense(3)]
    model = DPSequential(
        1.0,
        1.1,
        layers=layers,
        expected_batch_size=16,
        dataset_size=1000,
        skip_padding=True,
        batch_size_noise_multiplier=SIGMA_C,
    )
    assert private_training(model).batch_size_noise_multiplier == SIGMA_C
    with pytest.raises(DPConfigurationError, match="skip_padding=False"):
        DPSequential(1.0, 1.1, layers=[K.Input((8,)), K.layers.Dense(3)], batch_size_noise_multiplier=SIGMA_C)


def test_target_epsilon_stops_where_the_clamp_delta_still_fits_and_report_refuses_without_a_traceback():
    """Target epsilon 18 at delta 1e-3: T p (1 + e^18) passes 1 % of delta after T = 171 steps, long before epsilon
    reaches 18, so the budget stops there and the report holds. Without a target (sigma 0.4, delta 1e-5: epsilon
    near 25 within 2 epochs), the run's report refuses with a DPConfigurationError naming the clamp (not a bare
    ValueError)."""
    fits = math.floor(npad.MAX_CLAMP_SHARE * 1e-3 / (npad.CLAMP_BOUND * (1 + math.exp(18.0))))
    stopped = private_training(
        _fit(epochs=20, skip_padding=True, batch_size_noise_multiplier=SIGMA_C, target_delta=1e-3, target_epsilon=18.0)
    )
    assert stopped.steps == fits == 171
    report = stopped.report()
    assert report.guarantee_epsilon < 18 and report.clamp_delta <= npad.MAX_CLAMP_SHARE * 1e-3
    free = private_training(
        _fit(epochs=2, noise_multiplier=0.4, skip_padding=True, batch_size_noise_multiplier=SIGMA_C, target_delta=1e-5)
    )
    with pytest.raises(DPConfigurationError, match="noisy padding's clamp adds delta"):
        free.report()


@pytest.mark.parametrize("multiple", [npad.NOISY_ROWS_MULTIPLE, npad.PADDED_ROWS_MULTIPLE])
def test_fit_steps_keep_their_m_examples_plus_the_padding_drawn_for_them(monkeypatch, multiple):
    """Through fit (eagerly, to see every step): each step's padding is max(0, ceil(mu + Z)) for the Z that a twin
    of the seeded noise generator replays (one draw, then the gradients' seeds, per step), and the step keeps
    min(cap, m + padding) rows rounded up to noisy padding's row multiple (and to plain skip_padding's 32, noisy
    padding's before, where that is patched in), the multiple the run's report states."""
    monkeypatch.setattr(npad, "NOISY_ROWS_MULTIPLE", multiple)
    seen = []
    without_padding = train_step.without_padding

    def spy(x, y, w, extra=None):
        out = without_padding(x, y, w, extra)
        m = int(np.count_nonzero(~is_padding(w).numpy()))
        seen.append((m, None if extra is None else int(extra), int(tf.size(out[2])), int(tf.size(w))))
        return out

    monkeypatch.setattr(train_step, "without_padding", spy)
    x, y = _data(300)
    model = _compiled(run_eagerly=True, seed=0, skip_padding=True, batch_size_noise_multiplier=SIGMA_C)
    model.fit(x, y, epochs=1, verbose=0)
    assert len(seen) == private_training(model).steps == 10
    replay, tensors = _noise(0), len(model.trainable_variables)
    for m, extra, rows, cap in seen:
        z = float(normal([1], replay._generator.make_seeds(1)[:, 0], tf.float64, SIGMA_C).numpy()[0])
        replay._generator.make_seeds(tensors)
        assert extra == max(0, math.ceil(MU + z)), (extra, z)
        assert rows == min(cap, -(-min(cap, m + extra) // multiple) * multiple), (m, extra, rows, cap)
    (note,) = [note for note in private_training(model).report().notes if note.startswith("noisy padding:")]
    assert ("rounded up to a multiple of 32 rows" in note) == (multiple == 32), note  # the multiple the steps used


def test_fit_counts_z_pair_before_the_first_step_is_traced():
    """fit accounts the noise's cut-off before its first step (for target_epsilon's stopping point): with noisy
    padding that count includes Z's Box-Muller pair, as the traced step's does. Read when training begins (not by
    fit(epochs=0), which tf-keras refuses)."""
    model = _compiled(seed=0, skip_padding=True, batch_size_noise_multiplier=SIGMA_C)
    private, begun = private_training(model), []

    class Begin(K.callbacks.Callback):
        def on_train_begin(self, logs=None):
            begun.append((private.steps, private.noise.draws.pairs))

    model.fit(*_data(300), epochs=1, verbose=0, callbacks=[Begin()])
    pairs = sum(pairs_of(v.shape) for v in model.trainable_variables) + 1
    assert begun == [(0, pairs)] and private.steps == 10 and private.noise.draws.pairs == pairs, begun


def test_a_seeded_run_resumed_from_its_state_draws_new_noise(tmp_path):
    """A seeded run resumed from its state_path must not redraw the noise of the steps already run: the same Z
    again would give Y' - Y = m' - m (two steps' batch sizes compared without noise), the same gradient noise the
    difference of two clipped sums. The resumed generator's next seeds differ from the original run's first ones."""
    x, y = _data(300)
    state = str(tmp_path / "state.json")

    def start(epochs):
        model = _compiled(seed=7, state_path=state, skip_padding=True, batch_size_noise_multiplier=SIGMA_C)
        seeds = private_training(model).noise._generator.make_seeds(4).numpy()
        model.fit(x, y, epochs=epochs, verbose=0)
        return private_training(model), seeds

    first, original = start(1)
    np.testing.assert_array_equal(original, _noise(7)._generator.make_seeds(4).numpy())  # a seeded run: replayable
    resumed, again = start(1)
    assert first.steps == 10 and resumed.steps == 20
    assert not np.any(again[0] == original[0]), (again, original)  # row 1 of make_seeds is 0 here


def test_a_resumed_run_notes_padding_its_earlier_steps_left_out_uncovered(tmp_path):
    """The state records whether a step left the padding out without noisy padding: a run resumed without
    skip_padding after such steps still notes their uncovered durations; one resumed after noisy padding only
    does not."""
    x, y = _data(300)

    def run(state, **options):
        model = _compiled(seed=0, state_path=str(tmp_path / state), **options)
        model.fit(x, y, epochs=1, verbose=0)
        return [note for note in private_training(model).report().notes if note.startswith("skip_padding:")]

    assert run("plain.json", skip_padding=True)
    assert run("plain.json")  # the resumed steps keep every row; the first 10 did not
    noisy = dict(skip_padding=True, batch_size_noise_multiplier=SIGMA_C)
    assert not run("noisy.json", **noisy) and not run("noisy.json", **noisy)


@pytest.mark.parametrize("resumed", [None, SIGMA_C / 2])
def test_a_state_is_resumed_only_with_the_batch_size_noise_multiplier_its_steps_ran_with(tmp_path, resumed):
    """The earlier steps' clamp delta and cut-off shift follow their sigma_c: resuming with another one (or none) is
    refused, naming both, before any step (the state keeps its steps)."""
    x, y = _data(300)
    state = str(tmp_path / "state.json")

    def model_with(sigma_c):
        return _compiled(state_path=state, skip_padding=True, batch_size_noise_multiplier=sigma_c)

    model_with(SIGMA_C).fit(x, y, epochs=1, verbose=0)
    with pytest.raises(DPConfigurationError, match=rf"ran with batch_size_noise_multiplier={SIGMA_C!r}, this training"):
        model_with(resumed).fit(x, y, epochs=1, verbose=0)
    assert json.load(open(state))["steps"] == 10


def test_the_runs_privacy_ledger_lists_uncovered_durations_and_adds_noisy_paddings_clamp():
    """A fitted model's privacy ledger (`PrivacyLedger.for_dp_sgd` from its training, as a run_fn writes it): plain
    skip_padding's steps are listed outside the guarantee with the report's reason, padded steps are not; noisy
    padding's ledger has the report's epsilon (dp-accounting's, for the joint Gaussian) and delta, clamp included."""
    from pipelines import privacy_ledger as pl

    def ledger(model):
        private = private_training(model)
        report = private.report()
        return report, pl.PrivacyLedger.for_dp_sgd(
            report.mechanism,
            l2_norm_clip=0.05,
            delta=report.delta,
            budget=private.budget,
            noise_draws=private.noise.draws,
            validation_decisions=private.validation_decisions,
            uncovered_padding=private.uncovered_padding,
        )

    report, plain = ledger(_fit(epochs=1, skip_padding=True))
    reason = plain.parameters["outside_guarantee"][pl.UNCOVERED_PADDING_NAME]
    assert f"skip_padding: {reason}." in report.notes and "batch sizes to within 32 rows" in reason
    assert pl.UNCOVERED_PADDING_NAME not in ledger(_fit(epochs=1))[1].parameters["outside_guarantee"]
    report, noisy = ledger(_fit(skip_padding=True, batch_size_noise_multiplier=SIGMA_C))
    steps = report.mechanism.steps
    event = dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(30 / 300, dpa.GaussianDpEvent((1.1**-2 + SIGMA_C**-2) ** -0.5)), steps
    )
    rdp = dpa.rdp.RdpAccountant().compose(event).get_epsilon(report.delta)
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(report.delta)
    assert noisy.epsilons == {"rdp": pytest.approx(rdp, rel=1e-12), "pld": pytest.approx(pld, rel=1e-9)}
    clamp = steps * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(noisy.epsilon))
    assert noisy.clamp_delta == pytest.approx(clamp, rel=1e-12) and noisy.cutoff_delta > 0
    assert (noisy.epsilon, noisy.delta) == (report.guarantee_epsilon, report.guarantee_delta)
    assert pl.UNCOVERED_PADDING_NAME not in noisy.parameters["outside_guarantee"]


def test_a_state_saved_before_padding_was_recorded_resumes_it_as_unknown(tmp_path):
    """A training state without 'uncovered_padding' (an older ppml) cannot say whether its steps left their padding
    out: resumed, the training reports it unknown (None), its ledger lists it as such, and so does its next state."""
    from pipelines import privacy_ledger as pl

    x, y = _data(300)
    path = tmp_path / "state.json"
    _compiled(seed=0, state_path=str(path)).fit(x, y, epochs=1, verbose=0)
    state = json.loads(path.read_text())
    assert state.pop("uncovered_padding") is False
    path.write_text(json.dumps(state))
    model = _compiled(seed=0, state_path=str(path))
    model.fit(x, y, epochs=1, verbose=0)
    private = private_training(model)
    assert private.steps > state["steps"] and private.uncovered_padding is None
    assert json.loads(path.read_text())["uncovered_padding"] is None
    report = private.report()
    (note,) = [note for note in report.notes if note.startswith("skip_padding:")]  # no skip_padding now, but before?
    assert note.startswith("skip_padding: unknown whether the resumed steps") and "within 32 rows" in note
    ledger = pl.PrivacyLedger.for_dp_sgd(
        report.mechanism, l2_norm_clip=1.0, delta=report.delta, budget=private.budget, uncovered_padding=None
    )
    assert ledger.parameters["outside_guarantee"][pl.UNCOVERED_PADDING_NAME].startswith("unknown: ")
