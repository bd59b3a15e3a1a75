"""Clipping cases, run on both Keras flavours by test_clipping.py.

Reference per-example gradients come from `tf.GradientTape.jacobian` of the per-example losses, an
independent computation that never goes through the layer rules.
"""

import itertools
from fractions import Fraction

import numpy as np
import tensorflow as tf

from privacy.keras import DPConfigurationError, compat, layer_rules, recording
from privacy.keras.params import DPParams
from privacy.keras.train_step import clipped_gradient_sum, per_example_loss

K = compat.default_keras()
L = K.layers
BATCH = 6


class Scale(L.Layer):
    """A layer no rule knows: its own weight, so it takes the vectorised fallback."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w + tf.sin(x * self.w)


def _model(inputs, outputs, loss="mse"):
    model = K.Model(inputs, outputs)
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=loss)
    return model


_MODELS = {}


def models():
    """name -> (model, x, y, expected layer kinds): four small models covering every layer kind (cached)."""
    if not _MODELS:
        _MODELS.update(_build_models())
    return _MODELS


def _build_models():
    rng = np.random.default_rng(0)
    K.utils.set_random_seed(0)  # Keras 3 seeds a layer's initializers from Python's random when the layer is made
    out = {}
    sequence, ids = K.Input((9, 5)), K.Input((6,), dtype="int32")
    h = L.Dense(4, activation="relu")(sequence)  # Dense over positions: ghost norm with T = 9
    h = L.EinsumDense("abc,cd->abd", output_shape=(9, 4), bias_axes="d", activation="tanh")(h)
    h = L.EinsumDense("abc,cde->abde", output_shape=(9, 2, 2), bias_axes="e")(h)
    h = L.Reshape((9, 4))(h)
    h = L.EinsumDense("abc,c->abc", output_shape=(9, 4))(h)  # not an outer product: materialised
    h = L.LayerNormalization()(h)
    h = L.Conv1D(4, 3, strides=2, padding="same", activation="relu")(h)
    h = L.Conv1D(2, 2, padding="causal", dilation_rate=2)(h)
    h = L.LayerNormalization(axis=[1, 2])(h)
    e = L.Flatten()(L.Embedding(5, 3)(ids))  # vocabulary 5, length 6: repeated ids within an example
    out["sequence"] = (
        _model([sequence, ids], L.Dense(2)(L.Concatenate()([L.Flatten()(h), e]))),
        [rng.normal(size=(BATCH, 9, 5)), rng.integers(0, 5, size=(BATCH, 6))],
        rng.normal(size=(BATCH, 2)),
        {"Dense", "EinsumDense", "LayerNormalization", "Conv1D", "Embedding"},
    )
    image = K.Input((7, 7, 3))
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="tanh")(image)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh")(h)
    h = L.Conv2D(2, (2, 3), padding="valid")(h)
    h = L.DepthwiseConv2D(2, padding="valid")(h)
    out["image"] = (
        _model(image, L.Dense(2)(L.Flatten()(h))),
        rng.normal(size=(BATCH, 7, 7, 3)),
        rng.normal(size=(BATCH, 2)),
        {"Conv2D", "DepthwiseConv2D", "Dense"},
    )
    features, tokens = K.Input((5, 3)), K.Input((5,), dtype="int32")
    h = L.GRU(2, reset_after=False)(L.LSTM(3, return_sequences=True)(features))
    masked = L.GRU(2)(L.Embedding(5, 3, mask_zero=True)(tokens))  # id 0 is masked
    out["recurrent"] = (
        _model([features, tokens], L.Dense(2)(L.Concatenate()([h, masked]))),
        [rng.normal(size=(BATCH, 5, 3)), rng.integers(0, 5, size=(BATCH, 5))],
        rng.normal(size=(BATCH, 2)),
        {"LSTM", "GRU", "Embedding", "Dense"},
    )
    features = K.Input((4, 3))
    h = L.SimpleRNN(3)(Scale()(features))
    out["fallback"] = (
        _model(features, L.Dense(3, activation="softmax")(h), loss="sparse_categorical_crossentropy"),
        rng.normal(size=(BATCH, 4, 3)),
        rng.integers(0, 3, size=(BATCH,)),
        {"Scale", "SimpleRNN", "Dense"},
    )
    return out


def _tensors(x, y):
    def convert(a):
        return tf.constant(a, tf.int32 if np.issubdtype(np.asarray(a).dtype, np.integer) else tf.float32)

    return (
        tf.nest.map_structure(convert, x, check_types=False) if isinstance(x, list) else convert(x),
        tf.constant(y, tf.float32),
    )


_COMPILED = {}


def _clipped(model, x, y, weights, clip, microbatches=None, jit_compile=False):
    """The clipped sum and norms for one batch, traced once per model and setting (eager is slow)."""
    key = (id(model), clip, microbatches, jit_compile)
    if key not in _COMPILED:
        units = recording.find_units(model, layer_rules.rule_for)
        params = DPParams(clip, 0.0, microbatches)
        _COMPILED[key] = tf.function(
            lambda x, y, w: clipped_gradient_sum(model, units, x, y, w, params, expected_batch_size=BATCH),
            autograph=False,
            jit_compile=jit_compile,
        )
    return _COMPILED[key](x, y, weights)


def _compile_modes(name):
    """Without XLA, and with XLA (where convolution patches are sliced differently) except for the RNN: tracing its
    per-example gradients under XLA fails on both flavours (tf2xla: UnimplementedError on the vectorized loop's
    cond; Keras 3's `fit` trains such a model without XLA, cases_mixed_clipping)."""
    return (False,) if name == "fallback" else (False, True)


@tf.function(autograph=False, reduce_retracing=True)
def _jacobians(model, x, y, weights, microbatches):
    with tf.GradientTape() as tape:
        losses = per_example_loss(model, y, model(x, training=True)) * weights
        if microbatches:
            losses = tf.reduce_sum(tf.reshape(losses, [microbatches, -1]), 1) * (microbatches / BATCH)
    return tape.jacobian(losses, model.trainable_variables)


def _reference_norms(model, x, y, weights, microbatches=None):
    units = microbatches or BATCH
    jacobians = _jacobians(model, x, y, weights, microbatches)
    return np.sqrt(sum(np.sum(np.reshape(j.numpy(), (units, -1)) ** 2, axis=1) for j in jacobians))


def case_every_layer_kind_gets_its_rule():
    for name, (model, *_, expected) in models().items():
        units = recording.find_units(model, layer_rules.rule_for)
        kinds = {type(u.layer).__name__ for u in units}
        assert kinds == expected, (name, kinds)
        for unit in units:
            assert unit.rule.is_fallback == (type(unit.layer).__name__ in ("Scale", "SimpleRNN")), unit.name


def case_ghost_norms_equal_jacobian_norms():
    """Per example (with sample weights, one of them 0) and per microbatch of two examples."""
    for name, (model, x, y, _) in models().items():
        x, y = _tensors(x, y)
        for weights, microbatches in ((tf.constant([1.0, 0.5, 1.0, 0.0, 2.0, 1.0]), None), (tf.ones([BATCH]), 3)):
            want = _reference_norms(model, x, y, weights, microbatches)
            for jit_compile in _compile_modes(name):
                got = _clipped(model, x, y, weights, 1e9, microbatches, jit_compile).norms.numpy()
                np.testing.assert_allclose(
                    got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name}, {microbatches}, XLA {jit_compile}"
                )


