"""Protocol primitives on shares against exact cleartext computation in the same ring."""

import numpy as np
import pytest

from privacy.encrypted import arithmetic, comparison
from privacy.encrypted.activations import KNOTS, SIGMOID_MAX_ERROR, pwl_sigmoid
from privacy.encrypted.client import OverflowDetected, predict_with_retries
from privacy.encrypted.layers import sigmoid
from privacy.encrypted.ring import DTYPE, arithmetic_shift, as_ring, as_signed
from privacy.encrypted.secure import SecureBackend
from privacy.encrypted.shares import AShare, reconstruct, share
from privacy.encrypted.simulation import Interval, IntervalBackend

RNG = np.random.default_rng(7)  # test data only; shares and masks never use numpy randomness


def full_ring(n):
    return RNG.integers(0, 2 ** 64, size=n, dtype=np.uint64)


def near_range(fixed, n):
    """Values spread over the whole comparison range, its edges, zero and +-1."""
    edge = 2 ** fixed.range_bits
    v = np.concatenate([RNG.integers(-edge + 1, edge, size=n), [0, 1, -1, edge - 1, -edge + 1, -edge]])
    return as_ring(v)


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


def test_multiplication_is_exact_in_the_whole_ring(run_parties):
    x, y = full_ring(2000), full_ring(2000)
    assert np.array_equal(run_parties(lambda p, a, b: arithmetic.mul(p, a, b), x, y), x * y)
    assert run_parties.last_parties[0].channel.stats.rounds == 1


def test_matrix_product_is_exact_in_the_whole_ring(run_parties):
    x, w = full_ring(3 * 40).reshape(3, 40), full_ring(40 * 7).reshape(40, 7)
    got = run_parties(lambda p, a, b: arithmetic.reshare(p, arithmetic.matmul_local(a, b)), x, w)
    assert np.array_equal(got, x @ w)


def test_truncation_is_floor_or_floor_plus_one_up_to_large_values(run_parties, fixed):
    f = fixed.frac_bits
    v = as_ring(RNG.integers(-2 ** 44, 2 ** 44, size=20000))
    got = run_parties(lambda p, a: arithmetic.truncate(p, a, f), v)
    error = as_signed(got - arithmetic_shift(v, f))
    assert set(np.unique(error)) <= {0, 1}
    assert run_parties.last_parties[0].channel.stats.rounds == 1


def test_truncation_rounds_stochastically_without_bias(run_parties, fixed):
    # x = k + 0.25 units of 2^-f: the result is k+1 with probability 0.25 exactly.
    f = fixed.frac_bits
    k = RNG.integers(-2 ** 20, 2 ** 20, size=40000)
    v = as_ring(k * 2 ** f + 2 ** (f - 2))
    error = as_signed(run_parties(lambda p, a: arithmetic.truncate(p, a, f), v)) - k
    # Binomial(40000, 0.25): std of the mean 0.0022; +-0.011 is 5 sigma.
    assert abs(error.mean() - 0.25) < 0.011


def test_truncation_failures_are_exactly_what_the_overflow_monitor_flags(run_parties, fixed):
    # |x| = 2^61 in ring units fails with probability 1/8; the truncated value 2^45 is in range.
    f = fixed.frac_bits
    v = as_ring(np.where(RNG.random(4000) < 0.5, 2 ** 61, -(2 ** 61)))

    def body(p, a):
        t = arithmetic.truncate(p, a, f)
        comparison.sign_bit(p, t)
        return t

    got = run_parties(body, v)
    failed = as_signed(got - arithmetic_shift(v, f)) != 0
    assert 300 < failed.sum() < 700  # 500 expected
    assert np.array_equal(run_parties.overflow != 0, failed)


def test_bit_decomposition_is_exact_for_every_ring_element(run_parties):
    v = np.concatenate([full_ring(3000), as_ring([0, 1, -1, 2 ** 63 - 1, -(2 ** 63)])])
    bits = run_parties(lambda p, a: comparison.bit_decompose(p, a), v)
    assert np.array_equal(bits, v)
    assert run_parties.last_parties[0].channel.stats.rounds == 8


def test_relu_and_sign_are_exact_near_the_range_limits(run_parties, fixed):
    v = near_range(fixed, 5000)
    relu, negative = run_parties(lambda p, a: (comparison.relu(p, a), comparison.less_than_zero(p, a)), v)
    signed = as_signed(v)
    assert np.array_equal(as_signed(relu), np.maximum(signed, 0))
    assert np.array_equal(negative, (signed < 0).astype(np.uint64))
    flagged = run_parties.overflow.reshape(2, -1)
    edge = 2 ** fixed.range_bits
    assert np.array_equal(flagged[0] != 0, (signed >= edge) | (signed < -edge))


def test_relu_costs_eleven_rounds(run_parties, fixed):
    run_parties(lambda p, a: comparison.relu(p, a), near_range(fixed, 10))
    assert run_parties.last_parties[0].channel.stats.rounds == 11


@pytest.mark.parametrize("width", [2, 3, 5, 10])
def test_maximum_and_argmax_match_numpy_including_ties(run_parties, fixed, width):
    values = RNG.integers(-5, 5, size=(300, width)) * 2 ** 30  # many ties
    v = as_ring(values)
    biggest, index = run_parties(lambda p, a: (comparison.maximum(p, a), comparison.argmax(p, a)), v)
    assert np.array_equal(as_signed(biggest), values.max(axis=1))
    assert np.array_equal(index.astype(np.int64), values.argmax(axis=1))


def test_piecewise_linear_sigmoid_meets_its_stated_error(run_parties, fixed):
    x = np.concatenate([np.linspace(-14, 14, 3001), KNOTS, [-1e3, 1e3]])
    enc = fixed.encode(x)
    got = fixed.decode(run_parties(lambda p, a: sigmoid(SecureBackend(p, fixed), a, fixed), enc))
    assert np.abs(got - 0.5 * (1 + np.tanh(x / 2))).max() <= SIGMOID_MAX_ERROR
    assert np.abs(got - pwl_sigmoid(x)).max() < 5e-4
    bounds = sigmoid(IntervalBackend(fixed), Interval.exact(enc), fixed)
    assert bounds.contains(fixed.encode(got)).all()


def test_prediction_is_rerun_while_the_overflow_monitor_fires(fixed):
    logits = np.array([[0.5, -1.25], [2.0, 3.0]])
    values = [c for c, _ in share(fixed.encode(logits))]  # c0, c1, c2
    clean = [np.zeros(2, dtype=DTYPE)] * 3
    flagged = [np.array([0, 4], dtype=DTYPE), np.zeros(2, dtype=DTYPE), np.zeros(2, dtype=DTYPE)]

    def runs(monitors):
        calls = []

        def run():
            calls.append(1)
            return values, monitors[len(calls) - 1]
        return run, calls

    run, calls = runs([flagged, flagged, clean])
    got = predict_with_retries(run, retries=2, output="logits", output_activation="linear", fixed=fixed)
    assert len(calls) == 3
    np.testing.assert_array_equal(got.logits, logits)
    np.testing.assert_array_equal(got.labels, [0, 1])

    run, calls = runs([flagged, flagged, clean])
    with pytest.raises(OverflowDetected, match="1 compared value"):
        predict_with_retries(run, retries=1, output="logits", output_activation="linear", fixed=fixed)
    assert len(calls) == 2
