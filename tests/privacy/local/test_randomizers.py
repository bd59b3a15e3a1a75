"""Local randomizers: output distributions against their definitions, worst-case epsilon computed here from the
definitions, dp-accounting's view of the same events, and bad input."""

import itertools
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from scipy import stats

from privacy.local import (
    GeneralizedRandomizedResponse,
    OptimizedLocalHashing,
    OptimizedUnaryEncoding,
    OsRandom,
    RandomizedResponse,
    make_oracle,
)
from privacy.local.olh import HASH_PRIME

N = 20_000
ALPHA = 1e-3  # fixed seeds: deterministic; a real mismatch of the size tested gives p far below this


def grr_matrix(epsilon, k):
    """P[report j | value i] of k-ary randomized response, from Wang et al.'s definition."""
    e = math.exp(epsilon)
    return np.where(np.eye(k, dtype=bool), e / (e + k - 1), 1 / (e + k - 1))


def chi_square_p(counts, probabilities):
    counts = np.asarray(counts, float)
    return stats.chisquare(counts, np.asarray(probabilities) * counts.sum()).pvalue


@pytest.mark.parametrize("epsilon", [math.log(3), 0.5, 2.0])
def test_coin_design_answers_follow_the_two_coins(epsilon):
    rr = RandomizedResponse(epsilon)
    t = (math.exp(epsilon) - 1) / (math.exp(epsilon) + 1)
    for value, seed in ((0, 1), (1, 2)):
        reports = rr.randomize(np.full(N, value), seed=seed)
        p_yes = t * value + (1 - t) / 2  # truthful with probability t, else a fair coin
        assert chi_square_p(np.bincount(reports, minlength=2), [1 - p_yes, p_yes]) > ALPHA


def test_two_fair_coins_are_epsilon_ln3_and_a_random_response_with_probability_half():
    rr = RandomizedResponse.from_coin(0.5)
    assert rr.epsilon == pytest.approx(math.log(3))
    assert RandomizedResponse().epsilon == pytest.approx(math.log(3))
    assert rr.truth_probability == pytest.approx(0.5)
    assert rr.dp_event() == dp_accounting.RandomizedResponseDpEvent(noise_parameter=pytest.approx(0.5), num_buckets=2)


