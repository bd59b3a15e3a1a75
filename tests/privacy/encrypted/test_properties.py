"""Properties over random models, bounds and inputs (seeded, 40 models).

Inside the declared bounds, the encrypted logits lie bit for bit inside the exact interval simulation of
the fixed-point computation, and the real-valued computation with the quantized weights, inputs and
constants lies in the same interval: encrypted and plaintext differ by at most the fixed-point error
that interval measures (and by little in absolute terms); revealed labels are ones the interval allows.
Outside the bounds, the client refuses before anything is shared: no party runs. At the edge of the ring
(logits of about 2^63 in their 2f fractional bits), released logits are exact or their release is refused.
"""

import dataclasses

import numpy as np
import pytest

from privacy.encrypted import (
    InProcessCluster,
    InputBounds,
    InputOutOfBounds,
    LogitsOutOfRange,
    ModelRangeError,
    simulate,
)
from privacy.encrypted.model.activations import KNOTS, pwl_coefficients
from privacy.encrypted.model.layers import windows
from privacy.encrypted.model.plan import Activation, Architecture, Conv2D, Dense, ModelPlan, Pool2D, Reshape
from privacy.encrypted.model.ring import as_signed
from privacy.encrypted.protocol.client import encode_input
from privacy.encrypted.protocol.shares import reconstruct, share

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
            x = (
                wins.max(axis=3)
                if layer.kind == "max"
                else np.einsum("...kc,k->...c", wins, q(np.full(area, 1 / area)))
            )
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
    bounds = InputBounds.declared(lo, hi, shape, input_check="exact")
    try:
        cluster = InProcessCluster(plan, bounds, allow_logits=True)
    except ModelRangeError:  # must not happen for these small models: they fit the ring easily
        pytest.fail("a small random model was refused")
    fixed = cluster.fixed
    x = rng.uniform(lo, hi, size=(12,) + shape)
    x[0], x[1] = lo, hi  # the corners are inside
    got = cluster.predict(x, output="logits")

    encoded = encode_input(x, shape, fixed, cluster.ranges)  # as the client: the corners take grid values inside
    sim = simulate(plan.architecture, plan.encode(fixed), encoded, fixed)
    frac = (2 if sim.logits.wide else 1) * fixed.frac_bits
    integers = np.rint(got.logits * 2.0**frac).astype(np.int64)
    assert np.array_equal(integers, sim.logits.point)  # exact truncation: the fixed-point model, bit for bit
    assert sim.logits.contains(integers).all()
    assert np.abs(got.logits - forward(plan, x, plan.weights)).max() < 0.05
    labels = cluster.predict(x, output="label").labels
    point = sim.logits.point.astype(np.int64)
    assert np.array_equal(labels, (point[:, 0] > 0) if point.shape[1] == 1 else point.argmax(axis=1))

    # Outside the bounds (one feature just past an edge): refused before any party runs.
    sessions = cluster.parties._session
    outside = x[:2].copy()
    index = tuple(int(rng.integers(d)) for d in shape)
    outside[(1,) + index] = hi[index] + 1e-3 if rng.random() < 0.5 else lo[index] - 1e-3
    with pytest.raises(InputOutOfBounds, match="refused before sharing"):
        cluster.predict(outside)
    assert cluster.parties._session == sessions
    # The same input shared without the library's check: the servers refuse it and release nothing.
    encoded = fixed.encode(outside, what="input")
    refused = [r for r in cluster.run_shares(share(encoded), "logits") if r.refused is not None]
    assert refused and all(r.values is None for r in refused)
    assert "outside the bounds" in refused[0].refused


def exact_logits(weights, x, frac_bits: int) -> list:
    """One Dense layer in Python integers (no ring): the logits in 2f fractional bits, rounding as the encoding."""
    kernel, bias = weights
    enc = lambda v, bits: [int(round(float(e) * 2**bits)) for e in np.ravel(v)]  # noqa: E731
    k = np.reshape(enc(kernel, frac_bits), np.shape(kernel))
    return [
        [
            sum(xi * int(k[i, j]) for i, xi in enumerate(enc(row, frac_bits))) + b
            for j, b in enumerate(enc(bias, 2 * frac_bits))
        ]
        for row in x
    ]


