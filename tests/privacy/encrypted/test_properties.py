"""Properties over random models, bounds and inputs (seeded, 40 models).

Inside the declared bounds, the encrypted logits lie bit for bit inside the exact interval simulation of
the fixed-point computation, and the real-valued computation with the quantized weights, inputs and
constants lies in the same interval: encrypted and plaintext differ by at most the fixed-point error
that interval measures (and by little in absolute terms); revealed labels are ones the interval allows.
Outside the bounds, the client refuses before anything is shared: no party runs.
"""

import numpy as np
import pytest

from privacy.encrypted import InProcessCluster, InputBounds, InputOutOfBounds, ModelRangeError, simulate
from privacy.encrypted.model.activations import KNOTS, pwl_coefficients
from privacy.encrypted.model.layers import windows
from privacy.encrypted.model.plan import Activation, Architecture, Conv2D, Dense, ModelPlan, Pool2D, Reshape
from privacy.encrypted.protocol.client import encode_input

MODELS = 40


def random_plan(rng) -> ModelPlan:
    """A random chain: Dense layers on vectors, or Conv2D/pooling on images then Dense; relu or sigmoid."""
    layers, weights = [], {}

    def weighted(name, fan_in, units, shape):
        weights[name] = (rng.normal(0, 1 / np.sqrt(fan_in), size=shape), rng.normal(0, 0.1, size=units))

    def activation(name):
        if rng.random() < 0.8:
            layers.append(Activation(f"{name}.act", str(rng.choice(["relu", "relu", "sigmoid"]))))

    if rng.random() < 0.5:
        width = int(rng.integers(2, 12))
        input_shape, size = (width,), width
    else:
        side, channels = int(rng.integers(5, 9)), int(rng.integers(1, 3))
        input_shape = (side, side, channels)
        filters, kernel = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride, padding = int(rng.integers(1, 3)), str(rng.choice(["valid", "same"]))
        conv = Conv2D("conv", filters, (kernel, kernel), (stride, stride), padding)
        layers.append(conv)
        weighted("conv", kernel * kernel * channels, filters, (kernel, kernel, channels, filters))
        activation("conv")
        shape = conv.output_shape(input_shape)
        if min(shape[:2]) >= 2 and rng.random() < 0.7:
            pool = Pool2D("pool", str(rng.choice(["max", "avg"])), (2, 2), (2, 2))
            layers.append(pool)
            shape = pool.output_shape(shape)
        layers.append(Reshape("flatten", (-1,)))
        size = int(np.prod(shape))
    for k in range(int(rng.integers(1, 3))):
        units = int(rng.integers(2, 10))
        layers.append(Dense(f"dense_{k}", units))
        weighted(f"dense_{k}", size, units, (size, units))
        activation(f"dense_{k}")
        size = units
    layers.append(Dense("logits", int(rng.integers(1, 5))))
    weighted("logits", size, layers[-1].units, (size, layers[-1].units))
    return ModelPlan(Architecture(input_shape, tuple(layers)), weights)


def forward(plan: ModelPlan, x: np.ndarray, weights: dict, q=lambda v: np.asarray(v, dtype=np.float64)) -> np.ndarray:
    """The model in float64 (hidden sigmoids piecewise linear, as the protocol computes them); `q` rounds
    the public constants (pooling weights, sigmoid knots and slopes) as the protocol encodes them."""
    for layer in plan.architecture.layers:
        if isinstance(layer, Dense):
            kernel, bias = weights[layer.name]
            x = x @ np.reshape(kernel, (x.shape[-1], -1)) + bias
        elif isinstance(layer, Conv2D):
            kernel, bias = weights[layer.name]
            patches = windows(x, layer.kernel_size, layer.strides, layer.padding)
            x = patches @ np.reshape(kernel, (-1, layer.filters)) + bias
        elif isinstance(layer, Pool2D):
            wins = windows(x, layer.pool_size, layer.strides, "valid")
            wins = wins.reshape(wins.shape[:3] + (layer.pool_size[0] * layer.pool_size[1], x.shape[-1]))
            area = wins.shape[3]
            x = (wins.max(axis=3) if layer.kind == "max"
                 else np.einsum("...kc,k->...c", wins, q(np.full(area, 1 / area))))
        elif isinstance(layer, Reshape):
            x = x.reshape((len(x),) + tuple(layer.target_shape))
        elif layer.function == "relu":
            x = np.maximum(x, 0)
        else:
            constant, changes = pwl_coefficients()
            x = q(constant) + np.maximum(x[..., None] - q(KNOTS), 0) @ q(changes)
    return x


@pytest.mark.parametrize("seed", range(MODELS))
def test_random_models_inside_and_outside_their_bounds(seed):
    rng = np.random.default_rng(seed)
    plan = random_plan(rng)
    shape = plan.architecture.input_shape
    lo = rng.uniform(-3, 0, size=shape) if rng.random() < 0.5 else np.full(shape, -rng.uniform(0, 3))
    hi = lo + rng.uniform(0.1, 4, size=shape)
    bounds = InputBounds.declared(lo, hi, shape)
    try:
        cluster = InProcessCluster(plan, bounds)
    except ModelRangeError:  # must not happen for these small models: they fit the ring easily
        pytest.fail("a small random model was refused")
    fixed = cluster.fixed
    x = rng.uniform(lo, hi, size=(12,) + shape)
    x[0], x[1] = lo, hi  # the corners are inside
    got = cluster.predict(x)

    sim = simulate(plan.architecture, plan.encode(fixed), encode_input(x, shape, fixed), fixed)
    frac = (2 if sim.logits.wide else 1) * fixed.frac_bits
    integers = np.rint(got.logits * 2.0 ** frac).astype(np.int64)
    assert sim.logits.contains(integers).all()
    # The exact computation on the quantized weights and inputs lies in the same interval.
    quantized = {name: (fixed.decode(fixed.encode(k)), fixed.decode(fixed.encode(b, frac_bits=2 * fixed.frac_bits),
                                                                     frac_bits=2 * fixed.frac_bits))
                 for name, (k, b) in plan.weights.items()}
    exact = forward(plan, fixed.decode(encode_input(x, shape, fixed)), quantized,
                    lambda v: fixed.decode(fixed.encode(v))) * 2.0 ** frac
    slack = 1e-6 * (1 + np.abs(exact))  # float rounding of the reference itself
    assert np.all(sim.logits.lo.astype(np.float64) - slack <= exact)
    assert np.all(exact <= sim.logits.hi.astype(np.float64) + slack)
    width = (sim.logits.hi - sim.logits.lo).astype(np.float64) / 2.0 ** frac
    assert np.all(np.abs(got.logits - exact / 2.0 ** frac) <= width + 1e-9)
    assert np.abs(got.logits - forward(plan, x, plan.weights)).max() < 0.05
    labels = cluster.predict(x, output="label").labels  # a label some run of the protocol could give
    assert sim.possible_labels()[np.arange(len(x)), labels].all()

    # Outside the bounds (one feature just past an edge): refused before any party runs.
    sessions = cluster.parties._session
    outside = x[:2].copy()
    index = tuple(int(rng.integers(d)) for d in shape)
    outside[(1,) + index] = hi[index] + 1e-3 if rng.random() < 0.5 else lo[index] - 1e-3
    with pytest.raises(InputOutOfBounds, match="refused before sharing"):
        cluster.predict(outside)
    assert cluster.parties._session == sessions
