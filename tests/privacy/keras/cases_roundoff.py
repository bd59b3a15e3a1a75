"""Clipping against floating-point cancellation, run on both Keras flavours by test_roundoff.py.

A ghost norm is a sum of signed terms, sum_ts (A A^T)_ts (G G^T)_ts; a record whose positions cancel (a_1 = a_2
large, g_1 ~ -g_2) can make it round to 0 in float32 while the exact norm of A^T G, which a separate matmul adds to
the released sum, is huge. Each affected layer kind gets adversarial records from a seeded search (scales 1e0..1e8):
the record whose computed norm is the smallest against its exact norm (float64, from the same float32 inputs and
output gradients) is put alone into a batch of padding (weight 0): its neighbour without it releases exactly 0, so
the released sum's norm must be at most C (1 + SLACK) (the other rows add exact zeros: no cross-unit rounding).
Underflow too: records and factors whose scaled terms straddle float32's smallest normal, where TensorFlow's CPU
kernels flush results and operands to 0 (`roundoff`'s absolute terms e).
"""

import weakref
from fractions import Fraction

import numpy as np
import tensorflow as tf

from privacy.keras import clipping, compat, factors, layer_rules, recording, roundoff, train_step
from privacy.keras import params as privacy_params
from privacy.keras.noise import GaussianNoise
from privacy.keras.params import DPConfigurationError, DPParams
from privacy.keras.train_step import clipped_gradient_sum

K = compat.default_keras()
L = K.layers
CLIP = 1.0
SLACK = Fraction(1, 1024)  # 2^-10, written out here: the stated slack, against `params.SLACK`
CANDIDATES = 256


def _model(inputs, outputs):
    model = K.Model(inputs, outputs)
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    return model


_STEPS = weakref.WeakKeyDictionary()  # model -> {(microbatches, xla, clip, batch): its traced step}


def _released(model, x, y, w, microbatches=None, xla=False, clip=CLIP):
    """`clipped_gradient_sum` of one noiseless step, traced (and compiled, with ``xla``) once per model and settings
    and called again on every batch of the same shapes, as a fit calls its step. The steps hold the model weakly
    (a strong reference from a value would keep its key, and every model, trace and compile, alive)."""
    steps = _STEPS.setdefault(model, {})
    key = (microbatches, xla, clip, len(w))
    if key not in steps:
        units = recording.find_units(model, layer_rules.rule_for)
        params = DPParams(clip, 0.0, microbatches)
        held = weakref.ref(model)
        steps[key] = tf.function(
            lambda x, y, w: clipped_gradient_sum(held(), units, x, y, w, params, expected_batch_size=key[3]),
            autograph=False,
            jit_compile=xla,
        )
    return steps[key](tf.constant(x), tf.constant(y), tf.constant(w))


def _norm(sums):
    return np.sqrt(sum(np.sum(np.square(s.numpy().astype(np.float64))) for s in sums))


