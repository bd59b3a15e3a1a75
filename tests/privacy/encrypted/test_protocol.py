"""Protocol primitives on shares against exact cleartext computation in the same ring."""

import numpy as np
import pytest

from privacy.encrypted.model.activations import KNOTS, SIGMOID_MAX_ERROR, pwl_sigmoid
from privacy.encrypted.model.intervals import Interval, IntervalBackend
from privacy.encrypted.model.layers import argmax, maximum, sigmoid
from privacy.encrypted.model.ranges import InputBounds, RangePlan
from privacy.encrypted.model.ring import arithmetic_shift, as_ring, as_signed
from privacy.encrypted.protocol import arithmetic, comparison
from privacy.encrypted.protocol.arithmetic import Pending
from privacy.encrypted.protocol.backend import OutputShare, SecureBackend, Value
from privacy.encrypted.protocol.client import ResultRejected, predict_with_retries
from privacy.encrypted.protocol.shares import Terms, reconstruct, share

RNG = np.random.default_rng(7)  # test data only; shares and masks never use numpy randomness


def full_ring(n):
    return RNG.integers(0, 2 ** 64, size=n, dtype=np.uint64)


def in_range(bits, n):
    """Values spread over [-2^bits, 2^bits), with its edges, zero and +-1."""
    edge = 2 ** bits
    return as_ring(np.concatenate([RNG.integers(-edge, edge, size=n), [0, 1, -1, edge - 1, -edge + 1, -edge]]))


def test_sharing_reconstructs_and_each_party_holds_two_components():
    secret = full_ring(1000)
    shares = share(secret)
    assert np.array_equal(reconstruct([shares[i][0] for i in range(3)]), secret)
    for i in range(3):
        assert np.array_equal(shares[i][1], shares[(i + 1) % 3][0])


def test_linear_operations_are_exact(run_parties):
    x, y, c = full_ring(500), full_ring(500), full_ring(500)
    total, diff, plus_c, times_c = run_parties(
        lambda p, a, b: (a + b, a - b, arithmetic.add_public(p, a, c), a.times_public(c)), x, y)
    assert np.array_equal(total, x + y) and np.array_equal(diff, x - y)
    assert np.array_equal(plus_c, x + c) and np.array_equal(times_c, x * c)


@pytest.mark.parametrize("helper", [0, 1, 2])
def test_products_and_resharing_are_exact_in_the_whole_ring(run_parties, helper):
    x, y = full_ring(2000), full_ring(2000)
    m, w = full_ring(3 * 40).reshape(3, 40), full_ring(40 * 7).reshape(40, 7)
    product = run_parties(lambda p, a, b: arithmetic.truncate(p, arithmetic.mul_local(a, b), shift=0, helper=helper),
                          x, y)
    assert np.array_equal(product, x * y)
    assert run_parties.last_parties[0].channel.stats.rounds == 1
    assert np.array_equal(run_parties(lambda p, a, b: arithmetic.matmul_local(a, b), m, w), m @ w)


@pytest.mark.parametrize("helper", [0, 1, 2])
def test_truncation_is_floor_or_floor_plus_one_and_unbiased(run_parties, fixed, helper):
    # x = k + 0.25 units of 2^-f: the result is k+1 with probability 0.25 exactly. |x| < 2^37, so the
    # failure window has probability 2^-26 per element (keys are fixed: the run is deterministic).
    f = fixed.frac_bits
    k = RNG.integers(-2 ** 20, 2 ** 20, size=40000)
    v = as_ring(k * 2 ** f + 2 ** (f - 2))
    got = run_parties(lambda p, a: arithmetic.truncate(p, Terms.of_share(a), shift=f, bound_bits=37,
                                                        helper=helper), v)
    error = as_signed(got) - k
    assert set(np.unique(error)) <= {0, 1}
    # Binomial(40000, 0.25): std of the mean 0.0022; +-0.011 is 5 sigma.
    assert abs(error.mean() - 0.25) < 0.011
    assert run_parties.last_parties[0].channel.stats.rounds == 1 and not run_parties.rerun


