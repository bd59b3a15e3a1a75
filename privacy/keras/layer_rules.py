"""Per-layer rules: how each layer's per-example gradients are written as factors (see `factors`).

Built-in rules use ghost norms or small materialised gradients for Dense, EinsumDense, Embedding,
Conv1D, Conv2D, DepthwiseConv2D, LayerNormalization and LSTM (as shipped by Keras 3 and tf-keras; subclasses
may change `call`, so they take the fallback, as do LSTMs with dropout, go_backwards, stateful, unroll or
time_major). Every other layer that owns trainable variables (GRU and SimpleRNN among them) gets
`VectorizedRule`: exact per-example gradients of that layer alone, vectorised over the batch with
`tf.vectorized_map`, so one unsupported layer never slows the rest of the model down.

Rules see each layer call's input and the gradient of the summed per-example losses with respect to
the layer's pre-activation output (an LSTM's: its input projection X W + b at every step), which for
example i is the gradient of loss_i alone, because the validator rejects layers that mix examples.
"""

from __future__ import annotations

import inspect
import string
from typing import Callable

import tensorflow as tf

from privacy.keras import compat
from privacy.keras.factors import EmbeddingRows, OuterProduct, PerExample, dim, ghost_is_cheaper
from privacy.keras.recording import Call


class LayerRule:
    """Base class: records a layer's input and pre-activation output; subclasses give the factors."""

    name = "ghost"
    is_fallback = False

    def applies(self, layer) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, layer, original: Callable, args, kwargs):
        """Runs the layer; returns its outputs and the `Call` to keep."""
        inputs = args[0] if args else kwargs["inputs"]
        activation = getattr(layer, "activation", None)
        linear = compat.keras_of(layer).activations.linear
        if activation is None or activation is linear:
            z = original(*args, **kwargs)
            return z, Call({"inputs": inputs}, [z])
        object.__setattr__(layer, "activation", linear)
        try:
            z = original(*args, **kwargs)
        finally:
            object.__setattr__(layer, "activation", activation)
        return activation(z), Call({"inputs": inputs}, [z])

    def factors(self, layer, calls: list[Call], grads: list[list], variables) -> dict:
        """{id(variable): factor} for ``variables`` (the layer's trainable ones), combining all calls."""
        per_call = [self.call_factors(layer, call.kept, g[0]) for call, g in zip(calls, grads, strict=True)]
        wanted = {id(v) for v in variables}
        out = {}
        for key in per_call[0]:
            if key in wanted:
                out[key] = _combine([f[key] for f in per_call])
        return out

    def call_factors(self, layer, kept, grad) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError


def _combine(factors):
    """One factor for the per-example gradients of a layer called several times: their sum (materialised where
    the calls' factors differ in kind, e.g. a convolution's depthwise and outer-product calls)."""
    if len(factors) == 1:
        return factors[0]
    first = factors[0]
    if all(isinstance(f, OuterProduct) for f in factors):
        return OuterProduct(
            tf.concat([f.a for f in factors], 1), tf.concat([f.g for f in factors], 1), first.to_variable
        )
    if all(isinstance(f, EmbeddingRows) for f in factors):
        return EmbeddingRows(
            tf.concat([f.ids for f in factors], 1), tf.concat([f.g for f in factors], 1), first.vocabulary_size
        )
    return PerExample(tf.add_n([f.materialized() for f in factors]))


def _positions(t, last: int):
    """(b, ..., last) -> (b, T, last)."""
    return tf.reshape(t, [dim(t), -1, last])


def _plain(layer, *flags) -> bool:
    """No LoRA, no quantization: the layer computes exactly what its kernel says."""
    return not getattr(layer, "lora_enabled", False) and not getattr(layer, "quantization_mode", None) and all(flags)


class DenseRule(LayerRule):
    def applies(self, layer):
        return type(layer) is compat.keras_of(layer).layers.Dense and _plain(layer)

    def call_factors(self, layer, kept, grad):
        d_in, d_out = layer.kernel.shape
        g = _positions(grad, d_out)
        kernel = OuterProduct(_positions(kept["inputs"], d_in), g, lambda m: m)
        out = {id(layer.kernel): kernel}
        if layer.bias is not None and g.shape[1] == 1:  # one position: the bias gradient is g, its norm the kernel's
            out[id(layer.bias)] = PerExample(tf.reshape(g, [dim(g), d_out]), kernel.output_squared_norms())
        elif layer.bias is not None:
            out[id(layer.bias)] = PerExample(tf.reduce_sum(g, 1))
        return out


