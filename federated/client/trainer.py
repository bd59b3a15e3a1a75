"""Local training as compiled, stateless TensorFlow functions, traced once per process.

The Keras model is used only through ``model.stateless_call(weights, ...)``: weights go in and come
out as tensors, so one traced graph serves every client, round and hyperparameter setting (client
data shapes, E, B, learning rate and mu are all graph inputs). Two executions:

* ``sequential``: one call of the compiled local-SGD loop per client (any Keras model).
* ``vectorized``: the clients of a chunk are padded to a common size and trained together in one
  XLA-compiled graph (`tf.vectorized_map` over clients; masked losses make padding inert). It
  needs a model without non-trainable state and compiles once per (chunk size, padded size).

Both draw the same batches from the same seeds; their results agree to float32 rounding, not
bitwise, so a simulation records which one it used.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from federated.client.config import ClientConfig, ClientUpdate
from federated.weights import flatten

EXECUTIONS = ("sequential", "vectorized")


class ClientTrainer:
    """Trains one model architecture on client data.

    Args:
      model_fn: builds the (built) Keras 3 model; called once here. Weight order is
        ``model.trainable_variables``.
      loss: a Keras loss (instance or name); default sparse categorical cross-entropy on logits.
      execution: "sequential" or "vectorized" (see the module docstring).

    Raises:
      ValueError: for an unbuilt model, non-float32 weights or an unknown execution.
    """

    def __init__(self, model_fn: Callable, *, loss=None, execution: str = "sequential"):
        import keras  # pylint: disable=import-outside-toplevel
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
        self._tf = tf
        model = model_fn()
        if not model.built:
            raise ValueError("model_fn must return a built model (give it an Input layer or input_shape)")
        bad = [v.path for v in model.trainable_variables if v.dtype != "float32"]
        if bad:
            raise ValueError(f"trainable weights must be float32; these are not: {bad}")
        if execution == "vectorized" and model.non_trainable_variables:
            raise ValueError("vectorized execution needs a model without non-trainable state "
                             f"({[v.path for v in model.non_trainable_variables]}); use execution='sequential'")
        self.model = model
        self.execution = execution
        loss = keras.losses.get(loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        config = dict(loss.get_config(), reduction=None)
        self._loss = type(loss).from_config(config)
        self._from_logits = bool(config.get("from_logits", False))
        self._input_shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
        self._ntv = [v.value for v in model.non_trainable_variables]
        weight_specs = [tf.TensorSpec(v.shape, tf.float32) for v in model.trainable_variables]
        x_spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32)
        scalar = lambda dtype: tf.TensorSpec([], dtype)  # noqa: E731
        self._sequential = tf.function(self._local_sgd, input_signature=[
            weight_specs, x_spec, tf.TensorSpec([None], tf.int32), scalar(tf.int32), scalar(tf.int32),
            scalar(tf.float32), scalar(tf.float32), tf.TensorSpec([2], tf.int32)])
        chunk_x = tf.TensorSpec((None,) + x_spec.shape, tf.float32)
        self._vectorized = tf.function(self._local_sgd_vectorized, jit_compile=True, input_signature=[
            weight_specs, chunk_x, tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32),
            scalar(tf.int32), scalar(tf.int32), scalar(tf.float32), scalar(tf.float32),
            tf.TensorSpec([None, None, None], tf.int32)])
        self._epoch_orders = tf.function(
            lambda n, epochs, seed: tf.map_fn(lambda e: _permutation(tf, n, tf.random.experimental.stateless_fold_in(
                seed, e)), tf.range(epochs)), input_signature=[scalar(tf.int32), scalar(tf.int32),
                                                                tf.TensorSpec([2], tf.int32)])
        self._predict = tf.function(lambda w, x: self.model.stateless_call(w, self._ntv, x, training=False)[0],
                                    input_signature=[weight_specs, x_spec])

    # --- public ---------------------------------------------------------------------------------
    def initial_weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy(), np.float32) for v in self.model.trainable_variables]

    def train(self, weights: Sequence[np.ndarray], clients: Sequence[tuple[int, np.ndarray, np.ndarray]],
              config: ClientConfig, seeds: np.ndarray) -> list[ClientUpdate]:
        """Runs local training for each (position, x, y) in ``clients`` from ``weights``.

        Args:
          seeds: [len(clients), 2] int32 seeds of each client's batch shuffling.
        """
        if not clients:
            return []
        tf = self._tf
        w = [tf.constant(a, tf.float32) for a in weights]
        hyper = (tf.constant(config.epochs, tf.int32), tf.constant(config.batch_size or 0, tf.int32),
                 tf.constant(config.learning_rate, tf.float32), tf.constant(config.proximal_mu, tf.float32))
        global_flat = flatten(weights)
        if self.execution == "sequential":
            results = []
            for (position, x, y), seed in zip(clients, seeds):
                new, loss = self._sequential(w, tf.constant(x, tf.float32), tf.constant(y, tf.int32), *hyper,
                                             tf.constant(seed, tf.int32))
                results.append((position, [t.numpy() for t in new], float(loss), len(y)))
        else:
            # Pad to a power-of-two client count and width, so XLA compiles few shapes; padded clients
            # hold no examples and take no steps.
            sizes = np.zeros(_bucket(len(clients)), np.int32)
            sizes[:len(clients)] = [len(y) for _, _, y in clients]
            width = _bucket(int(sizes.max()))
            xs = np.zeros((sizes.size, width) + clients[0][1].shape[1:], np.float32)
            ys = np.zeros((sizes.size, width), np.int32)
            orders = np.zeros((sizes.size, config.epochs, width), np.int32)
            for k, ((_, x, y), seed) in enumerate(zip(clients, seeds)):
                xs[k, :len(y)], ys[k, :len(y)] = x, y
                orders[k, :, :len(y)] = self._epoch_orders(len(y), config.epochs, tf.constant(seed, tf.int32))
            new, losses = self._vectorized(w, tf.constant(xs), tf.constant(ys), tf.constant(sizes), *hyper,
                                           tf.constant(orders))
            new = [t.numpy() for t in new]
            results = [(position, [a[k] for a in new], float(losses[k]), int(sizes[k]))
                       for k, (position, _, _) in enumerate(clients)]
        return [ClientUpdate(delta=flatten(local) - global_flat, num_examples=n, loss=loss, position=position)
                for position, local, loss, n in results]

    def evaluate(self, weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray,
                 batch_size: int = 1024) -> dict[str, float]:
        """Mean loss and accuracy of ``weights`` on (x, y)."""
        tf = self._tf
        w = [tf.constant(a, tf.float32) for a in weights]
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = self._predict(w, tf.constant(xb, tf.float32))
            losses = self._loss(tf.constant(yb), out).numpy()
            loss_sum += float(np.sum(losses))
            out = out.numpy()
            if out.shape[-1] > 1:
                predicted = out.argmax(-1)
            else:
                predicted = (out[..., 0] > (0.0 if self._from_logits else 0.5)).astype(np.int64)
            correct += int(np.sum(predicted == yb))
        return {"loss": loss_sum / len(y), "accuracy": correct / len(y)}

    def time_per_client(self, weights, clients, config: ClientConfig, seeds) -> float:
        """Seconds per client of one warm call on ``clients`` (the first call, which traces, is not timed)."""
        self.train(weights, clients, config, seeds)
        start = time.perf_counter()
        self.train(weights, clients, config, seeds)
        return (time.perf_counter() - start) / len(clients)

    # --- graphs ---------------------------------------------------------------------------------
    def _batch_loss(self, w, w_global, ntv, xb, yb, mask, mu):
        tf = self._tf
        out, ntv = self.model.stateless_call(w, ntv, xb, training=True)
        per_example = self._loss(yb, out)
        loss = tf.reduce_sum(per_example * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        proximal = tf.add_n([tf.reduce_sum(tf.square(a - b)) for a, b in zip(w, w_global)])
        return loss, loss + 0.5 * mu * proximal, ntv

    def _local_sgd(self, w_global, x, y, epochs, batch_size, lr, mu, seed):
        tf = self._tf
        n = tf.shape(y)[0]
        bs = tf.where(batch_size > 0, tf.minimum(batch_size, n), n)
        steps_per_epoch = (n + bs - 1) // bs
        w, ntv, total = list(w_global), list(self._ntv), tf.constant(0.0)
        for epoch in tf.range(epochs):
            perm = _permutation(tf, n, tf.random.experimental.stateless_fold_in(seed, epoch))
            for step in tf.range(steps_per_epoch):
                idx = perm[step * bs:tf.minimum((step + 1) * bs, n)]
                xb, yb = tf.gather(x, idx), tf.gather(y, idx)
                with tf.GradientTape() as tape:
                    tape.watch(w)
                    loss, objective, ntv = self._batch_loss(w, w_global, ntv, xb, yb, tf.ones_like(idx, tf.float32),
                                                            mu)
                grads = tape.gradient(objective, w)
                w = [a - lr * g for a, g in zip(w, grads)]
                total += loss
        return w, total / tf.cast(epochs * steps_per_epoch, tf.float32)

    def _local_sgd_vectorized(self, w_global, xs, ys, sizes, epochs, batch_size, lr, mu, orders):
        tf = self._tf
        k, width = tf.shape(ys)[0], tf.shape(ys)[1]
        bs = tf.where(batch_size > 0, tf.minimum(batch_size, width), width)
        full = tf.maximum(tf.where(batch_size > 0, tf.minimum(batch_size, sizes), sizes), 1)  # per-client batch
        steps_per_epoch = (sizes + full - 1) // full
        w = [tf.repeat(a[None], k, axis=0) for a in w_global]
        totals = tf.zeros([k])

        def one_client(args):
            wk, xb, yb, mask = args
            with tf.GradientTape() as tape:
                tape.watch(wk)
                loss, objective, _ = self._batch_loss(list(wk), w_global, self._ntv, xb, yb, mask, mu)
            return tape.gradient(objective, wk), loss

        for step in tf.range(epochs * tf.reduce_max(steps_per_epoch)):
            epoch, j = step // steps_per_epoch, step % steps_per_epoch      # per client
            active = epoch < epochs
            perms = tf.gather(orders, tf.minimum(epoch, epochs - 1), batch_dims=1)   # [k, width]
            slots = j[:, None] * full[:, None] + tf.range(bs)[None, :]
            mask = (tf.range(bs)[None, :] < full[:, None]) & (slots < sizes[:, None]) & active[:, None]
            idx = tf.gather(perms, tf.minimum(slots, width - 1), batch_dims=1)
            grads, losses = tf.vectorized_map(one_client, (w, tf.gather(xs, idx, batch_dims=1),
                                                           tf.gather(ys, idx, batch_dims=1), tf.cast(mask, tf.float32)))
            scale = tf.where(active, lr, 0.0)
            w = [a - tf.reshape(scale, [-1] + [1] * (len(a.shape) - 1)) * g for a, g in zip(w, grads)]
            totals += tf.where(active, losses, 0.0)
        return w, totals / tf.cast(tf.maximum(epochs * steps_per_epoch, 1), tf.float32)


def _bucket(n: int) -> int:
    """The next power of two >= max(n, 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


def _permutation(tf, n, seed):
    """A seeded shuffle of 0..n-1 (the same op in both executions, so both draw the same batches)."""
    return tf.argsort(tf.random.stateless_uniform([n], seed), stable=True)
