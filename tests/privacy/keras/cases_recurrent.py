"""LSTM cases, run on both Keras flavours by test_recurrent.py: `LSTMRule` against Keras' own LSTM and against naive
per-example clipping.

The reference clipped sum takes each example's gradient alone (a batch of one, `tf.GradientTape`), clips it and adds
them up, never going through the layer rules; the clip is the median norm, so it binds for about half the examples.
"""

import numpy as np
import tensorflow as tf

from privacy.keras import compat, layer_rules, recording
from privacy.keras.params import DPParams
from privacy.keras.train_step import clipped_gradient_sum, per_example_loss

K = compat.default_keras()
L = K.layers
BATCH = 5
T = 6
IDS = np.array(  # 0 is masked (Embedding(mask_zero=True)): leading, inner and trailing gaps, a fully masked row
    [[0, 1, 2, 0, 3, 3], [1, 2, 3, 1, 0, 0], [0, 0, 0, 0, 0, 0], [3, 1, 1, 2, 2, 1], [0, 0, 2, 0, 1, 0]], np.int32
)


class CountingLSTM(L.LSTM):
    """A subclass may change `call`: it takes the fallback."""


def _single(layer, initial_state=False):
    """(model, inputs) of ``layer`` on a (T, 3) sequence, with its initial state from two more inputs if asked."""
    rng = np.random.default_rng(0)
    inputs = K.Input((T, 3))
    x = tf.constant(rng.normal(size=(BATCH, T, 3)), tf.float32)
    if initial_state:
        states = [K.Input((layer.units,)), K.Input((layer.units,))]
        values = [tf.constant(rng.normal(size=(BATCH, layer.units)), tf.float32) for _ in states]
        return K.Model([inputs, *states], layer(inputs, initial_state=states)), [x, *values]
    return K.Model(inputs, layer(inputs)), x


def _embedded(layer, mask_zero):
    """(model, ids): Embedding -> ``layer``, with Keras' mask from the Embedding if ``mask_zero``."""
    inputs = K.Input((T,), dtype="int32")
    return K.Model(inputs, layer(L.Embedding(4, 3, mask_zero=mask_zero)(inputs))), tf.constant(IDS)


def _configurations():
    """(name, model, inputs) of LSTMs the rule takes."""
    return [
        ("last output", *_single(L.LSTM(4))),
        ("sequences", *_single(L.LSTM(4, return_sequences=True))),
        ("states", *_single(L.LSTM(4, return_state=True))),
        ("sequences and states", *_single(L.LSTM(4, return_sequences=True, return_state=True))),
        (
            "relu, tanh gates, no bias",
            *_single(L.LSTM(4, activation="relu", recurrent_activation="tanh", use_bias=False)),
        ),
        ("no unit forget bias", *_single(L.LSTM(4, unit_forget_bias=False, return_sequences=True))),
        ("initial state", *_single(L.LSTM(4, return_sequences=True), initial_state=True)),
        ("mask, last output", *_embedded(L.LSTM(4), True)),
        ("mask, sequences", *_embedded(L.LSTM(4, return_sequences=True), True)),
        ("mask, zero output", *_embedded(L.LSTM(4, return_sequences=True, zero_output_for_mask=True), True)),
    ]


def _lstm_units(model):
    units = recording.find_units(model, layer_rules.rule_for)
    return [u for u in units if isinstance(u.layer, L.LSTM)], units


def case_lstm_rule_outputs_what_keras_computes():
    """Every configuration the rule takes: the layer's outputs under the rule equal Keras' own LSTM's (the masked
    ones differ from the unmasked run, so the mask is applied, as Keras applies it)."""
    for name, model, x in _configurations():
        (unit,), units = _lstm_units(model)
        assert isinstance(unit.rule, layer_rules.LSTMRule), name
        want = model(x, training=True)
        with recording.recording(units) as records:
            got = model(x, training=True)
        assert [("h_prev" in c.kept) for c in records.of(unit)] == [True], name
        assert len(tf.nest.flatten(got)) == len(tf.nest.flatten(want)), name
        for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(want), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
        if name.startswith("mask"):
            unmasked = _embedded(model.layers[-1].__class__.from_config(model.layers[-1].get_config()), False)[0]
            unmasked.set_weights(model.get_weights())
            assert np.abs(unmasked(x).numpy() - want.numpy()).max() > 1e-3, name


