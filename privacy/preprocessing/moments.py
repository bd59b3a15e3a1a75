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

The sums are formed exactly, as integers (`SUM_BITS`): float sums of clipped values are not bounded by
these sensitivities (Casacuberta et al. 2022), since one record can change how every later addition rounds.
The noise is added to the exact sums, and their sum snapped to the release grid exactly (`release`).
The estimates are post-processing: mean = c + S1/(N d), variance = S2/(N d) - (S1/(N d))^2, with
N at least 1, the mean inside the bounds and the variance in [(r / 100)^2, r^2] (`VARIANCE_FLOOR`), so
no draw of the noise can make a z-score divide by zero.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from fractions import Fraction

import numpy as np

from privacy.accounting import Adjacency
from privacy.preprocessing.bounds import Bounds, check_values_per_record, records
from privacy.preprocessing.gaussian import Component, allocate
from privacy.preprocessing.noise import NoiseSource

WEIGHTS = {"count": 0.1, "sum": 0.45, "sum_of_squares": 0.45}
"""How the release's privacy loss is split among its blocks (renormalised over those a record moves)."""
VARIANCE_FLOOR = 1e-4
"""The released variance is at least VARIANCE_FLOOR * r^2 (a standard deviation of r / 100)."""
SUM_BITS = 24
"""Each value is summed as an integer: (x - c) / r and ((x - c) / r)^2 times 2^SUM_BITS, rounded (by at most
2^-(SUM_BITS + 1) r, r^2) and clipped to [-2^SUM_BITS, 2^SUM_BITS], so one record moves the integer sums by at most
d 2^SUM_BITS exactly, whatever the order of the additions. With float64 sums, as the tf.Transform combiner adds one
batch after another, a record at the bound moved S1 by 1.25 r among 1.08e9 records (pushing the running sum past a
power of two, after which each of 2^21 later batches rounded up by a whole ulp)."""
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
        """[N, S1, S2] of a batch of records (first axis: records) as exact integers (Python ints in an object
        array, S1 and S2 in units of r 2^-SUM_BITS and r^2 2^-SUM_BITS: `SUM_BITS`): add them up in any order,
        then `sums` gives their values."""
        values = records(batch, self.values_per_record)
        scaled = (self.bounds.clip(values) - self.bounds.midpoint) / self.bounds.radius
        one = float(1 << SUM_BITS)
        first = np.clip(np.rint(scaled * one), -one, one).astype(np.int64)  # int64 sums: exact below 2^39 values
        second = np.clip(np.rint(np.square(scaled) * one), 0.0, one).astype(np.int64)
        return np.array([len(values), int(first.sum()), int(second.sum())], dtype=object)

    def exact_sums(self, accumulated) -> list[Fraction]:
        """[N, S1, S2], exactly, of integer sums from `accumulate`."""
        n, first, second = (int(v) for v in accumulated)
        r, unit = Fraction(self.bounds.radius), Fraction(1, 1 << SUM_BITS)
        return [Fraction(n), first * r * unit, second * r * r * unit]

    def sums(self, accumulated) -> np.ndarray:
        """[N, S1, S2] (float64, each rounded once) of integer sums from `accumulate`."""
        return np.array([float(v) for v in self.exact_sums(accumulated)])

    def release(self, accumulated, noise: NoiseSource) -> dict[str, float]:
        """Noisy sums of the integer sums from `accumulate`, and the estimates derived from them. The noise is added
        to the exact sums and the result snapped exactly (`NoiseSource.noisy_exact`): float64's rounding of S1 or
        S2 (one ulp of a sum of N records, which one record can tip) never comes before the noise."""
        stds = np.array([c.noise_std for c in self.components])
        noisy = noise.noisy_exact(self.exact_sums(accumulated), stds)
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