class EinsumDenseRule(LayerRule):
    """z = einsum(equation, x, W) (+ bias over `bias_axes`), with the batch as x's first letter."""

    def applies(self, layer):
        if type(layer) is not compat.keras_of(layer).layers.EinsumDense or not _plain(layer):
            return False
        parsed = _parse_einsum(layer.equation)
        return (
            parsed is not None
            and parsed[0][0] == parsed[2][0]
            and parsed[0][0] not in parsed[1]
            and (not layer.bias_axes or parsed[0][0] not in layer.bias_axes)
        )

    def call_factors(self, layer, kept, grad):
        x_sub, w_sub, y_sub = _parse_einsum(layer.equation)
        b = x_sub[0]
        x, kernel = kept["inputs"], layer.kernel
        contracted = "".join(c for c in w_sub if c in x_sub and c not in y_sub)
        produced = "".join(c for c in w_sub if c in y_sub and c not in x_sub)
        positions = "".join(c for c in x_sub[1:] if c in y_sub and c not in w_sub)
        standard = (
            set(x_sub) == set(b + positions + contracted)
            and set(w_sub) == set(contracted + produced)
            and set(y_sub) == set(b + positions + produced)
        )
        out = {}
        if standard:
            a = tf.einsum(f"{x_sub}->{b}{positions}{contracted}", x)
            g = tf.einsum(f"{y_sub}->{b}{positions}{produced}", grad)
            d_in = _size(kernel, w_sub, contracted)
            d_out = _size(kernel, w_sub, produced)
            in_shape = [kernel.shape[w_sub.index(c)] for c in contracted + produced]

            def to_variable(m):
                return tf.einsum(f"{contracted}{produced}->{w_sub}", tf.reshape(m, in_shape))

            out[id(kernel)] = OuterProduct(_positions(a, d_in), _positions(g, d_out), to_variable)
        else:
            out[id(kernel)] = PerExample(tf.einsum(f"{x_sub},{y_sub}->{b}{w_sub}", x, grad))
        if layer.bias is not None:
            kept_letters = "".join(c for c in y_sub if c in layer.bias_axes)
            per_example = tf.einsum(f"{y_sub}->{b}{kept_letters}", grad)
            out[id(layer.bias)] = PerExample(tf.reshape(per_example, [dim(grad), *layer.bias.shape]))
        return out


def _parse_einsum(equation: str):
    if "..." in equation or "->" not in equation:
        return None
    inputs, y_sub = equation.replace(" ", "").split("->")
    parts = inputs.split(",")
    if len(parts) != 2 or not all(c in string.ascii_letters for c in "".join(parts) + y_sub):
        return None
    return parts[0], parts[1], y_sub


def _size(kernel, w_sub, letters):
    size = 1
    for c in letters:
        size *= kernel.shape[w_sub.index(c)]
    return size


class EmbeddingRule(LayerRule):
    def applies(self, layer):
        return type(layer) is compat.keras_of(layer).layers.Embedding and _plain(layer)

    def call_factors(self, layer, kept, grad):
        table = layer.embeddings
        ids = tf.reshape(kept["inputs"], [dim(grad), -1])
        return {id(table): EmbeddingRows(ids, _positions(grad, table.shape[1]), table.shape[0])}


