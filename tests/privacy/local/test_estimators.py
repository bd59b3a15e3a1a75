"""Estimators of the local frequency oracles: unbiased, exact variance, interval coverage (fixed seeds)."""

import math

import numpy as np
import pytest

from privacy.local import make_oracle

K = 4
TRUE = np.array([0.5, 0.3, 0.2, 0.0])
N = 1_000
RUNS = 300


def population():
    counts = (TRUE * N).astype(int)
    return np.repeat(np.arange(K), counts)


@pytest.fixture(
    scope="module",
    params=[("rr", 1.0), ("grr", 1.0), ("oue", 1.0), ("olh", 1.5), ("grr", 0.3)],
    ids=lambda p: f"{p[0]}-eps{p[1]}",
)
def runs(request):
    mechanism, epsilon = request.param
    k = 2 if mechanism == "rr" else K
    oracle = make_oracle(mechanism, epsilon, k)
    values = population() if k == K else (population() == 0).astype(int)
    truth = np.bincount(values, minlength=k) / values.size
    estimates = [oracle.estimate(oracle.randomize(values, seed=seed)) for seed in range(RUNS)]
    return oracle, truth, estimates


def test_estimator_is_unbiased(runs):
    oracle, truth, estimates = runs
    mean = np.mean([e.frequencies for e in estimates], axis=0)
    standard_error = np.sqrt(oracle.variance(truth, N) / RUNS)
    assert np.all(np.abs(mean - truth) < 4 * standard_error), (mean, truth, standard_error)


def test_variance_formula_matches_simulation(runs):
    oracle, truth, estimates = runs
    empirical = np.var([e.frequencies for e in estimates], axis=0, ddof=1)
    # sample variance of RUNS normal draws: relative standard error sqrt(2 / (RUNS - 1)) ~ 0.08
    assert np.all(np.abs(empirical / oracle.variance(truth, N) - 1) < 4 * math.sqrt(2 / (RUNS - 1)))


def test_interval_covers_the_truth_near_the_nominal_rate(runs):
    _, truth, estimates = runs
    covered = np.mean([(e.lower <= truth) & (truth <= e.upper) for e in estimates], axis=0)
    # nominal 0.95 +- 4 binomial standard errors (0.05); the plug-in interval may run a little wide at f = 0
    assert np.all(np.abs(covered - 0.95) < 4 * math.sqrt(0.95 * 0.05 / RUNS)), covered


def test_estimate_reports_population_epsilon_and_a_one_line_error_without_reports():
    oracle = make_oracle("grr", 2.0, 3)
    estimate = oracle.estimate(oracle.randomize([0, 1, 2, 2], seed=1), confidence=0.9)
    assert estimate.population == 4 and estimate.epsilon == 2.0 and estimate.confidence == 0.9
    assert set(estimate.to_dict()) >= {"frequencies", "stderr", "lower", "upper", "epsilon", "population"}
    with pytest.raises(ValueError, match="no reports"):
        oracle.estimate(np.zeros(0, int))
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\), got 1.5"):
        oracle.estimate([0, 1], confidence=1.5)


def test_error_sweep_draws_the_population_and_each_repeats_coins_from_independent_streams(monkeypatch):
    import privacy.local.simulation as simulation
    from privacy.local import GeneralizedRandomizedResponse
    from privacy.local.frequency_oracle import FrequencyOracle

    seen = {"population": [], "coins": []}
    draw, randomize = simulation.draw_population, FrequencyOracle.randomize
    monkeypatch.setattr(
        simulation, "draw_population", lambda values, n, seed: seen["population"].append(seed) or draw(values, n, seed)
    )
    monkeypatch.setattr(
        FrequencyOracle,
        "randomize",
        lambda self, values, seed=None: seen["coins"].append(seed) or randomize(self, values, seed),
    )
    simulation.error_sweep(
        lambda eps: GeneralizedRandomizedResponse(eps, 3),
        np.arange(30) % 3,
        epsilons=[1.0],
        populations=[60],
        repeats=3,
        seed=5,
    )
    assert len(set(seen["population"] + seen["coins"]) | {5}) == 5
