"""Generalized randomized response (k-RR; Wang et al. 2017, "direct encoding"): report the true value with
probability e**eps / (e**eps + k - 1), else one of the other k - 1 values uniformly. Best for small k
(variance grows with k); the report is one value in [0, k)."""

from __future__ import annotations

import numpy as np

from privacy.local.frequency_oracle import FrequencyOracle, grr_dp_event, grr_draw, grr_probabilities
from privacy.local.validation import check_values


class GeneralizedRandomizedResponse(FrequencyOracle):
    """k-ary randomized response at per-person ``epsilon``; reports are int64 values in [0, k)."""

    name = "grr"

    def support_probabilities(self):
        return grr_probabilities(self.epsilon, self.k)

    def _randomize(self, values, rng):
        return grr_draw(values, self.epsilon, self.k, rng)

    def support_counts(self, reports):
        reports = check_values(reports, self.k)
        return np.bincount(reports, minlength=self.k).astype(np.float64), reports.size

    def dp_event(self):
        """RandomizedResponseDpEvent(k / (e**eps + k - 1), k): exactly this mechanism."""
        return grr_dp_event(self.epsilon, self.k)
