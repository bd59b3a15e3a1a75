"""Private mean and variance of a bounded numeric feature (the statistics of z-score scaling).

Each record holds ``values_per_record`` (d) values. They are clipped into the public bounds [lo, hi]
and centred on the midpoint c, so |x - c| <= r = (hi - lo) / 2. Three sums are released with
Gaussian noise: the record count N, S1 = sum (x - c) and S2 = sum (x - c)^2. One record moves them by

=============  ==========  ===========
block          add-remove  replace-one
=============  ==========  ===========
count N        1           0 (n is public: released exactly)
S1             d r         2 d r
S2             d r^2       d r^2
=============  ==========  ===========

and the estimates are post-processing: mean = c + S1/(N d), variance = S2/(N d) - (S1/(N d))^2, with
N at least 1, the mean inside the bounds and the variance in [(r / 100)^2, r^2] (`VARIANCE_FLOOR`), so
no draw of the noise can make a z-score divide by zero.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

from privacy.accounting import Adjacency
from privacy.preprocessing.bounds import Bounds, check_values_per_record, records
from privacy.preprocessing.gaussian import Component, allocate
from privacy.preprocessing.noise import NoiseSource

WEIGHTS = {"count": 0.1, "sum": 0.45, "sum_of_squares": 0.45}
"""How the release's privacy loss is split among its blocks (renormalised over those a record moves)."""
VARIANCE_FLOOR = 1e-4
"""The released variance is at least VARIANCE_FLOOR * r^2 (a standard deviation of r / 100)."""
SUM_HEADROOM = 2.0**64
"""Bounds are refused unless d r^2 x SUM_HEADROOM is a finite float64: room for 2^53 records at the bounds (float64
counts exactly up to there) and the noise on their sums. Beyond it S2 can overflow to inf, and whether it did shows
one record: with bounds (0, 1e154) eight records at the upper bound release S2 = inf, seven a finite value."""


@dataclasses.dataclass(frozen=True)
class MeanVariance:
    """The mean-and-variance release of one feature.

    Attributes:
      bounds: public clipping bounds.
      noise_multiplier: of the whole release (from the budget share); see `privacy.preprocessing.gaussian`.
      adjacency: the neighbouring relation the sensitivities are for.
      values_per_record: d, the values each record holds (the feature's static size).
    """

    bounds: Bounds
    noise_multiplier: float
    adjacency: Adjacency = Adjacency.ADD_REMOVE
    values_per_record: int = 1

    def __post_init__(self):
        object.__setattr__(self, "bounds", Bounds.of(self.bounds))
        object.__setattr__(self, "adjacency", Adjacency(self.adjacency))
        check_values_per_record(self.values_per_record)
        r, d = self.bounds.radius, self.values_per_record
        if not math.isfinite(d * r * r * SUM_HEADROOM):
            largest = math.sqrt(sys.float_info.max / SUM_HEADROOM / d)
            raise ValueError(
                f"bounds {self.bounds.to_list()} are too wide for a private mean and variance: their half-width "
                f"{r:g} must be <= {largest:.4g} for {d} value(s) per record, or float64 sums of squares can overflow"
            )

    @property
    def components(self) -> tuple[Component, ...]:
        r, d = self.bounds.radius, self.values_per_record
        if self.adjacency is Adjacency.ADD_REMOVE:
            sensitivities = {"count": 1.0, "sum": d * r, "sum_of_squares": d * r * r}
        else:
            sensitivities = {"count": 0.0, "sum": 2 * d * r, "sum_of_squares": d * r * r}
        return allocate(sensitivities, WEIGHTS, self.noise_multiplier)

    def accumulate(self, batch) -> np.ndarray:
        """[N, S1, S2] of a batch of records (first axis: records)."""
        values = records(batch, self.values_per_record)
        centred = self.bounds.clip(values) - self.bounds.midpoint
        return np.array([len(values), centred.sum(), np.square(centred).sum()], dtype=np.float64)

    def release(self, sums: np.ndarray, noise: NoiseSource) -> dict[str, float]:
        """Noisy sums and the estimates derived from them."""
        stds = np.array([c.noise_std for c in self.components])
        noisy = noise.noisy(sums, stds)
        return {
            "count": float(noisy[0]),
            "sum": float(noisy[1]),
            "sum_of_squares": float(noisy[2]),
            **self.estimates(noisy),
        }

    def estimates(self, noisy: np.ndarray) -> dict[str, float]:
        """mean and variance from noisy [N, S1, S2] (pure post-processing)."""
        r, d = self.bounds.radius, self.values_per_record
        count = max(float(noisy[0]), 1.0) * d
        centred_mean = float(np.clip(noisy[1] / count, -r, r))
        second_moment = float(np.clip(noisy[2] / count, 0.0, r * r))
        variance = float(np.clip(second_moment - centred_mean**2, VARIANCE_FLOOR * r * r, r * r))
        return {"mean": self.bounds.midpoint + centred_mean, "variance": variance}