def case_unclipped_sum_equals_full_gradient():
    for name, (model, x, y, _) in models().items():
        x, y = _tensors(x, y)
        weights = tf.ones([BATCH])
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(per_example_loss(model, y, model(x, training=True)))
        want = tape.gradient(total, model.trainable_variables)
        for jit_compile in _compile_modes(name):
            got = _clipped(model, x, y, weights, 1e9, jit_compile=jit_compile).sums
            # XLA fuses and reorders float32 reductions: up to ~3e-5 relative seen on the sequence model.
            tolerance = 1e-4 if jit_compile else 1e-5
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(
                    g.numpy(),
                    tf.convert_to_tensor(w).numpy(),
                    rtol=tolerance,
                    atol=tolerance,
                    err_msg=f"{name}, XLA {jit_compile}",
                )


def case_neighbouring_batches_differ_by_at_most_the_clip():
    """Removing one example (weight 0, as Poisson padding does) moves the sum by <= C (2C per microbatch)."""
    for name, (model, x, y, _) in models().items():
        x, y = _tensors(x, y)
        full = tf.ones([BATCH])
        norms = _clipped(model, x, y, full, clip=1e9).norms.numpy()
        clip = float(np.median(norms)) / 2  # most examples are clipped
        for microbatches, bound in ((None, clip), (3, 2 * clip)):
            base = _clipped(model, x, y, full, clip, microbatches).sums
            for removed in (0, 4):
                weights = tf.tensor_scatter_nd_update(full, [[removed]], [0.0])
                other = _clipped(model, x, y, weights, clip, microbatches).sums
                distance = np.sqrt(sum(np.sum((a.numpy() - b.numpy()) ** 2) for a, b in zip(base, other, strict=True)))
                assert distance <= bound * (1 + 1e-6) + 1e-6, (name, microbatches, removed, distance, bound)