class ConvRule(LayerRule):
    """Conv1D / Conv2D (channels_last, groups=1): the kernel gradient is patches^T G.

    Where materialising per-example kernel gradients beats ghost norms (`ghost_is_cheaper`) and the
    output gradient tiled over the input channels is smaller than the patches (filters < kernel
    positions), they come from one depthwise filter-gradient op instead of patches (`_per_example_by_depthwise`).
    """

    def applies(self, layer):
        layers = compat.keras_of(layer).layers
        return (
            type(layer) in (layers.Conv1D, layers.Conv2D)
            and _plain(layer)
            and layer.data_format == "channels_last"
            and getattr(layer, "groups", 1) == 1
        )

    def call_factors(self, layer, kept, grad):
        kernel = layer.kernel
        g = _positions(grad, kernel.shape[-1])
        if _depthwise_is_cheaper(layer, kept["inputs"], grad):
            out = {id(kernel): PerExample(_per_example_by_depthwise(layer, kept["inputs"], grad))}
        else:
            patches = _patches(layer, kept["inputs"])
            out = {id(kernel): OuterProduct(patches, g, lambda m: tf.reshape(m, kernel.shape))}
        if layer.bias is not None:
            out[id(layer.bias)] = PerExample(tf.reduce_sum(g, 1))
        return out


class DepthwiseConv2DRule(LayerRule):
    """DepthwiseConv2D: grad[kh, kw, c, m] = sum_p patch[p, kh, kw, c] * g[p, c * M + m]."""

    def applies(self, layer):
        return (
            type(layer) is compat.keras_of(layer).layers.DepthwiseConv2D
            and _plain(layer)
            and layer.data_format == "channels_last"
        )

    def call_factors(self, layer, kept, grad):
        kernel = _depthwise_kernel(layer)
        kh, kw, channels, multiplier = kernel.shape
        patches = tf.reshape(_patches(layer, kept["inputs"]), [dim(grad), -1, kh * kw, channels])
        g = tf.reshape(grad, [dim(grad), -1, channels, multiplier])
        per_example = tf.einsum("bpkc,bpcm->bkcm", tf.cast(tf.stop_gradient(patches), g.dtype), g)
        out = {id(kernel): PerExample(tf.reshape(per_example, [dim(grad), *kernel.shape]))}
        if layer.bias is not None:
            out[id(layer.bias)] = PerExample(tf.reduce_sum(_positions(grad, channels * multiplier), 1))
        return out


def _depthwise_is_cheaper(layer, inputs, grad) -> bool:
    """Whether ConvRule should materialise per-example gradients with `_per_example_by_depthwise`: outside XLA
    (which fuses sliced patches instead), for equal strides in both spatial dimensions and no dilation (what
    TensorFlow's depthwise filter gradient supports), static spatial shapes, materialising cheaper than ghost
    norms, and fewer filters than kernel positions (the tiled output gradient, B T C_in C_out values, is smaller
    than the patches, B T k C_in)."""
    kernel = layer.kernel
    *size, channels, filters = kernel.shape
    positions, window = 1, 1
    for d in grad.shape[1:-1]:
        positions = None if d is None or positions is None else positions * d
    for k in size:
        window *= k
    strides = (1, *layer.strides) if len(size) == 1 else tuple(layer.strides)
    return (
        not compat.in_xla_context()
        and None not in inputs.shape[1:]
        and len(set(strides)) == 1
        and set(layer.dilation_rate) == {1}
        and filters < window
        and not ghost_is_cheaper(positions, window * channels, filters)
    )


def _per_example_by_depthwise(layer, inputs, grad):
    """(b, *kernel.shape) per-example kernel gradients of a Conv1D/Conv2D without patches.

    Example b's input channels become channels b * C_in + c of one image, and its output gradient, tiled over
    c, channels (b * C_in + c) * C_out + o; the gradient of a depthwise convolution with multiplier C_out of
    that image is then every example's kernel gradient (Rochette et al. 2019, "Efficient per-example gradient
    computations in convolutional neural networks"), in one op that needs neither patches nor a loop.
    """
    kernel = layer.kernel
    *size, channels, filters = kernel.shape
    x = tf.cast(tf.stop_gradient(inputs), grad.dtype)
    padding = layer.padding.upper()
    if padding == "CAUSAL":  # no dilation here: pad k - 1 on the left
        x = tf.pad(x, [[0, 0], [size[0] - 1, 0], [0, 0]])
        padding = "VALID"
    if len(size) == 1:
        x, grad, size = x[:, None], grad[:, None], [1, *size]
    batch = dim(x)
    height, width = x.shape[1], x.shape[2]
    out_height, out_width = grad.shape[1], grad.shape[2]
    image = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, height, width, -1])
    tiled = tf.broadcast_to(
        tf.transpose(grad, [1, 2, 0, 3])[:, :, :, None, :], [out_height, out_width, batch, channels, filters]
    )
    stride = layer.strides[0]
    per_channel = tf.nn.depthwise_conv2d_backprop_filter(
        image,
        tf.stack([*size, batch * channels, filters]),
        tf.reshape(tiled, [1, out_height, out_width, -1]),
        [1, stride, stride, 1],
        padding,
    )
    per_example = tf.transpose(tf.reshape(per_channel, [*size, batch, channels, filters]), [2, 0, 1, 3, 4])
    return tf.reshape(per_example, [batch, *kernel.shape])


