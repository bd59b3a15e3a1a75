"""Recurrent cases, run on both Keras flavours by test_recurrent.py: `LSTMRule` and `GRURule` against Keras' own
layers and against naive per-example clipping.

The reference clipped sum takes each example's gradient alone (a batch of one, `tf.GradientTape`), clips it and adds
them up, never going through the layer rules; the clip is the median norm, so it binds for about half the examples.
Every XLA assertion here is an equality within a tolerance (1e-4 relative), so LLVM compiles XLA's CPU code at -O0
(`XLA_BACKEND_O0`, tests/privacy/keras/conftest.py); round-off is checked at XLA's default level in cases_roundoff.
"""

import contextlib

import numpy as np
import tensorflow as tf

from privacy.keras import compat, factors, layer_rules, recording
from privacy.keras.params import DPParams
from privacy.keras.train_step import clipped_gradient_sum, per_example_loss

K = compat.default_keras()
L = K.layers
XLA_BACKEND_O0 = True
BATCH = 5
T = 6
IDS = np.array(  # 0 is masked (Embedding(mask_zero=True)): leading, inner and trailing gaps, a fully masked row
    [[0, 1, 2, 0, 3, 3], [1, 2, 3, 1, 0, 0], [0, 0, 0, 0, 0, 0], [3, 1, 1, 2, 2, 1], [0, 0, 2, 0, 1, 0]], np.int32
)
RULES = {"LSTM": layer_rules.LSTMRule, "GRU": layer_rules.GRURule}
STATES = {"LSTM": 2, "GRU": 1}
VARIANTS = {  # the cell options each layer's rule computes differently
    "LSTM": [{}, {"activation": "relu", "recurrent_activation": "tanh", "use_bias": False}],
    "GRU": [
        {},
        {"reset_after": False},
        {"use_bias": False},
        {"reset_after": False, "use_bias": False, "activation": "relu", "recurrent_activation": "tanh"},
    ],
}


class CountingLSTM(L.LSTM):
    """A subclass may change `call`: it takes the fallback."""


def _single(layer, initial_state=False):
    """(model, inputs) of ``layer`` on a (T, 3) sequence, with its initial state from more inputs if asked."""
    rng = np.random.default_rng(0)
    inputs = K.Input((T, 3))
    x = tf.constant(rng.normal(size=(BATCH, T, 3)), tf.float32)
    if initial_state:
        states = [K.Input((layer.units,)) for _ in range(STATES[type(layer).__name__])]
        values = [tf.constant(rng.normal(size=(BATCH, layer.units)), tf.float32) for _ in states]
        return K.Model([inputs, *states], layer(inputs, initial_state=states)), [x, *values]
    return K.Model(inputs, layer(inputs)), x


def _embedded(layer, mask_zero, width=3):
    """(model, ids): Embedding -> ``layer``, with Keras' mask from the Embedding if ``mask_zero``."""
    inputs = K.Input((T,), dtype="int32")
    ids = IDS if mask_zero else np.maximum(IDS, 1)
    return K.Model(inputs, layer(L.Embedding(4, width, mask_zero=mask_zero)(inputs))), tf.constant(ids)


def _configurations():
    """(name, model, inputs) of layers the rules take."""
    out = []
    for kind in RULES:
        cls = getattr(L, kind)
        for options in VARIANTS[kind]:
            out.append((f"{kind} {options}, last output", *_single(cls(4, **options))))
            out.append((f"{kind} {options}, sequences", *_single(cls(4, return_sequences=True, **options))))
        out += [
            (f"{kind}, states", *_single(cls(4, return_state=True))),
            (f"{kind}, sequences and states", *_single(cls(4, return_sequences=True, return_state=True))),
            (f"{kind}, initial state", *_single(cls(4, return_sequences=True), initial_state=True)),
            (f"{kind}, mask, last output", *_embedded(cls(4), True)),
            (f"{kind}, mask, sequences", *_embedded(cls(4, return_sequences=True), True)),
            (f"{kind}, mask, zero output", *_embedded(cls(4, return_sequences=True, zero_output_for_mask=True), True)),
            (f"{kind}, backwards", *_single(cls(4, return_sequences=True, go_backwards=True))),
            (f"{kind}, mask, backwards", *_embedded(cls(4, return_sequences=True, go_backwards=True), True)),
            (f"{kind}, bidirectional", *_single(L.Bidirectional(cls(4, return_sequences=True)))),
            (f"{kind}, mask, bidirectional", *_embedded(L.Bidirectional(cls(4)), True)),
        ]
    out.append(("LSTM, no unit forget bias", *_single(L.LSTM(4, unit_forget_bias=False, return_sequences=True))))
    return out


def _recurrent_units(model):
    """(the units of ``model`` that are LSTMs or GRUs, which must each have their rule; all its units)."""
    units = recording.find_units(model, layer_rules.rule_for)
    recurrent = [u for u in units if isinstance(u.layer, (L.LSTM, L.GRU))]
    for unit in recurrent:
        assert isinstance(unit.rule, RULES[type(unit.layer).__name__]), unit.name
    return recurrent, units


