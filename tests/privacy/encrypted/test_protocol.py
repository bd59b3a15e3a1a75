"""Protocol primitives on shares against exact cleartext computation in the same ring."""

import dataclasses
import json
import os
import re
import resource
import subprocess
import sys

import numpy as np
import pytest

from privacy.encrypted.in_process import LocalParties
from privacy.encrypted.model.activations import KNOTS, SIGMOID_MAX_ERROR, pwl_sigmoid
from privacy.encrypted.model.intervals import Interval, IntervalBackend
from privacy.encrypted.model.layers import PAIRWISE_CLASSES, argmax, maximum, one_hot_argmax, relu, sigmoid
from privacy.encrypted.model.ranges import InputBounds, RangePlan
from privacy.encrypted.model.ring import FixedPoint, arithmetic_shift, as_ring, as_signed
from privacy.encrypted.protocol import arithmetic, comparison, input_check, kernels
from privacy.encrypted.protocol.arithmetic import Pending
from privacy.encrypted.protocol.backend import OutputShare, SecureBackend, Value
from privacy.encrypted.protocol.client import ResultRejected, predict_with_retries
from privacy.encrypted.protocol.comparison import Split
from privacy.encrypted.protocol.randomness import Prf
from privacy.encrypted.protocol.shares import AShare, Terms, reconstruct, share
from privacy.encrypted.protocol.transport import TransportError
from privacy.encrypted.protocol.truncation import Truncation
from tests.conftest import REPO
from tests.privacy.encrypted.conftest import TEST_KEYS

RNG = np.random.default_rng(7)  # test data only; shares and masks never use numpy randomness


def full_ring(n):
    return RNG.integers(0, 2**64, size=n, dtype=np.uint64)


def in_range(bits, n):
    """Values spread over [-2^bits, 2^bits), with its edges, zero and +-1 (any ring element for bits = 63)."""
    if bits == 63:
        return np.concatenate([full_ring(n), as_ring([0, 1, -1, 2**63 - 1, -(2**63) + 1, -(2**63)])])
    edge = 2**bits
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
        lambda p, a, b: (a + b, a - b, arithmetic.add_public(p, a, c), a.times_public(c)), x, y
    )
    assert np.array_equal(total, x + y) and np.array_equal(diff, x - y)
    assert np.array_equal(plus_c, x + c) and np.array_equal(times_c, x * c)


@pytest.mark.parametrize("helper", [0, 1, 2])
def test_products_and_resharing_are_exact_in_the_whole_ring(run_parties, helper):
    x, y = full_ring(2000), full_ring(2000)
    m, w = full_ring(3 * 40).reshape(3, 40), full_ring(40 * 7).reshape(40, 7)
    product = run_parties(lambda p, a, b: arithmetic.reshare(p, arithmetic.mul_local(a, b), helper=helper), x, y)
    assert np.array_equal(product, x * y)
    assert run_parties.last_parties[0].channel.stats.rounds == 1
    assert np.array_equal(run_parties(lambda p, a, b: arithmetic.matmul_local(a, b), m, w), m @ w)


def bounded(bits, n):
    """Values with |z| < 2^bits: spread over the range, its edges, zero, +-1 and the multiples of 2^16 near 0."""
    edge = 2**bits - 1
    return as_ring(
        np.concatenate(
            [
                RNG.integers(-edge, edge + 1, size=n),
                [0, 1, -1, edge, -edge],
                np.arange(-4, 5) * 2**16,
                np.arange(-4, 5) * 2**16 - 1,
            ]
        )
    )


@pytest.mark.parametrize("helper", [0, 1, 2])
def test_truncation_is_exact(run_parties, fixed, helper):
    """floor(z / 2^f), bit for bit, over the proven range |z| < 2^37. The failure window has probability
    2^-26 per element; keys are fixed, so the run is deterministic and has no draw in it. Used on its own a
    truncation takes 3 rounds: its own, the carry comparison's second, and the one making terms of it."""
    f = fixed.frac_bits
    z = bounded(37, 30000)
    got = run_parties(lambda p, a: Truncation(p, Terms.of_share(a), shift=f, bound_bits=37, helper=helper).terms(), z)
    assert np.array_equal(got, arithmetic_shift(z, f)) and not run_parties.rerun
    assert run_parties.last_parties[0].channel.stats.rounds == 3


def test_every_wrong_truncation_is_flagged_and_flags_do_not_depend_on_the_data(run_parties, fixed):
    """With |z| just below 2^58 a truncation fails with probability ~2^-5 per element; the pair's flag on the
    element's example (its masked sum below 2^59) must be raised wherever a wrong value came out. The flag's
    rate must be the same for z near the bound and for z = 0 (it does not depend on z)."""
    f, bits = fixed.frac_bits, 58
    flags = {"large": [], "zero": []}
    for name, value in (("large", 2**bits - 2**f), ("zero", 0)):
        for _ in range(150):
            z = as_ring(np.full(8, value))  # 8 examples of one element
            got = run_parties(
                lambda p, a: Truncation(p, Terms.of_share(a), shift=f, bound_bits=bits, helper=2).terms(), z
            )
            flagged = np.zeros(8, bool) if run_parties.flagged is None else run_parties.flagged
            wrong = got != arithmetic_shift(z, f)
            assert not np.any(wrong & ~flagged)
            flags[name].append((int(flagged.sum()), int(wrong.sum())))
    assert sum(w for _, w in flags["large"]) > 0  # failures do happen, so the check can fail
    counts = {name: sum(n for n, _ in r) for name, r in flags.items()}
    # 1200 examples flagged with probability 2^-5 each: 37.5 +- 6.0.
    assert all(15 <= n <= 60 for n in counts.values()), counts


def relu_and_sign(p, a, bits):
    x = Pending.of_share(p, a, 1)  # nothing else in its round: the helper's first message takes a round
    sign = comparison.compare(p, Split.of_share(p, x), bits)
    (out,) = comparison.gate(p, sign, [x.value()])
    return out, sign


def test_u_refuses_a_helpers_residue_of_p_or_more(monkeypatch):
    """A cheating helper sending 127 + c for c (the same residue mod p): u's test vector would wrap in the
    kernel's unsigned arithmetic where the pair's secret bits of a have a long run of ones (it did for 34 or
    more leading ones of a - beta), a change the helper sees in its zero test. u refuses the message before it
    sends its test vectors (its peers then time out)."""
    honest = kernels.helper_message

    def cheating(other, shares, out):
        honest(other, shares, out)
        out[out <= 128] += np.uint8(comparison.MODULUS)

    monkeypatch.setattr(kernels, "helper_message", cheating)
    shared = share(in_range(63, 50), Prf(bytes(16)))
    errors = {}

    def body(party, components):
        try:
            return relu_and_sign(party, AShare(*components), 63)
        except TransportError as err:
            errors[party.index] = str(err)
            raise

    with pytest.raises(TransportError):
        LocalParties(keys=TEST_KEYS, timeout=2).run(body, shared)
    refusals = [
        m
        for m in errors.values()
        if re.fullmatch(r"party \d sent a comparison residue of (12[7-9]|1[3-9]\d|2[0-5]\d), not below 127", m)
    ]
    assert len(refusals) == 1, errors
    (refuser,) = (i for i, m in errors.items() if m == refusals[0])
    # the refused round never left u: its helper waited for it in vain
    assert any(f"party {refuser} sent nothing for step" in m for i, m in errors.items() if i != refuser), errors