def test_every_wrong_truncation_is_flagged_and_flags_do_not_depend_on_the_data(run_parties, fixed):
    """With |z| just below 2^58 a truncation fails with probability ~2^-5 per element; the pair's flag
    (its masked sum below 2^59) must be raised in every run that returned a wrong value. The flag's
    rate must be the same for z near the bound and for z = 0 (it does not depend on z)."""
    f, bits = fixed.frac_bits, 58
    runs = {"large": [], "zero": []}
    for name, value in (("large", 2 ** bits - 2 ** f), ("zero", 0)):
        for _ in range(150):
            z = as_ring(np.full(8, value))
            got = run_parties(lambda p, a: arithmetic.truncate(p, Terms.of_share(a), shift=f, bound_bits=bits), z)
            runs[name].append((bool(run_parties.rerun), bool(np.any(got != arithmetic_shift(z, f)))))
    assert not any(wrong and not flagged for flagged, wrong in runs["large"] + runs["zero"])
    assert any(wrong for _, wrong in runs["large"])  # failures do happen, so the check can fail
    flagged = {name: sum(flag for flag, _ in r) for name, r in runs.items()}
    # Each run is flagged with probability 1 - (1 - 2^-5)^8 = 0.224: 150 runs give 33.6 +- 5.1.
    assert all(12 <= n <= 56 for n in flagged.values()), flagged


def relu_and_sign(p, a, bits):
    x = Pending.of_share(p, a, 1)  # nothing else in its round: the helper's first message takes a round
    sign = comparison.compare(p, x, bits)
    (relu,) = comparison.gate(p, sign, [x.value()])
    return relu, sign


@pytest.mark.parametrize("bits", [1, 5, 30, 61])
def test_comparison_and_relu_are_exact_in_the_proven_range(run_parties, bits):
    v = in_range(bits, 3000)
    relu, positive = run_parties(lambda p, a: relu_and_sign(p, a, bits), v)
    signed = as_signed(v)
    assert np.array_equal(as_signed(relu), np.maximum(signed, 0))
    assert np.array_equal(positive, (signed >= 0).astype(np.uint64))
    # compare: the helper's own round, the pair's round; gate: one round.
    assert run_parties.last_parties[0].channel.stats.rounds == 3


def test_strict_comparison_and_a_comparison_merged_into_a_truncation(run_parties, fixed):
    f = fixed.frac_bits
    k = np.concatenate([RNG.integers(-2 ** 20, 2 ** 20, size=2000), [0, 1, -1]])
    v = as_ring(k * 2 ** f)  # exact multiples: the truncation returns k itself

    def body(p, a):
        x = arithmetic.truncate(p, Terms.of_share(a), shift=f, bound_bits=40, helper=0)
        return comparison.compare(p, x, 21, strict=True)

    assert np.array_equal(run_parties(body, v), (k > 0).astype(np.uint64))
    assert run_parties.last_parties[0].channel.stats.rounds == 2


def backend_ops(fn, x):
    """The range operations `fn(backend, value)` performs, recorded by the interval backend on x."""
    backend = IntervalBackend(fixed_point())
    fn(backend, Interval.exact(x))
    return tuple(backend.ops)


def fixed_point():
    from privacy.encrypted.model.ring import FixedPoint

    return FixedPoint(16)


@pytest.mark.parametrize("width", [2, 3, 5, 10])
def test_maximum_and_argmax_match_numpy_including_ties(run_parties, width):
    values = RNG.integers(-5, 5, size=(300, width)) * 2 ** 30  # many ties
    v = as_ring(values)
    ops = backend_ops(lambda b, x: (maximum(b, x), argmax(b, x)), v)

    def body(p, a):
        backend = SecureBackend(p, fixed_point(), ops)
        best, index = maximum(backend, Value(a)), argmax(backend, Value(a))
        backend.finish()
        return best.data, index.data

    biggest, index = run_parties(body, v)
    assert np.array_equal(as_signed(biggest), values.max(axis=1))
    assert np.array_equal(index.astype(np.int64), values.argmax(axis=1))


def test_piecewise_linear_sigmoid_meets_its_stated_error(run_parties, fixed):
    x = np.concatenate([np.linspace(-14, 14, 3001), KNOTS, [-1e3, 1e3]])
    enc = fixed.encode(x)
    ops = backend_ops(lambda b, v: sigmoid(b, v, fixed), enc)

    def body(p, a):
        return sigmoid(SecureBackend(p, fixed, ops), Value(a), fixed).data

    got = fixed.decode(run_parties(body, enc))
    assert np.abs(got - 0.5 * (1 + np.tanh(x / 2))).max() <= SIGMOID_MAX_ERROR
    assert np.abs(got - pwl_sigmoid(x)).max() < 5e-4
    bounds = sigmoid(IntervalBackend(fixed), Interval.exact(enc), fixed)
    assert bounds.contains(fixed.encode(got)).all()