def case_recurrent_rules_output_what_keras_computes():
    """Every configuration the rules take: the layer's outputs under the rule equal Keras' own layer's (the masked
    ones differ from the unmasked run, so the mask is applied, as Keras applies it)."""
    for name, model, x in _configurations():
        recurrent, units = _recurrent_units(model)
        assert len(recurrent) == (2 if "bidirectional" in name else 1), name
        want = model(x, training=True)
        with recording.recording(units) as records:
            got = model(x, training=True)
        for unit in recurrent:
            assert [("h_prev" in c.kept) for c in records.of(unit)] == [True], name
        assert len(tf.nest.flatten(got)) == len(tf.nest.flatten(want)), name
        for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(want), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
        if "mask" in name:
            layer = model.layers[-1]
            unmasked = _embedded(type(layer).from_config(layer.get_config()), False)[0]
            unmasked.set_weights(model.get_weights())
            assert np.abs(unmasked(x).numpy() - want.numpy()).max() > 1e-3, name


def _naive_clipped_sum(model, x, y):
    """Each example's gradient alone, clipped to the median of their norms (binding for about half the examples) and
    summed: (the clip, the sums, the norms before clipping)."""
    grads, norms = [], []
    for i in range(BATCH):
        xi = [t[i : i + 1] for t in x] if isinstance(x, list) else x[i : i + 1]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(per_example_loss(model, y[i : i + 1], model(xi, training=True)))
        grads.append(
            [tf.convert_to_tensor(g).numpy().astype(np.float64) for g in tape.gradient(loss, model.trainable_variables)]
        )
        norms.append(np.sqrt(sum(np.sum(g**2) for g in grads[-1])))
    clip = float(np.median(norms))
    sums = [
        sum(min(1.0, clip / norm) * g[j] for g, norm in zip(grads, norms, strict=True)) for j in range(len(grads[0]))
    ]
    return clip, sums, np.array(norms)


def _clipped_like_naive(name, model, x):
    """The private step's clipped sum and norms equal the naive ones, without and with XLA."""
    head = K.Model(model.inputs, L.Dense(2)(L.Flatten()(model.outputs[0])))
    head.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    y = tf.constant(np.random.default_rng(1).normal(size=(BATCH, 2)), tf.float32)
    clip, want, norms = _naive_clipped_sum(head, x, y)
    recurrent, units = _recurrent_units(head)
    assert recurrent, name
    for jit_compile in (False, True):
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


@contextlib.contextmanager
def _product_paths():
    """Yields the list of `FeatureSlice.squared_norms` calls' products' choices (True: ghost norms) while it runs."""
    ghost, original = [], factors.FeatureSlice.squared_norms

    def spy(self):
        ghost.append(self.whole._use_ghost())
        return original(self)

    factors.FeatureSlice.squared_norms = spy
    try:
        yield ghost
    finally:
        factors.FeatureSlice.squared_norms = original


def case_recurrent_clipped_sum_equals_naive_per_example_clipping():
    """LSTM and GRU in every variant their rules compute differently, alone (the input kernel's per-example gradients
    materialised: T^2 (d_in + d_gates) > T d_in d_gates; the LSTM's one product over [X | H_prev | 1] too) and after
    an Embedding of width 32 (ghost norms for the input kernel), returning sequences or the last output, with a mask,
    an initial state, and a layer called twice; wide enough for ghost norms of the recurrent kernel too (the GRU's
    without reset_after over its 2T positions, the LSTM's whole product); with and without XLA."""
    K.utils.set_random_seed(0)  # Keras 3 seeds a layer's initializers from Python's random when the layer is made
    cases = []
    for kind in RULES:
        cls = getattr(L, kind)
        for options in VARIANTS[kind]:
            bias = options.get("use_bias", True)
            if kind == "LSTM":  # LSTMRule: one product over [X | H_prev | 1], materialised for 4 units, ghost for 12
                assert not factors.ghost_is_cheaper(T, 3 + 4 + bias, 16), options
            cases.append((f"{kind} {options}, last output", *_single(cls(4, **options))))
            units = 24 if options.get("reset_after") is False else 12
            positions, gates = (2 * T if units == 24 else T), units * (4 if kind == "LSTM" else 3)
            width = 3 + units + bias if kind == "LSTM" else units
            assert factors.ghost_is_cheaper(positions, width, gates), (kind, options)  # U by ghost norms
            cases.append((f"{kind} {options}, {units} units", *_single(cls(units, **options))))
            if kind == "LSTM":  # run here, with the path the rule takes seen in the step itself
                for name, model, x in (cases.pop(-2), cases.pop()):
                    with _product_paths() as ghost:
                        _clipped_like_naive(name, model, x)
                    assert set(ghost) == {units == 12 and "units" in name}, (name, ghost)
        cases.append((f"{kind}, sequences, initial state", *_single(cls(4, return_sequences=True), initial_state=True)))
        cases.append((f"{kind}, backwards", *_single(cls(4, return_sequences=True, go_backwards=True))))
        cases.append((f"masked Embedding -> bidirectional {kind}", *_embedded(L.Bidirectional(cls(4)), True)))
        for sequences in (False, True):
            layer = cls(4, return_sequences=sequences)
            cases.append((f"Embedding -> {kind}, sequences {sequences}", *_embedded(layer, False, width=32)))
            layer = cls(4, return_sequences=sequences)
            cases.append((f"masked Embedding -> {kind}, sequences {sequences}", *_embedded(layer, True)))
        layer, inputs = cls(3), K.Input((T, 3))
        twice = K.Model(inputs, L.Concatenate()([layer(inputs), layer(inputs[:, ::-1])]))
        x = tf.constant(np.random.default_rng(2).normal(size=(BATCH, T, 3)), tf.float32)
        cases.append((f"one {kind} called twice", twice, x))
    for name, model, x in cases:
        _clipped_like_naive(name, model, x)


