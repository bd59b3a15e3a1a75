"""Turn a trained Keras model (Keras 3 or tf-keras; Sequential or chain-shaped Functional) into a `ModelPlan`.

Supported layers: InputLayer, Dense, Conv2D, AveragePooling2D, MaxPooling2D, Flatten, Reshape,
BatchNormalization (folded into the Dense or Conv2D right before it, which must have a linear
activation), Dropout (removed), Activation and ReLU (relu, sigmoid, linear; softmax only as the
model's last operation). Anything else raises `UnsupportedModelError` naming the layer.

A final softmax or sigmoid becomes the architecture's ``output_activation``: the parties compute the
logits and the client applies the activation in the clear (or only the label is revealed).
"""

from __future__ import annotations

import numpy as np

from privacy.encrypted.model.plan import Activation, Architecture, Conv2D, Dense, ModelPlan, Pool2D, Reshape, pair

HIDDEN_ACTIVATIONS = ("relu", "sigmoid")
SUPPORTED = (
    "InputLayer",
    "Dense",
    "Conv2D",
    "AveragePooling2D",
    "MaxPooling2D",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "Dropout",
    "Activation",
    "ReLU",
)


class UnsupportedModelError(ValueError):
    """The model uses a layer, option or topology the encrypted engine cannot run."""


def _fail(layer, why: str):
    raise UnsupportedModelError(f"layer {layer.name!r} ({type(layer).__name__}): {why}")


def _inbound_names(spec) -> list[str]:
    """Names of the layers feeding a layer, from its config's inbound_nodes (Keras 3 or tf-keras format)."""
    names = []
    if isinstance(spec, dict):
        if "keras_history" in spec:
            return [spec["keras_history"][0]]
        for value in spec.values():
            names += _inbound_names(value)
    elif isinstance(spec, (list, tuple)):
        if len(spec) >= 3 and isinstance(spec[0], str) and isinstance(spec[1], int):
            names.append(spec[0])
        else:
            for value in spec:
                names += _inbound_names(value)
    return names


def _chain(model) -> list:
    """The model's layers in order, checking that each one feeds only the next."""
    if type(model).__name__ == "Sequential":
        return [layer for layer in model.layers]
    config = model.get_config()
    layers = {layer.name: layer for layer in model.layers}
    previous = None
    ordered = []
    for spec in config["layers"]:
        layer = layers[spec["name"]]
        inbound = _inbound_names(spec.get("inbound_nodes", []))
        if previous is None:
            if inbound:
                _fail(layer, "the model must start with its input")
        elif inbound != [previous]:
            _fail(layer, f"takes inputs from {inbound}; only chains of single-input layers are supported")
        ordered.append(layer)
        previous = layer.name
    return ordered


def _weights(layer) -> tuple[np.ndarray, np.ndarray]:
    values = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    kernel = values[0]
    bias = values[1] if len(values) > 1 else np.zeros(kernel.shape[-1])
    return kernel, bias


def _activation_name(layer, name) -> str:
    name = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
    if name not in ("linear", "relu", "sigmoid", "softmax"):
        _fail(layer, f"activation {name!r} is not supported (relu, sigmoid, linear; softmax at the output)")
    return name


def _check_channels_last(layer, config):
    if config.get("data_format", "channels_last") != "channels_last":
        _fail(layer, f"data_format {config['data_format']!r}; only channels_last is supported")


