"""Mixed ghost clipping cases: per layer kind, the clipped sum at a binding clip against a naive per-example one.

`OuterProduct` decides once per layer, at trace time, between the ghost norm (cost T^2 (d_in + d_out) in the
T positions) and the materialised per-example gradient (T d_in d_out) (Bu et al. 2022); a strided convolution takes
its patches from its space-to-depth input (`layer_rules._patches_by_space_to_depth`, offsets permuted or, where the
stride does not divide the kernel, gathered). Each layer kind runs here with shapes on both sides of those choices, so
every branch is checked, without and with XLA (whose unstrided convolutions slice their patches instead of extracting
them) on both Keras flavours. The
exception: the recurrent layers that take the vectorized fallback (SimpleRNN), whose per-example gradients
through the RNN loop fail to trace under XLA here on both flavours (tf2xla: UnimplementedError), are checked without
XLA; `fit` with XLA is checked against `fit` without it instead (it trains such a model without XLA). The LSTM's and
GRU's rules run their own loop, which compiles (tests/privacy/keras/cases_recurrent.py). The reference clips
each example's own gradient (a batch of one) one by one, never going through the layer rules.
"""

import warnings

import numpy as np
import tensorflow as tf

from privacy.keras import compat, factors, layer_rules, make_private, recording
from privacy.keras.params import DPParams
from privacy.keras.train_step import clipped_gradient_sum

K = compat.default_keras()
L = K.layers
BATCH = 5


class Scale(L.Layer):
    """A layer no rule knows, with its own weight and no loop: the vectorised fallback."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w + tf.sin(x * self.w)


def _attention(inputs):
    """Self-attention: MultiHeadAttention's query, key, value and output projections are EinsumDense units."""
    return L.MultiHeadAttention(num_heads=2, key_dim=3)(inputs, inputs)


def _ghost(t, d_in, d_out):
    """The cost model's choice for an outer product over t positions (as `OuterProduct` decides)."""
    return t * t * (d_in + d_out) < t * d_in * d_out


def _cases():
    """(name, input shape, input dtype, layer (or a function of the inputs), whether XLA is checked), the layers made
    after `_seed`."""
    _seed()
    assert _ghost(2, 64, 64) and not _ghost(16, 3, 2) and _ghost(4, 72, 16) and not _ghost(64, 9, 2)
    return [
        ("Dense, ghost", (2, 64), "float32", L.Dense(64, activation="tanh"), True),
        ("Dense, per-example", (16, 3), "float32", L.Dense(2, activation="tanh"), True),
        ("EinsumDense, ghost", (2, 64), "float32", L.EinsumDense("abc,cd->abd", (2, 64), bias_axes="d"), True),
        ("EinsumDense, per-example", (16, 3), "float32", L.EinsumDense("abc,cd->abd", (16, 2), bias_axes="d"), True),
        (
            "Conv1D, ghost, space-to-depth",
            (8, 24),
            "float32",
            L.Conv1D(16, 3, strides=2, padding="same"),
            True,
        ),  # T 4, d_in 72
        ("Conv1D, offsets", (64, 3), "float32", L.Conv1D(2, 3, padding="same", activation="relu"), True),
        ("Conv1D, causal offsets", (64, 3), "float32", L.Conv1D(2, 3, padding="causal"), True),
        ("Conv1D, per-example, space-to-depth", (64, 3), "float32", L.Conv1D(2, 3, strides=2, padding="same"), True),
        ("Conv2D, ghost, space-to-depth", (4, 4, 8), "float32", L.Conv2D(16, 3, strides=2, padding="same"), True),
        ("Conv2D, per-example, space-to-depth", (8, 8, 2), "float32", L.Conv2D(3, 3, strides=2, padding="same"), True),
        ("Conv2D, per-example, permuted space-to-depth", (9, 9, 1), "float32", L.Conv2D(3, 4, strides=2), True),
        ("Conv2D, offsets", (8, 8, 1), "float32", L.Conv2D(16, 2, padding="same"), True),
        ("Conv2D, per-example, patches", (8, 8, 1), "float32", L.Conv2D(32, 2, padding="same"), True),  # > 16 C_in
        ("DepthwiseConv2D", (6, 6, 3), "float32", L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), True),
        (
            "DepthwiseConv2D, space-to-depth",
            (7, 7, 2),
            "float32",
            L.DepthwiseConv2D(4, strides=2, padding="same"),
            True,
        ),
        ("Embedding", (7,), "int32", L.Embedding(4, 3), True),
        ("LayerNormalization", (3, 4), "float32", L.LayerNormalization(), True),
        ("MultiHeadAttention (EinsumDense)", (3, 4), "float32", _attention, True),
        ("Scale (fallback)", (4, 3), "float32", Scale(), True),
        ("LSTM", (4, 3), "float32", L.LSTM(3, return_sequences=True), True),
        ("GRU", (4, 3), "float32", L.GRU(3), True),
        ("GRU, reset before", (4, 3), "float32", L.GRU(3, reset_after=False, return_sequences=True), True),
        ("SimpleRNN (fallback)", (4, 3), "float32", L.SimpleRNN(3), False),
    ]