def test_prediction_is_rerun_while_a_party_asks_for_it(fixed):
    logits = np.array([[0.5, -1.25], [2.0, 3.0]])
    values = [c for c, _ in share(fixed.encode(logits))]  # c0, c1, c2
    ranges = RangePlan(InputBounds.declared(0, 1, (2,)), (), 0, 20, 1e-6)
    clean = [OutputShare(v, "add", fixed.frac_bits) for v in values]
    withheld = [OutputShare(None, "add", fixed.frac_bits, rerun=True)] * 2 + [clean[2]]

    def runs(results):
        calls = []

        def run():
            calls.append(1)
            return results[len(calls) - 1]
        return run, calls

    run, calls = runs([withheld, withheld, clean])
    got = predict_with_retries(run, retries=2, output="logits", output_activation="linear", ranges=ranges)
    assert len(calls) == 3 and got.attempts == 3
    np.testing.assert_array_equal(got.logits, logits)
    np.testing.assert_array_equal(got.labels, [0, 1])

    run, calls = runs([withheld, withheld, clean])
    with pytest.raises(ResultRejected, match="all 2 attempts were asked to re-run"):
        predict_with_retries(run, retries=1, output="logits", output_activation="linear", ranges=ranges)
    assert len(calls) == 2
    too_large = RangePlan(ranges.input_bounds, (), 0, 16, 1e-6)  # |logit| < 2^16 units = 1.0
    with pytest.raises(ResultRejected, match="outside the model's proven output range"):
        predict_with_retries(runs([clean])[0], retries=0, output="logits", output_activation="linear",
                             ranges=too_large)


def test_rounds_of_relu_after_a_dense_layer_and_of_the_reference_mlp(run_parties):
    from privacy.encrypted.benchmark import reference_plan
    from privacy.encrypted.in_process import InProcessCluster

    plan = reference_plan("mlp")
    cluster = InProcessCluster(plan, InputBounds.declared(0.0, 1.0, (784,)))
    cluster.predict(np.random.default_rng(1).random((1, 784)))
    assert {name: c["rounds"] for name, c in cluster.last_cost.layers.items()} == {
        "relu_0": 3, "dense_1": 1, "relu_1": 3, "dense_2": 1}
    assert cluster.last_cost.rounds == 8


def test_rerun_flags_reach_the_client_and_withhold_the_output(monkeypatch):
    """A party that raised its flag sends no share; the client runs the query again."""
    from privacy.encrypted.benchmark import reference_plan
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.protocol import backend

    plan = reference_plan("mlp")
    cluster = InProcessCluster(plan, InputBounds.declared(0.0, 1.0, (784,)))
    real = backend.predict_share
    calls = []

    def flaky(party, *args, **kwargs):
        if len(calls) < 3:  # the first session: every party flags
            party.rerun = True
        calls.append(party.index)
        return real(party, *args, **kwargs)

    monkeypatch.setattr("privacy.encrypted.in_process.predict_share", flaky)
    got = cluster.predict(np.random.default_rng(1).random((2, 784)))
    assert got.attempts == 2 and len(calls) == 6



def test_refreshed_weight_shares_are_fresh_and_share_the_same_weights(fixed):
    from privacy.encrypted.benchmark import reference_plan, reference_bounds
    from privacy.encrypted.in_process import LocalParties
    from privacy.encrypted.protocol.model_shares import share_model

    plan = reference_plan("mlp")
    models = share_model(plan, fixed, reference_bounds(plan))
    refreshed, _ = LocalParties().run(lambda party, model: model.refreshed(party), models)
    for name, layer in plan.encode(fixed).items():
        for part in ("kernel", "bias"):
            old = [getattr(m.weights[name], part) for m in models]
            new = [getattr(m.weights[name], part) for m in refreshed]
            assert np.array_equal(reconstruct([s.a for s in new]), getattr(layer, part))
            assert all(np.array_equal(new[i].b, new[(i + 1) % 3].a) for i in range(3))  # replicated
            assert not any(np.array_equal(o.a, n.a) for o, n in zip(old, new))  # every component changed


def test_the_memory_estimate_bounds_what_a_party_allocates():
    import tracemalloc

    from privacy.encrypted.benchmark import reference_bounds, reference_plan
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.network.memory import request_bytes

    for name in ("mlp", "cnn"):
        plan = reference_plan(name)
        cluster = InProcessCluster(plan, reference_bounds(plan))
        for batch, output in ((1, "logits"), (16, "label")):
            x = np.random.default_rng(0).random((batch,) + plan.architecture.input_shape)
            cluster.predict(x, output=output)
            tracemalloc.start()
            cluster.predict(x, output=output)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # The three parties and the client together stay below three parties' estimates.
            assert peak < 3 * request_bytes(plan.architecture, cluster.ranges, batch), (name, batch, output)