@pytest.mark.parametrize("bits", [1, 5, 30, 61, 63])
def test_comparison_and_relu_are_exact_in_the_proven_range(run_parties, bits):
    """R = 63 decides the sign of any ring element (what the servers' input check relies on)."""
    v = in_range(bits, 3000)
    out, positive = run_parties(lambda p, a: relu_and_sign(p, a, bits), v)
    signed = as_signed(v)
    assert np.array_equal(as_signed(out), np.maximum(signed, 0))
    assert np.array_equal(positive, (signed >= 0).astype(np.uint64))
    # compare: the helper's own round, the pair's round; gate: one round.
    assert run_parties.last_parties[0].channel.stats.rounds == 3


def secure_on_wide(fn, z, fixed):
    """Runs `fn(backend, value)` on the wide value z (2f fractional bits) with its recorded range plan."""
    intervals = IntervalBackend(fixed)
    fn(intervals, Interval.exact(z, wide=True))
    ops = tuple(intervals.ops)

    def body(p, a):
        backend = SecureBackend(p, fixed, ops)
        out = fn(backend, Value(Terms.of_share(a), wide=True))
        backend.finish()
        return out.data if isinstance(out.data, comparison.Bit) else backend._terms(out)

    return body


def test_relu_of_a_truncation_is_exact_in_three_rounds(run_parties, fixed):
    """relu(floor(z / 2^f)): the sign of y' = S + W and the carry share the truncation's and the pair's
    rounds, the gating multiplies the carry in: 3 rounds, exact (y' and y differ only at y = 0)."""
    f = fixed.frac_bits
    z = bounded(40, 20000)
    got = run_parties(secure_on_wide(lambda b, x: relu(b, b.narrow(x)), z, fixed), z)
    assert np.array_equal(as_signed(got), np.maximum(as_signed(arithmetic_shift(z, f)), 0))
    assert run_parties.last_parties[0].channel.stats.rounds == 3


def test_strict_comparison_of_a_truncation(run_parties, fixed):
    """[floor(z / 2^f) > 0]: not a ReLU, so the truncation is made terms (3 rounds), then compared (2)."""
    f = fixed.frac_bits
    z = bounded(40, 5000)
    got = run_parties(secure_on_wide(lambda b, x: b.bit(b.narrow(x), strict=True), z, fixed), z)
    assert np.array_equal(got, (as_signed(arithmetic_shift(z, f)) > 0).astype(np.uint64))
    assert run_parties.last_parties[0].channel.stats.rounds == 5


def backend_ops(fn, x):
    """The range operations `fn(backend, value)` performs, recorded by the interval backend on x."""
    backend = IntervalBackend(fixed_point())
    fn(backend, Interval.exact(x))
    return tuple(backend.ops)


def fixed_point():
    return FixedPoint(16)


@pytest.mark.parametrize("width", [2, 3, 5, 10, 16, 17, 20])
def test_maximum_and_argmax_match_numpy_including_ties(run_parties, width):
    """The tournament's maximum and index; up to 16 classes the one-hot argmax of all pairs (5 rounds)."""
    values = RNG.integers(-5, 5, size=(300, width)) * 2**30  # many ties
    v = as_ring(values)
    ops = backend_ops(lambda b, x: (maximum(b, x), argmax(b, x), one_hot_argmax(b, x)), v)

    def body(p, a):
        backend = SecureBackend(p, fixed_point(), ops)
        best, index, hot = maximum(backend, Value(a)), argmax(backend, Value(a)), one_hot_argmax(backend, Value(a))
        backend.finish()
        return best.data, index.data, hot.data

    biggest, index, hot = run_parties(body, v)
    assert np.array_equal(as_signed(biggest), values.max(axis=1))
    assert np.array_equal(index.astype(np.int64), values.argmax(axis=1))
    assert np.array_equal(hot, np.eye(width, dtype=np.uint64)[values.argmax(axis=1)])
    if width <= PAIRWISE_CLASSES:
        run_parties(
            lambda p, a: one_hot_argmax(SecureBackend(p, fixed_point(), backend_ops(one_hot_argmax, v)), Value(a)).data,
            v,
        )
        assert run_parties.last_parties[0].channel.stats.rounds == 5


def test_piecewise_linear_sigmoid_meets_its_stated_error(run_parties, fixed):
    x = np.concatenate([np.linspace(-14, 14, 3001), KNOTS, [-1e3, 1e3]])
    enc = fixed.encode(x)
    ops = backend_ops(lambda b, v: sigmoid(b, v, fixed), enc)

    def body(p, a):
        backend = SecureBackend(p, fixed, ops)
        return backend._terms(sigmoid(backend, Value(a), fixed))

    got = run_parties(body, enc)
    assert np.abs(fixed.decode(got) - 0.5 * (1 + np.tanh(x / 2))).max() <= SIGMOID_MAX_ERROR
    assert np.abs(fixed.decode(got) - pwl_sigmoid(x)).max() < 5e-4
    exact = sigmoid(IntervalBackend(fixed), Interval.exact(enc), fixed)
    assert np.array_equal(as_signed(got), exact.point.astype(np.int64))  # the fixed-point value, bit for bit


def test_examples_a_party_withholds_are_run_again(fixed):
    """Parties withhold the examples they flagged (zero shares there); the client runs only those again."""
    logits = np.array([[0.5, -1.25], [2.0, 3.0], [-1.0, 0.0]])
    values = [c for c, _ in share(fixed.encode(logits))]  # c0, c1, c2
    ranges = RangePlan(InputBounds.declared(0, 1, (2,)), (), 0, 20, 1e-6)
    row = np.array([False, True, False])

    def shares(rows, withhold):
        flagged = row[rows] if withhold else None
        out = [OutputShare(v[rows], "add", fixed.frac_bits) for v in values]
        if withhold:  # the pair of the failing truncation (parties 0 and 1) zeroes the row and says so
            out[:2] = [
                OutputShare(np.where(flagged[:, None], np.uint64(0), v[rows]), "add", fixed.frac_bits, rerun=flagged)
                for v in values[:2]
            ]
        return out

    calls = []

    def run(rows):
        calls.append(rows.tolist())
        return shares(rows, withhold=len(calls) <= 2)

    got = predict_with_retries(run, 3, retries=2, output="logits", output_activation="linear", ranges=ranges)
    assert calls == [[0, 1, 2], [1], [1]] and got.attempts == 3
    np.testing.assert_array_equal(got.logits, logits)
    np.testing.assert_array_equal(got.labels, [0, 1, 1])

    calls.clear()
    with pytest.raises(ResultRejected, match="1 example\\(s\\) were withheld in all 2 attempts"):
        predict_with_retries(run, 3, retries=1, output="logits", output_activation="linear", ranges=ranges)
    assert calls == [[0, 1, 2], [1]]
    too_large = RangePlan(ranges.input_bounds, (), 0, 16, 1e-6)  # |logit| < 2^16 units = 1.0
    with pytest.raises(ResultRejected, match="outside the model's proven output range"):
        predict_with_retries(
            lambda rows: shares(rows, False),
            3,
            retries=0,
            output="logits",
            output_activation="linear",
            ranges=too_large,
        )