def _naive_per_example(model, x, y):
    """The naive reference's per-example gradients, each example's alone (a batch of one, eager
    `tf.GradientTape.gradient` of its mean squared error, the loss every model here is compiled with, written out
    rather than taken from ppml): one (examples, size) array per trainable variable, and each example's L2 norm over
    all of them (float64)."""
    rows = []
    for i in range(int(y.shape[0])):
        xi = [t[i : i + 1] for t in x] if isinstance(x, list) else x[i : i + 1]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xi, training=True) - y[i : i + 1]))
        rows.append([np.ravel(tf.convert_to_tensor(g).numpy()) for g in tape.gradient(loss, model.trainable_variables)])
    per_example = [np.stack(g) for g in zip(*rows, strict=True)]
    return per_example, np.sqrt(sum(np.sum(g.astype(np.float64) ** 2, axis=1) for g in per_example))


def _naive_clipped_sum(model, naive, clip, rows=slice(None)):
    """The sum over ``rows`` of the per-example gradients ``naive`` (`_naive_per_example`), each scaled to L2 norm at
    most ``clip``, shaped like ``model``'s trainable variables. An example's gradient depends on its own row only (no
    layer here mixes examples), so a subset of rows is the naive clipped sum of that subset's batch."""
    per_example, norms = naive
    scale = np.minimum(1.0, clip / norms[rows])
    return [np.reshape(scale @ g[rows], v.shape) for g, v in zip(per_example, model.trainable_variables, strict=True)]


def _traced(step, *args):
    """``step(*args)`` and the decisions taken while it was traced: (T != 1 positions?, ghost?) for each
    `OuterProduct`, each convolution's path (`layer_rules._conv_path`: "patches" or "offsets"), and
    "space-to-depth" for each convolution whose patches came from its space-to-depth input."""
    decisions, decide = [], factors.OuterProduct._use_ghost
    space_to_depth, path = layer_rules._patches_by_space_to_depth, layer_rules._conv_path

    def spy(self):
        decisions.append((self.a.shape[1] != 1, decide(self)))  # T unknown: True
        return decisions[-1][1]

    def space_to_depth_spy(*args):
        decisions.append("space-to-depth")
        return space_to_depth(*args)

    def path_spy(*args):
        decisions.append(path(*args))
        return decisions[-1]

    factors.OuterProduct._use_ghost = spy
    layer_rules._patches_by_space_to_depth = space_to_depth_spy
    layer_rules._conv_path = path_spy
    try:
        return step(*args), decisions
    finally:
        factors.OuterProduct._use_ghost = decide
        layer_rules._patches_by_space_to_depth = space_to_depth
        layer_rules._conv_path = path


def _seed():
    """Seeds the weights of the layers made next on both flavours: Keras 3's initializers draw their seeds from Python's
    `random` when the layer is made (`tf.random.set_seed` alone leaves them to whatever ran before in the process),
    tf-keras' from TensorFlow's global seed when it is built."""
    K.utils.set_random_seed(0)