def _cancelling(rng, outputs, positions, deltas=(-2, 6), epsilons=(-8, 0), relative=True):
    """Targets making the output gradients of consecutive positions cancel: position 2i gets z - delta, 2i + 1
    z + delta + eps, |delta| 10^``deltas`` and |eps| 10^``epsilons`` (times the output's size where ``relative``;
    ``outputs``: (n, positions, k))."""
    n, k = outputs.shape[0], outputs.shape[-1]
    delta = (10 ** rng.uniform(*deltas, (n, 1, 1))) * rng.normal(size=(n, positions // 2, k))
    eps = (10 ** rng.uniform(*epsilons, (n, 1, 1))) * rng.normal(size=(n, positions // 2, k))
    if relative:
        eps = eps * np.abs(outputs).max(axis=(1, 2))[:, None, None]
    y = outputs.astype(np.float64).copy()
    y[:, 0::2] -= delta
    y[:, 1::2] += delta + eps
    return y.astype(np.float32)


def _exact_norms(a, g):
    """||sum_t a_t g_t^T||_F per example in float64 (products of float32 values, exact; their sums nearly)."""
    return np.linalg.norm(np.einsum("utd,ute->ude", a.astype(np.float64), g).reshape(len(a), -1), axis=1)


def _output_gradients(outputs, y):
    """d mse / d output for each example, float64 from the float32 outputs and targets: 2 (z - y) / size."""
    z = outputs.astype(np.float64)
    return 2 * (z - y.astype(np.float64)) / np.prod(z.shape[1:])


def _worst(norms, exact, count=3):
    """The candidates whose computed norm is the smallest against their exact one (exact above 100 C), those whose
    computed norm is below C first (clipping by it would not clip them at all). Which candidate cancels most depends
    on the CPU's kernels (their summation order; e.g. TensorFlow's Eigen kernels where oneDNN is off by default, as
    on CPUs without AVX-512 VNNI): ranking the ones below C first keeps a fooling record chosen wherever one is."""
    ratio = np.divide(norms, exact, out=np.full(len(exact), np.inf), where=exact > 100 * CLIP)
    below = (norms < CLIP) & (exact > 100 * CLIP)
    return np.lexsort((ratio, ~below))[:count]


def _check_alone(model, x, y, chosen, exact, microbatches=None, pair=1, clip=CLIP, last=False):
    """Each chosen record (``pair`` consecutive rows) alone among padding, in the first rows (the ``last`` ones): the
    released sum's norm <= C (1 + SLACK) (times 2 where a microbatch holds two examples and its neighbour keeps one, so
    both sums count); without and with XLA."""
    bound = float(clip * (1 + SLACK))
    place = slice(len(x) - pair, len(x)) if last else slice(0, pair)  # one microbatch
    for index in chosen:
        rows = slice(index * pair, (index + 1) * pair)
        xs, ys = x.copy(), y.copy()
        xs[place], ys[place] = x[rows], y[rows]
        w = np.zeros(len(x), np.float32)
        w[place] = 1
        for xla in (False, True):
            released = _released(model, xs, ys, w, microbatches, xla, clip)
            norm = _norm(released.sums)
            assert norm <= bound * (1 + 1e-6), (index, xla, norm, exact[index], released.norms.numpy()[place])
            if pair > 1:
                w_one = w.copy()
                w_one[place.start + 1 : place.stop] = 0
                neighbour = _released(model, xs, ys, w_one, microbatches, xla, clip)
                distance = _norm([a - b for a, b in zip(released.sums, neighbour.sums, strict=True)])
                assert distance <= 2 * bound * (1 + 1e-6), (index, xla, distance)


def _sequence_case(layer, positions=2, features=8, seed=1):
    """A layer over a (positions, features) sequence, its output the model's (mse): candidates with every position
    equal (scale 1e0..1e8) and cancelling targets."""
    rng = np.random.default_rng(seed)
    inputs = K.Input((positions, features))
    model = _model(inputs, layer(inputs))
    scale = 10 ** rng.uniform(0, 8, CANDIDATES)
    row = rng.normal(size=(CANDIDATES, 1, features)) * scale[:, None, None]
    x = np.repeat(row, positions, 1).astype(np.float32)
    outputs = model(x).numpy()
    y = _cancelling(rng, outputs, outputs.shape[1])
    return model, x, y, outputs


def _check_cancelling_records(model, x, y, inputs, outputs):
    """The records whose reported norm most underestimates their exact norm (from the layer's ``inputs`` side) have
    exact norms far above C and fool the float32 norm (reported below exact / (1 + SLACK): clipping by it would let
    more than C (1 + SLACK) through), and each alone moves the release by at most C (1 + SLACK)."""
    released = _released(model, x, y, np.ones(len(x), np.float32))
    exact = _exact_norms(inputs, _output_gradients(outputs, y))
    norms = released.norms.numpy()
    chosen = _worst(norms, exact)
    assert exact[chosen[0]] > 100 * CLIP
    assert norms[chosen[0]] < exact[chosen[0]] / float(1 + SLACK), (norms[chosen[0]], exact[chosen[0]])
    _check_alone(model, x, y, chosen, exact)


def case_adversarial_records_sharing_a_batch_each_move_the_release_by_at_most_the_clip():
    """All 256 cancelling candidates in one batch with 32 rows of padding: removing any of the three that fool the
    float32 norm most moves the released sum by at most C (1 + SLACK). The bounds cover each unit's own terms; the
    float32 sum across units rounds relative to all units' magnitudes (not covered, README), so this is a
    regression test of that sum's rounding on records at 1e0..1e8 (without and with XLA)."""
    model, x, y, outputs = _sequence_case(L.Dense(8, use_bias=False))
    padding = 32
    xs = np.concatenate([x, np.zeros((padding, *x.shape[1:]), np.float32)])
    ys = np.concatenate([y, np.zeros((padding, *y.shape[1:]), np.float32)])
    w = np.concatenate([np.ones(len(x), np.float32), np.zeros(padding, np.float32)])
    exact = _exact_norms(x, _output_gradients(outputs, y))
    for xla in (False, True):
        released = _released(model, xs, ys, w, xla=xla)
        chosen = _worst(released.norms.numpy()[: len(x)], exact)
        assert exact[chosen[0]] > 100 * CLIP
        for index in chosen:
            without = w.copy()
            without[index] = 0
            neighbour = _released(model, xs, ys, without, xla=xla)
            distance = _norm([a - b for a, b in zip(released.sums, neighbour.sums, strict=True)])
            assert distance <= float(CLIP * (1 + SLACK)), (xla, index, distance)


def case_dense_over_a_sequence_clips_cancelling_records():
    model, x, y, outputs = _sequence_case(L.Dense(8, use_bias=False))
    _check_cancelling_records(model, x, y, x, outputs)


def case_einsum_dense_clips_cancelling_records():
    model, x, y, outputs = _sequence_case(L.EinsumDense("abc,cd->abd", (2, 8)))
    _check_cancelling_records(model, x, y, x, outputs)


def case_conv_with_ghost_norms_clips_cancelling_records():
    """Conv1D(16, 3, valid) over 4 positions of 24 channels: ghost norms (T^2 (72 + 16) < T 72 16); every patch
    is the same row three times over when the positions are equal."""
    model, x, y, outputs = _sequence_case(L.Conv1D(16, 3, use_bias=False), positions=6, features=24)
    assert factors.ghost_is_cheaper(4, 72, 16)
    patches = np.tile(x[:, :4], (1, 1, 3))  # (n, 4 positions, 72): equal rows, so any patch order
    _check_cancelling_records(model, x, y, patches, outputs)


def case_embedding_with_repeated_ids_clips_cancelling_records():
    rng = np.random.default_rng(2)
    inputs = K.Input((2,), dtype="int32")
    model = _model(inputs, L.Embedding(5, 8)(inputs))
    x = np.repeat(rng.integers(0, 5, (CANDIDATES, 1)), 2, 1).astype(np.int32)
    outputs = model(x).numpy()
    y = _cancelling(rng, outputs, 2, deltas=(3, 10), epsilons=(1, 5), relative=False)
    released = _released(model, x, y, np.ones(len(x), np.float32))
    exact = _exact_norms(np.ones((CANDIDATES, 2, 1), np.float32), _output_gradients(outputs, y))
    chosen = _worst(released.norms.numpy(), exact)
    assert released.norms.numpy()[chosen[0]] < CLIP < exact[chosen[0]]
    _check_alone(model, x, y, chosen, exact)


def case_lstm_clips_cancelling_records():
    """LSTM over two equal steps with no carry (recurrent kernel 0, forget gate's bias -1e4: f = 0 exactly), so both
    steps' gates are the same function of x, G_t = J^T dL/dh_t with one J, and cancelling output targets make
    G_1 ~ -G_2: the kernel's slice [X] of the product [X | H_prev | 1] cancels. Exact norms from J in float64
    (gates i, f, c, o; h = sigmoid(o) tanh(sigmoid(i) tanh(c))) and the float32 outputs."""
    rng = np.random.default_rng(3)
    inputs = K.Input((2, 8))
    lstm = L.LSTM(4, return_sequences=True, unit_forget_bias=False)
    model = _model(inputs, lstm(inputs))
    kernel = (rng.normal(size=(8, 16)) * 1e-8).astype(np.float32)
    bias = np.zeros(16, np.float32)
    bias[4:8] = -1e4
    lstm.set_weights([kernel, np.zeros((4, 16), np.float32), bias])
    scale = 10 ** rng.uniform(4, 8, CANDIDATES)
    x = np.repeat(rng.normal(size=(CANDIDATES, 1, 8)) * scale[:, None, None], 2, 1).astype(np.float32)
    outputs = model(x).numpy()
    y = _cancelling(rng, outputs, 2, deltas=(2, 6), epsilons=(-6, 0), relative=False)
    z = x[:, 0].astype(np.float64) @ kernel.astype(np.float64) + bias
    zi, zc, zo = z[:, 0:4], z[:, 8:12], z[:, 12:16]

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    cell = sigmoid(zi) * np.tanh(zc)
    dh = _output_gradients(outputs, y)  # (n, 2, 4)
    dc = dh * (sigmoid(zo) * (1 - np.tanh(cell) ** 2))[:, None]
    gates = [
        dc * (sigmoid(zi) * (1 - sigmoid(zi)) * np.tanh(zc))[:, None],
        np.zeros_like(dh),
        dc * (sigmoid(zi) * (1 - np.tanh(zc) ** 2))[:, None],
        dh * (sigmoid(zo) * (1 - sigmoid(zo)) * np.tanh(cell))[:, None],
    ]
    g = np.concatenate(gates, -1)  # (n, 2, 16)
    a = np.concatenate([x, np.stack([np.zeros((CANDIDATES, 4)), outputs[:, 0]], 1), np.ones((CANDIDATES, 2, 1))], -1)
    exact = _exact_norms(a, g)
    released = _released(model, x, y, np.ones(len(x), np.float32))
    chosen = _worst(released.norms.numpy(), exact)
    assert released.norms.numpy()[chosen[0]] < CLIP < exact[chosen[0]]
    _check_alone(model, x, y, chosen, exact)


def case_microbatches_merging_one_position_clip_cancelling_pairs():
    """Dense(8) on single positions, microbatches of two examples: the merged factor has T = 2. Each pair has equal
    inputs and cancelling targets; its neighbour keeps one of the two (the microbatch moves by 2 C (1 + SLACK))."""
    rng = np.random.default_rng(4)
    inputs = K.Input((8,))
    model = _model(inputs, L.Dense(8, use_bias=False)(inputs))
    scale = 10 ** rng.uniform(0, 8, CANDIDATES)
    x = np.repeat(rng.normal(size=(CANDIDATES, 1, 8)) * scale[:, None, None], 2, 1).astype(np.float32)
    outputs = model(x.reshape(-1, 8)).numpy().reshape(CANDIDATES, 2, 8)
    y = _cancelling(rng, outputs, 2)
    flat_x, flat_y = x.reshape(-1, 8), y.reshape(-1, 8)
    released = _released(model, flat_x, flat_y, np.ones(len(flat_x), np.float32), CANDIDATES)
    exact = _exact_norms(x, _output_gradients(outputs, y).reshape(CANDIDATES, 2, 8) / 2)
    chosen = _worst(released.norms.numpy(), exact)
    assert released.norms.numpy()[chosen[0]] < CLIP < exact[chosen[0]]
    _check_alone(model, flat_x, flat_y, chosen, exact, CANDIDATES, pair=2)


FLUSHED_CLIP = 0.75 * 2.0**-126


def _flushed_records():
    """(name, model, x, y, exact gradient norm N) for each layer kind of
    `case_records_flushed_below_the_smallest_normal_move_the_release_by_at_most_the_clip`: a batch of 4 rows, the
    record first (the rest zeros). A layer of zero weights gives output gradients g = -y 2 / (T d_out) exactly
    (mse); the record's inputs and gradients are 2^-20, equal over its positions, g = (1.5, -0.75) 2^-20 on the
    first output (one position, 0.75 2^-20, for the materialised Dense)."""
    out = []
    for name, inputs, layer, d_out, norm in (
        ("ghost Dense, G scaled", K.Input((2, 8)), L.Dense(4, use_bias=False, kernel_initializer="zeros"), 4, 2.0**-40),
        ("ghost Dense, A scaled", K.Input((2, 4)), L.Dense(8, use_bias=False, kernel_initializer="zeros"), 8, 2.0**-40),
        ("embedding", K.Input((2,), dtype="int32"), L.Embedding(5, 4, embeddings_initializer="zeros"), 4, 2.0**-20),
        ("materialised Dense", K.Input((16, 3)), L.Dense(2, use_bias=False, kernel_initializer="zeros"), 2, 2.0**-40),
    ):
        model = _model(inputs, layer(inputs))
        positions = inputs.shape[1]
        if name == "embedding":
            x = np.full((4, 2), 3, np.int32)
        else:
            x = np.zeros((4, *inputs.shape[1:]), np.float32)
            x[0, : positions if positions == 2 else 1, 0] = 2.0**-20
        y = np.zeros((4, positions, d_out), np.float32)
        values = (1.5, -0.75) if positions == 2 else (0.75,)
        y[0, : len(values), 0] = [-v * 2.0**-20 * positions * d_out / 2 for v in values]
        out.append((name, model, x, y, 0.75 * norm))
    return out


def _check_flushed_record(model, x, y, norm):
    """At C = 1 the record is kept (its underflow bound is far below C SLACK); alone at `FLUSHED_CLIP`, first or
    last, the released sum's norm is at most C (1 + SLACK) (`_check_alone`)."""
    kept = _released(model, x, y, np.array([1, 0, 0, 0], np.float32), clip=1.0).kept.numpy()
    assert kept[0], kept
    for last in (False, True):
        _check_alone(model, x, y, [0], [norm], clip=FLUSHED_CLIP, last=last)


def case_records_flushed_below_the_smallest_normal_move_the_release_by_at_most_the_clip():
    """Adversarial neighbours in float32's underflow (`_flushed_records`): one record among three rows of padding,
    first or last, at C = 0.75 2^-126 (its exact term clipped to C has its scaled terms about 2^-126), without and
    with XLA: a ghost Dense with G scaled (d_out < d_in) and one with A scaled, whose two products come to
    (1.5, -0.75) 2^-126 times about 1 (the kernels flush the second: twice the exact term, above C (1 + SLACK)); an
    embedding's two rows of one id (the second scaled row flushed); a materialised Dense (16 positions, s W =
    0.75 2^-126: one rounding per entry, which flushing only shrinks, so no kernel that flushes lets it pass C). The
    released sum's norm is at most C (1 + SLACK); at C = 1 each record is kept."""
    for _, model, x, y, norm in _flushed_records():
        _check_flushed_record(model, x, y, norm)


def _released_by_a_step(model, x, y, w, clip, batch, sigma=0.0):
    """The sums a private step of expected batch size ``batch`` releases (`train_step.released_sums`, traced as the
    step is; noise multiplier ``sigma``, the noise seeded the same at every call), float64 arrays."""
    units = recording.find_units(model, layer_rules.rule_for)
    params, noise = DPParams(clip, sigma), GaussianNoise(seed=0)
    noise.build()
    step = tf.function(
        lambda x, y, w: train_step.released_sums(model, units, x, y, w, params, noise, expected_batch_size=batch),
        autograph=False,
    )
    return [s.numpy().astype(np.float64) for s in step(tf.constant(x), tf.constant(y), tf.constant(w))[1]]


def _huge_side_record():
    """A one-position Dense (2 -> 3: ghost, A the scaled side) of zero kernel, its record's input 2^63 e_1 (its
    float32 square finite: the unit is kept) and output gradient about 2^-100 e_1 (mse), the rest zeros: D = |a| |g|
    about 2^-37, so a clip factor m C / max(D, C) = m (C = 1) would scale a to m 2^63, inf for m = 2^66."""
    inputs = K.Input((2,))
    model = _model(inputs, L.Dense(3, use_bias=False, kernel_initializer="zeros")(inputs))
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32)
    x[0, 0], y[0, 0] = 2.0**63, -1.5 * 2.0**-100
    return model, x, y


def case_expected_batch_sizes_below_one_release_a_multiple_of_the_step_at_one():
    """1 / B > 1 (B < 1): the step folds m = 2^-k / B <= 1 into the clip factors and multiplies the noisy sums by
    2^k (`train_step`). A record alone among three rows of padding, in a noiseless step (`_released_by_a_step`), for
    B = 1/2, 2^-10, 2^-66 and 0.3: its release is exactly 2^k times the release at 2^k B (1, or 1.2 for 0.3), and its
    norm at most C (1 + SLACK) / B (Fractions). The records: `_huge_side_record` at C = 1, kept (folded whole,
    1 / B = 2^66 would overflow its scaled side to inf), and the ghost Dense whose scaled terms straddle 2^-126 at
    `FLUSHED_CLIP` (`_flushed_records`; dropped, its underflow term e filling the slack: without e the kernels'
    flushing releases twice the exact term). With noise too (sigma = 0.7, the same seed; the huge-side record), the
    release is exactly 2^k times the step's at 2^k B: the noise's standard deviation is sigma C (1 + SLACK) / B, as
    at B >= 1. A B whose 2^k is beyond float32 (2^-128; 2^-1074, beyond float64 too) is refused, naming it."""
    w = np.array([1, 0, 0, 0], np.float32)
    multiples = ((0.5, 1.0, 1), (2.0**-10, 1.0, 10), (2.0**-66, 1.0, 66), (0.3, 1.2, 2))
    for (model, x, y), clip, kept, sigma in (
        (_huge_side_record(), 1, True, 0.0),
        (_flushed_records()[0][1:4], FLUSHED_CLIP, False, 0.0),
        (_huge_side_record(), 1, True, 0.7),
    ):
        references = {batch: _released_by_a_step(model, x, y, w, clip, batch, sigma) for batch in (1.0, 1.2)}
        for batch, reference, doublings in multiples:
            got = _released_by_a_step(model, x, y, w, clip, batch, sigma)
            assert any(np.any(g) for g in got) == kept, (batch, clip)
            if sigma:
                assert all(np.all(g) for g in got), batch  # noise on every entry, not only the record's
            for g, r in zip(got, references[reference], strict=True):
                np.testing.assert_array_equal(g, r * 2.0**doublings)
            norm = sum((Fraction(float(v)) ** 2 for g in got for v in g.ravel()), Fraction(0))
            assert sigma or norm <= (Fraction(clip) * (1 + SLACK) / Fraction(batch)) ** 2, (batch, float(norm))
    for batch, doublings in ((2.0**-128, 128), (5e-324, 1074)):
        try:
            _released_by_a_step(model, x, y, w, 1, batch)
        except DPConfigurationError as error:
            assert f"expected_batch_size={batch!r}" in str(error) and f"2^{doublings} " in str(error), str(error)
        else:
            raise AssertionError(f"B = {batch!r} was not refused")


def _exact_terms(a, g, start=0, stop=None):
    """sum_t a_td g_te per unit, in Fractions from the float32 values (a[..., start:stop]): a list over (d, e), d
    major."""
    a = a[..., start:stop]
    out = []
    for au, gu in zip(a.astype(np.float64), g.astype(np.float64), strict=True):
        out.append(
            [
                sum((Fraction(au[t, d]) * Fraction(gu[t, e]) for t in range(len(au))), Fraction(0))
                for d in range(au.shape[1])
                for e in range(gu.shape[1])
            ]
        )
    return out


def _exact_squares(a, g, start=0, stop=None):
    """sum_de (sum_t a_td g_te)^2 per unit, in Fractions from the float32 values (a[..., start:stop])."""
    return [sum((v * v for v in unit), Fraction(0)) for unit in _exact_terms(a, g, start, stop)]


def _inputs(rng, units, positions, d_in, d_out, adversarial):
    """float32 (a, g): random, or with equal positions (scale 1e0..1e8) and g_2i+1 = -g_2i + eps."""
    a = rng.normal(size=(units, positions, d_in)) * 10 ** rng.uniform(0, 8, (units, 1, 1))
    g = rng.normal(size=(units, positions, d_out)) * 10 ** rng.uniform(-4, 4, (units, 1, 1))
    if adversarial and positions > 1:
        a[:, 1:] = a[:, :1]
        g[:, 1::2] = -g[:, 0::2][:, : positions // 2] + g[:, 1::2] * 10 ** rng.uniform(-9, -3, (units, 1, 1))
    return a.astype(np.float32), g.astype(np.float32)


def case_bounds_are_upper_bounds_on_the_exact_squared_norms():
    """Every factor kind's ``squared_norm_bounds`` is at least the exact squared norm (Fractions, from the float32
    inputs the factor holds) of what its ``clipped_sum`` adds, on random and adversarial (cancelling) inputs: ghost
    products (T = 2, 3, and T = 1), a materialised product (the squares of its very values), slices of a product,
    embedding rows with repeated ids, materialised gradients. And ``rounding`` bounds the clipped sum's own
    rounding: each unit alone, ||fl(clipped_sum(s)) - s grad_u|| <= s rounding_u, the exact sum in Fractions. (The
    ghost bound's 2^-52 |c| term, for the rounding of its final addition c + E, can fail no test: without it the
    bound falls below the exact value only where that lies within 2^-53 |c| of c + E, every rounding of the float64
    sum near its worst case at once. It is kept for the proof, not tested; the float64 step here passes without it.)"""
    rng = np.random.default_rng(7)
    for adversarial in (False, True):
        for positions, d_in, d_out in ((2, 8, 6), (3, 8, 6), (1, 4, 3), (16, 3, 2)):
            a, g = _inputs(rng, 12, positions, d_in, d_out, adversarial)
            product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
            ghost = product._use_ghost()
            assert ghost == (positions < 16)
            bounds = product.squared_norm_bounds().numpy()
            if ghost:
                exact = _exact_squares(a, g)
            else:  # the materialised values are what the clipped sum adds
                per_unit = product.per_unit().numpy()
                exact = [sum(Fraction(float(v)) ** 2 for v in w.ravel()) for w in per_unit]
            for u, want in enumerate(exact):
                assert Fraction(float(bounds[u])) >= want, (adversarial, positions, u, bounds[u], float(want))
            if ghost:
                terms = _exact_terms(a, g)
            else:  # the product's own materialised W (`_check_rounding`)
                terms = [[Fraction(float(v)) for v in w.ravel()] for w in product.per_unit().numpy()]
            _check_rounding(product, terms, np.float32(10 ** rng.uniform(-12, 0, len(a))))
            whole = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
            for start, stop in ((0, 1), (1, d_in)):
                piece = factors.FeatureSlice(whole, start, stop, lambda m: m)
                bounds = piece.squared_norm_bounds().numpy()
                if whole._use_ghost():
                    exact = _exact_squares(a, g, start, stop)
                else:
                    per_unit = whole.per_unit().numpy()[:, start:stop]
                    exact = [sum(Fraction(float(v)) ** 2 for v in w.ravel()) for w in per_unit]
                for u, want in enumerate(exact):
                    assert Fraction(float(bounds[u])) >= want, (adversarial, positions, start, u)
        a, g = (t.astype(np.float64) * (1 + 1e-9 * rng.normal(size=t.shape)) for t in _inputs(rng, 12, 2, 8, 6, False))
        if adversarial:  # a float64 step: cancelling beyond float32's precision
            a[:, 1] = a[:, 0]
            g[:, 1] = -g[:, 0] * (1 + 1e-14 * rng.normal(size=g[:, 0].shape))
        product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
        assert product._use_ghost()
        bounds = product.squared_norm_bounds().numpy()
        for u, want in enumerate(_exact_squares(a, g)):
            assert Fraction(float(bounds[u])) >= want, ("float64", adversarial, u)
        ids = np.repeat(rng.integers(0, 3, (12, 1)), 4, 1)
        _, g = _inputs(rng, 12, 4, 1, 3, adversarial)
        rows = factors.EmbeddingRows(tf.constant(ids), tf.constant(g), 3)
        bounds = rows.squared_norm_bounds().numpy()
        for u, want in enumerate(_exact_squares(np.ones((12, 4, 1), np.float32), g)):
            assert Fraction(float(bounds[u])) >= want, (adversarial, u)
        grads = rng.normal(size=(12, 5, 3)) * 10 ** rng.uniform(-20, 20, (12, 1, 1))
        _check_squares(tf.constant(grads.astype(np.float32)))


def case_a_ghost_norm_over_4096_positions_has_a_finite_bound():
    """The T^2 products of a ghost norm are summed in float64 (`roundoff.pair_sum`): in float32 gamma_{T^2} is inf
    from T = 4096, which dropped every unit of such a layer (an Embedding over 4096 tokens, or microbatches merging
    that many positions) on every step. Here one id repeated 4096 times with cancelling rows: the bound is finite
    and at least the exact squared norm |sum_t g_t|^2 (Fractions)."""
    rng = np.random.default_rng(11)
    positions = 4096
    g = rng.normal(size=(1, positions, 2))
    g[:, 1::2] = -g[:, 0::2] * (1 + 1e-3 * rng.normal(size=(1, positions // 2, 2)))
    g = g.astype(np.float32)
    rows = factors.EmbeddingRows(tf.zeros((1, positions), tf.int32), tf.constant(g), 2)
    bound = float(rows.squared_norm_bounds().numpy()[0])
    column_sums = [sum((Fraction(float(v)) for v in g[0, :, e]), Fraction(0)) for e in range(2)]
    exact = sum(c * c for c in column_sums)
    assert np.isfinite(bound) and Fraction(bound) >= exact


def case_a_ghost_bound_covers_dot_products_that_underflow():
    """P = fl(A A^T) and Q = fl(G G^T) lose products below float32's smallest normal (flushed to 0), which a relative
    gamma does not cover: inputs 2^57 and output gradients 2^-76 over T = 256 positions of 4096 by 4096 (ghost norms)
    make G G^T 0 while A^T G is 2^-11 in every entry, an exact squared norm of 4 (C = 1 would let it through whole
    with a bound of 1e-3). The bound holds it (`roundoff.dot_error`'s absolute term)."""
    positions, width = 256, 4096
    a = tf.fill((1, positions, width), 2.0**57)
    g = tf.fill((1, positions, width), 2.0**-76)
    product = factors.OuterProduct(a, g, lambda m: m)
    assert product._use_ghost()
    exact = Fraction(width * width) * (positions * Fraction(2) ** -19) ** 2
    assert exact == 4
    assert Fraction(float(product.squared_norm_bounds().numpy()[0])) >= exact


def _worst_sum(p, q, a_norms, g_norms, error_p, error_q):
    """sum_ts max p_ts q_ts over every p, q within the dot products' errors of the computed P, Q (Fractions):
    P Q + e^P |Q| + |P| e^Q + e^P e^Q, e^P_ts = gamma_p a_t a_s + alpha_p (likewise e^Q), the most an exact
    squared norm can be given what the step computed; per unit."""
    (gamma_p, alpha_p), (gamma_q, alpha_q) = [tuple(Fraction(float(v)) for v in e) for e in (error_p, error_q)]
    out = []
    for pu, qu, au, gu in zip(p, q, a_norms, g_norms, strict=True):
        a, g = [Fraction(float(v)) for v in au], [Fraction(float(v)) for v in gu]
        total = Fraction(0)
        for t in range(len(a)):
            for s in range(len(a)):
                big_p, big_q = Fraction(float(pu[t, s])), Fraction(float(qu[t, s]))
                e_p, e_q = gamma_p * a[t] * a[s] + alpha_p, gamma_q * g[t] * g[s] + alpha_q
                total += big_p * big_q + e_p * abs(big_q) + abs(big_p) * e_q + e_p * e_q
        out.append(total)
    return out


def _check_ghost_bound(product, dtype):
    """The product's ghost bound is finite and at least `_worst_sum` of its own P, Q and row norms."""
    computed, p = product.ghost()
    a_norms, g_norms = (n.numpy() for n in product.row_norms())
    errors = roundoff.dot_error(product.a.shape[2], dtype), roundoff.dot_error(product.g.shape[2], dtype)
    bounds = product.squared_norm_bounds().numpy()
    q = product.output_gram()
    for u, want in enumerate(_worst_sum(p.numpy(), q.numpy(), a_norms, g_norms, *errors)):
        assert np.isfinite(bounds[u]) and Fraction(float(bounds[u])) >= want, (dtype, u, bounds[u], float(want))


def case_ghost_bounds_cover_every_input_consistent_with_the_computed_products():
    """`roundoff.ghost_bound` (its error terms from O(U T) sums and two float32 quadratic forms) is at least
    `_worst_sum` on cancelling inputs (T = 3 and 8): float16, bfloat16, float32, float64; products of A A^T that
    underflow in float32 (inputs 2^60 against gradients 2^-80); a quadratic form g^T |P| g beyond float32's range
    (inputs 2e18 against cancelling gradients 4: its x scaled down by a power of two, a finite bound); and an
    embedding over 200 positions (one-hot P, its quadratic form skipped)."""
    rng = np.random.default_rng(13)
    for dtype in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
        for positions, d_in, d_out in ((3, 8, 6), (8, 24, 24)):
            a, g = _inputs(rng, 3, positions, d_in, d_out, True)
            a = a / a.max(axis=(1, 2), keepdims=True) * 8  # within float16's range
            product = factors.OuterProduct(tf.cast(a, dtype), tf.cast(g / np.abs(g).max(), dtype), lambda m: m)
            assert product._use_ghost()
            _check_ghost_bound(product, dtype)
    a, g = _inputs(rng, 3, 4, 16, 12, True)
    for a_scale, g_scale in ((2.0**60, 2.0**-80), (2e18, 4.0)):
        a32 = (a / np.abs(a).max(axis=(1, 2), keepdims=True) * a_scale).astype(np.float32)
        g32 = (g / np.abs(g).max(axis=(1, 2), keepdims=True) * g_scale).astype(np.float32)
        product = factors.OuterProduct(tf.constant(a32), tf.constant(g32), lambda m: m)
        if g_scale == 4:  # g^T |P| g above float32's range: computed from x scaled down, finite
            g_norms = product.row_norms()[1].numpy()
            form = np.einsum("ut,uts,us->u", g_norms, np.abs(product.ghost()[1].numpy().astype(np.float64)), g_norms)
            assert (form > np.finfo(np.float32).max).all(), form
            assert np.isfinite(product.squared_norms().numpy()).all()  # the cancelling records' reported norms
            _check_ghost_bound(product, tf.float32)
        else:  # G G^T underflows to 0 in float32 where its exact entries do not
            assert (product.output_gram().numpy() == 0).any()
            _check_ghost_bound(product, tf.float32)
    positions = 200
    g = rng.normal(size=(1, positions, 2))
    g[:, 1::2] = -g[:, 0::2] * (1 + 1e-6 * rng.normal(size=(1, positions // 2, 2)))
    rows = factors.EmbeddingRows(tf.zeros((1, positions), tf.int32), tf.constant(g.astype(np.float32)), 2)
    computed, same, gg = rows._ghost()
    want = _worst_sum(
        same.numpy(),
        gg.numpy(),
        np.ones((1, positions)),
        rows.g_norms().numpy(),
        (0.0, 0.0),
        roundoff.dot_error(2, tf.float32),
    )
    bound = float(rows.squared_norm_bounds().numpy()[0])
    assert Fraction(bound) >= want[0], (bound, float(want[0]))


def case_quadratic_forms_are_upper_bounds():
    """`roundoff.quadratic_form` is at least the exact sum_ts x_t |m_ts| x_s (Fractions of the float64 x and the
    m as given) for m in float16, bfloat16, float32 and float64, T = 5 and 130, with x m x terms that underflow in
    float32 (2^-60 2^-30 2^-60) or would overflow it (2^60 2^30 2^60: x scaled down by a power of two first, so
    finite) or neither."""
    rng = np.random.default_rng(17)
    for dtype in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
        for positions in (5, 130):
            for x_scale, m_scale in ((1.0, 1.0), (2.0**-60, 2.0**-30), (2.0**60, 2.0**30)):
                if dtype == tf.float16 and m_scale != 1:
                    continue  # beyond float16's range
                x = np.abs(rng.normal(size=(2, positions))) * x_scale
                m = tf.cast(rng.normal(size=(2, positions, positions)) * m_scale, dtype)
                bounds = roundoff.quadratic_form(tf.constant(x), m).numpy()
                m64 = tf.cast(m, tf.float64).numpy()
                for u in range(2):
                    xs = [Fraction(float(v)) for v in x[u]]
                    exact = sum(
                        (
                            xs[t] * abs(Fraction(float(m64[u, t, s]))) * xs[s]
                            for t in range(positions)
                            for s in range(positions)
                        ),
                        Fraction(0),
                    )
                    assert x_scale <= 1 or exact >= 2**128, (dtype, positions, u)
                    assert np.isfinite(bounds[u]) and Fraction(float(bounds[u])) >= exact, (dtype, positions, u)


def _form_holds(x, m_values, m):
    """`roundoff.quadratic_form` (x, m) >= sum_ts x_t |m_ts| x_s in Fractions of the float64 ``x`` and the values
    ``m_values`` (float64 numpy: what ``m`` holds, read without TensorFlow, whose CPU kernels flush subnormals)."""
    bounds = roundoff.quadratic_form(tf.constant(x), m).numpy()
    for u in range(len(x)):
        xs = [Fraction(float(v)) for v in x[u]]
        exact = sum(
            (xs[t] * abs(Fraction(float(m_values[u, t, s]))) * xs[s] for t in range(len(xs)) for s in range(len(xs))),
            Fraction(0),
        )
        assert np.isfinite(bounds[u]) and Fraction(float(bounds[u])) >= exact, (m.dtype, u, bounds[u], float(exact))


def case_quadratic_forms_cover_subnormal_entries():
    """m entries below the smallest normal (float32 and bfloat16 2^-130, float64 2^-1030), which TensorFlow's CPU
    kernels read as 0, against large x (2^40, 2^500): the exact form (2^-50, 2^-30) is far above the underflow
    terms of 2 T tiny (sum_t x_t + 1), so the bound must cover the flushed entries themselves."""
    for dtype, entry, scale in (
        (tf.float32, 2.0**-130, 2.0**40),
        (tf.bfloat16, 2.0**-130, 2.0**40),
        (tf.float64, 2.0**-1030, 2.0**500),
    ):
        values = np.full((1, 3, 3), entry)
        m = tf.cast(tf.constant(values, tf.float64 if dtype == tf.float64 else tf.float32), dtype)
        _form_holds(np.full((1, 3), scale), values, m)


def case_one_position_bounds_cover_subnormal_inputs():
    """A one-position product's bound is |a|^2 |g|^2 from bounded float32 block sums of squares
    (`roundoff.squares_and_bounds`), in which the squares of float32 subnormals flush to 0 (FTZ, DAZ): inputs whose
    only nonzero values are 2^-130 against gradients 2^60, an exact squared norm of 6 2^-140 that the computed sums
    lose entirely: the bound (its underflow term) is at least it (Fractions of the numpy values, read without
    TensorFlow)."""
    a = np.zeros((1, 1, 4), np.float32)
    a[0, 0, :2] = 2.0**-130
    g = np.full((1, 1, 3), 2.0**60, np.float32)
    product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
    assert product._use_ghost()
    exact = _exact_squares(a, g)[0]
    assert exact == 6 * Fraction(2) ** -140
    bound = product.squared_norm_bounds().numpy()[0]
    assert Fraction(float(bound)) >= exact, (bound, float(exact))


def case_quadratic_forms_round_their_inputs_up():
    """x just below half a float32 ulp above a float32 X (x rounds to nearest down to X) whose square rounds down
    by nearly half an ulp (X = 1 + 2047 2^-23; X^2 is 2^22 - 4095 units of 2^-46 above a float32), m = 1, T = 1:
    a form from x rounded to nearest and its square rounded down falls 1.5 2^-23 relative below x^2, beyond its
    gamma_2; from x rounded up (`roundoff._rounded_up`) it cannot."""
    big_x = 1 + 2047 * 2.0**-23
    x = np.array([[big_x + (1 - 2.0**-20) * 2.0**-24]])
    assert np.float32(x[0, 0]) == np.float32(big_x)
    _form_holds(x, np.ones((1, 1, 1)), tf.ones((1, 1, 1), tf.float32))


def case_quadratic_forms_cover_their_own_float32_rounding():
    """T = 2, m all ones, x found by a search (each x_i just below where x_i (1 + 2^-23) would round up twice, so
    X_i gains least over it) where X_1 + X_2, both products and their sum round down: the computed form is 0.377
    2^-23 relative below the exact (x_1 + x_2)^2, beyond FLOAT64_MARGIN (2^-26) alone; gamma_4 must cover it. (Sums
    of two terms round the same in any order, with or without FMA.)"""
    x = np.array([[1.012734709651994, 1.0426909276614396]])
    _form_holds(x, np.ones((1, 2, 2)), tf.ones((1, 2, 2), tf.float32))


def case_a_cancelling_unit_far_below_float32s_limit_keeps_a_finite_bound():
    """Inputs up to 1e15 and output gradients up to 1e5 (no value, row norm or reported norm near float32's limit),
    positions cancelling to 1e-2: g^T |A A^T| g exceeds float32's range, yet the ghost bound is finite and at least
    the exact squared norm (Fractions), as it was from float64 sums: the unit is clipped, not dropped."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 4, 16))
    a[:, 1::2] = a[:, 0::2]
    g = rng.normal(size=(1, 4, 12))
    g[:, 1::2] = -g[:, 0::2] * (1 + 1e-2 * rng.normal(size=(1, 2, 12)))
    a, g = (a / np.abs(a).max() * 1e15).astype(np.float32), (g / np.abs(g).max() * 1e5).astype(np.float32)
    product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
    g_norms = product.row_norms()[1].numpy()
    form = np.einsum("ut,uts,us->u", g_norms, np.abs(product.ghost()[1].numpy().astype(np.float64)), g_norms)
    assert (form > np.finfo(np.float32).max).all() and np.isfinite(product.squared_norms().numpy()).all(), form
    bound = product.squared_norm_bounds().numpy()[0]
    assert np.isfinite(bound) and Fraction(float(bound)) >= _exact_squares(a, g)[0], bound


def _check_squares(values):
    """``values`` (U, ...): `PerExample`'s bound and `roundoff.row_norms` are at least the exact sums of squares;
    the first is inf only where the reported squared norm overflowed too (the unit is dropped either way), the second
    only where the sum is beyond float32's range (2^128; 2^1000 for float64 values); where every value is at least
    2^-40, both are within float32's gamma_65 (`roundoff.BLOCK`) of it."""
    factor = factors.PerExample(values)
    bounds, computed = factor.squared_norm_bounds().numpy(), factor.squared_norms().numpy()
    exact_values = tf.cast(values, tf.float64).numpy()
    loosest = 1 + Fraction(roundoff.gamma(roundoff.BLOCK + 1, tf.float32)) * 2
    rows = roundoff.row_norms(values).numpy()
    checks = [(bounds[u], exact_values[u], np.isinf(computed[u])) for u in range(len(values))]
    checks += [(rows[index] ** 2, exact_values[index], False) for index in np.ndindex(rows.shape)]
    for bound, w, dropped in checks:
        exact = sum((Fraction(float(v)) ** 2 for v in w.ravel()), Fraction(0))
        assert np.isfinite(bound) or dropped or exact >= 2 ** (1000 if values.dtype == tf.float64 else 128), bound
        if np.isfinite(bound):
            assert Fraction(float(bound)) >= exact
            if values.dtype != tf.float64 and (np.abs(w) >= 2.0**-40).all():
                assert Fraction(float(bound)) <= exact * loosest, (float(bound), float(exact))
    return computed


def case_bounds_from_computed_squares_cover_underflow_and_overflow():
    """The bounds (`roundoff.last_axis_squares`: float32 block sums, float64 across blocks) hold for float16,
    bfloat16, float32 and float64 values whose squares underflow (the absolute terms cover the flushed squares),
    overflow float32 (inf: the unit dropped) or neither, for units mixing the three, and for rows of
    5, 20, 67 (prime: blocks of one), 200 (blocks of 50) and 1200 values (blocks of 60)."""
    rng = np.random.default_rng(11)
    for dtype, tiny, huge in (
        (tf.float16, 2.0**-14, 2.0**9),
        (tf.bfloat16, 2.0**-126, 2.0**70),
        (tf.float32, 2.0**-126, 2.0**70),
        (tf.float64, 2.0**-1022, 2.0**520),
    ):
        for shape in ((6, 4, 5), (3, 2, 67), (3, 200), (2, 1200)):
            small = np.sqrt(tiny) * 10 ** rng.uniform(-3, -0.1, shape)
            big = huge * 10 ** rng.uniform(0, 1, shape)
            mixed = np.where(rng.random(shape) < 0.5, small, rng.normal(size=shape))
            mixed[:2, 0] = big[:2, 0]
            ordinary = rng.normal(size=shape) * 10 ** rng.uniform(-3, 3, (shape[0],) + (1,) * (len(shape) - 1))
            for values in (small, big, mixed, ordinary):
                signs = np.where(rng.random(values.shape) < 0.5, -1.0, 1.0)
                computed = _check_squares(tf.cast(tf.constant(values * signs), dtype))
                if values is small:
                    assert (computed < 20 * tiny * values[0].size).all(), (dtype, computed)  # squares below normal
                if values is big:
                    assert np.isinf(computed).all(), (dtype, computed)


def _check_rounding(factor, exact, scales):
    """Each unit alone with its float32 scale s (the others' scale 0, as the clipping drops or pads them: they add
    exact zeros): the factor's computed clipped sum is within s r + e (its ``rounding``) of s grad (Fractions),
    ``exact`` each unit's gradient (Fractions, in the order of the flattened clipped sum: for a materialised product
    its own W, the values its ``rounding`` is taken from; an einsum over another batch, e.g. of the unit alone, may
    sum the T positions in another order, which on cancelling positions gives another W: with oneDNN off,
    TensorFlow's default on CPUs without AVX-512 VNNI, batches of 1 and 12 differ)."""
    relative, absolute = (bound.numpy() for bound in factor.rounding())
    for u, s in enumerate(scales):
        scale = np.zeros(len(scales), np.float32)
        scale[u] = s
        got = factor.clipped_sum(tf.constant(scale)).numpy().astype(np.float64).ravel()
        s = Fraction(float(s))
        error = sum((Fraction(float(v)) - s * want) ** 2 for v, want in zip(got, exact[u], strict=True))
        allowed = s * Fraction(float(relative[u])) + Fraction(float(absolute[u]))
        assert error <= allowed**2, (u, float(error), relative[u], absolute[u])


def _straddling(d_in, d_out, a_value, g_value):
    """One unit of T = 2 equal positions a = ``a_value`` e_1 and g = (1.5, -0.75) ``g_value`` e_1, float32."""
    a = np.zeros((1, 2, d_in), np.float32)
    g = np.zeros((1, 2, d_out), np.float32)
    a[0, :, 0] = a_value
    g[0, :, 0] = 1.5 * g_value, -0.75 * g_value
    return a, g


def _flushed_factors():
    """(name, factor, exact gradient (Fractions, as `_check_rounding` takes it), float32 scale s) for one unit of
    each factor kind whose scaled terms straddle float32's smallest normal 2^-126, its values large enough (2^-60 and
    up) that their row norms' and squares' bounds are tight (below about 2^-63 their float32 squares underflow, and
    the bounds' absolute terms, about 2^-63 on a norm, would cover the flushed terms through r)."""
    out = []
    for d_in, d_out, a_value, g_value in ((8, 6, 2.0**-60, 2.0**-56), (6, 8, 2.0**-56, 2.0**-60)):
        a, g = _straddling(d_in, d_out, a_value, g_value)
        product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
        scaled = "G" if product.clipped_sides(tf.constant([1.0]))[3] else "A"
        assert product._use_ghost() and scaled == ("G" if d_out < d_in else "A")
        out.append((f"ghost, {scaled} scaled", product, _exact_terms(a, g)[0], 2.0**-10))
        for start, stop in ((0, 1), (1, d_in)):
            piece = factors.FeatureSlice(product, start, stop, lambda m: m)
            out.append((f"slice {start}:{stop}, {scaled} scaled", piece, _exact_terms(a, g, start, stop)[0], 2.0**-10))
    a = np.zeros((1, 16, 3), np.float32)
    g = np.zeros((1, 16, 2), np.float32)
    a[0, 0, 0], g[0, 0, :] = 2.0**-20, 0.75 * 2.0**-20
    product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
    assert not product._use_ghost()
    out.append(("materialised product", product, _exact_terms(a, g)[0], 2.0**-86))
    g = np.zeros((1, 2, 4), np.float32)
    g[0, :, 0] = 1.5 * 2.0**-20, -0.75 * 2.0**-20
    rows = factors.EmbeddingRows(tf.zeros((1, 2), tf.int32), tf.constant(g), 3)
    table = [sum((Fraction(float(v)) for v in g[0, :, e]), Fraction(0)) for e in range(4)] + [Fraction(0)] * 8
    out.append(("embedding rows", rows, table, 2.0**-106))
    grads = np.full((1, 3, 2), 0.75 * 2.0**-20, np.float32)
    exact = [Fraction(float(v)) for v in grads.ravel()]
    out.append(("materialised gradients", factors.PerExample(tf.constant(grads)), exact, 2.0**-106))
    kernel = factors.OuterProduct(tf.ones((1, 1, 4)), tf.constant(grads[:, :1]), lambda m: m)
    out.append(("one-position bias", factors.OutputRows(kernel), exact[:2], 2.0**-106))
    return out


def case_rounding_bounds_cover_flushed_subnormals():
    """TensorFlow's CPU kernels flush results below float32's smallest normal 2^-126 to 0 (FTZ) and read subnormal
    operands as 0 (DAZ), an absolute error no multiple of the scale covers. Units whose scaled terms straddle
    2^-126 (`_flushed_factors`): ghost products with G or A scaled (T = 2, s a g = (1.5, -0.75) 2^-126: the
    computed term 1.5 2^-126 where the kernels flush the second, twice the exact one) and their slices, a
    materialised product, an embedding's two rows of one id (the second scaled row flushed), materialised gradients
    and a one-position bias (s W = 0.75 2^-126, flushed): each term is within s r + e of s grad (Fractions). And
    the clipping of such a ghost unit (`_clipped_at_the_smallest_normal`); a multiplier above 1 (scales beyond the
    bounds' e) is refused."""
    for _, factor, exact, scale in _flushed_factors():
        _check_rounding(factor, [exact], [scale])
    _clipped_at_the_smallest_normal()
    bounds = [tf.ones([1], tf.float64)], [(tf.ones([1], tf.float64), tf.ones([1], tf.float64))]
    try:
        clipping.divisors(*bounds, 1.0, Fraction(3, 2))
        raise AssertionError("a multiplier above 1 was accepted")
    except ValueError as error:
        assert "multiplier=Fraction(3, 2)" in str(error), error


def case_rounding_bounds_hold_for_random_units_about_the_smallest_normal():
    """Seeded random units, entries +-2^-3..2^3 and zeros, a normal float32 scale 2^-126..2^-118, so that the scaled
    terms and partial sums fall on both sides of 2^-126 and cancel: an outer product (1 to 4 positions, widths 4 to
    12: ghost or materialised, as it chooses), an embedding's rows of 3 ids (up to 32 positions: up to 32 rows
    summed into one) and materialised gradients: each term is within s r + e of s grad (`_check_rounding`)."""
    rng = np.random.default_rng(5)

    def values(shape):
        v = np.exp2(rng.uniform(-3, 3, shape)) * rng.choice([-1, 1], shape)
        return np.where(rng.random(shape) < 0.2, 0, v).astype(np.float32)

    for _ in range(40):
        scale = np.float32(np.exp2(rng.uniform(-126, -118)))
        positions, d_in, d_out = int(rng.integers(1, 5)), int(rng.integers(4, 13)), int(rng.integers(4, 13))
        a, g = values((1, positions, d_in)), values((1, positions, d_out))
        product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
        own = [Fraction(float(v)) for v in product.per_unit().numpy().ravel()]
        _check_rounding(product, [_exact_terms(a, g)[0] if product._use_ghost() else own], [scale])
        positions = int(rng.integers(1, 33))
        ids, g = rng.integers(0, 3, (1, positions)).astype(np.int32), values((1, positions, d_out))
        table = [[Fraction(0)] * d_out for _ in range(3)]
        for t, row in enumerate(ids[0]):
            table[row] = [v + Fraction(float(w)) for v, w in zip(table[row], g[0, t], strict=True)]
        rows = factors.EmbeddingRows(tf.constant(ids), tf.constant(g), 3)
        _check_rounding(rows, [[v for row in table for v in row]], [scale])
        grads = values((1, d_in, d_out))
        _check_rounding(factors.PerExample(tf.constant(grads)), [[Fraction(float(v)) for v in grads.ravel()]], [scale])


def _clipped_at_the_smallest_normal():
    """A ghost unit of T = 2, a = 2^-20, g = (1.5, -0.75) 2^-20 (P and Q far above 2^-126: a tight bound, D about its
    exact norm N = 0.75 2^-40) clipped at C = 0.75 2^-116 with m = 2^-10: s about 2^-86, its terms s a g = (1.5,
    -0.75) 2^-126 as in `_flushed_factors`. The released term's norm is at most m C (1 + SLACK) (Fractions), though
    the exact s grad is m C and the term the kernels compute twice that (the unit's underflow bound e fills the
    slack: it is dropped)."""
    multiplier, clip = Fraction(1, 1024), 0.75 * 2.0**-116
    a, g = _straddling(8, 6, 2.0**-20, 2.0**-20)
    grad = _exact_terms(a, g)[0]
    assert sum(v * v for v in grad) == Fraction(0.75 * 2.0**-40) ** 2
    product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
    divisor = clipping.divisors([product.squared_norm_bounds()], [product.rounding()], clip, multiplier)
    keep = tf.math.is_finite(divisor)
    scale = clipping.clip_scale(divisor, clip, keep, tf.float32, multiplier)
    released = product.kept(keep).clipped_sum(scale).numpy().astype(np.float64).ravel()
    exact = [Fraction(float(scale.numpy()[0])) * v for v in grad]
    assert sum(v * v for v in exact) <= (multiplier * Fraction(clip)) ** 2
    bound = (multiplier * Fraction(clip) * (1 + SLACK)) ** 2
    assert sum(Fraction(float(v)) ** 2 for v in released) <= bound, (released.max(), float(exact[0]), keep.numpy())


def case_an_overflowing_bound_drops_the_unit():
    """A record whose bound is not finite (a ghost norm of inputs near the float32 limit: its computed norm
    overflows) contributes nothing and is not kept: the released sum equals its neighbour's without it."""
    inputs = K.Input((2, 4))
    model = _model(inputs, L.Dense(3, use_bias=False)(inputs))
    x = np.ones((4, 2, 4), np.float32)
    x[1] = 3e38
    y = np.zeros((4, 2, 3), np.float32)
    full = _released(model, x, y, np.ones(4, np.float32))
    assert not full.kept.numpy()[1] and full.kept.numpy()[[0, 2, 3]].all()
    without = _released(model, x, y, np.array([1, 0, 1, 1], np.float32))
    for got, want in zip(full.sums, without.sums, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def case_the_noise_stddev_is_sigma_c_times_one_plus_the_slack():
    """The one source of the noise's standard deviation: sigma C (1 + 2^-10) exactly, the step's then divided by B
    and rounded up (`rounding`, tested in cases_training's replay)."""
    assert privacy_params.SLACK == SLACK
    for sigma, clip in ((1.1, 1.0), (0.7, 1.1), (3.0, 0.25)):
        assert DPParams(clip, sigma).exact_noise_stddev == Fraction(sigma) * Fraction(clip) * (1 + SLACK)


def case_tensor_float_32_on_a_gpu_is_refused():
    """With a GPU visible and TF32 enabled (monkeypatched device list), the float32 bounds refuse at trace time,
    naming the call that disables TF32; with TF32 disabled, float32's u is 2^-24; without a GPU, nothing refuses."""
    config = tf.config
    visible, enabled = config.list_physical_devices, config.experimental.tensor_float_32_execution_enabled
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    inputs = K.Input((2, 4))
    model = _model(inputs, L.Dense(3, use_bias=False)(inputs))
    x, y, w = np.ones((2, 2, 4), np.float32), np.zeros((2, 2, 3), np.float32), np.ones(2, np.float32)
    try:
        config.list_physical_devices = lambda kind=None: [gpu] if kind in (None, "GPU") else visible(kind)
        config.experimental.tensor_float_32_execution_enabled = lambda: True
        try:
            _released(model, x, y, w)
            raise AssertionError("TF32 was not refused")
        except DPConfigurationError as error:
            assert "enable_tensor_float_32_execution(False)" in str(error)
        config.experimental.tensor_float_32_execution_enabled = lambda: False
        assert roundoff.unit_roundoff(tf.float32) == 2.0**-24
        _released(model, x, y, w)
    finally:
        config.list_physical_devices, config.experimental.tensor_float_32_execution_enabled = visible, enabled
    if not visible("GPU") or not enabled():
        assert roundoff.unit_roundoff(tf.float32) == 2.0**-24


def case_tensor_float_32_enabled_between_fits_is_refused():
    """The traced step is kept across fits, so a trace-time refusal alone would let a second fit run float32 under
    TF32 enabled after the first (monkeypatched GPU): each fit refuses it."""
    from privacy.keras import make_private

    config = tf.config
    visible, enabled = config.list_physical_devices, config.experimental.tensor_float_32_execution_enabled
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    inputs = K.Input((4,))
    model = K.Model(inputs, L.Dense(3)(inputs))
    make_private(model, l2_norm_clip=1.0, noise_multiplier=0.0, expected_batch_size=4, sampling="shuffle")
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32)
    try:
        config.list_physical_devices = lambda kind=None: [gpu] if kind in (None, "GPU") else visible(kind)
        config.experimental.tensor_float_32_execution_enabled = lambda: False
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        config.experimental.tensor_float_32_execution_enabled = lambda: True
        try:
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
            raise AssertionError("TF32 enabled after the first fit was not refused")
        except DPConfigurationError as error:
            assert "enable_tensor_float_32_execution(False)" in str(error)
    finally:
        config.list_physical_devices, config.experimental.tensor_float_32_execution_enabled = visible, enabled


def case_tensor_float_32_on_a_tpu_is_refused():
    """TF's float32 matmuls and convolutions on a TPU take one bfloat16 pass (2^-8) unless TF32 execution is
    disabled (then full precision): with a TPU visible (monkeypatched device list) and TF32 enabled, float32 refuses."""
    config = tf.config
    visible, enabled = config.list_logical_devices, config.experimental.tensor_float_32_execution_enabled
    tpu = tf.config.LogicalDevice(name="/device:TPU:0", device_type="TPU")
    try:
        config.list_logical_devices = lambda kind=None: [tpu] if kind in (None, "TPU") else visible(kind)
        config.experimental.tensor_float_32_execution_enabled = lambda: True
        try:
            roundoff.unit_roundoff(tf.float32)
            raise AssertionError("TF32 on a TPU was not refused")
        except DPConfigurationError as error:
            assert "enable_tensor_float_32_execution(False)" in str(error)
        config.experimental.tensor_float_32_execution_enabled = lambda: False
        assert roundoff.unit_roundoff(tf.float32) == 2.0**-24
    finally:
        config.list_logical_devices, config.experimental.tensor_float_32_execution_enabled = visible, enabled


def case_onednn_reduced_precision_math_is_refused():
    """oneDNN's fpmath mode (ONEDNN_/DNNL_DEFAULT_FPMATH_MODE, TF_SET_ONEDNN_FPMATH_MODE) lets float32 CPU matmuls
    run in bfloat16: anything but "strict" refuses float32, naming the variable; "strict" does not."""
    import os

    for name in ("ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "TF_SET_ONEDNN_FPMATH_MODE"):
        before = os.environ.get(name)
        try:
            os.environ[name] = "BF16"
            try:
                roundoff.unit_roundoff(tf.float32)
                raise AssertionError(f"{name}=BF16 was not refused")
            except DPConfigurationError as error:
                assert name in str(error) and "BF16" in str(error)
            os.environ[name] = "strict"
            assert roundoff.unit_roundoff(tf.float32) == 2.0**-24
        finally:
            os.environ.pop(name) if before is None else os.environ.__setitem__(name, before)


def case_one_position_norms_and_bounds_share_their_squares():
    """T = 1: the computed squared norm |a|^2 |g|^2 and its bound come from the same float32 block sums of squares
    (`roundoff.squares_and_bounds`, one pass per side), for rows of 784 (blocks of 56), 67 (prime: blocks of one),
    10 and 1200 values: first rows of (1 + 2^-12) 2^k, each square a tie rounded down by half an ulp (every float32
    sum lies below the exact one by about u: only gamma_{k+1} covers it), then ordinary, underflowing, overflowing
    float32, mixed and non-finite rows. The bound is at least the exact ||a^T g||^2 = |a|^2 |g|^2 (Fractions), the
    Dense bias's (`OutputRows`) at least |g|^2, both, where every value is at least 2^-40, within (1 + 2 gamma_65)
    per side of it (inf only where the unit overflows); the computed norm is within 1e-5 of the exact one, and inf
    exactly where a side's float32 sum or the product overflows; a row holding inf or NaN has neither a finite
    norm nor a finite bound (the unit is dropped)."""
    rng = np.random.default_rng(12)
    loosest = 1 + Fraction(roundoff.gamma(roundoff.BLOCK + 1, tf.float32)) * 2
    for d_in, d_out in ((784, 512), (67, 10), (1200, 10)):
        sides = []
        for width in (d_in, d_out):
            signs = np.where(rng.random((2, 1, width)) < 0.5, -1.0, 1.0)
            halfway = (1 + 2.0**-12) * 2.0 ** rng.integers(-20, 20, (2, 1, 1)) * signs
            ordinary = rng.normal(size=(4, 1, width)) * 10 ** rng.uniform(-3, 3, (4, 1, 1))
            small = 2.0**-63 * 10 ** rng.uniform(-3, -0.1, (4, 1, width))
            big = 2.0**70 * 10 ** rng.uniform(0, 1, (4, 1, width))
            mixed = np.where(rng.random((4, 1, width)) < 0.5, small, ordinary)
            mixed[0, 0, 0] = big[0, 0, 0]
            not_finite = rng.normal(size=(2, 1, width))
            not_finite[0, 0, 0], not_finite[1, 0, -1] = np.inf, np.nan
            sides.append(np.concatenate([halfway, ordinary, small, big, mixed, not_finite]).astype(np.float32))
        a, g = sides
        product = factors.OuterProduct(tf.constant(a), tf.constant(g), lambda m: m)
        assert product._use_ghost()
        computed, bounds = product.squared_norms().numpy(), product.squared_norm_bounds().numpy()
        bias_bounds = factors.OutputRows(product).squared_norm_bounds().numpy()
        for u in range(len(a)):
            if not (np.isfinite(a[u]).all() and np.isfinite(g[u]).all()):
                assert not np.isfinite([computed[u], bounds[u], bias_bounds[u]]).any(), (d_in, u)
                continue
            exact = [sum((Fraction(float(v)) ** 2 for v in side[u].ravel()), Fraction(0)) for side in (a, g)]
            product_exact = exact[0] * exact[1]
            overflows = max(exact) >= 2**128 or product_exact >= 2**128
            assert np.isinf(computed[u]) == overflows, (d_in, u, computed[u])
            assert np.isfinite(bounds[u]) or overflows, (d_in, u)  # an inf bound drops the unit; so does the norm
            ordinary_values = (np.abs(a[u]) >= 2.0**-40).all() and (np.abs(g[u]) >= 2.0**-40).all()
            for bound, want, sides_in in ((bounds[u], product_exact, 2), (bias_bounds[u], exact[1], 1)):
                if np.isfinite(bound):
                    assert Fraction(float(bound)) >= want, (d_in, u, sides_in)
                    if ordinary_values:
                        assert Fraction(float(bound)) <= want * loosest**sides_in, (d_in, u, sides_in)
            if not overflows and product_exact >= 2**-100:
                assert abs(Fraction(float(computed[u])) / product_exact - 1) < Fraction(1, 10**5), (d_in, u)
