"""The f-DP one-run lower bound (Mahloujifar, Melis & Chaudhuri 2024) on mechanisms whose privacy is known, no
training: a Gaussian mechanism on a sum of Dirac canaries (mu-GDP with mu = 1 / sigma) and randomized response
(eps-DP). True epsilons come from dp-accounting."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from scipy import stats

from privacy.auditing import f_dp_one_run
from privacy.auditing.claimed_curve import SampledGaussianClaim
from privacy.auditing.f_dp_one_run import gdp_epsilon, parameter_lower_bound, rejects
from privacy.auditing.one_run import ESTIMATORS, audit_one_run


def _gaussian_epsilon(sigma, delta):
    """Epsilon of one Gaussian mechanism of L2 sensitivity 1 and noise std sigma (add or remove one canary)."""
    accountant = pld_privacy_accountant.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dp_accounting.GaussianDpEvent(sigma))
    return accountant.get_epsilon(delta)


def _gaussian_sum(m, sigma, rng):
    """Canary i is e_i, included with probability 1/2; the release is the sum of the included canaries plus
    N(0, sigma^2 I) (L2 sensitivity 1: mu-GDP with mu = 1 / sigma). Score = y_i."""
    bits = rng.random(m) < 0.5
    return bits + rng.normal(0.0, sigma, m), bits


def _randomized_response(m, eps, rng):
    bits = rng.random(m) < 0.5
    flipped = bits ^ (rng.random(m) < 1 / (1 + math.exp(eps)))
    return flipped + rng.random(m) * 1e-3, bits  # the jitter breaks ties at random


def _two_sided_correct(scores, bits, k):
    """Correct guesses of "in" for the k highest scores and "out" for the k lowest."""
    ranked = bits[np.argsort(-scores, kind="stable")]
    return int(ranked[:k].sum() + (~ranked[-k:]).sum())


@pytest.mark.parametrize("mu, delta", [(0.5, 1e-5), (1.0, 1e-5), (2.0, 1e-6)])
def test_gdp_epsilon_matches_dp_accountings_gaussian_mechanism(mu, delta):
    """The closed form that turns mu into eps agrees with dp-accounting's PLD of the Gaussian mechanism (which
    rounds pessimistically, so it may only be slightly larger)."""
    expected = _gaussian_epsilon(1 / mu, delta)
    assert gdp_epsilon(mu, delta) == pytest.approx(expected, abs=0.02)
    assert gdp_epsilon(mu, delta) <= expected + 1e-6


def test_eps_delta_family_level_on_randomized_response():
    """Randomized response with eps = 1 is exactly eps-DP, and the (eps, 0) trade-off is its own: the f-DP test is
    close to exact there, so its level shows. 400 audits of 200 canaries, one fixed guess pair (the 100 highest
    "in", the 100 lowest "out") at level 5 %: the bound exceeds eps in at most the 99.9 % binomial quantile of
    5 % of the runs (35; the implementation gives 14, an anti-conservative recursion would give more)."""
    eps, m, runs = 1.0, 200, 400
    rng = np.random.default_rng(99)
    violations = 0
    for _ in range(runs):
        scores, bits = _randomized_response(m, eps, rng)
        v = _two_sided_correct(scores, bits, m // 2)
        violations += parameter_lower_bound(m, m, v, family="eps-delta", delta=0.0, alpha=0.05) > eps
    assert violations <= stats.binom.ppf(0.999, runs, 0.05)
    assert violations > 0  # the test is near its level, not vacuous


def test_eps_delta_family_accounts_for_delta():
    """A mechanism that is (1, 0.05)-DP exactly: with probability delta it reveals the bit (score +-10), else it is
    randomized response with eps = 1. 400 audits of 200 canaries guessing the 10 highest "in" and the 10 lowest
    "out" at level 5 %: with the delta the bound exceeds eps in at most the 99.9 % binomial quantile of 5 % of the
    runs; the same test with delta left out (testing (1, 0)-DP, which the mechanism is not) exceeds it far more
    often, so the check can fail."""
    eps, delta, m, runs, k = 1.0, 0.05, 200, 400, 10
    rng = np.random.default_rng(3)
    with_delta = without_delta = 0
    for _ in range(runs):
        scores, bits = _randomized_response(m, eps, rng)
        scores = np.where(rng.random(m) < delta, np.where(bits, 10.0, -10.0), scores)
        v = _two_sided_correct(scores, bits, k)
        with_delta += parameter_lower_bound(m, 2 * k, v, family="eps-delta", delta=delta, alpha=0.05) > eps
        without_delta += parameter_lower_bound(m, 2 * k, v, family="eps-delta", delta=0.0, alpha=0.05) > eps
    allowance = stats.binom.ppf(0.999, runs, 0.05)
    assert with_delta <= allowance < without_delta


def test_gaussian_bound_stays_below_the_true_epsilon_over_many_seeds():
    """200 audits (Bonferroni over the guess pairs, 95 % confidence) of a Gaussian mechanism with mu = 1 and 2,000
    canaries: the f-DP bound with the mu-GDP trade-off exceeds the true epsilon (dp-accounting) in at most the
    99.9 % binomial quantile of 5 % of the runs, and the median is well above the counting bound on the same
    scores."""
    sigma, delta, m, runs = 1.0, 1e-5, 2000, 200
    true_epsilon = _gaussian_epsilon(sigma, delta)
    rng = np.random.default_rng(2024)
    f_dp, counting = [], []
    for run in range(runs):
        scores, bits = _gaussian_sum(m, sigma, rng)
        f_dp.append(audit_one_run(scores, bits, delta=delta, estimator="f-dp-gaussian").epsilon_lower_bound)
        if run < 20:
            counting.append(audit_one_run(scores, bits, delta=delta, estimator="counting").epsilon_lower_bound)
    assert sum(bound > true_epsilon for bound in f_dp) <= stats.binom.ppf(0.999, runs, 0.05)
    assert np.median(f_dp[:20]) > 1.2 * np.median(counting)


def test_gaussian_bound_approaches_the_true_mu_with_many_canaries():
    """mu = 2 (sigma 0.5): the bound on mu rises with the number of canaries and reaches more than 0.6 of it at
    100,000 (the analysis is conservative, so it stays below). Fixed seeds."""
    sigma = 0.5
    mus = []
    for m in (1000, 100000):
        scores, bits = _gaussian_sum(m, sigma, np.random.default_rng([16, m]))
        mus.append(
            max(
                parameter_lower_bound(
                    m, 2 * k, _two_sided_correct(scores, bits, k), family="gaussian", delta=0.0, alpha=0.05
                )
                for k in (m // 16, m // 8, m // 4)
            )
        )
    assert mus[0] < mus[1] < 1 / sigma
    assert mus[1] > 0.6 / sigma


def test_a_doubled_sensitivity_is_caught_by_the_gaussian_family_not_by_counting():
    """The idealised form of the README's clip-2x check: scores of a Gaussian mechanism at mu = 2 (a 2C clip of a
    mu = 1 run) with 5,000 canaries; the claim is mu = 1's epsilon at 1e-5 (dp-accounting). The f-DP bound with
    the mu-GDP trade-off exceeds the claim in every one of 20 seeds, as does the claimed mechanism's own curve (the
    Gaussian mechanism's, from PLD: sampling rate 1, one step); the counting bound in none."""
    delta, m = 1e-5, 5000
    claim = _gaussian_epsilon(1.0, delta)
    rng = np.random.default_rng(5)
    caught = {estimator: 0 for estimator in ESTIMATORS}
    for _ in range(20):
        scores, bits = _gaussian_sum(m, 0.5, rng)
        for estimator in ESTIMATORS:
            caught[estimator] += (
                audit_one_run(
                    scores, bits, delta=delta, estimator=estimator, claim=SampledGaussianClaim(1.0, 1.0, 1)
                ).epsilon_lower_bound
                > claim
            )
    assert caught == {"counting": 0, "f-dp": caught["f-dp"], "f-dp-gaussian": 20, "f-dp-claimed": 20}


