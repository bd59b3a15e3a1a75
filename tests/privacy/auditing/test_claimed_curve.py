"""The f-DP one-run test against the claimed DP-SGD mechanism's own trade-off curve (`claimed_curve`, estimator
"f-dp-claimed"): its curve is dp-accounting's PLD profile (recomputed here), its rejection is monotone in sigma'
(what the bisection needs), it is sound over many seeds of an exactly simulated subsampled Gaussian, and it catches a
2C clip in a subsampled configuration (the README's) where the (eps, delta) f-DP bound mostly does not."""

import dp_accounting as dpa
import numpy as np
import pytest

from privacy.accounting import DpSgdMechanism
from privacy.auditing import claimed_curve
from privacy.auditing.claimed_curve import SampledGaussianClaim
from privacy.auditing.dp_sgd_audit import AuditPlan, audit_mechanism, estimator_for, sound_estimators
from privacy.auditing.one_run import audit_one_run, guess_counts

DELTA = 1e-5


def _pld_epsilon_and_delta(claim: SampledGaussianClaim, epsilons):
    """eps at DELTA and delta(eps) of the claim, from dp-accounting's PLD accountant directly."""
    event = dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(claim.sampling_probability, dpa.GaussianDpEvent(claim.noise_multiplier)),
        claim.steps,
    )
    accountant = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event)
    return accountant.get_epsilon(DELTA), [accountant.get_delta(eps) for eps in epsilons]


def _subsampled_scores(m, claim, true_sigma, rng):
    """Exactly the white-box canary game on T Poisson-sampled Gaussian steps: canary i's score is the sum over the
    T steps of its sampled contribution (1 when included, with probability q each step) plus N(0, sigma^2)."""
    bits = rng.random(m) < 0.5
    sampled = rng.binomial(claim.steps, claim.sampling_probability, size=m) * bits
    return sampled + rng.normal(0.0, true_sigma * np.sqrt(claim.steps), size=m), bits


def _trade_off(x, epsilons, deltas):
    """f(x) = sup_j max(0, 1 - delta_j - e^eps_j x, e^-eps_j (1 - delta_j - x)) (Dong, Roth & Su, Prop. 2.12)."""
    x = np.asarray(x)[..., None]
    return np.max(
        np.maximum(0, np.maximum(1 - deltas - np.exp(epsilons) * x, np.exp(-epsilons) * (1 - deltas - x))), -1
    )


def test_the_curve_is_dp_accountings_privacy_profile_and_its_inverse_is_exact():
    claim = SampledGaussianClaim(0.3, 1.5, 4)
    epsilon, points, deltas = claimed_curve.profile(claim, 1.5, DELTA)
    expected_epsilon, expected_deltas = _pld_epsilon_and_delta(claim, points)
    assert epsilon == pytest.approx(expected_epsilon, rel=1e-9)
    assert deltas == pytest.approx(expected_deltas, rel=1e-9, abs=1e-15)
    assert points[-1] > epsilon and epsilon in points  # the run's own (eps, delta) point is on the curve
    member, member_points, member_deltas = claimed_curve.profile(claim, 0.75, DELTA)  # a weaker member, same points
    assert member > epsilon and np.array_equal(member_points, points)
    assert member_deltas == pytest.approx(
        _pld_epsilon_and_delta(SampledGaussianClaim(0.3, 0.75, 4), points)[1], rel=1e-9, abs=1e-15
    )
    inverse = claimed_curve.curve_blow_up_inverse(points, deltas)
    for y in np.linspace(0.001, 1.0, 200):
        x = float(inverse(np.array([y]))[0])
        assert 1 - _trade_off(x, points, deltas) >= y - 1e-12  # x reaches true positive rate y ...
        assert x == 0 or 1 - _trade_off(x - 1e-6, points, deltas) < y  # ... and nothing smaller does


