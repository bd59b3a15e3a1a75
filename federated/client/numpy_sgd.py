"""Local SGD of Dense-layer stacks in numpy: the ``numpy`` execution.

For small dense models the cost of local training on CPU is TensorFlow's batched matrix product at
tiny shapes: per client, a [10, 784] x [784, 10] product costs about three times more in XLA (or
oneDNN) than in numpy's BLAS call (benchmarks/README.md, federated_throughput). This module
trains all clients of a call together with numpy's batched matrix products (threads release the
GIL inside them) and hand-written backpropagation, for the models where that backpropagation is
short and checkable: an input, optional Flatten layers, and Dense layers (linear, relu, tanh or
sigmoid; bias or not), ending in logits scored by sparse categorical cross-entropy. Results equal
the TensorFlow executions' up to float32 rounding (tests compare them), from the same
`BatchSchedule`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from federated.client.batches import BatchSchedule

_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")


@dataclasses.dataclass(frozen=True)
class _Dense:
    kernel: int  # position of the kernel in the model's trainable weights
    bias: int | None  # position of the bias, or None
    activation: str


class NumpyDenseSgd:
    """Minibatch SGD (with FedProx's proximal term) of a Dense stack, many clients at once.

    Args:
      model: a built Keras 3 model: input -> (Flatten | Dense)* with a linear last Dense layer.
      loss: the Keras loss object; must be SparseCategoricalCrossentropy(from_logits=True).

    Raises:
      ValueError: naming what the model or loss has that this execution does not cover.
    """

    def __init__(self, model, loss):
        import keras

        fix = "; use execution 'sequential' or 'vectorized'"
        config = loss.get_config()
        if (
            type(loss) is not keras.losses.SparseCategoricalCrossentropy
            or not config.get("from_logits")
            or config.get("ignore_class") is not None
        ):
            raise ValueError(
                f"the numpy execution covers SparseCategoricalCrossentropy(from_logits=True) only, "
                f"not {type(loss).__name__}({config}){fix}"
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(f"the numpy execution covers single-input, single-output models{fix}")
        position = {v.path: i for i, v in enumerate(model.trainable_variables)}
        self._input_shape = shape = tuple(model.inputs[0].shape[1:])
        layers = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, keras.layers.Flatten):
                shape = (int(np.prod(shape)),)
                continue
            if not isinstance(layer, keras.layers.Dense):
                raise ValueError(
                    f"the numpy execution covers Dense and Flatten layers, not {layer.name} "
                    f"({type(layer).__name__}){fix}"
                )
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else str(activation)
            if activation not in _ACTIVATIONS or getattr(layer, "lora_enabled", False):
                raise ValueError(
                    f"the numpy execution covers Dense activations {_ACTIVATIONS} without LoRA; "
                    f"layer {layer.name} has activation {activation!r}{fix}"
                )
            if len(shape) != 1:
                raise ValueError(
                    f"Dense layer {layer.name} sees inputs of shape {shape}; the numpy execution "
                    f"needs them flat (add a Flatten layer){fix}"
                )
            if layer.kernel.path not in position or (layer.use_bias and layer.bias.path not in position):
                raise ValueError(f"layer {layer.name} is frozen (not trainable){fix}")
            layers.append(
                _Dense(position[layer.kernel.path], position[layer.bias.path] if layer.use_bias else None, activation)
            )
            shape = (int(layer.units),)
        if not layers or layers[-1].activation != "linear":
            raise ValueError(f"the model must end in a Dense layer with linear activation (logits){fix}")
        if len(position) != sum(1 + (d.bias is not None) for d in layers):
            raise ValueError(f"the model has trainable weights outside its Dense layers{fix}")
        self._layers = tuple(layers)
        self._check_forward(model)

    def logits(self, weights, x: np.ndarray) -> np.ndarray:
        """Logits [..., batch, classes] of inputs x [..., batch, *input_shape] under ``weights``
        (each with the same leading client axes as x, or none)."""
        h = x.reshape(x.shape[: x.ndim - len(self._input_shape)] + (-1,))
        for layer in self._layers:
            h = self._apply(layer, weights, h)[1]
        return h

    def local_sgd(
        self, weights, x: np.ndarray, y: np.ndarray, schedule: BatchSchedule, learning_rate: float, proximal_mu: float
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Trains every client of ``schedule`` from the same ``weights`` (float32 arrays).

        Args:
          x, y: the dataset the schedule's rows index (x float32 [n, *input_shape], y int [n]).

        Returns:
          ([clients, *shape] float32 weights after each client's steps, [clients] mean loss per example
          processed, each batch's loss taken with the weights before its step).
        """
        global_w = [np.asarray(w, np.float32) for w in weights]
        w = [np.repeat(a[None], schedule.rows.shape[0], axis=0) for a in global_w]
        learning_rate, mu = np.float32(learning_rate), np.float32(proximal_mu)
        # Computed up front (small arrays): one-hot targets, and each slot's weight in its step's mean
        # loss, 1 / (examples in the step) or 0 for a masked slot.
        classes = w[self._layers[-1].kernel].shape[-1]
        labels = y[schedule.rows]
        if labels.size and labels.max() >= classes:
            raise ValueError(f"label {labels.max()} is not a class of the model's {classes} outputs")
        targets = np.eye(classes, dtype=np.float32)[labels]
        slot_weights = (schedule.mask / np.maximum(schedule.mask.sum(-1, keepdims=True), 1))[..., None]
        slot_weights = slot_weights.astype(np.float32)
        totals = np.zeros(len(w[0]), np.float64)
        counts = schedule.mask.sum(-1)  # [clients, max_steps] examples in each step
        with np.errstate(all="ignore"):  # a diverging client ends non-finite and is dropped by the caller
            for s in range(int(schedule.steps.max(initial=0))):
                live = schedule.steps > s
                if live.all():
                    totals += counts[:, s] * self._sgd_step(
                        w,
                        global_w,
                        np.take(x, schedule.rows[:, s], axis=0),
                        targets[:, s],
                        slot_weights[:, s],
                        learning_rate,
                        mu,
                    )
                    continue
                live = np.flatnonzero(live)  # clients done with their steps take no part (and cost nothing)
                part = [a[live] for a in w]
                totals[live] += counts[live, s] * self._sgd_step(
                    part,
                    global_w,
                    np.take(x, schedule.rows[live, s], axis=0),
                    targets[live, s],
                    slot_weights[live, s],
                    learning_rate,
                    mu,
                )
                for a, updated in zip(w, part, strict=True):
                    a[live] = updated
        return w, (totals / np.maximum(counts.sum(-1), 1)).astype(np.float32)

    def _sgd_step(self, w, global_w, x, targets, slot_weight, learning_rate, mu) -> np.ndarray:
        """One SGD step of every client in ``w`` (updated in place) on its batch x [clients, B, ...];
        returns each client's mean loss on the batch."""
        hs, zs = [x.reshape(x.shape[0], x.shape[1], -1)], []
        for layer in self._layers:
            z, h = self._apply(layer, w, hs[-1])
            zs.append(z)
            hs.append(h)
        losses, dz = _cross_entropy(zs[-1], targets, slot_weight)
        for i in reversed(range(len(self._layers))):
            layer = self._layers[i]
            if i > 0:  # before this layer's weights change
                dh = np.matmul(dz, w[layer.kernel].transpose(0, 2, 1))
            scaled = dz * learning_rate  # the step size applied to the small factor, not the product
            self._descend(w, global_w, layer.kernel, np.matmul(hs[i].transpose(0, 2, 1), scaled), learning_rate, mu)
            if layer.bias is not None:
                self._descend(w, global_w, layer.bias, scaled.sum(1), learning_rate, mu)
            if i > 0:
                dz = dh * _derivative(self._layers[i - 1].activation, zs[i - 1], hs[i])
        return losses

    # --- pieces ---------------------------------------------------------------------------------
    @staticmethod
    def _apply(layer: _Dense, w, h):
        z = np.matmul(h, w[layer.kernel])
        if layer.bias is not None:
            z += w[layer.bias][..., None, :]
        return z, _activate(layer.activation, z)

    @staticmethod
    def _descend(w, global_w, index, scaled_gradient, learning_rate, mu):
        """w[index] -= learning_rate * (gradient + mu (w - w_global)), given learning_rate * gradient."""
        if mu:
            scaled_gradient += (learning_rate * mu) * (w[index] - global_w[index])
        w[index] -= scaled_gradient

    def _check_forward(self, model) -> None:
        """Refuses a model whose own forward pass differs from this module's (e.g. a non-chain graph)."""
        probe = np.random.default_rng(0).normal(size=(4,) + self._input_shape).astype(np.float32)
        weights = [np.asarray(v.numpy(), np.float32) for v in model.trainable_variables]
        expected = np.asarray(model(probe, training=False))
        got = self.logits(weights, probe)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise ValueError(
                "the model's forward pass is not the chain of its Dense layers; "
                "use execution 'sequential' or 'vectorized'"
            )


def _cross_entropy(logits, targets, slot_weight):
    """Per client: (mean cross-entropy over the step's examples, its gradient wrt the logits).

    logits and one-hot targets [clients, B, classes]; slot_weight [clients, B, 1]: 1 / count for the
    step's examples, 0 for masked slots (which read one of the client's own examples, so they are
    finite whenever the client's are).
    """
    shifted = logits - logits.max(-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(-1, keepdims=True)
    per_example = np.log(total) - (shifted * targets).sum(-1, keepdims=True)
    gradient = (exp / total - targets) * slot_weight
    return (per_example * slot_weight).sum((1, 2)), gradient


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    return z


def _derivative(name: str, z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """d activation / dz, from the pre-activation z and the output h."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1 - h * h
    if name == "sigmoid":
        return h * (1 - h)
    return np.ones_like(z)