def test_chance_scores_and_perfect_guesses():
    """Coin-flip correctness rejects nothing; all-correct guesses reject perfect privacy (theta 0) and the bound
    grows with the number of guesses."""
    assert parameter_lower_bound(1000, 1000, 500, family="gaussian", delta=0.0, alpha=0.05) == 0.0
    bounds = [parameter_lower_bound(m, m, m, family="gaussian", delta=0.0, alpha=0.05) for m in (100, 10000)]
    assert 0 < bounds[0] < bounds[1]
    assert rejects(1000, 1000, 1000, lambda y: y, 0.05, 1).all()


def test_bad_input_is_refused_with_a_message_naming_it():
    with pytest.raises(ValueError, match="family"):
        f_dp_one_run.epsilon_lower_bound(100, 10, 9, family="laplace", delta=1e-5, alpha=0.05)
    with pytest.raises(ValueError, match="estimator"):
        audit_one_run(np.zeros(100), np.zeros(100, bool), delta=1e-5, estimator="fdp")
    with pytest.raises(ValueError, match="correct"):
        rejects(10, 5, 6, lambda y: y, 0.05, 1)


def _trade_off_blow_up(family, theta, delta, x):
    """f_bar(x) = 1 - f(x), written from the trade-off curves' definitions: (eps, delta)-DP's f(x) = max(0,
    1 - delta - e^eps x, e^-eps (1 - delta - x)) (Dong, Roth & Su 2022, Proposition 2.5) and mu-GDP's f(x) =
    Phi(Phi^-1(1 - x) - mu)."""
    if family == "eps-delta":
        f = max(0.0, 1 - delta - math.exp(theta) * x, math.exp(-theta) * (1 - delta - x))
    else:
        f = stats.norm.cdf(stats.norm.ppf(1 - x) - theta)
    return 1 - f


