"""Per-layer rules: how each layer's per-example gradients are written as factors (see `factors`).

Built-in rules use ghost norms or small materialised gradients for Dense, EinsumDense, Embedding, Conv1D, Conv2D,
DepthwiseConv2D, LayerNormalization, LSTM and GRU (as shipped by Keras 3 and tf-keras; subclasses may change `call`,
so they take the fallback, as do LSTMs and GRUs with dropout, unroll or time_major; stateful ones the validator
refuses; in a Bidirectional wrapper each direction is a unit of its own when both have rules). Every other layer that
owns trainable variables (SimpleRNN among them) gets `VectorizedRule`: exact per-example gradients of that layer
alone, vectorised over the batch with `tf.vectorized_map`, so one unsupported layer never slows the rest of the model
down.

Rules see each layer call's input and the gradient of the summed per-example losses with respect to
the layer's pre-activation output (an LSTM's or GRU's: its input projection X W + b at every step), which for
example i is the gradient of loss_i alone, because the validator rejects layers that mix examples.
"""

from __future__ import annotations

import inspect
import math
import string
from typing import Callable

import tensorflow as tf

from privacy.keras import compat
from privacy.keras.factors import (
    EmbeddingRows,
    FeatureSlice,
    OuterProduct,
    OutputRows,
    PerExample,
    dim,
    ghost_is_cheaper,
)
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
    the calls' factors differ in kind, e.g. a Dense bias's one-position and several-position calls)."""
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
    """(b, ..., last) -> (b, T, last), with T static wherever t's shape past the batch is, also when the batch size is
    not (as in `fit`): the cost model (`ghost_is_cheaper`) decides from it, and takes ghost norms where T is unknown."""
    rest = t.shape[1:]
    return tf.reshape(t, [dim(t), rest.num_elements() // last if rest.is_fully_defined() else -1, last])


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
        if layer.bias is not None and g.shape[1] == 1:  # one position: the bias gradient is g (the kernel's G rows)
            out[id(layer.bias)] = OutputRows(kernel)
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
    """Conv1D / Conv2D (channels_last, groups=1): the kernel gradient is patches^T G. `_conv_path` picks, per layer
    call at trace time, how: an `OuterProduct` of the input patches (`_patches`) with the output gradient (ghost norms
    or materialised per-example gradients, whichever `ghost_is_cheaper`), or materialised per-example gradients
    without a patch tensor, from one product per kernel offset (`_per_example_by_offsets`)."""

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
        *_, channels, filters = kernel.shape
        g = _positions(grad, filters)
        path = _conv_path(layer, kept["inputs"], grad)
        if path == "offsets":
            out = {id(kernel): PerExample(_per_example_by_offsets(layer, kept["inputs"], grad))}
        else:
            patches, positions = _patches(layer, kept["inputs"])

            def to_variable(m):  # (offsets * C_in, C_out) in the patches' order -> the kernel
                if positions is not None:
                    m = tf.gather(tf.reshape(m, [-1, channels, filters]), positions)
                return tf.reshape(m, kernel.shape)

            out = {id(kernel): OuterProduct(_positions(patches, patches.shape[2] * channels), g, to_variable)}
        if layer.bias is not None:
            out[id(layer.bias)] = PerExample(tf.reduce_sum(g, 1))
        return out


def _conv_path(layer, inputs, grad) -> str:
    """How `ConvRule` writes a call's kernel gradients, decided from static shapes: "offsets"
    (`_per_example_by_offsets`) for an unstrided convolution of static spatial shape, outside XLA, with at most
    16 C_in filters, whose `OuterProduct` would materialise (not `ghost_is_cheaper` for its T output positions,
    kernel positions times C_in, C_out); else "patches" (that `OuterProduct`; a strided convolution's from its
    space-to-depth input; under XLA from slices, which XLA fuses).

    Measured on 2 AMD EPYC cores (clipped sum alone of Conv + Flatten + Dense(10), batch 256, Keras 3; benchmarks/
    README.md, Dec 7 2026): offsets took 0.5-0.9x the CPU time of patches for 8-16 filters on 28x28x1 and 32x32x3
    inputs and for a Conv1D over 128 steps of 64 channels up to 128 filters, about as long for 64 filters of 28x28x1
    inputs and 1.07x for 128 filters of 32x32x3 ones; strided, 1.9-2.2x (space-to-depth patches stay)."""
    *size, channels, filters = layer.kernel.shape
    return (
        "offsets"
        if None not in inputs.shape[1:]
        and set(layer.strides) == {1}
        and not compat.in_xla_context()
        and filters <= 16 * channels
        and not ghost_is_cheaper(grad.shape[1:-1].num_elements(), math.prod(size) * channels, filters)
        else "patches"
    )


def _per_example_by_offsets(layer, inputs, grad):
    """(b, *kernel.shape) per-example kernel gradients of a Conv1D/Conv2D (static spatial shapes) without patches:
    for each kernel offset, the product of the input slice that offset sees at every output position (`_slices`)
    with the output gradient, summed over the positions (b, C_in, C_out)."""
    x, size, strides, rates, padding = _geometry(layer, inputs)
    g = grad if grad.shape.rank == 4 else grad[:, None]
    parts = [
        tf.einsum("bhwc,bhwo->bco", part, g) for part in _slices(tf.cast(x, g.dtype), size, strides, rates, padding)
    ]
    return tf.reshape(tf.stack(parts, 1), [dim(grad), *layer.kernel.shape])


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
        patches, positions = _patches(layer, kept["inputs"])
        g = tf.reshape(grad, [dim(grad), -1, channels, multiplier])
        per_example = tf.einsum("bpkc,bpcm->bkcm", tf.cast(patches, g.dtype), g)
        if positions is not None:
            per_example = tf.gather(per_example, positions, axis=1)
        out = {id(kernel): PerExample(tf.reshape(per_example, [dim(grad), *kernel.shape]))}
        if layer.bias is not None:
            out[id(layer.bias)] = PerExample(tf.reduce_sum(_positions(grad, channels * multiplier), 1))
        return out


def _depthwise_kernel(layer):
    return layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel


def _patches(layer, inputs):
    """A convolution's input patches, (b, P, n, C_in) at its P output positions and n kernel offsets, and
    ``positions``: None where the n offsets are the kernel's (kh * kw, row-major), else a tuple of kh * kw indices
    along n, one per kernel offset in that order (a permutation of the n = kh * kw offsets).

    An undilated strided convolution's patches (static shapes) come from its space-to-depth input
    (`_patches_by_space_to_depth`), with and without XLA; any other's from `tf.image.extract_patches`, or under XLA
    from slices (`_slices`). On 2 CPU cores, per-example kernel gradients X^T G of the tutorial CNN's
    first convolution (8x8, stride 2, 28x28x1 inputs, batch 256) took less time from space-to-depth patches than from
    extracted or strided-sliced ones or from TensorFlow's depthwise filter-gradient op (benchmarks/README.md, Dec 6
    2026).
    """
    inputs, size, strides, rates, padding = _geometry(layer, inputs)
    channels, offsets = inputs.shape[-1], size[0] * size[1]
    static = None not in inputs.shape[1:]
    strided = set(strides) != {1} and set(rates) == {1}  # Keras 3's DepthwiseConv2D takes strides with dilation
    if static and strided:
        patches = _patches_by_space_to_depth(inputs, size, strides, padding)
    elif static and compat.in_xla_context():
        patches = tf.stack(_slices(inputs, size, strides, rates, padding), axis=3)  # (b, oh, ow, offsets, c)
    else:
        patches = tf.image.extract_patches(
            inputs, sizes=[1, *size, 1], strides=[1, *strides, 1], rates=[1, *rates, 1], padding=padding
        )
    count = dim(_positions(patches, offsets * channels), 1)  # static where the output's size is
    patches = tf.reshape(patches, [dim(inputs), count, offsets, channels])
    positions = _space_to_depth_positions(size, strides) if strided else None
    if positions is not None and not static:  # the offsets in the order of the layer's calls of static shape
        patches = tf.gather(patches, sorted(range(offsets), key=positions.__getitem__), axis=2)
    return patches, positions


def _geometry(layer, inputs):
    """A convolution call's input as a (b, h, w, c) batch without a gradient path (a Conv1D's with h = 1, causal
    padding applied), with its kernel size, strides and dilation rates over (h, w) and TensorFlow's padding."""
    inputs = tf.stop_gradient(inputs)
    one_d = len(layer.kernel_size) == 1
    size = (1, *layer.kernel_size) if one_d else tuple(layer.kernel_size)
    strides = (1, *layer.strides) if one_d else tuple(layer.strides)
    rates = (1, *layer.dilation_rate) if one_d else tuple(layer.dilation_rate)
    padding = layer.padding.upper()
    if padding == "CAUSAL":
        inputs = tf.pad(inputs, [[0, 0], [(layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0], [0, 0]])
        padding = "VALID"
    return (inputs[:, None] if one_d else inputs), size, strides, rates, padding


def _space_to_depth_positions(size, strides):
    """Where a strided convolution's space-to-depth patches (`_patches_by_space_to_depth`) hold each of its kernel
    offsets (kh * kw, row-major), if they hold exactly those (s_i divides k_i), else None."""
    count, positions = _space_to_depth_offsets(size, strides)
    return positions if count == len(positions) else None


def _space_to_depth_offsets(size, strides):
    """(q_h q_w s_h s_w, the index of each kernel offset (kh * kw, row-major) among them): with q_i = ceil(k_i / s_i)
    blocks per axis, offset (i, j) is block (i // s_h, j // s_w), phase (i % s_h, j % s_w), in the space-to-depth
    patches' order (block row, block column, phase row, phase column)."""
    blocks = [-(-k // stride) for k, stride in zip(size, strides, strict=True)]
    positions = tuple(
        ((i // strides[0] * blocks[1] + j // strides[1]) * strides[0] + i % strides[0]) * strides[1] + j % strides[1]
        for i in range(size[0])
        for j in range(size[1])
    )
    return blocks[0] * blocks[1] * strides[0] * strides[1], positions


def _padded(length: int, k: int, stride: int, rate: int, padding: str):
    """(output length, [zeros before, zeros after]) of a convolution along one axis, padded as TensorFlow pads."""
    span = (k - 1) * rate + 1
    out = -(-length // stride) if padding == "SAME" else (length - span) // stride + 1
    total = max((out - 1) * stride + span - length, 0) if padding == "SAME" else 0
    return out, [total // 2, total - total // 2]


def _patches_by_space_to_depth(inputs, size, strides, padding):
    """The patches of an undilated, strided convolution of a (b, h, w, c) batch, (b, oh, ow, offsets * c): the
    kernel's offsets in the order of `_space_to_depth_positions` where it gives one, else in the kernel's order.

    With the kernel padded up to q_i = ceil(k_i / s_i) blocks of s_i offsets per axis, input row s o + s q + r is row
    o + q of the space-to-depth input's phase r (r < s): the patches are the q_h q_w unstrided slices of that input
    (b, oh + q_h - 1, ow + q_w - 1, s_h s_w c), in offset order (q_h, q_w, s_h, s_w). Where s_i divides k_i those are
    exactly the kernel's offsets (kh = q_h s_h), permuted; elsewhere the padded offsets are dropped by a gather.
    """
    batch, channels = dim(inputs), inputs.shape[-1]
    blocks, outs, pads = [], [], []
    for length, k, stride in zip(inputs.shape[1:3], size, strides, strict=True):
        out, (before, _) = _padded(length, k, stride, 1, padding)
        q = -(-k // stride)
        blocks.append(q)
        outs.append(out)
        pads.append([before, stride * (out + q - 1) - length - before])  # may be < 0: rows no offset reaches
    inputs = tf.pad(inputs, [[0, 0], *[[p[0], max(p[1], 0)] for p in pads], [0, 0]])
    rows, cols = (o + q - 1 for o, q in zip(outs, blocks, strict=True))
    inputs = tf.reshape(
        inputs[:, : rows * strides[0], : cols * strides[1]], [batch, rows, strides[0], cols, strides[1], channels]
    )
    phases = tf.reshape(
        tf.transpose(inputs, [0, 1, 3, 2, 4, 5]), [batch, rows, cols, strides[0] * strides[1] * channels]
    )
    parts = [phases[:, i : i + outs[0], j : j + outs[1]] for i in range(blocks[0]) for j in range(blocks[1])]
    patches = tf.stack(parts, axis=3)  # (b, oh, ow, q_h q_w, s_h s_w c): offsets (q_h, q_w, s_h, s_w)
    count, positions = _space_to_depth_offsets(size, strides)
    if count == len(positions):
        return patches
    return tf.gather(tf.reshape(patches, [batch, outs[0], outs[1], count, channels]), positions, axis=3)


def _slices(inputs, size, strides, rates, padding):
    """The (strided, dilated) slice of a (b, h, w, c) batch that each kernel offset (kh * kw, row-major) sees at the
    convolution's output positions, (b, oh, ow, c) each: stacked, `tf.image.extract_patches`' patches.

    XLA on CPU fuses the slices, but compiles ExtractImagePatches into a slow convolution (the
    patches of the TF Privacy tutorial CNN: ~6x slower); without XLA the TensorFlow kernel is faster.
    """
    pads, outs = [], []
    for length, k, stride, rate in zip(inputs.shape[1:3], size, strides, rates, strict=True):
        out, pad = _padded(length, k, stride, rate, padding)
        pads.append(pad)
        outs.append(out)
    inputs = tf.pad(inputs, [[0, 0], *pads, [0, 0]])
    return [
        inputs[
            :,
            i * rates[0] : i * rates[0] + (outs[0] - 1) * strides[0] + 1 : strides[0],
            j * rates[1] : j * rates[1] + (outs[1] - 1) * strides[1] + 1 : strides[1],
            :,
        ]
        for i in range(size[0])
        for j in range(size[1])
    ]


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


class _RecurrentRule(LayerRule):
    """An RNN layer whose gates are z_t = x_t W + b + (a function of h_{t-1} and U): with Z = X W + b over all steps
    at once and G = dL/dZ (which is dL/dz_t at every step t, since Z_t enters nothing else), W's per-example gradient is
    X^T G and U's a product of the states entering each step (H_prev, the initial one first) with G: outer products
    over the T steps, like a Dense over a sequence, from one backward pass. `forward` computes Z itself and runs the
    recurrence on it in a `tf.while_loop` (masks as Keras applies them: a masked step keeps the states and repeats the
    previous output, or outputs zeros with ``zero_output_for_mask``; go_backwards: the steps last to first, the
    outputs in that order), so its output is Keras' own up to float rounding. The calls of a layer called several
    times are one set of factors over all their steps.

    Configurations it does not reproduce take the vectorised fallback: dropout or recurrent dropout, stateful (which
    `validator` refuses), unroll, time_major, subclasses of the layer or of its cell (whose `call` may differ).
    Ragged inputs are refused (pad them and pass a mask).
    """

    kind = ""  # the Keras layer class's name; its cell's is kind + "Cell"
    states = 1  # how many state tensors the cell carries, h first

    def applies(self, layer):
        layers = compat.keras_of(layer).layers
        cell = getattr(layer, "cell", None)
        return (
            type(layer) is getattr(layers, self.kind)
            and type(cell) is getattr(layers, self.kind + "Cell")
            and not (layer.stateful or layer.unroll or getattr(layer, "time_major", False))
            and not (cell.dropout or cell.recurrent_dropout or getattr(layer, "return_runtime", False))
        )

    def forward(self, layer, original, args, kwargs):
        sequences, initial_state, mask = _recurrent_arguments(layer, args, kwargs)
        if isinstance(sequences, tf.RaggedTensor):
            raise ValueError(f"{self.kind} '{layer.name}' got a ragged input; DP-SGD needs it padded, with a mask")
        cell = layer.cell
        dtype = cell.compute_dtype
        x = tf.convert_to_tensor(sequences, dtype)
        if layer.go_backwards:  # Keras runs the steps last to first and returns the outputs in that order
            x = tf.reverse(x, [1])
            mask = None if mask is None else tf.reverse(mask, [1])
        z = tf.einsum("btd,dk->btk", x, tf.cast(cell.kernel, dtype))  # a path from W: the tape records Z
        bias = self.input_bias(cell)
        if bias is not None:
            z = z + tf.cast(bias, dtype)
        if initial_state is None:
            initial_state = [tf.zeros([dim(x), cell.units], dtype)] * self.states
        states = tuple(tf.cast(s, dtype) for s in initial_state)
        steps = None if mask is None else tf.cast(mask, tf.bool)
        step, extras = self.cell_step(cell, states[0])
        output, h_prev, extras, final = _recurrence(
            step, z, steps, states, extras, getattr(layer, "zero_output_for_mask", False), layer.return_sequences
        )
        if layer.return_state:  # as each flavour returns them: tf-keras a list, Keras 3 a tuple
            output = [output, *final] if compat.is_tf_keras(layer) else (output, *final)
        return output, Call({"inputs": x, "h_prev": h_prev, "extras": extras}, [z])

    def factors(self, layer, calls, grads, variables):
        """As `LayerRule.factors` with the calls' steps side by side (b, T_1 + T_2 + ..., ...): every factor sums
        over the steps, and the variables sharing G (`FeatureSlice`) stay one product."""
        if len(calls) > 1:
            kept = tf.nest.map_structure(lambda *t: tf.concat(t, 1), *[call.kept for call in calls])
            calls, grads = [Call(kept, calls[0].targets)], [[tf.concat([g[0] for g in grads], 1)]]
        return super().factors(layer, calls, grads, variables)

    def input_bias(self, cell):  # pragma: no cover - overridden
        raise NotImplementedError

    def cell_step(self, cell, h0):  # pragma: no cover - overridden
        """(step(z_t, states) -> (output, new states, extras), the extras' initial values like ``h0``)."""
        raise NotImplementedError


class LSTMRule(_RecurrentRule):
    """LSTM: z_t = x_t W + b + h_{t-1} U (gates i, f, c, o): W's per-example gradient is X^T G, U's H_prev^T G and b's
    1^T G, all with the same G, so they are slices of one outer product over [X | H_prev | 1] (`FeatureSlice`): one
    choice between ghost norms and materialising, G G^T once, one clipped-sum matmul. On CPU (64 units on 32 steps of
    16 features, batch 256, one batch repeated) the private step measured 1.49-1.63x a non-private one's wall time
    and 1.46-1.66x its CPU time, Keras 3 and tf-keras, without XLA; batches from arrays through ppml's input path up
    to 1.71x, under XLA up to 1.83x (benchmarks/README.md, the recurrent bullet)."""

    kind = "LSTM"
    states = 2

    def input_bias(self, cell):
        return cell.bias if cell.use_bias else None

    def cell_step(self, cell, h0):
        kernel = _constant(cell.recurrent_kernel, h0.dtype)
        activation, recurrent_activation = cell.activation, cell.recurrent_activation

        def step(z_t, states):
            h, c = states
            i, f, g, o = tf.split(z_t + tf.matmul(h, kernel), 4, axis=1)
            c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
            h = recurrent_activation(o) * activation(c)
            return h, (h, c), ()

        return step, ()

    def call_factors(self, layer, kept, grad):
        cell, x, h_prev = layer.cell, kept["inputs"], kept["h_prev"]
        a, d_in, units = [x, h_prev], x.shape[-1], cell.units
        if cell.use_bias:  # b's gradient is 1^T G: a column of ones
            a.append(tf.ones_like(h_prev[..., :1]))
        whole = OuterProduct(tf.concat(a, -1), grad, _same)
        out = {
            id(cell.kernel): FeatureSlice(whole, 0, d_in, _same),
            id(cell.recurrent_kernel): FeatureSlice(whole, d_in, d_in + units, _same),
        }
        if cell.use_bias:
            out[id(cell.bias)] = FeatureSlice(whole, d_in + units, d_in + units + 1, lambda m: tf.reshape(m, [-1]))
        return out


class GRURule(_RecurrentRule):
    """GRU (gates z, r, h; h_t = z h_{t-1} + (1 - z) hh). With ``reset_after`` (the default): the recurrent part
    h_{t-1} U + b_rec enters the candidate's pre-activation times the reset gate r_t, so its gradient is G with the
    candidate's columns times r_t (kept from the loop), and U's per-example gradient is H_prev^T of that. Without it:
    U's z and r columns get H_prev^T G_zr and its candidate columns (r_t h_{t-1})^T G_h, one outer product over 2T
    positions (H_prev and r H_prev, against G_zr and G_h each padded with zeros to the other's columns)."""

    kind = "GRU"

    def input_bias(self, cell):
        if not cell.use_bias:
            return None
        return cell.bias[0] if cell.reset_after else cell.bias

    def cell_step(self, cell, h0):
        kernel = _constant(cell.recurrent_kernel, h0.dtype)
        bias = _constant(cell.bias[1], h0.dtype) if cell.use_bias and cell.reset_after else None
        units, activation, recurrent_activation = cell.units, cell.activation, cell.recurrent_activation

        def step(z_t, states):
            (h,) = states
            if cell.reset_after:
                inner = tf.matmul(h, kernel) if bias is None else tf.matmul(h, kernel) + bias
            else:
                inner = tf.matmul(h, kernel[:, : 2 * units])
            update = recurrent_activation(z_t[:, :units] + inner[:, :units])
            reset = recurrent_activation(z_t[:, units : 2 * units] + inner[:, units : 2 * units])
            if cell.reset_after:
                candidate = activation(z_t[:, 2 * units :] + reset * inner[:, 2 * units :])
            else:
                candidate = activation(z_t[:, 2 * units :] + tf.matmul(reset * h, kernel[:, 2 * units :]))
            h = update * h + (1 - update) * candidate
            return h, (h,), (reset,)

        return step, (tf.zeros_like(h0),)

    def call_factors(self, layer, kept, grad):
        cell, units = layer.cell, layer.cell.units
        reset, h_prev = tf.stop_gradient(kept["extras"][0]), kept["h_prev"]
        gates, candidate = grad[..., : 2 * units], grad[..., 2 * units :]
        out = {id(cell.kernel): OuterProduct(kept["inputs"], grad, _same)}
        if cell.reset_after:
            recurrent = tf.concat([gates, candidate * reset], -1)
            out[id(cell.recurrent_kernel)] = OuterProduct(h_prev, recurrent, _same)
            if cell.use_bias:
                out[id(cell.bias)] = PerExample(tf.stack([tf.reduce_sum(grad, 1), tf.reduce_sum(recurrent, 1)], 1))
            return out
        a = tf.concat([h_prev, reset * h_prev], 1)
        g = tf.concat(
            [tf.concat([gates, tf.zeros_like(candidate)], -1), tf.concat([tf.zeros_like(gates), candidate], -1)], 1
        )
        out[id(cell.recurrent_kernel)] = OuterProduct(a, g, _same)
        if cell.use_bias:
            out[id(cell.bias)] = PerExample(tf.reduce_sum(grad, 1))
        return out


def _same(m):
    return m


def _constant(weight, dtype):
    """A recurrent weight's value with no gradient path: the rules compute the weights' per-example gradients from G,
    so the backward pass through the loop computes only what G needs, not the weight's gradient summed over the batch.
    (Z = X W + b keeps its path from W, for the tape to record Z and what depends on it.)"""
    return tf.stop_gradient(tf.cast(weight, dtype))


def _recurrent_arguments(layer, args, kwargs):
    """(sequences, initial state list or None, mask or None) of an RNN layer's call on either Keras flavour (tf-keras
    passes an initial state given as Keras tensors in a list after the sequences)."""
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


def _recurrence(step, z, steps, states, extras, zero_output_for_mask: bool, sequences: bool):
    """Runs ``step(z_t, states) -> (output, new states, extras)`` over Z (b, T, k), where ``steps`` (b, T) is True
    (every step if it is None), as Keras masks (a masked step keeps the states and repeats the previous output, or
    outputs zeros with ``zero_output_for_mask``); ``extras`` are the initial values of what each step returns
    besides. Returns the outputs (b, T, units) with ``sequences``, else the last one (b, units), the first state
    entering each step (b, T, units), each extra over the steps (b, T, ...) and the final states. A `tf.while_loop`
    writing only these to TensorArrays (not `tf.scan`, which stacks every carried state too and differentiates them)."""
    z = tf.transpose(z, [1, 0, 2])
    count = dim(z)
    z_steps = tf.TensorArray(z.dtype, size=count, element_shape=z.shape[1:]).unstack(z)
    on_steps = None if steps is None else tf.TensorArray(tf.bool, size=count).unstack(tf.transpose(steps))

    def array(like):
        return tf.TensorArray(like.dtype, size=count, element_shape=like.shape)

    def body(t, states, previous, outputs, h_prev, extra_arrays):
        output, new_states, extra = step(z_steps.read(t), states)
        if on_steps is not None:
            on = on_steps.read(t)[:, None]
            new_states = tuple(tf.where(on, new, old) for new, old in zip(new_states, states, strict=True))
            output = tf.where(on, output, tf.zeros([], output.dtype) if zero_output_for_mask else previous)
        if sequences:
            outputs = outputs.write(t, output)
        h_prev = h_prev.write(t, states[0])
        extra_arrays = tuple(a.write(t, e) for a, e in zip(extra_arrays, extra, strict=True))
        return t + 1, new_states, output, outputs, h_prev, extra_arrays

    zeros = tf.zeros_like(states[0])
    outputs = array(zeros) if sequences else zeros[:0]
    _, final, last, outputs, h_prev, extra_arrays = tf.while_loop(
        lambda t, *_: t < count,
        body,
        (tf.constant(0), states, zeros, outputs, array(zeros), tuple(array(e) for e in extras)),
        maximum_iterations=count,
    )

    def batch_major(written):
        return tf.transpose(written.stack(), [1, 0, 2])

    output = batch_major(outputs) if sequences else last
    return output, batch_major(h_prev), tuple(batch_major(a) for a in extra_arrays), final


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
    GRURule(),
)
FALLBACK = VectorizedRule()


def rule_for(layer) -> LayerRule:
    """The first built-in rule that applies to ``layer``, else the vectorised fallback."""
    for rule in RULES:
        if rule.applies(layer):
            return rule
    return FALLBACK