def _naive_clipped_sum(model, x, y, clip):
    """Each example's gradient alone, clipped to ``clip`` and summed; and the norms before clipping."""
    sums, norms = [np.zeros(v.shape) for v in model.trainable_variables], []
    for i in range(BATCH):
        xi = [t[i : i + 1] for t in x] if isinstance(x, list) else x[i : i + 1]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(per_example_loss(model, y[i : i + 1], model(xi, training=True)))
        grads = [
            tf.convert_to_tensor(g).numpy().astype(np.float64) for g in tape.gradient(loss, model.trainable_variables)
        ]
        norm = np.sqrt(sum(np.sum(g**2) for g in grads))
        norms.append(norm)
        sums = [s + min(1.0, clip / norm) * g for s, g in zip(sums, grads, strict=True)]
    return sums, np.array(norms)


def _clipped_like_naive(name, model, x, xla=(False, True)):
    """The private step's clipped sum and norms equal the naive ones, without and with XLA."""
    head = K.Model(model.inputs, L.Dense(2)(L.Flatten()(model.outputs[0])))
    head.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    y = tf.constant(np.random.default_rng(1).normal(size=(BATCH, 2)), tf.float32)
    _, norms = _naive_clipped_sum(head, x, y, np.inf)
    clip = float(np.median(norms))
    want, _ = _naive_clipped_sum(head, x, y, clip)
    (unit,), units = _lstm_units(head)
    assert isinstance(unit.rule, layer_rules.LSTMRule), name
    for jit_compile in xla:
        step = tf.function(
            lambda x, y, w: clipped_gradient_sum(
                head, units, x, y, w, DPParams(clip, 0.0, None), expected_batch_size=BATCH
            ),
            autograph=False,
            jit_compile=jit_compile,
        )
        got = step(x, y, tf.ones([BATCH]))
        label = f"{name}, XLA {jit_compile}"
        np.testing.assert_allclose(got.norms.numpy(), norms, rtol=1e-4, err_msg=label)
        for g, w in zip(got.sums, want, strict=True):
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-4, atol=1e-5, err_msg=label)


def case_lstm_clipped_sum_equals_naive_per_example_clipping():
    """LSTM alone (its input kernel's per-example gradients materialised: T^2 (d_in + 4h) > T d_in 4h) and after an
    Embedding of width 32 (ghost norms for the input kernel), returning sequences or the last output, with a mask,
    an initial state, and a layer called twice; with and without XLA."""
    cases = [
        ("LSTM, last output", *_single(L.LSTM(4))),
        ("LSTM, sequences", *_single(L.LSTM(4, return_sequences=True))),
        ("LSTM, initial state", *_single(L.LSTM(4, return_sequences=True), initial_state=True)),
    ]
    for sequences in (False, True):
        inputs = K.Input((T,), dtype="int32")
        model = K.Model(inputs, L.LSTM(4, return_sequences=sequences)(L.Embedding(4, 32)(inputs)))
        cases.append((f"Embedding -> LSTM, sequences {sequences}", model, tf.constant(np.maximum(IDS, 1))))
        cases.append(
            (
                f"masked Embedding -> LSTM, sequences {sequences}",
                *_embedded(L.LSTM(4, return_sequences=sequences), True),
            )
        )
    lstm, inputs = L.LSTM(3), K.Input((T, 3))
    twice = K.Model(inputs, L.Concatenate()([lstm(inputs), lstm(inputs[:, ::-1])]))
    cases.append(
        ("one LSTM called twice", twice, tf.constant(np.random.default_rng(2).normal(size=(BATCH, T, 3)), tf.float32))
    )
    for name, model, x in cases:
        _clipped_like_naive(name, model, x)


def case_lstm_configurations_the_rule_does_not_reproduce_take_the_fallback():
    """Dropout, recurrent dropout, go_backwards, unroll, stateful and a subclass take the vectorised fallback (whose
    clipping the other per-layer cases check); a ragged input is refused with a one-line error."""
    for layer in (
        L.LSTM(4, dropout=0.1),
        L.LSTM(4, recurrent_dropout=0.1),
        L.LSTM(4, go_backwards=True),
        L.LSTM(4, unroll=True),
        L.LSTM(4, stateful=True),
        CountingLSTM(4),
    ):
        assert layer_rules.rule_for(layer) is layer_rules.FALLBACK, layer.get_config()
    assert isinstance(layer_rules.rule_for(L.LSTM(4)), layer_rules.LSTMRule)