def test_rounds_of_the_reference_mlp():
    """8 rounds for the logits (relu: truncation + comparisons + gating, next dense: re-sharing), 13 with the
    label (all pairs compared: 5); the input check rides on the first four."""
    from privacy.encrypted.benchmark import reference_plan
    from privacy.encrypted.in_process import InProcessCluster

    plan = reference_plan("mlp")
    cluster = InProcessCluster(plan, InputBounds.declared(0.0, 1.0, (784,)), allow_logits=True)
    x = np.random.default_rng(1).random((1, 784))
    cluster.predict(x, output="logits")
    layers = {"relu_0": 3, "dense_1": 1, "relu_1": 3, "dense_2": 1}
    assert {name: c["rounds"] for name, c in cluster.last_cost.layers.items()} == layers
    cluster.predict(x)
    assert {name: c["rounds"] for name, c in cluster.last_cost.layers.items()} == dict(layers, label=5)
    assert cluster.last_cost.rounds == 13


def test_the_benchmark_switch_really_skips_the_input_check():
    """`check_input=False` (benchmarks only) must remove the check's traffic and its refusal, and nothing else:
    the same rounds and the same logits."""
    from privacy.encrypted.benchmark import reference_plan
    from privacy.encrypted.in_process import InProcessCluster

    cluster = InProcessCluster(reference_plan("mlp"), InputBounds.declared(0.0, 1.0, (784,)), allow_logits=True)
    x = np.random.default_rng(2).random((2, 784))
    outside = np.where(np.arange(784) == 5, 3.0, x)  # feature 5 out of bounds
    encoded = FixedPoint(16).encode(outside, what="input")
    checked = cluster.predict(x, output="logits")
    cost = cluster.last_cost
    assert any(r.refused for r in cluster.run_shares(share(encoded), "logits"))
    cluster.check_input = False
    unchecked = cluster.predict(x, output="logits")
    assert np.array_equal(unchecked.logits, checked.logits)
    assert cluster.last_cost.rounds == cost.rounds and cluster.last_cost.bytes < cost.bytes / 2
    assert not any(r.refused for r in cluster.run_shares(share(encoded), "logits"))


def test_each_party_model_derives_the_checked_bounds_once_read_only_and_anew_for_a_changed_model():
    """The input check's encoded bounds, spans and window are computed once per model, not per query, cannot be
    written through (a write would change every later query's check), and a model with other bounds (a new
    `PartyModel`, as `dataclasses.replace` or loading a bundle makes) derives its own."""
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    plan = ModelPlan(Architecture((2,), (Dense("out", 1),)), {"out": (np.ones((2, 1)), np.zeros(1))})
    cluster = InProcessCluster(
        plan, InputBounds.declared([0, -1], [1, 3], (2,), input_check="exact"), allow_logits=True
    )
    other = InProcessCluster(plan, InputBounds.declared([0, 0], [2 - 2**-16, 2 - 2**-16], (2,)), allow_logits=True)
    for model, changed in zip(cluster.models, other.models, strict=True):
        bounds = model.checked_bounds
        assert model.checked_bounds is bounds
        lo, hi = (as_signed(b) for b in model.ranges.server_bounds.encoded(model.fixed))
        assert np.array_equal(as_signed(bounds.lo), lo) and np.array_equal(as_signed(bounds.span), hi - lo)
        assert list(hi - lo) == [2**16, 2**18] and (bounds.k, bounds.one_comparison) == (19, False)
        for array in (bounds.lo, bounds.span):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 0
        replaced = dataclasses.replace(model, ranges=changed.ranges)
        assert replaced.checked_bounds is not bounds
        assert list(as_signed(replaced.checked_bounds.span)) == [2**17 - 1] * 2
        assert (replaced.checked_bounds.k, replaced.checked_bounds.one_comparison) == (17, True)
    # The window is derived from the spans, never given: a span below 2^k - 1 cannot be declared one comparison.
    direct = input_check.CheckedBounds(np.zeros(2, np.uint64), np.array([5, 7], np.uint64))
    assert (direct.k, direct.one_comparison) == (3, False)
    with pytest.raises(TypeError):
        input_check.CheckedBounds(np.zeros(2, np.uint64), np.array([5, 7], np.uint64), 3, True)