def test_refutation_is_monotone_in_sigma_and_the_profiles_are_nested():
    """The bisection's premise (module docstring), on the grid: once a sigma' is refuted, every larger one is; and
    dp-accounting's profiles fall as sigma' grows (checked on every 32nd grid point, half a
    doubling apart, of a cheap one-step claim)."""
    claim = SampledGaussianClaim(0.5, 2.0, 1)
    grid = claimed_curve.sigma_grid(claim)[::32]
    previous = None
    for sigma in grid:
        _, points, deltas = claimed_curve.profile(claim, sigma, DELTA)
        if previous is not None:
            assert np.all(_trade_off(np.linspace(0, 1, 101), points, deltas) >= previous - 1e-12)
        previous = _trade_off(np.linspace(0, 1, 101), points, deltas)
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(200, 5000))
        r = int(rng.integers(16, m + 1))
        v = int(rng.integers(r // 2 + 1, r + 1))
        refuted = [claimed_curve.refutes(m, r, v, claim, s, delta=DELTA, alpha=0.05) for s in grid]
        assert refuted == sorted(refuted), (m, r, v)


@pytest.mark.slow
def test_honest_subsampled_runs_stay_below_their_claim_over_many_seeds():
    """200 seeds of the exact subsampled Gaussian game (q 0.5, sigma 1, 2 steps, 2,000 canaries): the bound exceeds
    the claim (PLD, recomputed) in at most the 5 % the confidence allows (binomial 99.9 % quantile: 20 of 200); in
    fact it stays far below (it is a lower bound)."""
    claim = SampledGaussianClaim(0.5, 1.0, 2)
    epsilon = _pld_epsilon_and_delta(claim, [])[0]
    rng = np.random.default_rng(1)
    bounds = []
    for _ in range(200):
        scores, bits = _subsampled_scores(2000, claim, 1.0, rng)
        bounds.append(
            audit_one_run(scores, bits, delta=DELTA, estimator="f-dp-claimed", claim=claim).epsilon_lower_bound
        )
    assert sum(bound > epsilon for bound in bounds) <= 20
    assert 0 < np.median(bounds) < epsilon


@pytest.mark.slow
def test_a_2c_clip_is_caught_in_a_subsampled_run():
    """The README's configuration: sampling rate 0.5, sigma 1, one step, 30,000 Dirac canaries, delta 1e-5 (claim:
    eps 3.53 by PLD, recomputed here). A 2C clip (true sigma 0.5) is caught (bound above the claim) in at least 8
    of 10 seeds; the honest run stays below in all 10. The f-DP bound with one (eps, delta) point is lower (median
    by more than 0.2)."""
    claim = SampledGaussianClaim(0.5, 1.0, 1)
    epsilon = _pld_epsilon_and_delta(claim, [])[0]
    assert epsilon == pytest.approx(3.53, abs=0.01)
    rng = np.random.default_rng(2)
    bounds = {"f-dp-claimed": [], "f-dp": []}
    for _ in range(10):
        honest, bits = _subsampled_scores(30000, claim, 1.0, rng)
        audit = audit_one_run(honest, bits, delta=DELTA, estimator="f-dp-claimed", claim=claim)
        assert audit.epsilon_lower_bound < epsilon and audit.pairs_tried == len(guess_counts(30000))
        clipped, bits = _subsampled_scores(30000, claim, 0.5, rng)
        for estimator, found in bounds.items():
            found.append(
                audit_one_run(clipped, bits, delta=DELTA, estimator=estimator, claim=claim).epsilon_lower_bound
            )
    assert sum(bound > epsilon for bound in bounds["f-dp-claimed"]) >= 8
    assert np.median(bounds["f-dp-claimed"]) > np.median(bounds["f-dp"]) + 0.2


def test_bad_claims_are_refused_with_a_message_naming_them():
    with pytest.raises(ValueError, match="claim"):
        audit_one_run(np.zeros(100), np.zeros(100, bool), delta=DELTA, estimator="f-dp-claimed")
    with pytest.raises(ValueError, match="delta"):
        audit_one_run(
            np.zeros(100), np.zeros(100, bool), delta=0.0, estimator="f-dp-claimed", claim=SampledGaussianClaim(1, 1, 1)
        )
    with pytest.raises(ValueError, match="sampling_probability"):
        SampledGaussianClaim(1.5, 1.0, 1)
    with pytest.raises(ValueError, match="steps"):
        SampledGaussianClaim(0.5, 1.0, 0)


def test_it_is_refused_where_the_data_size_follows_the_bits_and_used_only_where_asked_for():
    """Without fixed_size N = n + the included canaries, so q = B / N (the claimed curve) depends on the bits: refused
    (module docstring, "Which claim"). With a fixed size (audit_mechanism: N = n + m whatever the bits) it runs when
    named, its curve is the fixed q = B' / N, and `compared` holds it; by default neither uses it."""
    plan = AuditPlan(num_canaries=200, batch_size=512, noise_multiplier=4.0, estimator="f-dp-claimed")
    with pytest.raises(ValueError, match="^estimator f-dp-claimed tests one fixed claimed curve: it needs a data size"):
        estimator_for(plan, 1347, fixed_size=False)
    assert sound_estimators(plan, 1347, fixed_size=False) == ("counting", "f-dp")
    assert estimator_for(plan, 1347, fixed_size=True) == "f-dp-claimed"
    mechanism = DpSgdMechanism(dataset_size=100, batch_size=50, noise_multiplier=1.0, steps=1)
    named = audit_mechanism(mechanism, l2_norm_clip=1.0, delta=DELTA, num_canaries=200, estimator="f-dp-claimed")
    assert named.dataset_size == 300 and named.plan.batch_size == 150  # B' = round(50 x 300 / 100)
    assert named.claimed_curve == SampledGaussianClaim(0.5, 1.0, 1)
    assert named.final["estimator"] == named.final_split["estimator"] == "f-dp-claimed"
    assert set(named.compared) == {"counting", "f-dp", "f-dp-claimed"}
    assert named.compared["f-dp-claimed"] == named.lower_bound[-1]
    default = audit_mechanism(mechanism, l2_norm_clip=1.0, delta=DELTA, num_canaries=200)
    assert default.final["estimator"] == "f-dp" and set(default.compared) == {"counting", "f-dp"}


@pytest.mark.slow
def test_the_bisection_finds_what_a_scan_of_every_grid_sigma_finds(monkeypatch):
    """The bisection's exactness, by brute force: on a grid of 2^(1/8) steps (33 sigma', every one scanned; the
    bisection does not depend on the spacing, and the 257-point grid would take minutes of PLDs), every guess count
    is tested against every sigma'. The refuted sigma' form an upper set (the premise), and the bisection returns the
    eps of the smallest refuted one, recomputed from dp-accounting's PLD accountant, and the first count refuting it;
    (0, 0) where none is refuted. The cases land at the bottom, in the middle and above the grid."""
    monkeypatch.setattr(claimed_curve, "SIGMA_STEPS_PER_DOUBLING", 8)
    monkeypatch.setattr(claimed_curve, "_SIGMA_EXPONENTS", np.arange(-16, 17))
    claim = SampledGaussianClaim(0.5, 8.0, 1)
    grid = claimed_curve.sigma_grid(claim)
    assert grid.size == 33 and grid[0] == pytest.approx(2.0) and grid[-1] == pytest.approx(32.0)
    cases = [  # (m, [(r, v), ...]): one count or several (a Bonferroni audit's pairs)
        (1000, [(1000, 800)]),
        (1000, [(200, 110)]),
        (1000, [(1000, 600), (200, 130)]),
        (3000, [(500, 300), (3000, 1800), (750, 420)]),
        (3000, [(3000, 1650)]),
        (3000, [(500, 275), (1000, 540)]),
    ]
    firsts = []
    for m, counts in cases:
        alpha = 0.05 / len(counts)
        scan = [
            [claimed_curve.refutes(m, r, v, claim, sigma, delta=DELTA, alpha=alpha) for r, v in counts]
            for sigma in grid
        ]
        refuted = [any(row) for row in scan]
        assert refuted == sorted(refuted), (m, counts)
        bound, index = claimed_curve.epsilon_lower_bound(m, counts, claim=claim, delta=DELTA, alpha=alpha)
        if not any(refuted):
            firsts.append(None)
            assert (bound, index) == (0.0, 0)
            continue
        first = refuted.index(True)
        firsts.append(first)
        epsilon = _pld_epsilon_and_delta(SampledGaussianClaim(0.5, float(grid[first]), 1), [])[0]
        assert bound == pytest.approx(np.floor(epsilon / 0.01) * 0.01, abs=1e-9), (m, counts)
        assert index == scan[first].index(True)
    assert None in firsts and 0 in firsts and any(first not in (None, 0) for first in firsts), firsts
