"""Layers written once, against a small backend interface, for both shares and cleartext.

`evaluate` runs an `Architecture` on a backend value. The secure backend
(`privacy.encrypted.secure.SecureBackend`) holds one party's shares; the cleartext simulation
(`privacy.encrypted.simulation.IntervalBackend`) holds integer bounds. Because both run this same
code, the simulation computes exactly the fixed-point arithmetic the parties compute.

Backend interface (values carry a leading batch axis):
    map(x, fn)               apply a linear index operation (reshape, pad with zeros, window, sum)
    linear(x, encoded)       x @ kernel + bias, truncated by f bits (x is 2-D)
    add_public(x, c)         x + public ring constant
    dot_public(x, c)         sum over the last axis of x * public ring constants, truncated by f bits
    relu(x), maximum(x)      exact ReLU; maximum over the last axis
    layer(name)              context manager around each layer (counters)
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.activations import KNOTS, pwl_coefficients
from privacy.encrypted.plan import Activation, Architecture, Conv2D, Dense, Pool2D, Reshape
from privacy.encrypted.ring import FixedPoint


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
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=(1, 2))[:, ::strides[0], ::strides[1]]
    n, h, w, c = view.shape[:4]
    return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(n, h, w, size[0] * size[1] * c)


def _dense(backend, layer: Dense, x, encoded, fixed):
    shape = backend.shape(x)
    flat = backend.map(x, lambda c: c.reshape(-1, shape[-1]))
    out = backend.linear(flat, encoded[layer.name])
    return backend.map(out, lambda c: c.reshape(shape[:-1] + (layer.units,)))


def _conv2d(backend, layer: Conv2D, x, encoded, fixed):
    patches = backend.map(x, lambda c: windows(c, layer.kernel_size, layer.strides, layer.padding))
    n, h, w, k = backend.shape(patches)
    out = backend.linear(backend.map(patches, lambda c: c.reshape(n * h * w, k)), encoded[layer.name])
    return backend.map(out, lambda c: c.reshape(n, h, w, layer.filters))


def _pool2d(backend, layer: Pool2D, x, encoded, fixed):
    channels = backend.shape(x)[-1]
    area = layer.pool_size[0] * layer.pool_size[1]

    def window_last(c):
        wins = windows(c, layer.pool_size, layer.strides, "valid")
        return wins.reshape(wins.shape[:3] + (area, channels)).swapaxes(-1, -2)

    wins = backend.map(x, window_last)
    if layer.kind == "max":
        return backend.maximum(wins)
    return backend.dot_public(wins, fixed.encode(np.full(area, 1.0 / area), what="pooling weights"))


def _reshape(backend, layer: Reshape, x, encoded, fixed):
    batch = backend.shape(x)[0]
    return backend.map(x, lambda c: c.reshape((batch,) + tuple(layer.target_shape)))


def _activation(backend, layer: Activation, x, encoded, fixed):
    if layer.function == "relu":
        return backend.relu(x)
    return sigmoid(backend, x, fixed)


def sigmoid(backend, x, fixed: FixedPoint):
    """The piecewise-linear sigmoid of `privacy.encrypted.activations` on a backend value."""
    constant, changes = pwl_coefficients()
    knots = fixed.encode(KNOTS, what="sigmoid knots")
    spread = backend.map(x, lambda c: np.repeat(c[..., None], len(KNOTS), axis=-1))
    ramps = backend.relu(backend.add_public(spread, -knots))
    return backend.add_public(backend.dot_public(ramps, fixed.encode(changes, what="sigmoid slopes")),
                              fixed.encode(constant, what="sigmoid constant"))


_APPLY = {Dense: _dense, Conv2D: _conv2d, Pool2D: _pool2d, Reshape: _reshape, Activation: _activation}


def evaluate(architecture: Architecture, encoded: dict, x, backend, fixed: FixedPoint):
    """Runs every layer of `architecture` on backend value `x` (logits out, no output activation)."""
    for layer in architecture.layers:
        with backend.layer(layer.name):
            x = _APPLY[type(layer)](backend, layer, x, encoded, fixed)
    return x