@pytest.mark.parametrize("span", ["power of two", "other"])
def test_the_servers_input_check_accepts_exactly_the_bounds(span):
    """Raw encoded inputs at and just past every edge, and far outside, sent without the client's check:
    the servers release for exactly the values in [lo, hi]. Spans of 2^k - 1 (encoded) take one comparison
    of k bits per value, others two (k and k + 1 bits), which the residues between the parties show."""
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    fixed = FixedPoint(16)
    k = 17
    lo = np.array([-3.0, 0.0, 0.5])
    width = (2**k - 1 if span == "power of two" else 2 ** (k - 1)) / 2.0**16  # [lo, lo + 2 - 2^-16] or + 1
    plan = ModelPlan(Architecture((3,), (Dense("d", 2),)), {"d": (np.ones((3, 2)), np.zeros(2))})
    cluster = InProcessCluster(
        plan, InputBounds.declared(lo, lo + width, (3,), input_check="exact"), fixed, allow_logits=True
    )
    lo_enc = as_signed(fixed.encode(lo, what="input"))
    hi_enc = lo_enc + int(width * 2**16)
    inside, outside = [lo_enc, hi_enc, lo_enc + 1, hi_enc - 1, (lo_enc + hi_enc) // 2], []
    for feature in range(3):
        for value in (
            lo_enc[feature] - 1,
            hi_enc[feature] + 1,
            hi_enc[feature] + 2**k,
            lo_enc[feature] - 2**k,
            2**62,
            -(2**63),
            lo_enc[feature] + 2**40,
        ):
            row = inside[-1].copy()
            row[feature] = value
            outside.append(row)
    for rows, accepted in ((inside, True), (outside, False)):
        for row in rows:
            results = cluster.run_shares(share(as_ring(np.asarray([row]))), "logits")
            assert (not any(r.refused for r in results)) == accepted, (row, lo_enc, hi_enc)
    # Per value: R residues (one byte each) in each of three messages (helper to u; u and v to the helper), a
    # gated word per comparison, two words to party 0; and three 32-byte digests per request.
    checked = cluster.last_cost.bytes
    cluster.check_input = False
    cluster.run_shares(share(as_ring(np.asarray([inside[0]]))), "logits")
    residues, comparisons = (k, 1) if span == "power of two" else (2 * k + 1, 2)
    assert checked - cluster.last_cost.bytes == 3 * (3 * residues + 8 * comparisons + 16) + 3 * 32


def test_the_input_check_applies_each_features_bounds_to_every_example_of_a_batch():
    """The cached bounds (input shape) meet a batch of inputs: each example's values are checked against their own
    feature's bounds, and the refusal counts exactly the examples and values past them."""
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    fixed = FixedPoint(16)
    lo = np.array([-3.0, 0.0, 0.5, 7.0])
    plan = ModelPlan(Architecture((4,), (Dense("d", 2),)), {"d": (np.ones((4, 2)), np.zeros(2))})
    cluster = InProcessCluster(
        plan, InputBounds.declared(lo, lo + 1.0, (4,), input_check="exact"), fixed, allow_logits=True
    )
    lo_enc = as_signed(fixed.encode(lo, what="input"))
    hi_enc = lo_enc + 2**16
    rows = np.stack([lo_enc, hi_enc, lo_enc, hi_enc, lo_enc])  # every example inside
    assert not any(r.refused for r in cluster.run_shares(share(as_ring(rows)), "logits"))
    rows[1, 2] = hi_enc[2] + 1  # past feature 2's top, inside feature 1's and 3's
    rows[3, 0], rows[3, 3] = lo_enc[0] - 1, lo_enc[0]  # below feature 0's bottom; feature 0's bottom for feature 3
    refusals = {r.refused for r in cluster.run_shares(share(as_ring(rows)), "logits") if r.refused}
    assert refusals == {
        "2 example(s) hold values outside the bounds the model was shared with (3 values); nothing was released"
    }


def test_rerun_flags_reach_the_client_and_withhold_the_example(monkeypatch):
    """The parties that flag an example send a zero share for it; the client runs that example again."""
    from privacy.encrypted.benchmark import reference_plan
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.protocol import backend

    plan = reference_plan("mlp")
    cluster = InProcessCluster(plan, InputBounds.declared(0.0, 1.0, (784,)))
    real = backend.predict_share
    batches = []

    def flaky(party, model, x, output, **options):
        if len(batches) < 3:  # the first session: parties 0 and 1 flag example 1
            if party.index in (0, 1):
                party.flag_rerun(np.arange(len(x.a)) == 1)
        batches.append(len(x.a))
        return real(party, model, x, output, **options)

    monkeypatch.setattr("privacy.encrypted.in_process.predict_share", flaky)
    x = np.random.default_rng(1).random((3, 784))
    got = cluster.predict(x)
    assert got.attempts == 2 and sorted(batches) == [1, 1, 1, 3, 3, 3]
    monkeypatch.undo()
    assert np.array_equal(got.labels, cluster.predict(x).labels)


def test_refreshed_weight_shares_are_fresh_and_share_the_same_weights(fixed):
    from privacy.encrypted.benchmark import reference_bounds, reference_plan
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
            assert not any(np.array_equal(o.a, n.a) for o, n in zip(old, new, strict=True))  # every component changed


def test_the_memory_estimate_bounds_what_a_party_allocates():
    import tracemalloc

    from privacy.encrypted.benchmark import reference_bounds, reference_plan
    from privacy.encrypted.in_process import InProcessCluster
    from privacy.encrypted.network.memory import request_bytes

    for name in ("mlp", "cnn"):
        plan = reference_plan(name)
        cluster = InProcessCluster(plan, reference_bounds(plan), allow_logits=True)
        for batch, output in ((1, "logits"), (16, "label")):
            x = np.random.default_rng(0).random((batch,) + plan.architecture.input_shape)
            cluster.predict(x, output=output)
            tracemalloc.start()
            cluster.predict(x, output=output)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # The three parties and the client together stay below three parties' estimates.
            assert peak < 3 * request_bytes(cluster.models[0], batch), (name, batch, output)


_SESSIONS = """
import json
import os
import resource
import threading
import numpy as np
from privacy.encrypted.network import memory

STATM = os.open("/proc/self/statm", os.O_RDONLY)

def resident():  # bytes; reads without a C heap allocation in the thread (a small bytes object)
    return int(os.pread(STATM, 100, 0).split()[1]) * resource.getpagesize()

def sessions():  # sessions of a party thread, each writing six arrays of 4 MiB and freeing them
    out = []
    def run():
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            arrays = [np.ones(1 << 19) for _ in range(6)]
            faults, live = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before, resident()
            del arrays
            out.append((faults, live - resident()))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[1:]  # after the first session

{setup}
print(json.dumps(sessions()))
"""
_SESSION_BYTES = 6 << 22


@pytest.mark.parametrize(
    "setup, keeps",
    [
        ("", False),
        ("assert memory.keep_freed_memory()", True),
        (
            "import tempfile\n"
            "from privacy.encrypted.benchmark import reference_bounds, reference_plan\n"
            "from privacy.encrypted.model.ring import FixedPoint\n"
            "from privacy.encrypted.network.certificates import create_deployment\n"
            "from privacy.encrypted.network.server import PartyServer\n"
            "from privacy.encrypted.protocol.model_shares import share_model\n"
            "plan = reference_plan('mlp')\n"
            "deployment = create_deployment(tempfile.mkdtemp(), [('127.0.0.1', p) for p in (1, 2, 3)])\n"
            "PartyServer(0, deployment, share_model(plan, FixedPoint(), reference_bounds(plan))[0])",
            True,
        ),
        (
            "from privacy.encrypted.benchmark import reference_bounds, reference_plan\n"
            "from privacy.encrypted.in_process import InProcessCluster\n"
            "InProcessCluster(reference_plan('mlp'), reference_bounds(reference_plan('mlp')))",
            False,
        ),
    ],
    ids=["default", "keep_freed_memory", "party_server", "in_process_cluster"],
)
def test_a_party_server_keeps_a_sessions_freed_arrays_for_the_next_and_a_cluster_leaves_the_allocator_alone(
    setup, keeps
):
    """glibc returns a session's freed arrays to the OS by default, so each later session faults its pages in
    again; after `keep_freed_memory`, which a party server calls as it is made, later sessions keep and reuse them
    (resident memory stays, almost no page faults). An in-process cluster, made in a user's process, changes
    nothing. Each case runs in a fresh process without the C allocator's environment settings (MALLOC_*,
    GLIBC_TUNABLES), so glibc's adaptive thresholds start from their defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    code = _SESSIONS.replace("{setup}", setup)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sessions = json.loads(proc.stdout.strip().splitlines()[-1])
    if keeps:  # at most a tenth of the pages faulted again (NUMA balancing, swap), next to nothing given back
        pages = _SESSION_BYTES // resource.getpagesize()
        assert all(faults < pages // 10 and returned < _SESSION_BYTES // 24 for faults, returned in sessions), sessions
    else:  # most of it given back (in bytes of resident memory: a page fault may map a huge page)
        assert all(returned > _SESSION_BYTES * 2 // 3 for _, returned in sessions), sessions


def test_a_refresh_renews_the_pairwise_keys_so_old_keys_and_new_shares_give_nothing(fixed):
    """Review A4. An adversary who took party 1's memory before a refresh (its share and its keys k_1, k_2)
    and party 0's share after it tries the one attack reused keys allow: recompute the helper's (party 2's)
    mask r from k_2 and add it to party 0's new components. With keys renewed inside the refresh the result
    is uniformly random, not the weights; and the same old shares and old keys refreshed twice give two
    unrelated sharings (the new sharing is no function of the old state)."""
    from privacy.encrypted.benchmark import reference_bounds, reference_plan
    from privacy.encrypted.in_process import LocalParties
    from privacy.encrypted.protocol.model_shares import share_model
    from privacy.encrypted.protocol.randomness import Prf, session_nonce

    plan = reference_plan("mlp")
    models = share_model(plan, fixed, reference_bounds(plan))
    keys = [bytes([i + 1]) * 16 for i in range(3)]
    first, parties = LocalParties(keys=keys).run(lambda party, model: model.refreshed(party), models)
    second, _ = LocalParties(keys=keys).run(lambda party, model: model.refreshed(party), models)
    # Every party's keys changed, and the new ones are again pairwise: k_j at parties j and j - 1.
    for i, party in enumerate(parties):
        assert party.keys[0] not in keys and party.keys[1] not in keys
        assert party.keys[1] == parties[(i + 1) % 3].keys[0]
    stolen = Prf(keys[2], session_nonce(1))  # party 1's old k_2 (the helper's key with party 1)
    guesses, matches, ones, words = 0, 0, 0, 0
    for name, layer in plan.encode(fixed).items():
        for part in ("kernel", "bias"):
            weights = getattr(layer, part)
            stolen.words(weights.shape)  # b, the helper's mask of the masked sum
            r = stolen.words(weights.shape)
            new0 = getattr(first[0].weights[name], part)
            guess = r + new0.a + new0.b
            guesses += weights.size
            matches += int(np.sum(guess == weights))
            ones += int(np.unpackbits((guess - weights).view(np.uint8)).sum())
            words += weights.size
            a, b = getattr(first[1].weights[name], part), getattr(second[1].weights[name], part)
            assert not np.any(a.a == b.a) and not np.any(a.b == b.b)  # two refreshes: unrelated sharings
    assert guesses > 100_000 and matches == 0
    # guess - weights is uniform: its 64 * words bits are fair (10 sigma band).
    assert abs(ones - 32 * words) < 10 * np.sqrt(16 * words)


def test_reshared_bundles_hold_the_same_weights_and_an_old_bundle_with_a_new_one_gives_nothing(fixed, tmp_path):
    """`ppml encrypted reshare`'s core. Party 0 keeps its old bundle; the three files are renewed in place
    (mode 0600, a new model id) and reconstruct the same weights. The attack: party 0's old components
    (c_0, c_1) with party 1's or party 2's new pair, every way of choosing one version of each of c_0, c_1,
    c_2 that mixes old and new: no guess equals a weight, and guess - weights is uniform (fair bits). Bundles
    that are not one sharing are refused and nothing is written."""
    import os
    import stat

    from privacy.encrypted.benchmark import reference_bounds, reference_plan
    from privacy.encrypted.network.processes import model_path, reshare_model_shares, save_model_shares
    from privacy.encrypted.protocol.model_shares import PartyModel

    plan = reference_plan("mlp")
    for i in range(3):
        os.makedirs(os.path.dirname(model_path(str(tmp_path), i)))
    paths = save_model_shares(plan, str(tmp_path), fixed, reference_bounds(plan))
    kept = PartyModel.load(paths[0])
    model_id = reshare_model_shares(paths)
    new = [PartyModel.load(path) for path in paths]
    assert model_id == new[0].model_id == new[2].model_id != kept.model_id
    assert all(stat.S_IMODE(os.stat(path).st_mode) == 0o600 for path in paths)
    guesses, matches, ones = 0, 0, 0
    for name, layer in plan.encode(fixed).items():
        for part in ("kernel", "bias"):
            weights = getattr(layer, part)
            renewed = [getattr(m.weights[name], part) for m in new]
            assert np.array_equal(reconstruct([s.a for s in renewed]), weights)
            old = getattr(kept.weights[name], part)
            for other in (1, 2):  # party `other` holds c'_other, c'_(other+1)
                versions = {0: [old.a], 1: [old.b]}
                for j, comp in ((other, renewed[other].a), ((other + 1) % 3, renewed[other].b)):
                    versions.setdefault(j, []).append(comp)
                for c0 in versions[0]:
                    for c1 in versions[1]:
                        for c2 in versions[2]:  # only new: every choice mixes old and new
                            guess = c0 + c1 + c2
                            guesses += weights.size
                            matches += int(np.sum(guess == weights))
                            ones += int(np.unpackbits((guess - weights).view(np.uint8)).sum())
    assert guesses > 300_000 and matches == 0
    assert abs(ones - 32 * guesses) < 10 * np.sqrt(16 * guesses)  # 64 fair bits per guess, 10 sigma band
    kept.save(paths[0])  # an old bundle beside two new ones: not one sharing
    before = [open(path, "rb").read() for path in paths]
    with pytest.raises(ValueError, match="not of one sharing"):
        reshare_model_shares(paths)
    assert [open(path, "rb").read() for path in paths] == before


def test_reshare_refuses_bundles_whose_architectures_differ(fixed, tmp_path):
    """Party 1's header edited to a sigmoid where the others have a ReLU (same model id and public information,
    consistent weight components): the bundles are not one sharing, so reshare refuses them and writes nothing
    (it renewed them, keeping each bundle's own architecture)."""
    import json
    import os

    from privacy.encrypted.benchmark import reference_bounds, reference_plan
    from privacy.encrypted.network.processes import model_path, reshare_model_shares, save_model_shares

    plan = reference_plan("mlp")
    for i in range(3):
        os.makedirs(os.path.dirname(model_path(str(tmp_path), i)))
    paths = save_model_shares(plan, str(tmp_path), fixed, reference_bounds(plan))
    with np.load(paths[1]) as data:
        arrays = dict(data)
    header = json.loads(bytes(arrays["header"]).decode())
    header["architecture"] = json.loads(json.dumps(header["architecture"]).replace('"relu"', '"sigmoid"', 1))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(paths[1], **arrays)
    before = [open(path, "rb").read() for path in paths]
    with pytest.raises(ValueError, match="not of one sharing .*architectures differ"):
        reshare_model_shares(paths)
    assert [open(path, "rb").read() for path in paths] == before


@pytest.mark.parametrize("bits", [16, 8])
def test_half_open_unit_bounds_take_one_comparison_and_serve_one_as_the_step_below(bits, tmp_path):
    """[0, 1] at 2^-bits holds 2^bits + 1 grid values: two comparisons per value in the parties' check (2k + 1
    residues, k = bits + 1). Half-open, the top value is dropped: [0, 2^bits - 1] is checked, one comparison of
    `bits` bits (16 residues instead of 35; 8 instead of 19). A client's 1.0 is served as 1 - 2^-bits, other
    inputs as their nearest grid value; an encoded value just above the checked top, sent without the client's
    check, is refused, the top itself accepted. The bundle and what parties tell clients give the checked
    bounds, which a reader that ignores `half_open` (code before it) checks as they are."""
    from privacy.encrypted import InProcessCluster, InputOutOfBounds
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.protocol.input_check import residues_per_value
    from privacy.encrypted.protocol.model_shares import PartyModel, share_model

    fixed, step = FixedPoint(16), 2.0**-bits
    precision = None if bits == 16 else bits
    plan = ModelPlan(Architecture((3,), (Dense("d", 3),)), {"d": (np.eye(3), np.zeros(3))})  # logits = x
    bounds = InputBounds.declared(0, 1, (3,), frac_bits=precision, half_open=True)
    full = InputBounds.declared(0, 1, (3,), frac_bits=precision).encoded(fixed)
    assert residues_per_value(*full) == 2 * (bits + 1) + 1
    lo, hi = bounds.encoded(fixed)
    assert as_signed(lo).tolist() == [0] * 3 and as_signed(hi).tolist() == [2**bits - 1] * 3
    assert residues_per_value(lo, hi) == bits

    cluster = InProcessCluster(plan, bounds, fixed, allow_logits=True)
    x = np.array([[1.0, 0.5, 0.0], [1 - step / 2, 1 - step, 1 / 3]])
    logits = cluster.predict(x, output="logits").logits
    assert logits[0].tolist() == [1 - step, 0.5, 0.0] and logits[1, :2].tolist() == [1 - step, 1 - step]
    assert abs(logits[1, 2] - 1 / 3) <= step / 2
    with pytest.raises(InputOutOfBounds):
        cluster.predict([[1 + step, 0, 0]], output="logits")
    for value, accepted in ((2**bits - 1, True), (2**bits, False), (0, True), (-1, False)):
        results = cluster.run_shares(share(as_ring(np.array([[value, 0, 0]]))), "logits")
        assert all(r.refused is None for r in results) == accepted, value
        if not accepted:
            assert any(r.refused is not None and "outside the bounds" in r.refused for r in results)
    checked = cluster.last_cost.bytes  # one comparison: R = bits residues, one gated word per value
    cluster.check_input = False
    cluster.run_shares(share(as_ring(np.zeros((1, 3), dtype=np.int64))), "logits")
    assert checked - cluster.last_cost.bytes == 3 * (3 * bits + 8 + 16) + 3 * 32

    said = {"lo": 0.0, "hi": 1 - step, "frac_bits": bits, "half_open": True}
    assert cluster.ranges.input_bounds.to_dict() == said
    share_model(plan, fixed, bounds)[0].save(str(tmp_path / "m.npz"))
    loaded = PartyModel.load(str(tmp_path / "m.npz"))
    assert loaded.public_info()["ranges"]["input_bounds"] == said
    assert [as_signed(b).tolist() for b in loaded.ranges.input_bounds.encoded(fixed)] == [[0] * 3, [2**bits - 1] * 3]
    older = InputBounds.declared(said["lo"], said["hi"], (3,), frac_bits=said["frac_bits"])  # half_open ignored
    assert [as_signed(b).tolist() for b in older.encoded(fixed)] == [[0] * 3, [2**bits - 1] * 3]


def test_the_interval_analysis_of_half_open_bounds_is_that_of_the_checked_ones():
    """x * 2^16 with x in [0, 1] reaches 2^48 before truncation in units of 2^-32 (49 bits); the checked
    [0, 1 - 2^-16] stays below (48 bits): the plan of half-open [0, 1] is that of [0, 1 - 2^-16], never of the
    wider declared box."""
    from privacy.encrypted.model.plan import Activation, Architecture, Dense, ModelPlan
    from privacy.encrypted.model.ranges import analyse

    fixed = FixedPoint(16)
    arch = Architecture((1,), (Dense("d", 1), Activation("r", "relu"), Dense("out", 1)))
    plan = ModelPlan(arch, {"d": (np.full((1, 1), 2.0**16), np.zeros(1)), "out": (np.ones((1, 1)), np.zeros(1))})

    def ops(bounds):
        return analyse(plan.architecture, plan.encode(fixed), bounds, fixed).ops

    half_open = ops(InputBounds.declared(0, 1, (1,), half_open=True))
    assert half_open == ops(InputBounds.declared(0, 1 - 2.0**-16, (1,)))
    assert (half_open[0].layer, half_open[0].kind, half_open[0].bits) == ("r", "trunc", 48)  # relu(d)'s truncation
    assert ops(InputBounds.declared(0, 1, (1,)))[0].bits == 49


@pytest.mark.parametrize(
    "lo, hi, frac_bits, why",
    [
        (0, 0.75, None, "every feature spans 49152 steps of 2\\^-16"),
        ([0, 0], [1, 0.5], 8, "feature \\(1,\\) spans 128 steps of 2\\^-8, others up to 256"),
        (0, 1, 0, "every feature spans 1 steps of 2\\^-0"),
    ],
)
def test_half_open_bounds_whose_spans_do_not_halve_the_check_are_refused(lo, hi, frac_bits, why):
    """Dropping the top value helps only where every feature spans one power of two 2^j >= 2 of grid steps;
    elsewhere the option is refused (naming a feature's span), rather than narrowing the bounds for nothing.
    [0, 1] in whole steps (2 values) would keep only 0: refused too ([-1, 1] keeps [-1, 0])."""
    with pytest.raises(ValueError, match=why):
        InputBounds.declared(lo, hi, (2,), frac_bits=frac_bits, half_open=True).encoded(FixedPoint(16))
    whole = InputBounds.declared(-1, 1, (2,), frac_bits=0, half_open=True).encoded(FixedPoint(16))
    assert [as_signed(b).tolist() for b in whole] == [[-1, -1], [0, 0]]


def test_half_open_bounds_whose_checked_top_a_float_cannot_hold_are_refused(tmp_path):
    """The bundle and what parties tell clients write the checked top hi - 2^-bits as a float64: past 2^53 grid
    steps it rounds (to hi itself, or two steps lower), so code that ignores `half_open` would accept the top the
    analysis left out, and this code would refuse its own bundle. Half-open bounds whose grid values need more
    than 53 bits are refused; 2^53 steps exactly still round-trip."""
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.protocol.model_shares import PartyModel, share_model

    fixed = FixedPoint(8)
    for lo, hi in ((2.0**45, 2.0**45 + 2), (2.0**45 + 2**-7, 2.0**45 + 2 + 2**-7), (-(2.0**45) - 2, -(2.0**45))):
        with pytest.raises(ValueError, match="more than the 53 bits a float holds exactly"):
            InputBounds.declared(lo, hi, (1,), half_open=True).encoded(fixed)
    plan = ModelPlan(Architecture((1,), (Dense("d", 1),)), {"d": (np.zeros((1, 1)), np.zeros(1))})
    for lo, hi in ((2.0**45 - 2, 2.0**45), (-(2.0**45), -(2.0**45) + 2)):  # |grid values| <= 2^53
        bounds = InputBounds.declared(lo, hi, (1,), half_open=True)
        share_model(plan, fixed, bounds)[0].save(str(tmp_path / "m.npz"))
        said = PartyModel.load(str(tmp_path / "m.npz")).public_info()["ranges"]["input_bounds"]
        assert said["hi"] * 2**8 == as_signed(bounds.encoded(fixed)[1])[0] == hi * 2**8 - 1
        older = InputBounds.declared(said["lo"], said["hi"], (1,), frac_bits=8)  # half_open ignored
        assert [as_signed(b).tolist() for b in older.encoded(fixed)] == [
            as_signed(b).tolist() for b in bounds.encoded(fixed)
        ]


def test_the_client_names_half_open_bounds_as_checked_when_it_refuses_an_input():
    """An input past half-open [0, 1) is refused naming the bounds as [0, 1), not [0, 1] (1.0 itself is served
    as 1 - 2^-8)."""
    from privacy.encrypted import InputOutOfBounds

    fixed = FixedPoint(16)
    bounds = InputBounds.declared(0, 1, (2,), frac_bits=8, half_open=True).on_grid(fixed)
    bounds.check(bounds.encode(np.array([[1.0, 0.0]]), fixed), fixed)
    with pytest.raises(InputOutOfBounds, match=re.escape("feature (0,), bounds [0, 1)); refused")):
        bounds.check(bounds.encode(np.array([[1.0 + 2**-8, 0.0]]), fixed), fixed)
    closed = InputBounds.declared(0, 1, (2,), frac_bits=8)
    with pytest.raises(InputOutOfBounds, match=re.escape("feature (0,), bounds [0, 1]); refused")):
        closed.check(closed.encode(np.array([[1.0 + 2**-8, 0.0]]), fixed), fixed)


def test_a_half_open_flag_that_is_not_a_bool_or_lacks_the_inputs_precision_is_refused():
    with pytest.raises(ValueError, match="half_open must be True or False, not 1"):
        InputBounds.declared(0, 1, (2,), half_open=1)
    with pytest.raises(ValueError, match="half_open must be True or False, not 'yes'"):
        InputBounds.from_dict({"lo": 0.0, "hi": 1.0, "frac_bits": 8, "half_open": "yes"}, (2,))
    with pytest.raises(ValueError, match="without the inputs' precision"):
        InputBounds.from_dict({"lo": 0.0, "hi": 1.0, "half_open": True}, (2,))


def test_a_bundle_keeps_the_inputs_precision_in_a_format_older_code_refuses(fixed, tmp_path, monkeypatch):
    """The inputs' precision is in the bundle and in what parties tell clients; the format is /4, which code
    reading only /3 refuses: it would take 8-bit inputs for 16-bit ones (inputs 256 times too small)."""
    import json

    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.protocol import model_shares
    from privacy.encrypted.protocol.model_shares import FORMAT, PartyModel, share_model

    arch = Architecture((3,), (Dense("out", 2),))
    plan = ModelPlan(arch, {"out": (np.ones((3, 2)), np.zeros(2))})
    model = share_model(plan, fixed, InputBounds.declared(0, 1, (3,), frac_bits=8))[0]
    model.save(str(tmp_path / "m.npz"))
    loaded = PartyModel.load(str(tmp_path / "m.npz"))
    assert (
        loaded.ranges.input_bounds.frac_bits == 8 and loaded.public_info()["ranges"]["input_bounds"]["frac_bits"] == 8
    )
    with np.load(tmp_path / "m.npz") as data:
        assert json.loads(bytes(data["header"]).decode())["format"] == FORMAT == "ppml-encrypted-model-share/4"
    with monkeypatch.context() as older:  # a reader of /3 only (the code before /4) refuses the bundle
        older.setattr(model_shares, "READABLE", ("ppml-encrypted-model-share/3",))
        with pytest.raises(ValueError, match="is not a"):
            PartyModel.load(str(tmp_path / "m.npz"))


@pytest.mark.parametrize("bad", [8.0, 8.5, "8", True, -1, 25])
def test_the_inputs_precision_must_be_an_integer_in_range(bad):
    """An inputs' precision that is not an int in [0, 24] is refused where it is declared (a float such as
    8.0 from a JSON header passed `in range(25)` and failed later with a TypeError in every encoding)."""
    with pytest.raises(ValueError, match="fractional bits must be an integer"):
        InputBounds.declared(0, 1, (3,), frac_bits=bad)
    with pytest.raises(ValueError, match="fractional bits must be an integer"):
        InputBounds.from_dict({"lo": 0.0, "hi": 1.0, "frac_bits": bad}, (3,))


def test_a_numpy_integer_precision_is_kept_as_a_json_int():
    import json

    bounds = InputBounds.declared(0, 1, (3,), frac_bits=np.int64(8))
    assert type(bounds.frac_bits) is int and json.loads(json.dumps(bounds.to_dict()))["frac_bits"] == 8


def test_coarse_inputs_bounds_lie_on_their_grid_so_nothing_outside_them_is_computed_on():
    """Bounds of inputs of 2^-N precision are multiples of 2^-N: the parties check the encoded bounds, so a
    declared bound off that grid would be rounded to the nearest step (declared [0.3, 0.6] at 0 bits was
    checked as [0, 1], and a client's -0.45 computed on as 0). Declared bounds off the grid are refused,
    calibration bounds are widened outward to it (every calibration example stays inside), and an input
    one step inside the bounds' grid but outside the bounds is refused by the client and by the parties."""
    from privacy.encrypted import InProcessCluster, InputOutOfBounds
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    with pytest.raises(ValueError, match=r"multiples of 2\^-0 .*feature \(1,\), bounds \[0\.3, 0\.6\]"):
        InputBounds.declared([0, 0.3], [1, 0.6], (2,), frac_bits=0)
    data = np.array([[0.3, 1 / 255], [0.6, 254 / 255]])
    widened = InputBounds.from_data(data, (2,), frac_bits=2)
    assert widened.lo.tolist() == [0.25, 0.0] and widened.hi.tolist() == [0.75, 1.0]
    assert InputBounds.from_data(data, (2,)).lo.tolist() == data[0].tolist()  # the model's precision: as before

    plan = ModelPlan(Architecture((1,), (Dense("out", 1),)), {"out": (np.ones((1, 1)), np.zeros(1))})  # logit = x
    cluster = InProcessCluster(plan, InputBounds.declared(0.25, 0.75, (1,), frac_bits=2), allow_logits=True)
    assert [int(as_signed(b)[0]) for b in cluster.ranges.input_bounds.encoded(cluster.fixed)] == [1, 3]
    assert cluster.predict([[0.2], [0.75]], output="logits").logits.ravel().tolist() == [0.25, 0.75]
    with pytest.raises(InputOutOfBounds):
        cluster.predict([[0.1]], output="logits")
    results = cluster.run_shares(share(np.array([[0]], dtype=np.uint64)), "logits")  # 0: a bypassing client
    refused = [r for r in results if r.refused is not None]
    assert refused and all(r.values is None for r in refused) and "outside the bounds" in refused[0].refused


def test_bounds_off_the_model_grid_are_checked_inward_so_nothing_past_them_is_computed_on():
    """Without the inputs' precision the bounds are checked at the model's (2^-16): declared [0.1, 0.3] are
    off that grid (0.1 = 6553.6 steps, 0.3 = 19660.8), and rounded to the nearest step the parties accepted
    19661, 2^-17 past 0.3. Rounded inward (6554 and 19660), exactly the grid values within [0.1, 0.3] pass:
    the bounds themselves are accepted (a client's 0.3 takes 19660, its 0.1 takes 6554), one step past either
    is refused by the parties (a client that bypasses the library), and by the client an input whose nearest
    grid value lies past a bound.
    Bounds holding no grid value are refused, naming the grid values on either side; calibration bounds are
    widened outward (a constant feature off the grid is served)."""
    from privacy.encrypted import InProcessCluster, InputOutOfBounds
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    plan = ModelPlan(Architecture((1,), (Dense("out", 1),)), {"out": (np.ones((1, 1)), np.zeros(1))})  # logit = x
    cluster = InProcessCluster(plan, InputBounds.declared(0.1, 0.3, (1,), input_check="exact"), allow_logits=True)
    step = 2.0**-16
    assert [int(as_signed(b)[0]) for b in cluster.ranges.input_bounds.encoded(cluster.fixed)] == [6554, 19660]
    logits = cluster.predict([[0.1], [0.3], [0.2]], output="logits").logits.ravel().tolist()
    assert logits == [6554 * step, 19660 * step, np.rint(0.2 / step) * step]
    with pytest.raises(InputOutOfBounds):  # its nearest grid value, 19661, lies past 0.3
        cluster.predict([[0.3 + 2**-20]], output="logits")
    # 0.1 - 2^-20 rounds to 6554, like any input its nearest grid value: inside, so it is computed on
    assert cluster.predict([[0.1 - 2**-20]], output="logits").logits.ravel().tolist() == [6554 * step]
    for encoded, accepted in ((6553, False), (6554, True), (19660, True), (19661, False)):
        results = cluster.run_shares(share(np.array([[encoded]], dtype=np.uint64)), "logits")
        assert all(r.refused is None for r in results) == accepted, encoded
        if not accepted:
            assert any(r.refused is not None and "outside the bounds" in r.refused for r in results)
    # Calibration data's extremes are widened outward instead: a constant feature at 0.3 is [19660, 19661].
    calibrated = InProcessCluster(plan, InputBounds.from_data([[0.3], [0.3]], (1,)), allow_logits=True)
    assert [int(as_signed(b)[0]) for b in calibrated.ranges.input_bounds.encoded(calibrated.fixed)] == [19660, 19661]
    assert calibrated.predict([[0.3]], output="logits").logits.ravel().tolist() == [19661 * step]
    with pytest.raises(
        ValueError, match=r"feature \(0,\) hold no multiple of 2\^-16 .*nearest are 0\.09999084.* and 0\.1000061"
    ):
        InProcessCluster(plan, InputBounds.declared(0.1 + step / 20, 0.1 + step / 4, (1,)), allow_logits=True)


def test_bounds_too_large_to_scale_to_the_inputs_grid_are_refused_naming_their_magnitude():
    """Declared bounds of 1.7e308 overflow when scaled by 2^16 for the inward rounding: they are refused naming
    their magnitude (as 1e300 is), not as "NaN or infinite values" with an overflow warning."""
    import re
    import warnings

    fixed = FixedPoint(16)
    for lo, hi, what in ((-1.7e308, 1.0, "lower"), (0.0, 1.7e308, "upper"), (-1e300, 1.0, "lower")):
        magnitude = re.escape(f"{abs(lo or hi):.3g}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=f"{what} input bound has a value of magnitude {magnitude}"):
                InputBounds.declared(lo, hi, (1,)).encoded(fixed)


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda h: h.update(format="ppml-encrypted-model-share/3"), "/3 bundles have no inputs' precision"),
        (lambda h: h["ranges"]["input_bounds"].update(frac_bits=20), "exceeds the model's"),
        (lambda h: h["ranges"]["input_bounds"].update(lo=0.3, hi=0.3, frac_bits=None), "hold no multiple of 2\\^-16"),
    ],
)
def test_a_bundle_whose_inputs_precision_or_bounds_its_format_or_model_cannot_have_is_refused(
    fixed, tmp_path, edit, why
):
    """A /3 header carrying an inputs' precision (no /3 writer wrote one, and /3 readers ignore it: they would
    take 8-bit inputs for 16-bit ones), a precision finer than the model's (every session would fail), or
    bounds that hold no value of the inputs' grid (what share-model before db6ab2f wrote for a constant
    calibration feature off the grid: no input passes the parties' check, and `serve` failed blaming
    --memory-budget) is refused when the bundle is loaded, not when a party first runs a session."""
    import json

    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.protocol.model_shares import PartyModel, share_model

    plan = ModelPlan(Architecture((3,), (Dense("out", 2),)), {"out": (np.ones((3, 2)), np.zeros(2))})
    share_model(plan, fixed, InputBounds.declared(0, 1, (3,), frac_bits=8))[0].save(str(tmp_path / "m.npz"))
    with np.load(tmp_path / "m.npz") as data:
        arrays = dict(data)
    header = json.loads(bytes(arrays["header"]).decode())
    edit(header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ValueError, match=why):
        PartyModel.load(str(tmp_path / "edited.npz"))