def _model(shape, dtype, layer):
    _seed()
    inputs = K.Input(shape, dtype=dtype)
    model = K.Model(inputs, L.Dense(2)(L.Flatten()(layer(inputs))))
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    return model


def case_clipped_sum_equals_naive_per_example_clipping_per_layer_kind():
    """Every layer of `_cases` clips as the naive per-example clipping does and takes the branch its name says; and
    its cost model decides alike with the batch size unknown at trace time (as `fit` traces the step): the branches
    (positions, ghost norms or materialised gradients, space-to-depth patches) traced without XLA for a batch of
    unknown size are those taken for the batch of `BATCH` (the positions T stay static: `layer_rules._positions`)."""
    rng = np.random.default_rng(1)
    for name, shape, dtype, layer, with_xla in _cases():
        model = _model(shape, dtype, layer)
        x = (rng.integers(0, 4, size=(BATCH, *shape)) if dtype == "int32" else rng.normal(size=(BATCH, *shape))).astype(
            dtype
        )
        x, y = tf.constant(x), tf.constant(rng.normal(size=(BATCH, 2)), tf.float32)
        units = recording.find_units(model, layer_rules.rule_for)
        assert units[0].rule.is_fallback == ("fallback" in name), name
        decided = _clips_like_naive(model, x, y, with_xla, f"{name}, ")
        for jit_compile, decisions in decided.items():
            if "ghost" in name:  # the layer's (T > 1 positions; the output Dense has one)
                assert (True, True) in decisions, (name, decisions)
            if "per-example" in name or ("offsets" in name and jit_compile):  # XLA: patches, materialised
                assert (True, False) in decisions, (name, decisions)
            assert ("offsets" in decisions) == ("offsets" in name and not jit_compile), (name, jit_compile, decisions)
            assert ("space-to-depth" in decisions) == ("space-to-depth" in name), (name, jit_compile, decisions)
        step = tf.function(
            lambda x, y, w: clipped_gradient_sum(
                model, units, x, y, w, DPParams(1.0, 0.0, None), expected_batch_size=BATCH
            ),
            autograph=False,
        )
        specs = [tf.TensorSpec([None, *shape], dtype), tf.TensorSpec([None, 2]), tf.TensorSpec([None])]
        unknown = _traced(step.get_concrete_function, *specs)[1]
        assert unknown == decided[False], f"{name}: batch size unknown at trace time {unknown}, known {decided[False]}"


def _clips_like_naive(model, x, y, xla: bool, label: str = "", signature=None, naive=None) -> dict:
    """Checks ``model``'s clipped gradient sum and norms on (x, y) against the naive per-example loop (``naive``:
    `_naive_per_example` of (x, y), computed here if not given), at a clip norm that binds for about half the examples,
    without XLA and, if ``xla``, with it, traced for ``signature`` ((x, y, weights) specs; default: the arguments'
    shapes); float32 sums agree to 1e-4 relative, 1e-5 of the variable's largest entry (at least 1) absolute. Returns
    {jit_compile: the traced per-layer decisions}."""
    units = recording.find_units(model, layer_rules.rule_for)
    naive = _naive_per_example(model, x, y) if naive is None else naive
    norms = naive[1]
    clip = float(np.median(norms))
    want = _naive_clipped_sum(model, naive, clip)
    rows = int(y.shape[0])
    decided = {}
    for jit_compile in (False, True) if xla else (False,):
        step = tf.function(
            lambda x, y, w: clipped_gradient_sum(
                model, units, x, y, w, DPParams(clip, 0.0, None), expected_batch_size=rows
            ),
            autograph=False,
            jit_compile=jit_compile,
            input_signature=signature,
        )
        got, decided[jit_compile] = _traced(step, x, y, tf.ones([rows]))
        np.testing.assert_allclose(got.norms.numpy(), norms, rtol=1e-4, err_msg=f"{label}XLA {jit_compile}")
        for g, w in zip(got.sums, want, strict=True):
            atol = 1e-5 * max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-4, atol=atol, err_msg=f"{label}XLA {jit_compile}")
    return decided