@pytest.mark.parametrize("seed", range(24))
def test_logits_at_the_edge_of_the_ring_are_exact_or_their_release_is_refused(seed):
    """Dense models whose logits reach about 2^63 (the edge of what a 64-bit ring element reads back as).
    Logits are released only if every logit over the input box fits [-2^63, 2^63); then they are exact at
    the box's corners (the extremes). Otherwise allowing logits is refused, while labels stay exact."""
    rng = np.random.default_rng(1000 + seed)
    features, units = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    # Weights near the largest the encoding takes, common to all units (the differences of the logits,
    # which labels compare, stay small); the box is scaled so that the extreme logit is 2^31 (2^63 in the
    # logits' 2f = 32 fractional bits) within a relative 2^-12, above or below. The box is narrow (some
    # features constant): the label head's comparisons bound differences of logits by interval arithmetic.
    shared = rng.choice([-1.0, 1.0], size=features) * rng.uniform(0.5, 0.9, size=features) * 2.0**30
    kernel = shared[:, None] + rng.normal(size=(features, units))
    bias = np.full(units, rng.uniform(-(2.0**29), 2.0**29))
    sign = rng.choice([-1.0, 1.0])
    lo = sign * np.sign(shared) * rng.uniform(0.5, 1, size=features)
    hi = lo + rng.choice([0.0, 1.0], size=features) * rng.uniform(0, 2.0**-5, size=features)
    extreme = np.sum(np.maximum(shared * lo, shared * hi) if sign > 0 else np.minimum(shared * lo, shared * hi))
    scale = (sign * 2.0**31 * (1 + rng.uniform(-(2.0**-12), 2.0**-12)) - bias[0]) / extreme
    lo, hi = np.rint(lo * scale * 2.0**16) / 2.0**16, np.rint(hi * scale * 2.0**16) / 2.0**16  # on the grid
    plan = ModelPlan(Architecture((features,), (Dense("out", units),)), {"out": (kernel, bias)})
    bounds = InputBounds.declared(lo, hi, (features,))
    corners = np.array([[hi[i] if (c >> i) & 1 else lo[i] for i in range(features)] for c in range(2**features)])
    exact = exact_logits(plan.weights["out"], corners, 16)
    fits = all(-(2**63) <= v < 2**63 for row in exact for v in row)  # a Dense layer's extremes are at corners

    labels_only = InProcessCluster(plan, bounds)
    assert np.array_equal(labels_only.predict(corners).labels, np.argmax(np.array(exact, dtype=object), axis=1))
    if not fits:
        with pytest.raises(LogitsOutOfRange, match="allow_logits=False"):
            InProcessCluster(plan, bounds, allow_logits=True)
        return
    cluster = InProcessCluster(plan, bounds, allow_logits=True)
    assert cluster.ranges.output_bits == 63
    outputs = cluster.run_shares(share(encode_input(corners, (features,), cluster.fixed)), "logits")
    got = as_signed(reconstruct([np.asarray(s.values, dtype=np.uint64) for s in outputs]))
    assert [[int(v) for v in row] for row in got] == exact  # bit for bit, no wrap
    assert max(abs(v) for row in exact for v in row) >= 2**62
    np.testing.assert_allclose(
        cluster.predict(corners, output="logits").logits, np.array(exact, dtype=np.float64) / 2.0**32, rtol=1e-12
    )


def test_logits_that_wrap_the_ring_are_refused_with_the_setting_to_change():
    """Review case: kernel 2^30 on a constant feature plus bias 2^30 gives logits of 2^63 (in 2f bits),
    which read back as -2^63 from the ring."""
    kernel, bias = np.array([[2.0**30, 2.0**30], [1.0, -1.0]]), np.array([2.0**30, 2.0**30])
    plan = ModelPlan(Architecture((2,), (Dense("d1", 2),), "softmax"), {"d1": (kernel, bias)})
    bounds = InputBounds.declared([1.0, 0.0], [1.0, 1.0], (2,))
    with pytest.raises(LogitsOutOfRange, match=r"64 bits.*allow_logits=False, no --allow-logits"):
        InProcessCluster(plan, bounds, allow_logits=True)
    labels_only = InProcessCluster(plan, bounds)
    assert np.array_equal(labels_only.predict([[1.0, 0.25], [1.0, 0.75]]).labels, [0, 0])
    with pytest.raises(LogitsOutOfRange):  # a party's bundle cannot carry that policy either (`PartyModel.load`)
        dataclasses.replace(labels_only.models[1], allow_logits=True)


