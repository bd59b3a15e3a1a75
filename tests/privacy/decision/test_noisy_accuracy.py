"""The push decision's noisy accuracy: noise as accounted, neighbouring held-out splits within e^epsilon."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event

from privacy.decision import DecisionError, NoisyAccuracy
from privacy.preprocessing import NoiseSource

DELTA = 1e-3
DRAWS = 20000


def _pld_epsilon(noise_multiplier: float) -> float:
    return dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        dp_event.GaussianDpEvent(noise_multiplier)).get_epsilon(DELTA)


def _blessed(decision: NoisyAccuracy, correct: int, rows: int, threshold: float, seed: int) -> float:
    """Share of DRAWS releases on (correct, rows) whose noisy accuracy meets ``threshold``."""
    source = NoiseSource(seed=seed, stream="test")
    return float(np.mean([decision.release(correct, rows, source).accuracy >= threshold for _ in range(DRAWS)]))


def test_calibration_spends_the_epsilon_dp_accounting_computes():
    decision = NoisyAccuracy.calibrate(0.5, DELTA)
    assert decision.noise_multiplier == pytest.approx(decision.std / math.sqrt(2))
    assert _pld_epsilon(decision.noise_multiplier) <= 0.5 < _pld_epsilon(decision.noise_multiplier * 0.99)
    grouped = NoisyAccuracy.calibrate(0.5, DELTA, group_size=4)   # a client of K = 4 held-out records
    assert grouped.std == pytest.approx(4 * decision.std) and grouped.event(1).noise_multiplier == pytest.approx(
        4 * grouped.event().noise_multiplier)


def test_the_released_counts_carry_the_accounted_noise_and_are_integers():
    decision = NoisyAccuracy(std=6.0)
    source = NoiseSource(seed=3, stream="test")
    releases = [decision.release(150, 190, source) for _ in range(DRAWS)]
    assert all(isinstance(r.correct, int) and isinstance(r.rows, int) and 0 <= r.accuracy <= 1 for r in releases)
    errors = np.array([[r.correct - 150, r.rows - 190] for r in releases], dtype=float)
    assert abs(errors.mean()) < 0.15
    # rounding adds variance 1/12 to each count's N(0, 36)
    assert errors.std(axis=0) == pytest.approx([math.sqrt(36 + 1 / 12)] * 2, rel=0.03)
    assert abs(np.corrcoef(errors.T)[0, 1]) < 0.03   # independent draws
    assert all(r.seeded for r in releases[:1])


@pytest.mark.parametrize("neighbour", [(-1, -1), (0, -1), (-1, 0)], ids=["correct row removed",
                                                                          "wrong row removed", "row replaced"])
def test_neighbouring_held_out_splits_change_the_decision_within_e_to_the_epsilon(neighbour):
    """D: 150 of 190 correct; D': one record removed (correct or not) or replaced (a correct one by a wrong one).
    The decision's probability moves by at most e^epsilon (+ delta), with epsilon recomputed from the event; noise
    a hundredth as large moves it by more than that epsilon allows (the check has power)."""
    decision = NoisyAccuracy.calibrate(1.0, DELTA)
    epsilon = _pld_epsilon(decision.event().noise_multiplier)
    correct, rows, threshold = 150, 190, 150 / 190
    slack = 4 * math.sqrt(0.25 / DRAWS)   # four standard errors of a share
    p = _blessed(decision, correct, rows, threshold, seed=1)
    q = _blessed(decision, correct + neighbour[0], rows + neighbour[1], threshold, seed=2)
    assert 0.2 < p < 0.8
    assert p <= math.exp(epsilon) * q + DELTA + slack and q <= math.exp(epsilon) * p + DELTA + slack
    weak = NoisyAccuracy(std=decision.std / 100)
    p_weak = _blessed(weak, correct, rows, threshold, seed=1)
    q_weak = _blessed(weak, correct - 1, rows, threshold, seed=2)
    assert p_weak > math.exp(epsilon) * q_weak + DELTA + slack


def test_bad_counts_and_settings_are_refused_naming_the_value():
    with pytest.raises(DecisionError, match="0 <= correct <= rows, got 5, 4"):
        NoisyAccuracy(std=1.0).release(5, 4)
    with pytest.raises(DecisionError, match="epsilon must be a finite number > 0, got 0"):
        NoisyAccuracy.calibrate(0, DELTA)
    with pytest.raises(DecisionError, match="std must be a finite number > 0, got nan"):
        NoisyAccuracy(std=float("nan"))