def test_coarse_inputs_that_wrap_into_the_bounds_when_scaled_are_refused():
    """The parties check inputs at their precision before scaling them to the model's format (times 2^16 for
    0-bit inputs): 2^48 + 1 scales to 2^16, the model's 1.0, inside [0, 1]; checked after scaling it would
    pass. Values near 2^63 and 2^64 are refused too."""
    from privacy.encrypted import InProcessCluster
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan

    plan = ModelPlan(Architecture((1,), (Dense("out", 1),)), {"out": (np.ones((1, 1)), np.zeros(1))})
    cluster = InProcessCluster(plan, InputBounds.declared(0, 1, (1,), frac_bits=0), allow_logits=True)
    assert cluster.ranges.input_bounds.to_model(np.array([2**48 + 1], dtype=np.uint64), cluster.fixed)[0] == 2**16
    for value in (2**48 + 1, 2**63, 2**63 + 1, 2**64 - 1):
        results = cluster.run_shares(share(np.array([[value]], dtype=np.uint64)), "logits")
        refused = [r for r in results if r.refused is not None]
        assert refused and all(r.values is None for r in refused), hex(value)
    results = cluster.run_shares(share(np.array([[1]], dtype=np.uint64)), "logits")
    assert all(r.refused is None for r in results)


@pytest.mark.parametrize("dies_in", [1, 2])
def test_a_party_that_dies_mid_refresh_leaves_the_others_with_a_transport_error(fixed, monkeypatch, dies_in):
    """Party 1 dies in the key round (1) or the re-sharing round (2) of a refresh: each other party either
    finishes or fails with TransportError (what `PartyServer.serve` answers by reconnecting with fresh keys
    from the bundles on disk), within its timeout; never another exception that would stop a server."""
    from privacy.encrypted.in_process import LocalParties
    from privacy.encrypted.model.plan import Architecture, Dense, ModelPlan
    from privacy.encrypted.protocol.model_shares import share_model
    from privacy.encrypted.protocol.party import Party
    from privacy.encrypted.protocol.transport import TransportError

    plan = ModelPlan(Architecture((3,), (Dense("out", 2),)), {"out": (np.ones((3, 2)), np.zeros(2))})
    models = share_model(plan, fixed, InputBounds.declared(0, 1, (3,)))
    original, steps = Party.exchange, []

    def exchange(self, *args):
        if self.index == 1:
            steps.append(1)
            if len(steps) == dies_in:
                raise TransportError("party 1 died")
        return original(self, *args)

    monkeypatch.setattr(Party, "exchange", exchange)
    outcomes = {}

    def refresh(party, model):
        try:
            outcomes[party.index] = model.refreshed(party)
        except Exception as err:
            outcomes[party.index] = err
            raise

    with pytest.raises(TransportError):
        LocalParties(timeout=1.0).run(refresh, models)
    assert isinstance(outcomes[1], TransportError)
    assert all(isinstance(outcomes[i], (TransportError, type(models[i]))) for i in (0, 2)), outcomes
    assert any(isinstance(outcomes[i], TransportError) for i in (0, 2))  # someone waited for party 1
