"""Local training of a Keras model from weights given as arrays, traced once per shape bucket.

The Keras model is used only through ``model.stateless_call(weights, ...)``: weights go in and come
out as tensors, so one compiled graph serves every client, round and hyperparameter setting that
shares a shape bucket. A client is a vector of example indices into the dataset, which is converted
to tensors once (`train_clients`), so no client's data is copied per round. A whole local run
(E epochs of minibatch SGD) is one call of one XLA-compiled loop over a `BatchSchedule` (batches of
B slots, the last of an epoch masked) padded to E * ceil(width / B) steps, so the graph depends only
on B, E and the padded client size (the next power of two), never on the client. Three executions:

* ``sequential``: one call per client (any Keras model XLA can compile; otherwise a plain graph).
* ``vectorized``: the clients of a chunk (padded to a power of two) trained together in one call
  (`tf.vectorized_map` of the per-client gradient); it pays off when per-step overhead dominates
  (small models), not when the matrix products already fill the cores.
* ``numpy``: the clients of a chunk trained together by `NumpyDenseSgd` (numpy's BLAS products,
  no TensorFlow per step); Dense-layer stacks on logits only, the fastest for the smallest models.

All draw the same batches from the same seeds; their results agree to float32 rounding, not
bitwise, so a simulation records which one it used. Calls are thread-safe (the in-process runner
trains chunks on several threads).

Non-trainable state: constants (e.g. a `Normalization` layer's statistics) are used as they are;
a model whose training changes non-trainable state of any dtype (e.g. BatchNormalization's moving
statistics, an integer counter of the examples seen) is rejected (`privacy.training_state`: FedAvg here averages
trainable weights only). Seed generators' counters that training advances (Dropout) are carried through the local
steps (sequential only).
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np

from federated.client.batches import batch_schedule
from federated.client.config import ClientConfig, ClientUpdate
from federated.client.numpy_sgd import NumpyDenseSgd
from federated.weights import flatten
from privacy import training_state, validation

EXECUTIONS = ("sequential", "vectorized", "numpy")


class ClientTrainer:
    """Trains one model architecture on client data.

    Args:
      model_fn: builds the (built) Keras 3 model; called once here. Weight order is
        ``model.trainable_variables``.
      loss: a Keras loss (`keras.losses.Loss` instance or class name); default sparse categorical
        cross-entropy on logits.
      execution: "sequential", "vectorized" or "numpy" (see the module docstring).
      jit_compile: compile with XLA (True), as a plain TensorFlow graph (False), or XLA when the
        model compiles and a plain graph otherwise (None).

    Raises:
      ValueError: for an unbuilt model, non-float32 weights, training-updated non-trainable
        state (but seed generators' counters), an unknown execution, or a model or loss the execution does not cover.
    """

    def __init__(
        self, model_fn: Callable, *, loss=None, execution: str = "sequential", jit_compile: bool | None = None
    ):
        import keras
        import tensorflow as tf

        validation.choice("execution", execution, EXECUTIONS)
        self._tf = tf
        model = model_fn()
        if not model.built or not getattr(model, "inputs", None):
            raise ValueError("model_fn must return a built model with an Input layer (or input_shape)")
        bad = [v.path for v in model.trainable_variables if v.dtype != "float32"]
        if bad:
            raise ValueError(f"trainable weights must be float32; these are not: {bad}")
        self.model = model
        self.execution = execution
        self.jit_compile = jit_compile
        loss = keras.losses.get(loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(
                f"loss must be a keras.losses.Loss instance or a Loss class name (e.g. "
                f"'SparseCategoricalCrossentropy'), got {loss!r}"
            )
        config = dict(loss.get_config(), reduction=None)
        self._loss = type(loss).from_config(config)
        self._from_logits = bool(config.get("from_logits", False))
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._ntv = [v.value for v in model.non_trainable_variables]
        self._advancing = self._check_state(execution)
        self._numpy = NumpyDenseSgd(model, self._loss) if execution == "numpy" else None
        self._weight_specs = [tf.TensorSpec(v.shape, tf.float32) for v in model.trainable_variables]
        self._functions: dict = {}
        self._lock = threading.Lock()
        self._resident = None  # (ClientData, x, y) as this execution reads them
        x_spec = tf.TensorSpec((None,) + self._input_shape, tf.float32)
        self._predict = tf.function(
            lambda w, x: self.model.stateless_call(w, self._ntv, x, training=False)[0],
            input_signature=[self._weight_specs, x_spec],
        )

    # --- public ---------------------------------------------------------------------------------
    def initial_weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy(), np.float32) for v in self.model.trainable_variables]

    def train(
        self,
        weights: Sequence[np.ndarray],
        clients: Sequence[tuple[int, np.ndarray, np.ndarray]],
        config: ClientConfig,
        seeds: np.ndarray,
    ) -> list[ClientUpdate]:
        """Runs local training for each (id, x, y) in ``clients`` from ``weights`` (arrays given here).

        Args:
          seeds: [len(clients), 2] non-negative integer seeds of each client's batch shuffling.
        """
        if not clients:
            return []
        sizes = [len(y) for _, _, y in clients]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        x, y = self._as_read(
            np.concatenate([np.asarray(c[1], np.float32) for c in clients]),
            np.concatenate([np.asarray(c[2]) for c in clients]),
        )
        indexed = [(c[0], np.arange(starts[k], starts[k + 1])) for k, c in enumerate(clients)]
        return self._train(weights, x, y, indexed, config, seeds)

    def train_clients(
        self,
        weights: Sequence[np.ndarray],
        data,
        clients: Sequence[tuple[int, int]],
        config: ClientConfig,
        seeds: np.ndarray,
    ) -> list[ClientUpdate]:
        """Like `train`, for (id, position) pairs of ``data`` (a `ClientData`), which is converted to
        tensors once and then read by index."""
        if not clients:
            return []
        with self._lock:
            if self._resident is None or self._resident[0] is not data:
                self._resident = (data, *self._as_read(data.x, data.y))
            x, y = self._resident[1:]
        return self._train(weights, x, y, [(i, data.partition.indices[p]) for i, p in clients], config, seeds)

    def evaluate(
        self, weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray, batch_size: int = 1024
    ) -> dict[str, float]:
        """Mean loss and accuracy of ``weights`` on (x, y) (NaN for no rows)."""
        if len(y) == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        tf = self._tf
        w = [tf.constant(a, tf.float32) for a in weights]
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
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

    def tracing_count(self) -> int:
        """Graphs traced so far (one per shape bucket, never one per client)."""
        return sum(f.experimental_get_tracing_count() for f in self._functions.values())

    # --- driving the graphs ---------------------------------------------------------------------
    def _as_read(self, x, y):
        """(x float32, y int32) as this execution reads them: numpy arrays or TensorFlow tensors."""
        if self.execution == "numpy":
            return np.asarray(x, np.float32), np.asarray(y, np.int32)
        return self._tf.constant(x, self._tf.float32), self._tf.constant(y, self._tf.int32)

    def _train(self, weights, x, y, clients, config, seeds):
        tf = self._tf
        sizes = np.array([len(ix) for _, ix in clients], np.int32)
        if sizes.min() < 1:
            raise ValueError(f"client {clients[int(np.argmin(sizes))][0]} has no examples")
        width = _bucket(int(sizes.max()))
        batch = width if config.batch_size is None else min(config.batch_size, width)
        rows = _bucket(len(clients)) if self.execution == "vectorized" else len(clients)
        schedule = batch_schedule(
            [ix for _, ix in clients],
            seeds,
            epochs=config.local_epochs,
            batch=batch,
            width=width,
            clients=rows,
            shuffle=config.shuffle,
        )
        if self.execution == "numpy":
            new, losses = self._numpy.local_sgd(weights, x, y, schedule, config.learning_rate, config.proximal_mu)
        else:
            w = [tf.constant(a, tf.float32) for a in weights]
            hyper = (tf.constant(config.learning_rate, tf.float32), tf.constant(config.proximal_mu, tf.float32))
            parts = (schedule.rows, schedule.mask, schedule.steps)
            key = (self.execution, schedule.rows.shape[1], batch, config.proximal_mu > 0)
            if self.execution == "sequential":
                calls = [self._call(key, w, x, y, *(tf.constant(a[k]) for a in parts), *hyper) for k in range(rows)]
                new = [np.stack([call[0][i].numpy() for call in calls]) for i in range(len(w))]
                losses = np.array([float(call[1]) for call in calls])
            else:
                new, losses = self._call(key + (rows,), w, x, y, *(tf.constant(a) for a in parts), *hyper)
                new, losses = [t.numpy() for t in new], losses.numpy()
        global_flat = flatten(weights)
        return [
            ClientUpdate(
                delta=flatten([a[k] for a in new]) - global_flat,
                num_examples=int(sizes[k]),
                loss=float(losses[k]),
                position=ident,
            )
            for k, (ident, _) in enumerate(clients)
        ]

    def _call(self, key, *args):
        """Calls the function of a shape bucket, traced (and compiled) once. With ``jit_compile=None``
        a bucket whose first XLA call fails is rebuilt as a plain graph (an op without an XLA kernel)."""
        with self._lock:
            if key not in self._functions:
                self._functions[key] = self._build(key, self.jit_compile is not False)
                first = True
            else:
                first = False
            function = self._functions[key]
            if first and self.jit_compile is None:  # compile under the lock: concurrent callers wait
                try:
                    return function(*args)
                except (self._tf.errors.InvalidArgumentError, self._tf.errors.UnimplementedError):
                    function = self._functions[key] = self._build(key, False)
        return function(*args)

    def _build(self, key, jit_compile: bool):
        tf = self._tf
        scalar = tf.TensorSpec([], tf.float32)
        data_specs = [tf.TensorSpec((None,) + self._input_shape, tf.float32), tf.TensorSpec([None], tf.int32)]
        execution, max_steps, batch, proximal = key[:4]
        clients = list(key[4:])  # [rows] when vectorized, [] when sequential
        schedule_specs = [
            tf.TensorSpec(clients + [max_steps, batch], tf.int32),
            tf.TensorSpec(clients + [max_steps, batch], tf.bool),
            tf.TensorSpec(clients, tf.int32),
        ]
        local_sgd = self._local_sgd if execution == "sequential" else self._local_sgd_vectorized
        return tf.function(
            lambda *args: local_sgd(*args, proximal=proximal),
            input_signature=[self._weight_specs, *data_specs, *schedule_specs, scalar, scalar],
            jit_compile=jit_compile,
        )

    # --- graphs ---------------------------------------------------------------------------------
    def _check_state(self, execution) -> bool:
        """Rejects non-trainable state that one training step changes (`privacy.training_state.changed_state`:
        all but seed generators' counters); True if such a counter advances."""
        if not self._ntv:
            return False
        tf = self._tf
        x = tf.constant(np.random.default_rng(0).normal(size=(4,) + self._input_shape), tf.float32)
        w = [v.value for v in self.model.trainable_variables]
        _, after = self.model.stateless_call(w, self._ntv, x, training=True)
        changed = [
            (v, b)
            for v, a, b in zip(self.model.non_trainable_variables, self._ntv, after, strict=True)
            if not np.array_equal(np.asarray(a), np.asarray(b))
        ]
        refused = training_state.changed_state(
            self.model.non_trainable_variables, self._ntv, after, seeds=training_state.seed_states(self.model), steps=1
        )
        if refused:
            raise ValueError(training_state.updated_state_error(refused))
        if changed and execution == "vectorized":
            raise ValueError(
                f"vectorized execution cannot carry per-client random state "
                f"{[v.path for v, _ in changed]} (e.g. Dropout); use execution='sequential'"
            )
        return bool(changed)

    def _masked_loss(self, w, w_global, ntv, xb, yb, mask, mu):
        """(mean loss over the unmasked examples, objective with FedProx's term (none when ``mu`` is
        None), new non-trainable state)."""
        tf = self._tf
        out, ntv = self.model.stateless_call(w, ntv, xb, training=True)
        per_example = tf.where(mask, self._loss(yb, out), 0.0)
        loss = tf.reduce_sum(per_example) / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)
        if mu is None:
            return loss, loss, ntv
        proximal = tf.add_n([tf.reduce_sum(tf.square(a - b)) for a, b in zip(w, w_global, strict=True)])
        return loss, loss + 0.5 * mu * proximal, ntv

    def _local_sgd(self, w_global, x, y, rows, mask, steps, lr, mu, *, proximal):
        tf = self._tf
        mu = mu if proximal else None

        def step(s, w, ntv, total):
            with tf.GradientTape() as tape:
                tape.watch(w)
                loss, objective, new_ntv = self._masked_loss(
                    w, w_global, ntv, tf.gather(x, rows[s]), tf.gather(y, rows[s]), mask[s], mu
                )
            grads = tape.gradient(objective, w)
            return (
                s + 1,
                [a - lr * g for a, g in zip(w, grads, strict=True)],
                list(new_ntv) if self._advancing else ntv,
                total + loss * tf.reduce_sum(tf.cast(mask[s], tf.float32)),
            )

        _, w, _, total = tf.while_loop(
            lambda s, *_: s < steps, step, (tf.constant(0), list(w_global), list(self._ntv), tf.constant(0.0))
        )
        return w, total / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)

    def _local_sgd_vectorized(self, w_global, x, y, rows, mask, steps, lr, mu, *, proximal):
        tf = self._tf
        mu = mu if proximal else None
        k = rows.shape[0]
        w = [tf.repeat(a[None], k, axis=0) for a in w_global]

        def one_client(args):
            wk, xb, yb, mask_k = args
            with tf.GradientTape() as tape:
                tape.watch(wk)
                loss, objective, _ = self._masked_loss(list(wk), w_global, self._ntv, xb, yb, mask_k, mu)
            return tape.gradient(objective, wk), loss

        def step(s, w, totals):
            active = s < steps
            batch_rows = rows[:, s]
            grads, losses = tf.vectorized_map(
                one_client, (w, tf.gather(x, batch_rows), tf.gather(y, batch_rows), mask[:, s] & active[:, None])
            )
            scale = tf.where(active, lr, 0.0)
            w = [a - tf.reshape(scale, [-1] + [1] * (len(a.shape) - 1)) * g for a, g in zip(w, grads, strict=True)]
            counts = tf.reduce_sum(tf.cast(mask[:, s] & active[:, None], tf.float32), axis=1)
            return s + 1, w, totals + tf.where(active, losses * counts, 0.0)

        _, w, totals = tf.while_loop(lambda s, *_: s < tf.reduce_max(steps), step, (tf.constant(0), w, tf.zeros([k])))
        return w, totals / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32), axis=[1, 2]), 1.0)


def _bucket(n: int) -> int:
    """The next power of two >= max(n, 1)."""
    return 1 << max(0, int(n) - 1).bit_length()
