"""What is computed: a model as a public architecture plus (private) weights.

The architecture (layer kinds, shapes, strides) is public: every party knows it. The weights are
private: the model owner encodes them (`ModelPlan.encode`) and secret-shares the encodings; no server
ever sees `ModelPlan.weights`. `Architecture` round-trips through JSON (`to_dict` / `from_dict`).

Layer semantics follow Keras: NHWC images, kernels (kh, kw, in, out), 'valid' or 'same' padding with
TensorFlow's split of odd padding, Flatten in row-major order. Pooling windows use 'valid' padding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import numpy as np

from privacy import validation
from privacy.encrypted.model.ring import FixedPoint

OUTPUT_ACTIVATIONS = ("linear", "softmax", "sigmoid")


def pair(v) -> tuple[int, int]:
    return tuple(int(u) for u in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial output size of a convolution or pooling window along one axis (TensorFlow rules)."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


@dataclasses.dataclass(frozen=True)
class Dense:
    """y = x @ kernel + bias on the last axis."""

    name: str
    units: int

    def output_shape(self, shape: tuple) -> tuple:
        return shape[:-1] + (self.units,)


@dataclasses.dataclass(frozen=True)
class Conv2D:
    """2-D convolution (cross-correlation, as in Keras) of NHWC inputs, dilation 1, one group."""

    name: str
    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: str

    def output_shape(self, shape: tuple) -> tuple:
        h, w, _ = shape
        return (
            conv_output_size(h, self.kernel_size[0], self.strides[0], self.padding),
            conv_output_size(w, self.kernel_size[1], self.strides[1], self.padding),
            self.filters,
        )


@dataclasses.dataclass(frozen=True)
class Pool2D:
    """Max or average pooling of NHWC inputs over 'valid' windows."""

    name: str
    kind: str
    pool_size: tuple[int, int]
    strides: tuple[int, int]

    def output_shape(self, shape: tuple) -> tuple:
        h, w, c = shape
        return (
            conv_output_size(h, self.pool_size[0], self.strides[0], "valid"),
            conv_output_size(w, self.pool_size[1], self.strides[1], "valid"),
            c,
        )


@dataclasses.dataclass(frozen=True)
class Reshape:
    """Reshape of each example (Flatten is ``target_shape=(-1,)``)."""

    name: str
    target_shape: tuple

    def output_shape(self, shape: tuple) -> tuple:
        return tuple(np.empty(shape, dtype=np.uint8).reshape(self.target_shape).shape)


@dataclasses.dataclass(frozen=True)
class Activation:
    """Elementwise 'relu' (exact) or 'sigmoid' (piecewise linear, see `privacy.encrypted.model.activations`)."""

    name: str
    function: str

    def output_shape(self, shape: tuple) -> tuple:
        return shape


Layer = Union[Dense, Conv2D, Pool2D, Reshape, Activation]
_KINDS = {"dense": Dense, "conv2d": Conv2D, "pool2d": Pool2D, "reshape": Reshape, "activation": Activation}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The public description of a model: per-example input shape, layers, output activation.

    The output activation (softmax or sigmoid) is not computed on shares: the client applies it to the
    revealed logits, or the parties reveal only the predicted label.
    """

    input_shape: tuple
    layers: tuple
    output_activation: str = "linear"

    def __post_init__(self):
        validation.choice("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")

    def shapes(self) -> list[tuple]:
        """Per-example shapes: the input's, then each layer's output."""
        shapes = [tuple(self.input_shape)]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return shapes

    @property
    def output_shape(self) -> tuple:
        return self.shapes()[-1]

    def weight_shapes(self) -> dict[str, tuple[tuple, tuple]]:
        """``{layer: ((fan_in, units), (units,))}`` for every Dense and Conv2D: the encoded kernel and bias shapes."""
        out = {}
        for layer, shape in zip(self.layers, self.shapes()[:-1], strict=True):
            if isinstance(layer, Dense):
                out[layer.name] = ((shape[-1], layer.units), (layer.units,))
            elif isinstance(layer, Conv2D):
                fan_in = layer.kernel_size[0] * layer.kernel_size[1] * shape[-1]
                out[layer.name] = ((fan_in, layer.filters), (layer.filters,))
        return out

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "output_activation": self.output_activation,
            "layers": [dict(type=_KIND_OF[type(layer)], **dataclasses.asdict(layer)) for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        layers = []
        for spec in data["layers"]:
            spec = dict(spec)
            kind = _KINDS[spec.pop("type")]
            for key in ("kernel_size", "strides", "pool_size", "target_shape"):
                if key in spec:
                    spec[key] = tuple(spec[key])
            layers.append(kind(**spec))
        return cls(tuple(data["input_shape"]), tuple(layers), data["output_activation"])


@dataclasses.dataclass(frozen=True)
class EncodedLayer:
    """A linear layer's weights in the ring: kernel as a (fan_in, units) matrix with f fractional
    bits, bias with 2f fractional bits (it is added to products before truncation)."""

    kernel: np.ndarray
    bias: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """An architecture with its float weights ``{layer name: (kernel, bias)}`` (model owner only)."""

    architecture: Architecture
    weights: dict

    def __post_init__(self):
        for name, ((fan_in, units), bias_shape) in self.architecture.weight_shapes().items():
            kernel, bias = self.weights[name]
            if np.size(kernel) != fan_in * units or np.shape(bias) != bias_shape:
                raise ValueError(
                    f"layer {name!r}: kernel {np.shape(kernel)} / bias {np.shape(bias)} do not fit "
                    f"{fan_in} inputs -> {units} units"
                )

    def encode(self, fixed: FixedPoint) -> dict[str, EncodedLayer]:
        """Fixed-point encodings of all weights (kernels reshaped to (fan_in, units) matrices)."""
        out = {}
        for name, (kernel, bias) in self.weights.items():
            units = bias.shape[0]
            out[name] = EncodedLayer(
                fixed.encode(np.reshape(kernel, (-1, units)), what=f"kernel of {name!r}"),
                fixed.encode(bias, what=f"bias of {name!r}", frac_bits=2 * fixed.frac_bits),
            )
        return out