@pytest.mark.parametrize(
    "family, theta, delta", [("eps-delta", 1.0, 0.0), ("eps-delta", 2.0, 0.05), ("gaussian", 1.5, 0)]
)
def test_blow_up_inverse_is_the_smallest_false_positive_rate_of_each_curve(family, theta, delta):
    """For true positive rates y on a grid, x = f_bar_inv(y) reaches y on the curve (f_bar(x) = y) and no smaller
    false positive rate does (f_bar(0) >= y where x = 0): checked against the curves' definitions above."""
    inverse = f_dp_one_run.blow_up_inverse(family, np.array([theta]), delta)
    for y in np.linspace(0.001, 0.999, 75):
        x = float(inverse(np.array([y]))[0])
        if x > 0:
            assert _trade_off_blow_up(family, theta, delta, x) == pytest.approx(y, abs=1e-9)
        else:
            assert _trade_off_blow_up(family, theta, delta, 0.0) >= y - 1e-12


def _reference_rejects(m, r, v, family, theta, delta, tau):
    """The recursion of the module docstring one curve at a time, every step run (no early exit), plain floats."""
    f_bar_inv = f_dp_one_run.blow_up_inverse(family, np.array([theta]), delta)
    rho, eta = tau * v / m, tau * (r - v) / m
    for i in range(v - 1, -1, -1):
        eta_next = max(eta, float(f_bar_inv(np.array([rho]))[0]))
        rho, eta = min(rho + i / (r - i) * (eta_next - eta), 1.0), eta_next
    return rho + eta > r / m


@pytest.mark.parametrize(
    "m, r, v, family, delta",
    [(200, 200, 140, "eps-delta", 0.0), (1000, 100, 90, "eps-delta", 1e-3), (500, 500, 330, "gaussian", 0.0)],
)
def test_the_bound_is_the_recursions_last_rejected_grid_point(m, r, v, family, delta):
    """parameter_lower_bound (vectorised over the grid, chunked, with an early exit) against the recursion run
    one curve at a time: the reference rejects the bound and accepts the next grid point."""
    bound = parameter_lower_bound(m, r, v, family=family, delta=delta, alpha=0.05)
    assert 0 < bound < 10
    assert _reference_rejects(m, r, v, family, bound, delta, 0.05)
    assert not _reference_rejects(m, r, v, family, bound + f_dp_one_run.RESOLUTION, delta, 0.05)


def test_level_is_at_most_alpha_exactly_where_each_guess_is_an_independent_coin():
    """Exact level, no sampling: the auditor guesses a fixed r of the m canaries, each by its own output of a
    mechanism whose trade-off is exactly the curve tested (randomized response with probability delta of revealing
    the bit: exactly (eps, delta)-DP; the Gaussian mechanism, guessing "in" above mu / 2), so the number right is
    Binomial(r, p). The smallest v that rejects the true parameter has P[W >= v] <= alpha; for pure eps the level
    comes within 20 % of alpha, so a recursion rejecting slightly too early fails here."""
    alpha, levels = 0.05, {}
    cases = [("eps-delta", eps, d, d + (1 - d) / (1 + math.exp(-eps))) for eps in (0.5, 2.0) for d in (0.0, 1e-3)]
    cases += [("gaussian", mu, 0.0, stats.norm.cdf(mu / 2)) for mu in (0.5, 2.0)]
    for m, r in ((100, 100), (1000, 200), (1000, 1000)):
        for family, theta, delta, p in cases:
            curve = f_dp_one_run.blow_up_inverse(family, np.array([theta]), delta)
            votes = [bool(rejects(m, r, v, curve, alpha, 1)[0]) for v in range(r + 1)]
            first = votes.index(True) if True in votes else r + 1
            assert all(votes[first:])  # monotone in v
            level = stats.binom.sf(first - 1, r, p)
            assert level <= alpha, (m, r, family, theta, delta)
            levels[family, delta] = max(levels.get((family, delta), 0.0), level)
    assert levels["eps-delta", 0.0] > 0.8 * alpha


@pytest.mark.parametrize("scores", [np.zeros(100), np.r_[np.ones(50), np.zeros(50)]])
def test_the_gaussian_family_refuses_delta_zero_whatever_the_scores(scores):
    """mu-GDP with mu > 0 is (eps, 0)-DP for no finite eps: f-dp-gaussian at delta 0 is refused before any bound is
    computed, so the answer does not depend on the scores (chance ones gave 0.0, separating ones an error)."""
    with pytest.raises(ValueError, match="estimator f-dp-gaussian needs delta > 0"):
        audit_one_run(scores, np.r_[np.ones(50, bool), np.zeros(50, bool)], delta=0.0, estimator="f-dp-gaussian")