def case_the_clipped_sum_branches_on_nothing_the_data_decides():
    """The clipped sum's graph holds no conditional (If / StatelessIf), with and without microbatches: every step
    runs the same ops whether or not it drops an example, so its duration does not tell (a tf.cond on "all kept",
    skipping the row selection on steps that drop none, took ~10 % longer on steps with an inf example)."""
    for name, (model, x, y, _) in models().items():
        x, y = _tensors(x, y)
        for microbatches in (None, 3):
            _clipped(model, x, y, tf.ones([BATCH]), 0.5, microbatches)
            traced = _COMPILED[(id(model), 0.5, microbatches, False)]
            graph = traced.get_concrete_function(x, y, tf.ones([BATCH])).graph
            # (vectorized_map's own conds, inside the fallback's recurrent loop, depend on its trip count only)
            ifs = [
                op.name for op in graph.get_operations() if op.type in ("If", "StatelessIf") and "pfor/" not in op.name
            ]
            assert not ifs, (name, microbatches, ifs)


def case_a_non_finite_example_contributes_nothing():
    """An example with inf features is dropped: the clipped sum equals the sum without it (weight 0), with
    and without microbatches, with and without XLA, and no NaN reaches the other examples' contributions."""
    for name, (model, x, y, _) in models().items():
        x, y = _tensors(x, y)
        poisoned = list(x) if isinstance(x, list) else [x]
        poisoned[0] = tf.tensor_scatter_nd_update(poisoned[0], [[2]], [tf.fill(poisoned[0].shape[1:], np.inf)])
        poisoned = poisoned if isinstance(x, list) else poisoned[0]
        for (microbatches, removed), xla in itertools.product(
            ((None, [[2]]), (3, [[2], [3]])), _compile_modes(name)
        ):  # with 3 microbatches, the one of examples 2 and 3
            full = tf.ones([BATCH])
            bad = _clipped(model, poisoned, y, full, 0.5, microbatches, xla)
            assert not np.isfinite(bad.norms.numpy()[2 if microbatches is None else 1]), name
            weights = tf.tensor_scatter_nd_update(full, removed, [0.0] * len(removed))
            without = _clipped(model, x, y, weights, 0.5, microbatches, xla)
            for got, want in zip(bad.sums, without.sums, strict=True):
                assert np.all(np.isfinite(got.numpy())), (name, microbatches, xla)
                np.testing.assert_allclose(
                    got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{name}, {microbatches}, XLA {xla}"
                )


def case_dense_layers_drop_non_finite_examples_on_both_sides_of_the_clipped_sum():
    """One-position Dense layers scale one side of the clipped sum (the narrower; units dropped by a scale of 0
    through `tf.math.multiply_no_nan`) and select the other, and a bias sums its kernel's prepared output side: with
    examples of inf and NaN features (non-finite on the scaled side of the first layer, 3 -> 8, and on the selected
    side of the second, 8 -> 2), the clipped sums equal a naive per-example computation over the other examples (each
    gradient from its own tape, clipped to C, summed), with and without XLA."""
    K.utils.set_random_seed(4)
    inputs = K.Input((3,))
    _assert_dense_drops_non_finite_examples(_model(inputs, L.Dense(2)(L.Dense(8, activation="relu")(inputs))))


def case_a_dense_bias_shares_a_materialised_kernel_or_a_3d_input_and_drops_non_finite_examples():
    """The same where the kernel's per-example gradients are materialised (Dense(2 -> 1): one position's ghost norm
    costs more, so the bias's rows come from the kernel's selection of the materialised factor) and for Dense on 3-D
    (batch, 1, d) inputs (one position too), with and without XLA."""
    K.utils.set_random_seed(4)
    inputs = K.Input((3,))
    _assert_dense_drops_non_finite_examples(_model(inputs, L.Dense(1)(L.Dense(2, activation="tanh")(inputs))))
    K.utils.set_random_seed(4)
    inputs = K.Input((1, 3))
    outputs = L.Reshape((2,))(L.Dense(2)(L.Dense(8, activation="relu")(inputs)))
    _assert_dense_drops_non_finite_examples(_model(inputs, outputs))


