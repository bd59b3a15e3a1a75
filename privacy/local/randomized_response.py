"""Randomized response for a yes/no attribute (Warner 1965), as the coin design: each person flips a coin; on
heads (probability t) they answer truthfully, on tails they flip a second fair coin and answer yes on heads.

P(yes | yes) = (1 + t) / 2 and P(yes | no) = (1 - t) / 2, so epsilon = ln((1 + t) / (1 - t)): two fair coins
(t = 1/2) give epsilon = ln 3. For a chosen epsilon, t = (e**eps - 1) / (e**eps + 1). The collector never learns
whether an answer was truthful, yet estimates the population's yes-rate as (yes-fraction - (1 - t)/2) / t.
"""

from __future__ import annotations

import math

import numpy as np

from privacy import validation
from privacy.local.frequency_oracle import UNIFORM_GRID, FrequencyOracle, exp_lower_bound, grr_dp_event
from privacy.local.validation import check_values

SEED_COIN_EPSILON = math.log(3)
"""Epsilon of the textbook design with two fair coins."""


class RandomizedResponse(FrequencyOracle):
    """Yes/no randomized response at per-person ``epsilon`` (default ln 3, two fair coins).

    Values and reports are 0 (no) and 1 (yes); `estimate` gives the fractions of no and yes (index 1: the rate).
    """

    name = "rr"

    def __init__(self, epsilon: float = SEED_COIN_EPSILON):
        super().__init__(epsilon, 2)

    @classmethod
    def from_coin(cls, truth_probability: float = 0.5) -> "RandomizedResponse":
        """The design whose first coin lands heads (answer truthfully) with ``truth_probability`` t in (0, 1)."""
        t = validation.probability("truth_probability", truth_probability)
        return cls(math.log((1 + t) / (1 - t)))

    @property
    def truth_threshold(self) -> int:
        """T, the largest integer with (2**53 + T) / (2**53 - T) <= e**eps (exact rational arithmetic): the first
        coin is heads when a uniform integer in [0, 2**53) is below T, so the design is at most epsilon-LDP as
        drawn."""
        e = exp_lower_bound(self.epsilon)
        return math.floor(UNIFORM_GRID * (e - 1) / (e + 1))

    @property
    def truth_probability(self) -> float:
        """t, the first coin's probability of heads (a truthful answer): (e**eps - 1) / (e**eps + 1) rounded down
        to the draw's grid, T / 2**53."""
        return self.truth_threshold / UNIFORM_GRID

    def support_probabilities(self):
        t = self.truth_probability
        return (1 + t) / 2, (1 - t) / 2

    def _randomize(self, values, rng):
        truthful = rng.integers(0, UNIFORM_GRID, size=values.size) < self.truth_threshold
        second_coin = rng.integers(0, 2, size=values.size)
        return np.where(truthful, values, second_coin)

    def support_counts(self, reports):
        reports = check_values(reports, 2)
        return np.bincount(reports, minlength=2).astype(np.float64), reports.size

    def dp_event(self):
        """RandomizedResponseDpEvent(1 - t, 2): the answer is random with probability 1 - t."""
        return grr_dp_event(self.epsilon, 2)

    def to_dict(self):
        return {**super().to_dict(), "truth_probability": self.truth_probability}