def import_keras_model(model) -> ModelPlan:
    """Reads architecture and weights of a built Keras model.

    Args:
        model: a `keras.Model` (Keras 3) or `tf_keras.Model`, Sequential or Functional.

    Raises:
        UnsupportedModelError: naming the first layer, option or connection that cannot be run.
    """
    try:
        declared = model.input_shape
    except (AttributeError, ValueError):
        raise UnsupportedModelError(
            f"model {getattr(model, 'name', '?')!r} is not built (it has no input shape); "
            f"give it an Input layer or call it on data once"
        ) from None
    input_shape = tuple(declared[1:]) if not isinstance(declared, list) else None
    if input_shape is None or any(d is None for d in input_shape):
        raise UnsupportedModelError(f"model {model.name!r} needs one input with a fully known shape, got {declared}")
    ops, weights = [], {}
    last_linear = None  # name of a Dense/Conv2D whose output nothing has touched yet

    def activation(layer, name):
        nonlocal last_linear
        if name != "linear":
            ops.append(Activation(f"{layer.name}.{name}", name))
            last_linear = None

    for layer in _chain(model):
        kind, config = type(layer).__name__, layer.get_config()
        if kind not in SUPPORTED:
            _fail(layer, f"not supported; supported layers are {', '.join(SUPPORTED)}")
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind == "Dense":
            ops.append(Dense(layer.name, int(config["units"])))
            weights[layer.name] = _weights(layer)
            last_linear = layer.name
            activation(layer, _activation_name(layer, config.get("activation", "linear")))
        elif kind == "Conv2D":
            _check_channels_last(layer, config)
            if pair(config.get("dilation_rate", 1)) != (1, 1) or config.get("groups", 1) != 1:
                _fail(layer, "dilated or grouped convolutions are not supported")
            if config["padding"] not in ("valid", "same"):
                _fail(layer, f"padding {config['padding']!r} is not supported")
            ops.append(
                Conv2D(
                    layer.name,
                    int(config["filters"]),
                    pair(config["kernel_size"]),
                    pair(config["strides"]),
                    config["padding"],
                )
            )
            weights[layer.name] = _weights(layer)
            last_linear = layer.name
            activation(layer, _activation_name(layer, config.get("activation", "linear")))
        elif kind in ("AveragePooling2D", "MaxPooling2D"):
            _check_channels_last(layer, config)
            if config.get("padding", "valid") != "valid":
                _fail(layer, "only 'valid' padding is supported for pooling")
            pool = pair(config["pool_size"])
            strides = pair(config["strides"]) if config.get("strides") is not None else pool
            ops.append(Pool2D(layer.name, "max" if kind == "MaxPooling2D" else "avg", pool, strides))
            last_linear = None
        elif kind == "Flatten":
            ops.append(Reshape(layer.name, (-1,)))
            last_linear = None
        elif kind == "Reshape":
            ops.append(Reshape(layer.name, tuple(int(d) for d in config["target_shape"])))
            last_linear = None
        elif kind == "Activation":
            activation(layer, _activation_name(layer, config["activation"]))
        elif kind == "ReLU":
            if config.get("max_value") is not None or config.get("negative_slope", 0) or config.get("threshold", 0):
                _fail(layer, "only the plain ReLU (no max_value, negative_slope or threshold) is supported")
            activation(layer, "relu")
        else:  # BatchNormalization
            _fold_batch_norm(layer, config, last_linear, weights)
    output_activation = "linear"
    if ops and isinstance(ops[-1], Activation) and ops[-1].function in ("softmax", "sigmoid"):
        output_activation = ops.pop().function
    for op in ops:
        if isinstance(op, Activation) and op.function == "softmax":
            raise UnsupportedModelError(f"softmax ({op.name!r}) is only supported as the model's last operation")
    return ModelPlan(Architecture(input_shape, tuple(ops), output_activation), weights)


def _fold_batch_norm(layer, config, last_linear, weights):
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    rank = len(layer.input.shape) if hasattr(layer, "input") else None
    if axis not in (-1, (rank - 1) if rank else -1):
        _fail(layer, f"only normalization over the last axis can be folded, got axis={config.get('axis')}")
    if last_linear is None:
        _fail(layer, "can only be folded into a Dense or Conv2D with linear activation directly before it")
    values = {
        name: np.asarray(getattr(layer, name).numpy(), dtype=np.float64) for name in ("moving_mean", "moving_variance")
    }
    gamma = np.asarray(layer.gamma.numpy(), dtype=np.float64) if layer.gamma is not None else 1.0
    beta = np.asarray(layer.beta.numpy(), dtype=np.float64) if layer.beta is not None else 0.0
    scale = gamma / np.sqrt(values["moving_variance"] + float(config["epsilon"]))
    kernel, bias = weights[last_linear]
    weights[last_linear] = (kernel * scale, (bias - values["moving_mean"]) * scale + beta)