def case_strided_convolution_gradients_match_naive_clipping_over_paddings_strides_and_shapes():
    """Strided convolutions take their patches from their space-to-depth input (with and without XLA), one case per
    feature of that path: strides 2 and 3, equal and not, dividing the kernel (offsets permuted) or not (gathered),
    valid, same and causal padding with even, odd and non-square kernels (same pads one more row after than before),
    input sizes the strides do not divide, one input channel and several, ghost norms and materialised gradients, no
    bias, one example, and a batch size unknown at trace time. Each clips as the naive per-example clipping does;
    unstrided or dilated ones take extracted (or, under XLA, sliced) patches."""
    rng = np.random.default_rng(4)
    _seed()
    space_to_depth = [
        ((9, 6, 2), L.Conv2D(2, (2, 3), strides=2), 5),
        ((7, 7, 2), L.Conv2D(2, 4, strides=3, padding="same"), 5),
        ((13, 13, 1), L.Conv2D(3, 8, strides=2, padding="same"), 5),  # the tutorial CNN's first layer, smaller
        ((11, 10, 1), L.Conv2D(2, 6, strides=3, padding="same", use_bias=False), 5),
        ((10, 9, 3), L.Conv2D(2, (3, 2), strides=(3, 1)), 5),
        ((8, 8, 2), L.Conv2D(2, 3, strides=(1, 2), padding="same"), 5),
        ((7, 7, 4), L.Conv2D(16, 3, strides=2), 5),  # ghost norms of gathered offsets
        ((9, 3), L.Conv1D(2, 4, strides=2), 5),
        ((11, 1), L.Conv1D(3, 5, strides=3, padding="same"), 5),
        ((7, 2), L.Conv1D(3, 5, strides=2, padding="causal"), 5),
        ((8, 8, 2), L.Conv2D(2, 3, strides=2, padding="same"), 1),
        ((8, 8, 2), L.Conv2D(2, 4, strides=2, padding="same"), None),
        ((9, 9, 2), L.DepthwiseConv2D(3, strides=2, depth_multiplier=2), 5),
    ]
    patches = [
        ((5, 11, 3), L.Conv2D(2, (1, 5), padding="same", use_bias=False), 5),
        ((9, 3), L.Conv1D(2, 4), 5),
        ((7, 2), L.Conv1D(3, 5, padding="causal"), 5),
        ((9, 9, 2), L.Conv2D(2, 3, dilation_rate=2, padding="same"), 5),
        ((9, 2), L.Conv1D(2, 3, dilation_rate=2, padding="causal"), 5),
    ]
    if not compat.is_tf_keras(L.Dense(1)):  # Keras 3 takes strides with dilation here (tf-keras refuses them)
        patches.append(((12, 12, 2), L.DepthwiseConv2D(3, strides=2, dilation_rate=2), 5))
    for (shape, layer, batch), expected in [(c, True) for c in space_to_depth] + [(c, False) for c in patches]:
        name = f"{layer.__class__.__name__} {layer.get_config()}, input {shape}, batch {batch}"
        model = _model(shape, "float32", layer)
        size = batch or 3
        x = tf.constant(rng.normal(size=(size, *shape)), tf.float32)
        y = tf.constant(rng.normal(size=(size, 2)), tf.float32)
        spec = [tf.TensorSpec([batch, *shape]), tf.TensorSpec([batch, 2]), tf.TensorSpec([batch])]
        for jit_compile, decisions in _clips_like_naive(model, x, y, True, f"{name}, ", spec).items():
            assert ("space-to-depth" in decisions) == expected, (name, jit_compile, decisions)