def _assert_dense_drops_non_finite_examples(model):
    """Examples 1 and 4 get an inf and a NaN feature; the clipped sums (with and without XLA) equal the naive sum
    over the others of each gradient (its own tape) clipped to C."""
    features = model.inputs[0].shape[1:]
    x = np.random.default_rng(4).standard_normal((BATCH, *features)).astype(np.float32)
    x.reshape(BATCH, -1)[1, 0], x.reshape(BATCH, -1)[4, 2] = np.inf, np.nan
    y = np.random.default_rng(5).standard_normal((BATCH, *model.outputs[0].shape[1:])).astype(np.float32)
    clip, kept = 0.5, [i for i in range(BATCH) if i not in (1, 4)]
    want = [np.zeros(v.shape, np.float64) for v in model.trainable_variables]
    for i in kept:
        with tf.GradientTape() as tape:
            loss = per_example_loss(model, y[i : i + 1], model(x[i : i + 1], training=True))[0]
        grads = [g.numpy().astype(np.float64) for g in tape.gradient(loss, model.trainable_variables)]
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        for total, g in zip(want, grads, strict=True):
            total += g * min(1.0, clip / norm)
    for xla in (False, True):
        got = _clipped(model, tf.constant(x), tf.constant(y), tf.ones([BATCH]), clip, None, xla)
        assert np.isfinite(got.norms.numpy()).tolist() == [i in kept for i in range(BATCH)]
        for g, w in zip(got.sums, want, strict=True):
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6, err_msg=f"XLA {xla}")


def case_the_folded_one_over_b_rounds_down():
    """The 1 / B folded into the clip factors (``multiplier``) is the largest float32 at most 1 / B, never the
    nearest when that is above it (float32(1 / 1000) is): an unclipped example's Dense bias contribution is bit for
    bit its gradient (from its own tape) times that value, so no example contributes more than C / B."""
    K.utils.set_random_seed(2)
    inputs = K.Input((3,))
    model = _model(inputs, L.Dense(2)(inputs))
    x, y = np.full((1, 3), 0.5, np.float32), np.ones((1, 2), np.float32)
    with tf.GradientTape() as tape:
        loss = per_example_loss(model, y, model(x, training=True))[0]
    bias_gradient = tape.gradient(loss, model.layers[-1].bias).numpy()
    down = np.float32(1e-3)
    assert Fraction(float(down)) > Fraction(1, 1000)  # the nearest float32 is above 1 / 1000
    down = np.nextafter(down, np.float32(0))
    assert not np.array_equal(bias_gradient * down, bias_gradient * np.float32(1e-3))
    units = recording.find_units(model, layer_rules.rule_for)
    got = tf.function(
        lambda: clipped_gradient_sum(
            model, units, x, y, tf.ones([1]), DPParams(1e6, 0.0), expected_batch_size=1, multiplier=Fraction(1, 1000)
        ),
        autograph=False,
    )()
    bias_index = [id(v) for v in model.trainable_variables].index(id(model.layers[-1].bias))
    np.testing.assert_array_equal(got.sums[bias_index].numpy(), bias_gradient * down)


def _tied_model():
    """Ids -> Embedding(6, 6) -> Dense(6) whose kernel is the embedding matrix itself (tied weights)."""
    K.utils.set_random_seed(1)
    ids = K.Input((1,), dtype="int32")
    embedding, output = L.Embedding(6, 6), L.Dense(6, use_bias=False)
    h = L.Reshape((6,))(embedding(ids))
    logits = output(L.Activation("tanh")(h))
    model = K.Model(ids, logits)
    tied, own = embedding.embeddings, output.kernel

    def forget(tracked):
        del tracked[next(i for i, w in enumerate(tracked) if w is own)]

    if compat.is_tf_keras(output):
        output.kernel = tied  # tf-keras stops tracking the kernel it replaces
    else:  # Keras 3 locks a built layer's state and reads Dense.kernel from _kernel
        output._tracker.unlock()
        output._kernel = tied
        forget(output._trainable_variables)
        output._tracker.lock()
    assert output.kernel is tied and len(model.trainable_variables) == 1
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, tied