@pytest.mark.parametrize("epsilon,k", [(1.0, 4), (math.log(3), 3), (3.0, 6)])
def test_grr_reports_follow_its_transition_matrix(epsilon, k):
    grr = GeneralizedRandomizedResponse(epsilon, k)
    matrix = grr_matrix(epsilon, k)
    for value in range(k):
        reports = grr.randomize(np.full(N // k, value), seed=10 + value)
        assert chi_square_p(np.bincount(reports, minlength=k), matrix[value]) > ALPHA


@pytest.mark.parametrize("epsilon", [0.7, 2.0])
def test_oue_bit_patterns_follow_the_product_of_its_bit_probabilities(epsilon):
    k, q = 3, 1 / (math.exp(epsilon) + 1)
    oue = OptimizedUnaryEncoding(epsilon, k)
    patterns = list(itertools.product((0, 1), repeat=k))
    for value in range(k):
        reports = oue.randomize(np.full(N, value), seed=20 + value)
        index = reports.astype(int) @ (1 << np.arange(k - 1, -1, -1))
        expected = [
            math.prod(0.5 if i == value else (q if bit else 1 - q) for i, bit in enumerate(pattern))
            for pattern in patterns
        ]
        assert sum(expected) == pytest.approx(1)
        assert chi_square_p(np.bincount(index, minlength=2**k), expected) > ALPHA


@pytest.mark.parametrize("epsilon", [1.0, 2.5])
def test_olh_hashes_uniformly_and_randomizes_the_hash_by_grr_over_g(epsilon):
    olh = OptimizedLocalHashing(epsilon, 10)
    g = round(math.exp(epsilon) + 1)
    assert olh.buckets == g
    value = 7
    reports = olh.randomize(np.full(N, value), seed=30)
    hashed = ((reports.a * value + reports.b) % HASH_PRIME) % g  # the family, written out here
    assert chi_square_p(np.bincount(hashed, minlength=g), np.full(g, 1 / g)) > ALPHA
    shift = (reports.y - hashed) % g  # 0: kept; else uniform over the other g - 1 buckets
    assert chi_square_p(np.bincount(shift, minlength=g), grr_matrix(epsilon, g)[0]) > ALPHA


@pytest.mark.parametrize("epsilon", [math.log(3), 1.0, 4.0])
def test_worst_case_ratio_of_report_probabilities_is_the_stated_epsilon(epsilon):
    # RR (coin design): P(report | value) written from the coins.
    t = (math.exp(epsilon) - 1) / (math.exp(epsilon) + 1)
    coin = np.array([[(1 + t) / 2, (1 - t) / 2], [(1 - t) / 2, (1 + t) / 2]])
    assert math.log((coin.max(axis=0) / coin.min(axis=0)).max()) == pytest.approx(RandomizedResponse(epsilon).epsilon)
    # GRR: columns of the transition matrix.
    k = 5
    matrix = grr_matrix(epsilon, k)
    assert math.log((matrix.max(axis=0) / matrix.min(axis=0)).max()) == pytest.approx(
        GeneralizedRandomizedResponse(epsilon, k).epsilon
    )
    # OUE: every report of k = 4 bits, for every pair of values.
    oue = OptimizedUnaryEncoding(epsilon, 4)
    p, q = 0.5, 1 / (math.exp(epsilon) + 1)
    worst = 0.0
    for pattern in itertools.product((0, 1), repeat=4):
        probs = [
            math.prod((p if i == v else q) if bit else (1 - p if i == v else 1 - q) for i, bit in enumerate(pattern))
            for v in range(4)
        ]
        worst = max(worst, max(probs) / min(probs))
    assert math.log(worst) == pytest.approx(oue.epsilon)
    # OLH: for sampled hashes, P(y | v, H) over all values and buckets.
    olh = OptimizedLocalHashing(epsilon, 6)
    g = olh.buckets
    keep, other = math.exp(epsilon) / (math.exp(epsilon) + g - 1), 1 / (math.exp(epsilon) + g - 1)
    rng = np.random.default_rng(5)
    worst = 0.0
    for a, b in zip(rng.integers(1, HASH_PRIME, 50), rng.integers(0, HASH_PRIME, 50), strict=True):
        hashed = ((int(a) * np.arange(6) + int(b)) % HASH_PRIME) % g
        probs = np.where(hashed[:, None] == np.arange(g)[None, :], keep, other)  # (value, y)
        worst = max(worst, (probs.max(axis=0) / probs.min(axis=0)).max())
    assert math.log(worst) == pytest.approx(olh.epsilon)


@pytest.mark.parametrize(
    "oracle",
    [RandomizedResponse(1.3), GeneralizedRandomizedResponse(1.3, 4), OptimizedLocalHashing(2.2, 9)],
    ids=lambda o: o.name,
)
def test_dp_accounting_gives_the_randomized_response_events_the_stated_epsilon(oracle):
    event = oracle.dp_event()
    # dp-accounting's definition: the input with probability 1 - p, else uniform over all buckets.
    p, b = event.noise_parameter, event.num_buckets
    assert math.log((1 - p + p / b) / (p / b)) == pytest.approx(oracle.epsilon)
    accountant = pld_privacy_accountant.PLDAccountant(dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(event)
    assert accountant.get_epsilon(0.0) == pytest.approx(oracle.epsilon, abs=1e-3)


def test_oue_has_no_randomized_response_event():
    assert OptimizedUnaryEncoding(1.0, 4).dp_event() is None


def test_default_coins_come_from_the_os_csprng_and_a_seed_replays():
    grr = GeneralizedRandomizedResponse(0.5, 8)
    values = np.zeros(2000, int)
    assert not np.array_equal(grr.randomize(values), grr.randomize(values))
    assert np.array_equal(grr.randomize(values, seed=3), grr.randomize(values, seed=3))
    draws = OsRandom().integers(0, 7, 70_000)
    assert draws.min() == 0 and draws.max() == 6
    assert stats.chisquare(np.bincount(draws, minlength=7)).pvalue > 1e-6  # not seeded: a loose bound
    uniforms = OsRandom().random(10_000)
    assert 0 <= uniforms.min() and uniforms.max() < 1 and stats.kstest(uniforms, "uniform").pvalue > 1e-6


@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, 21.0, True, "1"])
def test_bad_epsilon_is_one_line_naming_it(epsilon):
    with pytest.raises(ValueError, match=r"^epsilon must be .*got " + repr(epsilon).replace("(", r"\(")) as err:
        GeneralizedRandomizedResponse(epsilon, 3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("k", [1, 0, 2.5, True])
def test_bad_domain_is_one_line_naming_it(k):
    with pytest.raises(ValueError, match=rf"^k \(the number of values\) must be .*got {k!r}$"):
        OptimizedUnaryEncoding(1.0, k)


@pytest.mark.parametrize(
    "values,bad", [([0, 1, 4], "4"), ([-1, 0], "-1"), ([0.0, 1.5], "1.5"), ([0.0, math.nan], "nan")]
)
def test_values_outside_the_domain_are_refused_naming_the_value(values, bad):
    for mechanism in ("grr", "oue", "olh"):
        with pytest.raises(ValueError, match=rf"values must be integers in \[0, 4\), got .*{bad}"):
            make_oracle(mechanism, 1.0, 4).randomize(values, seed=0)
    with pytest.raises(ValueError, match="mechanism 'rr' is for yes/no"):
        make_oracle("rr", 1.0, 3)
    with pytest.raises(ValueError, match="got 'lap'"):
        make_oracle("lap", 1.0, 3)


class _QueuedDraws:
    """An rng whose `integers` returns the queued arrays in turn: where a coin's threshold lies."""

    def __init__(self, *draws):
        self.draws = [np.asarray(d, np.int64) for d in draws]

    def integers(self, low, high, size):
        draw = self.draws.pop(0)
        assert draw.size == size and low <= draw.min() and draw.max() < high
        return draw


def _exact_ratio_at_most_exp(numerator: int, denominator: int, epsilon: float) -> bool:
    """numerator / denominator <= e**epsilon, with 80-digit decimals (exp correctly rounded there)."""
    from decimal import Context

    context = Context(prec=80)
    return context.divide(numerator, denominator) <= context.exp(context.create_decimal(epsilon))


@pytest.mark.parametrize("epsilon", [math.log(3), 0.1, 1.0, 5.0, 19.0, 20.0])
def test_coins_as_drawn_are_at_most_epsilon_ldp_and_draws_use_the_threshold(epsilon):
    """The likelihood ratio of the probabilities the coins are drawn with, in exact arithmetic, never exceeds
    e**epsilon (u < p on the 2**-53 grid rounded the keep probability up: up to 1.8e-8 nats over), and is
    within 1e-6 of it."""
    from privacy.local.frequency_oracle import UNIFORM_GRID, grr_draw, grr_keep_threshold

    grid = UNIFORM_GRID
    rr = RandomizedResponse(epsilon)
    t = rr.truth_threshold
    assert _exact_ratio_at_most_exp(grid + t, grid - t, epsilon)  # P(yes|yes) / P(yes|no)
    assert (grid + t) / (grid - t) > math.exp(epsilon) * (1 - 1e-6)
    assert rr.support_probabilities() == ((grid + t) / (2 * grid), (grid - t) / (2 * grid))
    assert list(rr._randomize(np.array([1, 1, 0]), _QueuedDraws([t - 1, t, t], [0, 0, 1]))) == [1, 0, 1]
    for k in (2, 10, 1 << 20):
        keep = grr_keep_threshold(epsilon, k)
        assert _exact_ratio_at_most_exp(keep * (k - 1), grid - keep, epsilon)
        assert keep * (k - 1) / (grid - keep) > math.exp(epsilon) * (1 - 1e-6)
        drawn = grr_draw(np.array([0, 0]), epsilon, k, _QueuedDraws([keep - 1, keep], [0, 0]))
        assert list(drawn) == [0, 1]


class _QueuedBits(_QueuedDraws):
    """`_QueuedDraws` whose `random` (OUE's own bit) returns the queued uniforms."""

    def __init__(self, integers, uniforms):
        super().__init__(integers)
        self.uniforms = np.asarray(uniforms, np.float64)

    def random(self, size):
        assert self.uniforms.size == size
        return self.uniforms


@pytest.mark.parametrize("epsilon", [0.1, 0.5, math.log(3), 1.0, 5.0, 19.0, 20.0])
def test_oue_bits_as_drawn_are_at_most_epsilon_ldp_and_draws_use_the_threshold(epsilon):
    """The probability q every other bit is drawn with is an exact rational on the 2**-53 grid whose ratio
    (1 - q) / q never exceeds e**epsilon (a float 1 / (e**eps + 1) drawn as u < q did, by up to 2e-16 nats, at
    0.1 and 0.5 among others), is within 1e-6 of it, and is what the estimator uses and the draw compares with."""
    from privacy.local.frequency_oracle import UNIFORM_GRID

    oue = OptimizedUnaryEncoding(epsilon, 3)
    threshold = oue.other_bit_threshold
    assert isinstance(threshold, int) and 0 < threshold < UNIFORM_GRID
    assert _exact_ratio_at_most_exp(UNIFORM_GRID - threshold, threshold, epsilon)
    assert (UNIFORM_GRID - threshold) / threshold > math.exp(epsilon) * (1 - 1e-6)
    assert oue.support_probabilities() == (0.5, threshold / UNIFORM_GRID)
    # value 2: bits 0 and 1 are other bits (set below the threshold), bit 2 its own (set when u < 1/2)
    draws = [threshold - 1, threshold, 0, threshold, 0, threshold - 1]
    drawn = oue._randomize(np.array([2, 2]), _QueuedBits(draws, [0.5, 0.25]))
    assert drawn.tolist() == [[True, False, False], [False, True, True]]


def test_os_random_normal_radii_come_from_whole_64_bit_words(monkeypatch):
    """Word 0 gives the largest radius sqrt(128 ln 2) = 9.42 (53-bit uniforms stopped at 8.57), the largest word a
    finite 0; the radius of every word matches numpy's float64 sqrt(-2 ln((w + 1) 2^-64))."""
    words = np.array([0, 2**64 - 1, 2**63, 12345], dtype=np.uint64)
    rng = OsRandom()
    monkeypatch.setattr(rng, "_words", lambda count: words[:count])
    monkeypatch.setattr(rng, "random", lambda size: np.zeros(size))  # angle 0: the radius lands on the cosine
    z = rng.normal(0.0, 1.0, 8)
    assert np.all(np.isfinite(z)) and np.all(z[4:] == 0)
    expected = np.sqrt(-2 * np.log((words.astype(np.float64) + 1) * 2.0**-64))
    np.testing.assert_allclose(z[:4], expected, rtol=1e-15, atol=1e-12)
    assert z[0] == pytest.approx(np.sqrt(128 * np.log(2)), rel=1e-15) and z[1] == 0
