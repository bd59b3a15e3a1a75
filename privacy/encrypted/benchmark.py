"""Reference models and timing helpers for `ppml encrypted bench` and `benchmarks/encrypted_inference.py`.

The reference models are the ones the anchors were measured on: an MLP 784-128-128-10 with ReLUs,
and a small CNN (conv 5x5 stride 2 with 16 filters, ReLU, dense 100, ReLU, dense 10) on 28x28x1
inputs in [0, 1] (`reference_bounds`). Weights are random (Glorot-scaled, seeded): latency, rounds and
bytes do not depend on the weight values.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from privacy.encrypted.model.plan import Activation, Architecture, Conv2D, Dense, ModelPlan, Reshape
from privacy.encrypted.model.ranges import InputBounds

REFERENCE_MODELS = ("mlp", "cnn")


def _glorot(rng, shape, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def reference_plan(name: str, seed: int = 0) -> ModelPlan:
    """The MLP 784-128-128-10 ('mlp') or the small CNN ('cnn') with seeded random weights."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        sizes = [784, 128, 128, 10]
        layers, weights = [], {}
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(Dense(f"dense_{k}", fan_out))
            weights[f"dense_{k}"] = (_glorot(rng, (fan_in, fan_out), fan_in, fan_out), rng.normal(0, 0.05, fan_out))
            if k < len(sizes) - 2:
                layers.append(Activation(f"relu_{k}", "relu"))
        return ModelPlan(Architecture((784,), tuple(layers), "softmax"), weights)
    if name == "cnn":
        layers = (
            Conv2D("conv", 16, (5, 5), (2, 2), "valid"),
            Activation("conv.relu", "relu"),
            Reshape("flatten", (-1,)),
            Dense("dense_0", 100),
            Activation("dense_0.relu", "relu"),
            Dense("dense_1", 10),
        )
        weights = {
            "conv": (_glorot(rng, (5, 5, 1, 16), 25, 400), rng.normal(0, 0.05, 16)),
            "dense_0": (_glorot(rng, (2304, 100), 2304, 100), rng.normal(0, 0.05, 100)),
            "dense_1": (_glorot(rng, (100, 10), 100, 10), rng.normal(0, 0.05, 10)),
        }
        return ModelPlan(Architecture((28, 28, 1), layers, "softmax"), weights)
    raise ValueError(f"unknown reference model {name!r}; choose from {REFERENCE_MODELS}")


def reference_bounds(plan: ModelPlan) -> InputBounds:
    """Pixel intensities in [0, 1]: the input bounds the reference models are shared with."""
    return InputBounds.declared(0.0, 1.0, plan.architecture.input_shape)


def time_predictions(predictor, x: np.ndarray, *, repeats: int, warmup: int = 2) -> dict:
    """Median and min wall time of ``predictor.predict(x)`` plus its rounds and bytes (parties and client)."""
    for _ in range(warmup):
        predictor.predict(x)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(x)
        seconds.append(time.perf_counter() - start)
    cost = predictor.last_cost
    return {
        "batch": len(x),
        "median_ms": 1e3 * statistics.median(seconds),
        "min_ms": 1e3 * min(seconds),
        "rounds": cost.rounds,
        "bytes": cost.bytes,
        "client_bytes": cost.client_bytes,
        "repeats": repeats,
    }