class _TiedGates(L.Layer):
    """tanh(x W + h U + b) with an LSTM's own W, U and b as this layer's weights too (tied weights): each variable
    then gets both layers' per-example gradients, the LSTM's from its `FeatureSlice`s materialised."""

    def __init__(self, lstm, **kwargs):
        super().__init__(**kwargs)
        self._lstm = lambda: lstm  # not tracked as a sublayer: the variables below are this layer's own

    def build(self, input_shape):
        cell = self._lstm().cell
        self.w, self.u, self.b = cell.kernel, cell.recurrent_kernel, cell.bias

    def call(self, inputs):
        x, h = inputs
        return tf.tanh(tf.matmul(x, self.w) + tf.matmul(h, self.u) + self.b)


def case_lstm_weights_tied_to_another_layer_clip_like_naive():
    """An LSTM's W, U and b also owned by another layer: the LSTM's slices of its one product over [X | H_prev | 1]
    are materialised and added to the other layer's per-example gradients, equal to naive per-example clipping, with
    the product materialised (4 units) and by ghost norms (12 units), with and without XLA."""
    for units in (4, 12):
        K.utils.set_random_seed(3)
        inputs, lstm = K.Input((T, 3)), L.LSTM(units)
        model = K.Model(inputs, _TiedGates(lstm)([inputs[:, -1], lstm(inputs)]))
        assert len(model.trainable_variables) == 3
        owners = [len(u.variables) for u in recording.find_units(model, layer_rules.rule_for)]
        assert owners == [3, 3], owners  # both layers own all three
        assert factors.ghost_is_cheaper(T, 3 + units + 1, 4 * units) == (units == 12)
        x = tf.constant(np.random.default_rng(0).normal(size=(BATCH, T, 3)), tf.float32)
        _clipped_like_naive(f"LSTM of {units} units tied to another layer", model, x)


def case_recurrent_configurations_the_rules_do_not_reproduce_take_the_fallback():
    """Dropout, recurrent dropout, unroll, stateful (which the validator refuses) and a subclass take the vectorised
    fallback (whose clipping the other per-layer cases check); SimpleRNN has no rule; a Bidirectional wrapper with one
    such direction is one unit, which takes the fallback whole."""
    inputs = K.Input((T, 3))
    model = K.Model(
        inputs, L.Bidirectional(L.LSTM(4), backward_layer=L.LSTM(4, dropout=0.1, go_backwards=True))(inputs)
    )
    (unit,) = recording.find_units(model, layer_rules.rule_for)
    assert type(unit.layer).__name__ == "Bidirectional" and unit.rule is layer_rules.FALLBACK, unit.name
    for layer in (
        L.LSTM(4, dropout=0.1),
        L.GRU(4, recurrent_dropout=0.1),
        L.GRU(4, unroll=True),
        L.LSTM(4, stateful=True),
        CountingLSTM(4),
        L.SimpleRNN(4),
    ):
        assert layer_rules.rule_for(layer) is layer_rules.FALLBACK, layer.get_config()
    assert isinstance(layer_rules.rule_for(L.LSTM(4)), layer_rules.LSTMRule)
    assert isinstance(layer_rules.rule_for(L.GRU(4)), layer_rules.GRURule)


def case_recurrent_rules_refuse_ragged_inputs():
    """A ragged batch (which tf-keras' own layers would pad and mask themselves) is refused by both rules, naming the
    layer, instead of being run through a recurrence that assumes a dense (b, T, d) input."""
    ragged = tf.ragged.constant([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], ragged_rank=1)
    for kind in RULES:
        layer = getattr(L, kind)(4, name=f"ragged_{kind.lower()}")
        layer.build((None, None, 3))
        try:
            layer_rules.rule_for(layer).forward(layer, layer.call, (ragged,), {})
        except ValueError as err:
            assert f"'ragged_{kind.lower()}' got a ragged input" in str(err) and "mask" in str(err), str(err)
        else:
            raise AssertionError(f"{kind}: a ragged input was not refused")