def _depthwise_kernel(layer):
    return layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel


def _patches(layer, inputs):
    """(b, P, prod(kernel_size) * channels) input patches in the kernel's (spatial..., channel) order."""
    inputs = tf.stop_gradient(inputs)
    one_d = len(layer.kernel_size) == 1
    size = (1, *layer.kernel_size) if one_d else tuple(layer.kernel_size)
    strides = (1, *layer.strides) if one_d else tuple(layer.strides)
    rates = (1, *layer.dilation_rate) if one_d else tuple(layer.dilation_rate)
    padding = layer.padding.upper()
    if padding == "CAUSAL":
        inputs = tf.pad(inputs, [[0, 0], [(layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0], [0, 0]])
        padding = "VALID"
    if one_d:
        inputs = inputs[:, None]
    if compat.in_xla_context() and None not in inputs.shape[1:]:
        patches = _patches_by_slicing(inputs, size, strides, rates, padding)
    else:
        patches = tf.image.extract_patches(
            inputs, sizes=[1, *size, 1], strides=[1, *strides, 1], rates=[1, *rates, 1], padding=padding
        )
    return tf.reshape(patches, [dim(inputs), -1, patches.shape[-1]])


def _patches_by_slicing(inputs, size, strides, rates, padding):
    """`tf.image.extract_patches` of a (b, h, w, c) batch as one strided slice per kernel offset.

    XLA on CPU fuses the slices, but compiles ExtractImagePatches into a slow convolution (the
    patches of the TF Privacy tutorial CNN: ~6x slower); without XLA the TensorFlow kernel is faster.
    """
    pads, outs = [], []
    for length, k, stride, rate in zip(inputs.shape[1:3], size, strides, rates, strict=True):
        span = (k - 1) * rate + 1
        out = -(-length // stride) if padding == "SAME" else (length - span) // stride + 1
        total = max((out - 1) * stride + span - length, 0) if padding == "SAME" else 0
        pads.append([total // 2, total - total // 2])
        outs.append(out)
    inputs = tf.pad(inputs, [[0, 0], *pads, [0, 0]])
    parts = [
        inputs[
            :,
            i * rates[0] : i * rates[0] + (outs[0] - 1) * strides[0] + 1 : strides[0],
            j * rates[1] : j * rates[1] + (outs[1] - 1) * strides[1] + 1 : strides[1],
            :,
        ]
        for i in range(size[0])
        for j in range(size[1])
    ]
    return tf.reshape(tf.stack(parts, axis=3), [dim(inputs), outs[0], outs[1], -1])


class LayerNormalizationRule(LayerRule):
    """gamma's gradient is sum over positions of x_hat * g; beta's is sum of g."""

    def applies(self, layer):
        if type(layer) is not compat.keras_of(layer).layers.LayerNormalization or getattr(layer, "rms_scaling", False):
            return False
        return True

    def call_factors(self, layer, kept, grad):
        x = tf.cast(kept["inputs"], tf.float32)
        rank = x.shape.rank
        axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]))
        mean, variance = tf.nn.moments(x, axes, keepdims=True)
        x_hat = (x - mean) * tf.math.rsqrt(variance + layer.epsilon)
        g = tf.cast(grad, tf.float32)
        summed = [d for d in range(1, rank) if d not in axes]
        out = {}
        if layer.scale and layer.gamma is not None:
            out[id(layer.gamma)] = PerExample(_per_example_shaped(tf.reduce_sum(x_hat * g, summed), layer.gamma))
        if layer.center and layer.beta is not None:
            out[id(layer.beta)] = PerExample(_per_example_shaped(tf.reduce_sum(g, summed), layer.beta))
        return out


def _per_example_shaped(t, variable):
    return tf.reshape(t, [dim(t), *variable.shape])


class LSTMRule(LayerRule):
    """LSTM (Keras 3 and tf-keras): z_t = x_t W + b + h_{t-1} U, so with Z = X W + b over all steps at once and
    G = dL/dZ (which is dL/dz_t at every step t), W's per-example gradient is X^T G, U's is H_prev^T G (H_prev: the
    state entering each step, the initial one first) and b's sum_t G_t: outer products over the T steps, like a
    Dense over a sequence. `forward` computes Z itself and runs the recurrence on it (masks as Keras applies them:
    a masked step keeps the states and repeats the previous output, or outputs zeros with
    ``zero_output_for_mask``), so its output is Keras' own up to float rounding.

    Configurations it does not reproduce take the vectorised fallback: dropout or recurrent dropout, go_backwards,
    stateful, unroll, time_major, subclasses of LSTM or of its cell (whose `call` may differ). Ragged inputs are
    refused (pad them and pass a mask).
    """

    def applies(self, layer):
        layers = compat.keras_of(layer).layers
        cell = getattr(layer, "cell", None)
        return (
            type(layer) is layers.LSTM
            and type(cell) is layers.LSTMCell
            and not (layer.go_backwards or layer.stateful or layer.unroll or getattr(layer, "time_major", False))
            and not (cell.dropout or cell.recurrent_dropout or getattr(layer, "return_runtime", False))
        )

    def forward(self, layer, original, args, kwargs):
        sequences, initial_state, mask = _lstm_arguments(layer, args, kwargs)
        if isinstance(sequences, tf.RaggedTensor):
            raise ValueError(f"LSTM '{layer.name}' got a ragged input; DP-SGD needs it padded, with a mask")
        cell = layer.cell
        dtype = cell.compute_dtype
        x = tf.convert_to_tensor(sequences, dtype)
        z = tf.einsum("btd,dk->btk", x, tf.cast(cell.kernel, dtype))
        if cell.use_bias:
            z = z + tf.cast(cell.bias, dtype)
        if initial_state is None:
            zeros = tf.zeros([dim(x), cell.units], dtype)
            initial_state = [zeros, zeros]
        h0, c0 = (tf.cast(s, dtype) for s in initial_state)
        steps = tf.ones([dim(x), dim(x, 1)], tf.bool) if mask is None else tf.cast(mask, tf.bool)
        outputs, h_prev, h, c = _lstm_loop(cell, z, steps, h0, c0, getattr(layer, "zero_output_for_mask", False))
        output = outputs if layer.return_sequences else outputs[:, -1]
        if layer.return_state:  # as each flavour returns them: tf-keras a list, Keras 3 a tuple
            output = [output, h, c] if compat.is_tf_keras(layer) else (output, h, c)
        return output, Call({"inputs": x, "h_prev": h_prev}, [z])

    def call_factors(self, layer, kept, grad):
        cell = layer.cell
        out = {
            id(cell.kernel): OuterProduct(kept["inputs"], grad, lambda m: m),
            id(cell.recurrent_kernel): OuterProduct(kept["h_prev"], grad, lambda m: m),
        }
        if cell.use_bias:
            out[id(cell.bias)] = PerExample(tf.reduce_sum(grad, 1))
        return out


def _lstm_arguments(layer, args, kwargs):
    """(sequences, initial state or None, mask or None) of an LSTM call on either Keras flavour (tf-keras passes an
    initial state given as Keras tensors in a list after the sequences)."""
    bound = inspect.signature(type(layer).call).bind(layer, *args, **kwargs).arguments
    sequences = bound.get("sequences", bound.get("inputs"))
    initial_state, mask = bound.get("initial_state"), bound.get("mask")
    if isinstance(sequences, (list, tuple)):
        sequences, initial_state = sequences[0], list(sequences[1:]) or initial_state
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if initial_state is not None and not isinstance(initial_state, (list, tuple)):
        initial_state = [initial_state]
    return sequences, initial_state, mask


def _lstm_loop(cell, z, steps, h0, c0, zero_output_for_mask: bool):
    """Runs the LSTM recurrence over Z = X W + b (b, T, 4 units) where ``steps`` (b, T) is True; returns the
    outputs (b, T, units), the state h entering each step (b, T, units), and the final h and c."""
    kernel = tf.cast(cell.recurrent_kernel, z.dtype)
    activation, recurrent_activation = cell.activation, cell.recurrent_activation

    def step(carry, elems):
        h, c, previous, _ = carry
        z_t, on = elems
        i, f, g, o = tf.split(z_t + tf.matmul(h, kernel), 4, axis=1)
        new_c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
        new_h = recurrent_activation(o) * activation(new_c)
        on = on[:, None]
        masked = tf.zeros_like(new_h) if zero_output_for_mask else previous
        return tf.where(on, new_h, h), tf.where(on, new_c, c), tf.where(on, new_h, masked), h

    zeros = tf.zeros_like(h0)
    hs, cs, outputs, h_prev = tf.scan(
        step, (tf.transpose(z, [1, 0, 2]), tf.transpose(steps)), initializer=(h0, c0, zeros, zeros)
    )
    return tf.transpose(outputs, [1, 0, 2]), tf.transpose(h_prev, [1, 0, 2]), hs[-1], cs[-1]


class VectorizedRule(LayerRule):
    """Fallback for any layer: exact per-example gradients of this layer's variables, vectorised.

    For example i it recomputes the layer on example i's inputs and takes the vector-Jacobian product
    with the output gradient of example i, with `tf.vectorized_map`; layers that `tf.vectorized_map`
    cannot convert (e.g. tf-keras RNNs built on TensorArrays) run as a `tf.map_fn` loop instead.
    """

    name = "vectorized"
    is_fallback = True

    def applies(self, layer):
        return True

    def forward(self, layer, original, args, kwargs):
        outputs = original(*args, **kwargs)
        targets = [t for t in tf.nest.flatten(outputs) if tf.is_tensor(t) and t.dtype.is_floating]
        return outputs, Call({"args": args, "kwargs": kwargs}, targets)

    def factors(self, layer, calls, grads, variables):
        total = None
        for call, call_grads in zip(calls, grads, strict=True):
            per_example = self._per_example(layer, call, call_grads, variables)
            total = per_example if total is None else [t + p for t, p in zip(total, per_example, strict=True)]
        return {id(v): PerExample(t) for v, t in zip(variables, total, strict=True)}

    @staticmethod
    def _per_example(layer, call, grads, variables):
        structure = (call.kept["args"], call.kept["kwargs"])
        flat = tf.nest.flatten(structure)
        batch_dim = call.targets[0].shape[0]
        batched = [i for i, t in enumerate(flat) if tf.is_tensor(t) and t.shape.rank and t.shape[0] == batch_dim]
        original = compat.class_call(layer)

        def one_example(elems):
            inputs, output_grads = elems
            values = list(flat)
            for i, t in zip(batched, inputs, strict=True):
                values[i] = t[None]
            args, kwargs = tf.nest.pack_sequence_as(structure, values)
            with tf.GradientTape() as tape:
                outputs = original(*args, **kwargs)
            targets = [t for t in tf.nest.flatten(outputs) if tf.is_tensor(t) and t.dtype.is_floating]
            return tape.gradient(
                targets,
                variables,
                output_gradients=[g[None] for g in output_grads],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )

        elems = ([flat[i] for i in batched], list(grads))
        try:
            return tf.vectorized_map(one_example, elems)
        except (TypeError, ValueError, NotImplementedError):  # an op pfor cannot convert: loop instead
            signature = [tf.TensorSpec(v.shape, v.dtype) for v in variables]
            return tf.map_fn(one_example, elems, fn_output_signature=signature)


RULES: tuple[LayerRule, ...] = (
    DenseRule(),
    EinsumDenseRule(),
    EmbeddingRule(),
    ConvRule(),
    DepthwiseConv2DRule(),
    LayerNormalizationRule(),
    LSTMRule(),
)
FALLBACK = VectorizedRule()


def rule_for(layer) -> LayerRule:
    """The first built-in rule that applies to ``layer``, else the vectorised fallback."""
    for rule in RULES:
        if rule.applies(layer):
            return rule
    return FALLBACK
