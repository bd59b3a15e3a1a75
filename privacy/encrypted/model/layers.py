"""Layers written once, against a small backend interface, for both shares and intervals.

`evaluate` runs an `Architecture` on a backend value. The secure backend
(`privacy.encrypted.protocol.backend.SecureBackend`) holds one party's shares; the interval backend
(`privacy.encrypted.model.intervals.IntervalBackend`) holds exact integer bounds. Because both run this
same code, the interval analysis sees exactly the truncations and comparisons the parties perform, in
the same order, and proves a bound for each (`privacy.encrypted.model.ranges`).

Values are "narrow" (f fractional bits) or "wide" (2f, a product not yet truncated). Linear layers
take narrow values and return wide ones; everything else narrows its input first, so a truncation
happens exactly where a wide value is used.

Backend interface (values carry a leading batch axis):
    shape(x), map(x, fn)     shape; apply a linear index operation (reshape, pad with zeros, window, sum)
    narrow(x)                truncate a wide value by f bits (no-op on narrow values)
    linear(x, encoded)       x @ kernel + bias (x narrow and 2-D), wide
    add_public(x, c)         x + public constant c (encoded with f bits)
    dot_public(x, c)         sum over the last axis of x * public constants, narrowed
    add(x, y), sub(x, y), concat(xs)   elementwise sums; concatenation along the last axis
    constant(c)              a public integer array as a value (argmax indices)
    gate(x, values, strict)  [v * [x >= 0] for v in values] ([x > 0] if strict)
    bit(x, strict)           [x >= 0] ([x > 0]) as a bit (an output)
    layer(name)              context manager around each layer (counters, keys of the range plan)
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.model.activations import KNOTS, pwl_coefficients
from privacy.encrypted.model.plan import Activation, Architecture, Conv2D, Dense, Pool2D, Reshape
from privacy.encrypted.model.ring import FixedPoint


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], padding: str) -> np.ndarray:
    """Sliding windows of NHWC `x` as an (N, H', W', kh * kw * C) array in (kh, kw, C) order."""
    if padding == "same":
        pad_h = _same_padding(x.shape[1], size[0], strides[0])
        pad_w = _same_padding(x.shape[2], size[1], strides[1])
        x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=(1, 2))[:, :: strides[0], :: strides[1]]
    n, h, w, c = view.shape[:4]
    return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(n, h, w, size[0] * size[1] * c)


def _dense(backend, layer: Dense, x, encoded, fixed):
    x = backend.narrow(x)
    shape = backend.shape(x)
    flat = backend.map(x, lambda c: c.reshape(-1, shape[-1]))
    out = backend.linear(flat, encoded[layer.name])
    return backend.map(out, lambda c: c.reshape(shape[:-1] + (layer.units,)))


def _conv2d(backend, layer: Conv2D, x, encoded, fixed):
    x = backend.narrow(x)
    patches = backend.map(x, lambda c: windows(c, layer.kernel_size, layer.strides, layer.padding))
    n, h, w, k = backend.shape(patches)
    out = backend.linear(backend.map(patches, lambda c: c.reshape(n * h * w, k)), encoded[layer.name])
    return backend.map(out, lambda c: c.reshape(n, h, w, layer.filters))


def _pool2d(backend, layer: Pool2D, x, encoded, fixed):
    x = backend.narrow(x)
    channels = backend.shape(x)[-1]
    area = layer.pool_size[0] * layer.pool_size[1]

    def window_last(c):
        wins = windows(c, layer.pool_size, layer.strides, "valid")
        return wins.reshape(wins.shape[:3] + (area, channels)).swapaxes(-1, -2)

    wins = backend.map(x, window_last)
    if layer.kind == "max":
        return maximum(backend, wins)
    return backend.dot_public(wins, fixed.encode(np.full(area, 1.0 / area), what="pooling weights"))


def _reshape(backend, layer: Reshape, x, encoded, fixed):
    batch = backend.shape(x)[0]
    return backend.map(x, lambda c: c.reshape((batch,) + tuple(layer.target_shape)))


def _activation(backend, layer: Activation, x, encoded, fixed):
    x = backend.narrow(x)
    if layer.function == "relu":
        return relu(backend, x)
    return sigmoid(backend, x, fixed)


def relu(backend, x):
    """max(x, 0) exactly."""
    (out,) = backend.gate(x, [x])
    return out


def sigmoid(backend, x, fixed: FixedPoint):
    """The piecewise-linear sigmoid of `privacy.encrypted.model.activations` on a narrow backend value."""
    constant, changes = pwl_coefficients()
    knots = fixed.encode(KNOTS, what="sigmoid knots")
    spread = backend.map(x, lambda c: np.repeat(c[..., None], len(KNOTS), axis=-1))
    ramps = relu(backend, backend.add_public(spread, -knots))
    return backend.add_public(
        backend.dot_public(ramps, fixed.encode(changes, what="sigmoid slopes")),
        fixed.encode(constant, what="sigmoid constant"),
    )


def _halves(backend, x):
    pairs = backend.shape(x)[-1] // 2
    return (
        backend.map(x, lambda c: c[..., 0 : 2 * pairs : 2]),
        backend.map(x, lambda c: c[..., 1 : 2 * pairs : 2]),
        (
            lambda best: (
                backend.concat([best, backend.map(x, lambda c: c[..., -1:])]) if backend.shape(x)[-1] % 2 else best
            )
        ),
    )


def maximum(backend, x):
    """Maximum over the last axis by a tournament: max(a, b) = a + relu(b - a), ceil(log2 n) levels."""
    while backend.shape(x)[-1] > 1:
        left, right, finish = _halves(backend, x)
        x = finish(backend.add(left, relu(backend, backend.sub(right, left))))
    return backend.map(x, lambda c: c[..., 0])


def argmax(backend, x):
    """Index of the maximum over the last axis (first index on ties), as an integer value: a tournament,
    3 rounds per halving on shares."""
    index = backend.constant(np.broadcast_to(np.arange(backend.shape(x)[-1]), backend.shape(x)))
    while backend.shape(x)[-1] > 1:
        left, right, finish = _halves(backend, x)
        left_i, right_i, finish_i = _halves(backend, index)
        diff = backend.sub(right, left)
        gain, gain_i = backend.gate(diff, [diff, backend.sub(right_i, left_i)], strict=True)
        x, index = finish(backend.add(left, gain)), finish_i(backend.add(left_i, gain_i))
    return backend.map(index, lambda c: c[..., 0])


PAIRWISE_CLASSES = 16
"""Up to this many classes the label is a one-hot vector from all pairs compared at once (5 rounds on
shares, n(n-1)/2 comparisons); above, the index from the tournament (`argmax`)."""


def one_hot_argmax(backend, x):
    """A one-hot bit vector (batch, n) marking the maximum over the last axis (first index on ties).

    All differences x_i - x_j (i < j) are compared at once; gating the constant 1 by [x_i >= x_j] makes
    the bits values; i beats j if (i < j and x_i >= x_j) or (i > j and x_i > x_j), so the wins of i are
    sum_{j>i} [x_i >= x_j] + sum_{j<i} (1 - [x_j >= x_i]), a total order: exactly one i wins n - 1 times.
    """
    n = backend.shape(x)[-1]
    first, second = np.triu_indices(n, 1)
    diffs = backend.sub(backend.map(x, lambda c: c[..., first]), backend.map(x, lambda c: c[..., second]))
    (beats,) = backend.gate(diffs, [backend.constant(np.ones(backend.shape(diffs), dtype=np.int64))])
    won, lost = ((pair[:, None] == np.arange(n)).astype(np.int64) for pair in (first, second))
    wins = backend.sub(
        backend.map(beats, lambda c: c @ won.astype(c.dtype)), backend.map(beats, lambda c: c @ lost.astype(c.dtype))
    )
    return backend.bit(backend.add_public(wins, np.arange(n) - (n - 1)))


_APPLY = {Dense: _dense, Conv2D: _conv2d, Pool2D: _pool2d, Reshape: _reshape, Activation: _activation}


def evaluate(architecture: Architecture, encoded: dict, x, backend, fixed: FixedPoint):
    """Runs every layer of `architecture` on backend value `x` (logits out, no output activation)."""
    for layer in architecture.layers:
        with backend.layer(layer.name):
            x = _APPLY[type(layer)](backend, layer, x, encoded, fixed)
    return x


def label(backend, logits):
    """The predicted label: [logit > 0] for a single logit (a backend bit, batch,), a one-hot bit vector
    (batch, classes) for up to `PAIRWISE_CLASSES` classes, else the index of the maximum (batch,)."""
    with backend.layer("label"):
        classes = backend.shape(logits)[-1]
        if classes == 1:
            return backend.bit(backend.map(logits, lambda c: c[..., 0]), strict=True)
        return one_hot_argmax(backend, logits) if classes <= PAIRWISE_CLASSES else argmax(backend, logits)
