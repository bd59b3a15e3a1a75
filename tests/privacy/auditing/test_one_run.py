"""The one-run epsilon lower bound (Steinke, Nasr & Jagielski 2023) on mechanisms whose epsilon is known: a Gaussian
mechanism on a sum of Dirac canaries and randomized response, no training. True epsilons come from dp-accounting."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from scipy import stats

from privacy.auditing import one_run
from privacy.auditing.canaries import inclusion_bits
from privacy.auditing.one_run import (
    EPSILON_RESOLUTION,
    audit_one_run,
    epsilon_lower_bound,
    guess_counts,
    largest_bound,
    p_value,
)


def _gaussian_epsilon(sigma, delta):
    """Epsilon of one Gaussian mechanism of L2 sensitivity 1 and noise std sigma (add or remove one canary)."""
    accountant = pld_privacy_accountant.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dp_accounting.GaussianDpEvent(sigma))
    return accountant.get_epsilon(delta)


def _gaussian_sum(m, sigma, rng):
    """Canary i is the unit vector e_i, included with probability 1/2; the mechanism releases the sum of the included
    canaries plus N(0, sigma^2 I). Changing one canary moves the output by e_i (L2 sensitivity 1). Score = y_i."""
    bits = rng.random(m) < 0.5
    return bits + rng.normal(0.0, sigma, m), bits


def _naive_p_value(m, r, v, eps, delta):
    """Theorem 3's bound written out term by term with exact binomial coefficients."""
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(r + 1)]
    tail = sum(pmf[v:])
    worst = max((sum(pmf[v - i : v]) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, tail + 2 * m * delta * worst)


def _naive_bound(m, r, v, delta, alpha):
    """Bisection for the crossing p(eps) = alpha (p increases with eps in these cases), rounded down to the grid."""
    if _naive_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    low, high = 0.0, 1.0
    while _naive_p_value(m, r, v, high, delta) < alpha:
        low, high = high, 2 * high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _naive_p_value(m, r, v, mid, delta) < alpha else (low, mid)
    return math.floor(low / EPSILON_RESOLUTION + 1e-9) * EPSILON_RESOLUTION


@pytest.mark.parametrize(
    "m,r,v,delta",
    [
        (100, 100, 90, 0.0),
        (100, 40, 38, 1e-4),
        (200, 64, 60, 1e-5),
        (50, 50, 50, 0.0),
        (1000, 120, 100, 1e-6),
        (30, 10, 9, 1e-3),
    ],
)
def test_p_value_and_bound_match_a_term_by_term_computation(m, r, v, delta):
    for eps in (0.0, 0.5, 1.7, 4.0):
        assert p_value(m, r, v, eps, delta) == pytest.approx(_naive_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15)
    bound = epsilon_lower_bound(m, r, v, delta=delta, alpha=0.05)
    assert bound == pytest.approx(_naive_bound(m, r, v, delta, 0.05), abs=EPSILON_RESOLUTION + 1e-9)


def test_without_noise_the_bound_is_the_closed_form_and_grows_like_log_m():
    """Scores equal to the bits: every pair (k+, k-) with k+ <= #in and k- <= #out guesses all r = k+ + k- right,
    and P[Binomial(r, q) >= r] = q^r, so at level a the bound solves q^r = a: eps = -log(a^(-1/r) - 1), about
    log(r / log(1/a)), for the largest such r. It grows by about log(10) per tenfold canaries."""
    bounds = {}
    for m in (100, 1000, 10000, 100000):
        bits = np.random.default_rng(m).random(m) < 0.5
        audit = audit_one_run(bits.astype(float), bits, delta=0.0, confidence=0.95)
        pairs = guess_counts(m)
        level = 0.05 / len(pairs)
        r = max(k_in + k_out for k_in, k_out in pairs if k_in <= bits.sum() and k_out <= (~bits).sum())
        closed = -math.log(level ** (-1 / r) - 1)
        assert closed - EPSILON_RESOLUTION - 1e-9 <= audit.epsilon_lower_bound <= closed
        assert audit.num_guesses == audit.num_correct == r
        bounds[m] = audit.epsilon_lower_bound
    assert bounds[100] < bounds[1000] < bounds[10000] < bounds[100000]
    assert bounds[100000] - bounds[10000] == pytest.approx(math.log(10), abs=0.15)


def _randomized_response(m, eps, rng):
    """Randomized response: the score is the bit, flipped with probability 1 / (1 + e^eps) (pure eps-DP, where
    Theorem 3 is tight: W ~ Binomial(r, q) exactly), plus a tiny jitter independent of the bits to break ties."""
    bits = rng.random(m) < 0.5
    flipped = bits ^ (rng.random(m) < 1 / (1 + math.exp(eps)))
    return flipped + rng.random(m) * 1e-3, bits


def test_randomized_response_violation_rate_is_within_the_level():
    """400 audits of randomized response (eps = 1, 200 canaries) at 95 % confidence: the bound exceeds eps in at most
    the 99.9 % binomial quantile of 5 % of the runs (35). A level test that can fail: without the Bonferroni
    division the rate is about 13 % (54 of these runs), and peeking at the best guess count about 19 %."""
    eps, m, runs = 1.0, 200, 400
    rng = np.random.default_rng(99)
    violations = sum(
        audit_one_run(*_randomized_response(m, eps, rng), delta=0.0).epsilon_lower_bound > eps for _ in range(runs)
    )
    assert violations <= stats.binom.ppf(0.999, runs, 0.05)


def test_gaussian_bound_stays_below_the_true_epsilon():
    """A sanity check, not a level test (the one-run bound of a Gaussian mechanism is far below its epsilon, see
    the test above for the level): 100 audits at sigma 2 (true eps 2.25 at delta 1e-6) never exceed it."""
    sigma, delta, m = 2.0, 1e-6, 1000
    true_epsilon = _gaussian_epsilon(sigma, delta)
    assert true_epsilon == pytest.approx(2.25, abs=0.01)
    rng = np.random.default_rng(20231)
    assert all(
        audit_one_run(*_gaussian_sum(m, sigma, rng), delta=delta).epsilon_lower_bound < true_epsilon for _ in range(100)
    )


def test_split_strategy_also_stays_below_and_finds_leakage():
    sigma, delta, m = 1.0, 1e-6, 4000
    true_epsilon = _gaussian_epsilon(sigma, delta)
    rng = np.random.default_rng(7)
    bounds = []
    for _ in range(40):
        scores, bits = _gaussian_sum(m, sigma, rng)
        audit = audit_one_run(scores, bits, delta=delta, strategy="split")
        assert audit.num_canaries == m // 2 and audit.pairs_tried == 1
        bounds.append(audit.epsilon_lower_bound)
    assert sum(b > true_epsilon for b in bounds) <= stats.binom.ppf(0.999, 40, 0.05)
    assert np.median(bounds) > 1.0


def test_randomized_response_bound_approaches_the_true_epsilon_with_many_canaries():
    """Randomized response with eps = 2 (score = the bit, flipped with probability 1/(1+e^2)) is eps-DP exactly and
    the one-run bound is asymptotically tight for it: it rises towards 2 as m grows. (One run may exceed 2 with
    probability up to 5 %; the violation rate is what the level test counts. The seed is fixed.)"""
    eps = 2.0
    bounds = []
    for m in (1000, 10000, 1000000):
        rng = np.random.default_rng([11, m])
        bits = rng.random(m) < 0.5
        flip = rng.random(m) < 1 / (1 + math.exp(eps))
        bounds.append(audit_one_run((bits ^ flip).astype(float), bits, delta=0.0).epsilon_lower_bound)
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[2] == pytest.approx(eps, abs=0.1)


def test_gaussian_bound_rises_with_the_number_of_canaries():
    """The one-run bound of a Gaussian mechanism stays short of its epsilon (the gap of the paper's Figure 1, which
    the f-DP analysis narrows), but more canaries tighten it. Delta is small so that the 2 m delta term does not
    dominate at a million canaries. Fixed seed."""
    sigma, delta = 2.0, 1e-9
    true_epsilon = _gaussian_epsilon(sigma, delta)
    bounds = [
        audit_one_run(*_gaussian_sum(m, sigma, np.random.default_rng([12, m])), delta=delta).epsilon_lower_bound
        for m in (1000, 1000000)
    ]
    assert bounds[0] < bounds[1] < true_epsilon
    assert bounds[1] > 0.45 * true_epsilon


def test_chance_scores_give_zero_and_ties_do_not_leak_the_bits():
    rng = np.random.default_rng(3)
    bits = rng.random(2000) < 0.5
    assert audit_one_run(np.zeros(2000), bits, delta=1e-5).epsilon_lower_bound < 0.5
    assert audit_one_run(rng.normal(size=2000), bits, delta=1e-5).epsilon_lower_bound < 0.5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(scores=[], included=[]), "scores is empty"),
        (dict(scores=[1.0, 2.0], included=[True]), "2 scores but 1 inclusion bits"),
        # names neither which scores nor how many: with an overflowing run both are correlated with the secret bits
        (dict(scores=[1.0, float("nan")], included=[True, False]), r"^scores must all be finite \(some are NaN or inf"),
        (dict(scores=[1.0, 2.0], included=[2, 0]), "included must hold booleans"),
        (dict(scores=[1.0, 2.0], included=[1, 0], delta=1.0), "delta must be in"),
        (dict(scores=[1.0, 2.0], included=[1, 0], confidence=1.0), "confidence must be in"),
        (dict(scores=[1.0, 2.0], included=[1, 0], strategy="peek"), "strategy must be one of"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_it(kwargs, message):
    kwargs = dict(dict(delta=1e-5), **kwargs)
    with pytest.raises(ValueError, match=message):
        audit_one_run(**kwargs)


def test_guess_counts_depend_on_m_only_and_stay_within_it():
    for m in (1, 2, 15, 16, 17, 1000, 12345):
        pairs = guess_counts(m)
        assert pairs == guess_counts(m) and len(set(pairs)) == len(pairs)
        assert all(0 <= k_out <= k_in and k_in + k_out <= m for k_in, k_out in pairs)
        assert max(k_in + k_out for k_in, k_out in pairs) == m
    fewest = min(k_in + k_out for k_in, k_out in guess_counts(1000))
    assert one_run.MIN_GUESSES <= fewest < 2 * one_run.MIN_GUESSES


@pytest.mark.parametrize("m, delta", [(32, 1e-3), (1000, 1e-3), (1000, 1e-5)])
def test_largest_bound_is_what_a_perfect_attack_reaches_and_nothing_exceeds_it(m, delta):
    """`largest_bound` (printed beside the pipeline's audit) is the bound of scores that separate the bits exactly;
    the delta term caps it: at delta 1e-3, 1,000 canaries show less than 32 do (README, "The privacy audit")."""
    ceiling = largest_bound(m, delta=delta)
    for _ in range(5):
        bits = inclusion_bits(m)
        perfect = audit_one_run(bits.astype(float), bits, delta=delta)
        assert perfect.epsilon_lower_bound <= ceiling
        reversed_scores = audit_one_run(-bits.astype(float), bits, delta=delta)
        assert reversed_scores.epsilon_lower_bound == 0.0
    pairs = guess_counts(m)
    totals = {k_in + k_out for k_in, k_out in pairs}
    assert ceiling == max(epsilon_lower_bound(m, r, r, delta=delta, alpha=0.05 / len(pairs)) for r in totals)


def test_the_delta_term_caps_the_pipelines_audit_at_the_readmes_values():
    assert largest_bound(1000, delta=1e-3) < 0.25 < 1.6 < largest_bound(32, delta=1e-3) < 1.7
    assert largest_bound(1000, delta=1e-5) > 5


def test_the_f_dp_bound_keeps_its_ceiling_at_a_large_delta_as_the_readme_says():
    """The f-DP bound's delta enters once per canary, not m times: at delta 1e-3 its ceiling stays high."""
    assert largest_bound(1000, delta=1e-3, estimator="f-dp") == pytest.approx(5.15, abs=0.005)
    assert largest_bound(32, delta=1e-3, estimator="f-dp") == pytest.approx(1.89, abs=0.005)