def case_fit_with_xla_through_a_recurrent_loop_takes_the_steps_it_takes_without():
    """`fit` of a model compiled with jit_compile=True whose per-example gradients run through a recurrent loop, at a
    binding clip without noise, ends at the weights that the same fit without XLA reaches (whose clipping the case
    above checks against the naive one), by training the SimpleRNN (the fallback) without XLA, with a warning naming
    the layer (tf-keras fails to compile it: tf2xla UnimplementedError). A model without such a loop, an LSTM
    (whose rule runs its own loop) and convolutions (whose patches `fit` traces with the batch size unknown) keep XLA
    on both flavours."""
    rng = np.random.default_rng(2)
    _seed()
    x, y = rng.normal(size=(20, 4, 3)).astype("float32"), rng.normal(size=(20, 2)).astype("float32")
    for name, layer, sampling in (
        ("recurrent", lambda: L.SimpleRNN(3, name="rnn"), None),
        ("LSTM", lambda: L.LSTM(3, name="lstm"), None),
        ("plain", Scale, None),
        # Keras' own batches: `fit` traces them with the batch size unknown (space-to-depth, and sliced patches)
        ("strided convolution", lambda: L.Conv1D(2, 2, strides=2), "shuffle"),
        ("convolution", lambda: L.Conv1D(2, 2), "shuffle"),
    ):
        ran, start = {}, None
        for jit_compile in (False, True):
            model = make_private(
                _model((4, 3), "float32", layer()),
                l2_norm_clip=0.05,
                noise_multiplier=0.0,
                expected_batch_size=4,
                dataset_size=20,
                sampling=sampling,
                seed=3,
            )
            model.compile(optimizer=K.optimizers.SGD(1.0), loss="mse", jit_compile=jit_compile)
            start = start or model.get_weights()
            model.set_weights(start)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                model.fit(x, y, epochs=1, steps_per_epoch=3, verbose=0)
            ran[jit_compile] = (
                model.get_weights(),
                model.jit_compile,
                [str(w.message) for w in seen if "do not compile with XLA" in str(w.message)],
            )
        assert max(float(np.abs(a - b).max()) for a, b in zip(start, ran[False][0], strict=True)) > 1e-3, (
            name
        )  # it trained
        for a, b in zip(ran[False][0], ran[True][0], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
        compiled, said = ran[True][1:]
        if name != "recurrent":
            assert compiled is True and said == [], (name, compiled, said)
        else:
            assert compiled is False and len(said) == 1, said
            assert said[0].startswith("per-example gradients of ['rnn (SimpleRNN"), said
            assert said[0].endswith("do not compile with XLA; training without jit_compile"), said


def case_convolution_shared_by_inputs_of_two_sizes_clips_like_naive():
    """One Conv2D called on an 8x8 and a 3x3 input: the per-example gradients of the first call (36 positions; one
    product per kernel offset, or under XLA patches) and of the second (one position: patches) add up, and under XLA
    are one outer product over both calls' positions, materialised; clipped, with and without XLA, as the naive
    per-example clipping clips them. A strided one called on an 8x8 input and on one of unknown
    size (space-to-depth patches, and extracted ones put in their order) does the same."""
    rng = np.random.default_rng(3)
    y = tf.constant(rng.normal(size=(BATCH, 2)), tf.float32)
    _seed()
    conv = L.Conv2D(2, 3)
    big, small = K.Input((8, 8, 2)), K.Input((3, 3, 2))
    model = K.Model([big, small], L.Dense(2)(L.Concatenate()([L.Flatten()(conv(big)), L.Flatten()(conv(small))])))
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x = [tf.constant(rng.normal(size=(BATCH, *s, 2)), tf.float32) for s in ((8, 8), (3, 3))]
    for jit_compile, decisions in _clips_like_naive(model, x, y, xla=True).items():
        assert decisions.count("offsets") == (0 if jit_compile else 1), decisions
        assert ((True, False) in decisions) == jit_compile and "space-to-depth" not in decisions, decisions

    conv = L.Conv2D(2, 4, strides=2, padding="same")
    known, unknown = K.Input((8, 8, 2)), K.Input((None, None, 2))
    pooled = L.GlobalAveragePooling2D()(conv(unknown))
    model = K.Model([known, unknown], L.Dense(2)(L.Concatenate()([L.Flatten()(conv(known)), pooled])))
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    x = [tf.constant(rng.normal(size=(BATCH, *s, 2)), tf.float32) for s in ((8, 8), (7, 9))]
    spec = [[tf.TensorSpec([None, 8, 8, 2]), tf.TensorSpec([None, None, None, 2])], tf.TensorSpec([None, 2])]
    decisions = _clips_like_naive(model, x, y, False, signature=[*spec, tf.TensorSpec([None])])[False]
    assert decisions.count("space-to-depth") == 1, decisions


def case_every_convolution_path_clips_like_naive_and_drops_a_non_finite_example_alone():
    """Both ways `ConvRule` can write a convolution's kernel gradients (`layer_rules._conv_path`: patches into an
    `OuterProduct`, or one product per kernel offset), forced on every layer below whatever `_conv_path` picks, clip
    as the naive per-example clipping does,
    with and without XLA; and with one example's features inf, its sum without XLA equals the naive clipped sum of the
    other examples. The layers: Conv1D and Conv2D, strides 1, 2 and 3 dividing the kernel or not, valid, same and
    causal padding, one input channel and several, odd input sizes, dilation, ghost norms and materialised patches."""
    rng = np.random.default_rng(5)
    _seed()
    layers = [
        ((9, 7, 1), L.Conv2D(3, 3, padding="same")),
        ((7, 9, 2), L.Conv2D(2, (2, 3))),
        ((5, 5, 8), L.Conv2D(16, 2)),  # ghost norms from patches (T 16, d_in 32)
        ((9, 9, 2), L.Conv2D(2, 4, strides=2, padding="same")),
        ((11, 10, 1), L.Conv2D(2, 5, strides=3)),
        ((8, 7, 3), L.Conv2D(2, 3, strides=(1, 2), padding="same", use_bias=False)),
        ((9, 9, 2), L.Conv2D(2, 3, dilation_rate=2, padding="same")),
        ((11, 3), L.Conv1D(2, 4, padding="same")),
        ((9, 1), L.Conv1D(3, 5, padding="causal")),
        ((10, 2), L.Conv1D(2, 3, strides=3)),
        ((9, 2), L.Conv1D(2, 4, strides=2, padding="same")),
        ((11, 2), L.Conv1D(2, 3, dilation_rate=2, padding="causal")),
    ]
    chosen = layer_rules._conv_path
    try:
        for shape, layer in layers:
            model = _model(shape, "float32", layer)
            x = tf.constant(rng.normal(size=(BATCH, *shape)), tf.float32)
            y = tf.constant(rng.normal(size=(BATCH, 2)), tf.float32)
            poisoned = tf.tensor_scatter_nd_update(x, [[2]], [tf.fill(shape, np.inf)])
            # The reference does not depend on the path (it never goes through the layer rules): once per layer.
            naive = _naive_per_example(model, x, y)
            want = _naive_clipped_sum(model, naive, 0.5, [0, 1, 3, 4])  # the examples other than the poisoned one
            for path in ("patches", "offsets"):
                layer_rules._conv_path = lambda *_, path=path: path
                name = f"{path}: {layer.__class__.__name__} {layer.get_config()}, input {shape}, "
                for decisions in _clips_like_naive(model, x, y, True, name, naive=naive).values():
                    assert path in decisions, (name, decisions)
                units = recording.find_units(model, layer_rules.rule_for)
                got = clipped_gradient_sum(
                    model, units, poisoned, y, tf.ones([BATCH]), DPParams(0.5, 0.0, None), expected_batch_size=BATCH
                )
                assert got.kept.numpy().tolist() == [True, True, False, True, True], name
                for g, w in zip(got.sums, want, strict=True):
                    np.testing.assert_allclose(g.numpy(), w, rtol=1e-4, atol=1e-6, err_msg=f"{name}non-finite")
    finally:
        layer_rules._conv_path = chosen