def case_tied_weights_get_both_paths():
    """A variable used by two layers (the lookup and the output projection) gets the gradient of both uses:
    the clipped sum with a huge clip equals the full gradient, and the norms equal the Jacobian's."""
    model, tied = _tied_model()
    x = tf.constant([[0], [3], [3], [5], [1], [2]], tf.int32)
    y = tf.constant([1, 0, 4, 5, 2, 3], tf.float32)
    weights = tf.ones([BATCH])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(per_example_loss(model, y, model(x, training=True)))
    index = [id(v) for v in model.trainable_variables].index(id(tied))
    want = tf.convert_to_tensor(tape.gradient(total, model.trainable_variables)[index]).numpy()
    got = _clipped(model, x, y, weights, 1e9)
    np.testing.assert_allclose(got.sums[index].numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.norms.numpy(), _reference_norms(model, x, y, weights), rtol=1e-5, atol=1e-6)


class _TiedOutput(L.Layer):
    """Logits from an embedding's matrix read directly (not by calling the Embedding layer)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, h):
        return tf.matmul(h, self.embedding.embeddings, transpose_b=True)


class _TiedOutputWithBias(L.Layer):
    """Logits from an embedding's matrix read through an untracked reference, plus a bias of its own: the layer
    is a clipping unit, and the read happens inside its call."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self._table = lambda: embedding.embeddings

    def build(self, input_shape):
        self.b = self.add_weight(shape=(6,), initializer="zeros", name="b")

    def call(self, h):
        return tf.matmul(h, self._table(), transpose_b=True) + self.b


def case_weights_read_outside_their_layer_are_refused():
    """A layer computing with another layer's weights hides a gradient path from every rule: refused, naming
    the variable, before any gradient is taken; also when the reading layer has weights of its own (the read
    happens inside a clipping unit's call, and that gradient was silently not trained)."""
    for output in (_TiedOutput, _TiedOutputWithBias):
        K.utils.set_random_seed(1)
        ids = K.Input((1,), dtype="int32")
        embedding = L.Embedding(6, 4)
        logits = output(embedding)(L.Reshape((4,))(embedding(ids)))
        model = K.Model(ids, logits)
        model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = tf.constant([[0], [3], [3], [5], [1], [2]], tf.int32), tf.constant([1, 0, 4, 5, 2, 3], tf.float32)
        try:
            _clipped(model, x, y, tf.ones([BATCH]), 1.0)
        except DPConfigurationError as err:
            assert "outside the layer that owns them" in str(err) and "embeddings" in str(err), str(err)
        else:
            raise AssertionError(f"a weight used outside its layer ({output.__name__}) was clipped without that use")


class _Scaled(L.Layer):
    """A weight of its own times a shared Embedding called inside (the Embedding is also used directly)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def build(self, input_shape):
        self.w = self.add_weight(shape=(4,), initializer="ones", name="w")

    def call(self, ids):
        return self.embedding(ids) * self.w


def case_a_layer_shared_inside_another_unit_gets_both_paths():
    """An Embedding used directly and inside a custom layer with its own weight (a clipping unit that holds it):
    the nested call crashed with "Tape is not recording". It is part of the outer unit's call, so each example's
    gradient has both paths: the clipped sum with a huge clip equals the full gradient, and the norms equal the
    Jacobian's."""
    K.utils.set_random_seed(1)
    ids = K.Input((1,), dtype="int32")
    embedding = L.Embedding(6, 4)
    h = L.Reshape((4,))(L.Add()([embedding(ids), _Scaled(embedding)(ids)]))
    model = K.Model(ids, L.Dense(6)(h))
    model.compile(optimizer=K.optimizers.SGD(0.1), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = tf.constant([[0], [3], [3], [5], [1], [2]], tf.int32), tf.constant([1, 0, 4, 5, 2, 3], tf.float32)
    weights = tf.ones([BATCH])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(per_example_loss(model, y, model(x, training=True)))
    want = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(total, model.trainable_variables)]
    got = _clipped(model, x, y, weights, 1e9)
    for variable, a, b in zip(model.trainable_variables, got.sums, want, strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-6, err_msg=variable.name)
    np.testing.assert_allclose(got.norms.numpy(), _reference_norms(model, x, y, weights), rtol=1e-5, atol=1e-6)
