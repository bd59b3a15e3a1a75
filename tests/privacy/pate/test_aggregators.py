"""GNMax and Confident-GNMax draw their noise and select queries as their definitions say."""

import math

import numpy as np
import pytest
import scipy.stats

from privacy.pate import ConfidentGNMax, GNMax, PateConfigurationError, VoteHistory, check_votes
from privacy.pate.aggregators import UNANSWERED
from privacy.preprocessing.noise import CSPRNG, SEEDED

QUERIES = 20000


def _within(observed: int, n: int, p: float, sds: float = 4.5) -> bool:
    return abs(observed - n * p) <= sds * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("votes,sigma", [((30, 20, 0), 10.0), ((25, 25, 0), 5.0), ((40, 0, 0), 40.0)])
def test_gnmax_label_frequencies_match_gaussian_noisy_argmax(votes, sigma):
    # Pr[label = j] = Pr[n_j + Z_j > n_k + Z_k for all k], Z ~ N(0, sigma^2): computed by quadrature.
    history = GNMax(sigma).aggregate(np.tile(votes, (QUERIES, 1)), seed=7)
    z = np.linspace(-12, 12, 20001)
    for j, n_j in enumerate(votes):
        others = np.prod(
            [scipy.stats.norm.cdf((n_j - n_k) / sigma + z) for k, n_k in enumerate(votes) if k != j], axis=0
        )
        p = float(np.trapezoid(scipy.stats.norm.pdf(z) * others, z))
        assert _within(int(np.sum(history.labels == j)), QUERIES, p), (j, p)
    assert history.answered.all() and history.noise == SEEDED


def test_confident_gnmax_answers_with_the_noisy_threshold_probability():
    threshold, sigma1, sigma2 = 35.0, 8.0, 6.0
    votes = np.tile([[40, 10, 0], [30, 15, 5]], (QUERIES // 2, 1))
    history = ConfidentGNMax(threshold, sigma1, sigma2).aggregate(votes, seed=11)
    for row, top in ((0, 40), (1, 30)):
        answered = history.answered[row::2]
        p = scipy.stats.norm.sf((threshold - top) / sigma1)
        assert _within(int(answered.sum()), QUERIES // 2, p), (row, p)
    assert np.all(history.labels[~history.answered] == UNANSWERED)
    # Answered queries get GNMax at sigma2, independently of the selection noise: Pr[class 1 beats class 0].
    labels = history.labels[1::2][history.answered[1::2]]
    p_second = float(np.mean(labels == 1))
    z = np.linspace(-12, 12, 20001)
    expected = float(
        np.trapezoid(
            scipy.stats.norm.pdf(z) * scipy.stats.norm.cdf(-15 / sigma2 + z) * scipy.stats.norm.cdf(10 / sigma2 + z), z
        )
    )
    assert abs(p_second - expected) <= 4.5 * math.sqrt(expected * (1 - expected) / len(labels))


def test_confident_gnmax_cap_stops_answering():
    votes = np.tile([50, 0], (200, 1))
    history = ConfidentGNMax(10, 1.0, 1.0, max_answered=30).aggregate(votes, seed=0)
    assert history.num_answered == 30 and history.answered[:30].all() and not history.answered[30:].any()


def test_noise_comes_from_the_csprng_by_default():
    votes = np.tile([10, 10], (64, 1))
    first, second = GNMax(3.0).aggregate(votes), GNMax(3.0).aggregate(votes)
    assert first.noise == CSPRNG and not np.array_equal(first.labels, second.labels)
    same = [GNMax(3.0).aggregate(votes, seed=5).labels for _ in range(2)]
    assert np.array_equal(*same)


def test_history_round_trips_through_json():
    history = ConfidentGNMax(20, 5.0, 4.0).aggregate(np.tile([25, 5, 0], (10, 1)), seed=3)
    again = VoteHistory.from_json(history.to_json())
    assert again.aggregator == history.aggregator and np.array_equal(again.answered, history.answered)
    assert np.array_equal(again.votes, history.votes) and np.array_equal(again.labels, history.labels)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: check_votes([[3, 0, 0, 0]]), "teachers \\(3\\) must be at least the number of classes \\(4\\)"),
        (lambda: check_votes([[3, 1], [2, 1]]), "same number of votes"),
        (lambda: check_votes([[3, -1]]), "non-negative"),
        (lambda: GNMax(0.0), "sigma must be in"),
        (lambda: GNMax(float("nan")), "sigma must be in"),
        (lambda: ConfidentGNMax(10, -1.0, 2.0), "sigma1 must be in"),
        (lambda: ConfidentGNMax(10, 1.0, 2e6), "sigma2 must be in"),
        (lambda: ConfidentGNMax(-5, 1.0, 2.0), "threshold must be in"),
        (lambda: ConfidentGNMax(5, 1.0, 2.0, max_answered=0), "max_answered"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(build, match):
    with pytest.raises(PateConfigurationError, match=match):
        build()