@pytest.mark.parametrize("seed", range(8))
def test_inputs_of_coarser_precision_are_checked_at_it_and_computed_exactly(seed):
    """Bounds declared with the inputs' precision (`InputBounds.frac_bits` < the model's 16): the client
    rounds inputs to multiples of 2^-frac_bits, the parties check them at that precision, with the
    residues of its (shorter) span, and the result is bit for bit the fixed-point model on the rounded
    inputs. A value one step past a bound, shared without the library's check, is refused; the bound
    itself is not."""
    from privacy.encrypted.protocol.input_check import bound_bits, residues_per_value

    rng = np.random.default_rng(2000 + seed)
    plan = random_plan(rng)
    shape = plan.architecture.input_shape
    frac_bits = int(rng.integers(0, 13))
    step = 2.0**frac_bits  # bounds on the inputs' grid (`InputBounds.declared` refuses others)
    lo = np.full(shape, -np.round(rng.uniform(0, 3) * step) / step)
    hi = lo + np.round(rng.uniform(1, 4, size=shape) * step) / step
    bounds = InputBounds.declared(lo, hi, shape, frac_bits=frac_bits, input_check="exact")
    cluster = InProcessCluster(plan, bounds, allow_logits=True)
    fixed = cluster.fixed
    x = rng.uniform(lo, hi, size=(6,) + shape)
    got = cluster.predict(x, output="logits")
    rounded = np.round(x * 2.0**frac_bits) / 2.0**frac_bits
    sim = simulate(plan.architecture, plan.encode(fixed), encode_input(rounded, shape, fixed), fixed)
    frac = (2 if sim.logits.wide else 1) * fixed.frac_bits
    assert np.array_equal(np.rint(got.logits * 2.0**frac).astype(np.int64), sim.logits.point)

    coarse_lo, coarse_hi = bounds.encoded(fixed)
    assert np.array_equal(as_signed(coarse_hi), np.round(hi * 2.0**frac_bits))
    fine_lo, fine_hi = InputBounds.declared(lo, hi, shape).encoded(fixed)
    assert bound_bits(coarse_lo, coarse_hi) == bound_bits(fine_lo, fine_hi) - (16 - frac_bits)
    assert residues_per_value(coarse_lo, coarse_hi) < residues_per_value(fine_lo, fine_hi)
    _assert_the_top_is_served_and_one_step_above_refused(cluster, coarse_hi, rng)


@pytest.mark.parametrize("seed", range(8))
def test_half_open_bounds_are_analysed_checked_and_served_as_the_bounds_below_their_top(seed):
    """Half-open bounds [lo, lo + 2^j steps) (`InputBounds.half_open`) at a random precision: the range plan is
    that of the checked bounds [lo, hi - 2^-bits] (never of the wider declared box), inputs at hi are computed on
    as hi - 2^-bits, and the logits are bit for bit the fixed-point model on the client's shifted inputs, within
    the fixed-point error of the plaintext model on them. One step above the checked top, shared without the
    library's check, is refused; the top itself is not."""
    from privacy.encrypted.model.ranges import analyse
    from privacy.encrypted.protocol.input_check import power_of_two_span

    rng = np.random.default_rng(3000 + seed)
    plan = random_plan(rng)
    shape = plan.architecture.input_shape
    frac_bits = int(rng.integers(1, 17))
    step = 2.0**-frac_bits
    lo = np.full(shape, -np.round(rng.uniform(0, 2) / step) * step)
    hi = lo + step * 2.0 ** int(rng.integers(1, frac_bits + 2))  # 2^j steps, j >= 1: up to 2 wide
    bounds = InputBounds.declared(lo, hi, shape, frac_bits=frac_bits, half_open=True)
    cluster = InProcessCluster(plan, bounds, allow_logits=True)
    fixed = cluster.fixed
    checked = InputBounds.declared(lo, hi - step, shape, frac_bits=frac_bits)
    assert cluster.ranges.ops == analyse(plan.architecture, plan.encode(fixed), checked, fixed).ops
    lo_enc, hi_enc = cluster.ranges.input_bounds.encoded(fixed)
    assert power_of_two_span(lo_enc, hi_enc)

    x = rng.uniform(lo, hi, size=(6,) + shape)
    x[0], x[1] = lo, hi
    got = cluster.predict(x, output="logits")
    shifted = np.minimum(np.round(x / step) * step, hi - step)  # what the client sends
    assert np.array_equal(
        as_signed(encode_input(x, shape, fixed, cluster.ranges)), np.rint(shifted / step).astype(np.int64)
    )
    sim = simulate(plan.architecture, plan.encode(fixed), encode_input(shifted, shape, fixed), fixed)
    frac = (2 if sim.logits.wide else 1) * fixed.frac_bits
    assert np.array_equal(np.rint(got.logits * 2.0**frac).astype(np.int64), sim.logits.point)
    assert np.abs(got.logits - forward(plan, shifted, plan.weights)).max() < 0.05

    _assert_the_top_is_served_and_one_step_above_refused(cluster, hi_enc, rng)


def _assert_the_top_is_served_and_one_step_above_refused(cluster, top, rng):
    """Shares of the encoded top bound (``top``, ring words) are served; one grid step above it in one random
    feature, shared without the library's check, is refused by the parties with no values."""
    edge = np.broadcast_to(top, (1,) + top.shape).copy()
    assert all(r.refused is None for r in cluster.run_shares(share(edge), "logits"))
    edge.flat[int(rng.integers(edge.size))] += np.uint64(1)
    refused = [r for r in cluster.run_shares(share(edge), "logits") if r.refused is not None]
    assert refused and all(r.values is None for r in refused) and "outside the bounds" in refused[0].refused
