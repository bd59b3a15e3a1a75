"""What every pure local frequency oracle shares (Wang et al. 2017, arXiv 1705.04421): its unbiased estimator,
the estimator's variance, and a confidence interval.

A pure oracle is defined by the set of values each report *supports* and two probabilities: a person holding
v produces a report supporting v with probability p*, and one supporting any other fixed value v' with
probability q* < p*. With n reports, C_v of which support v, the fraction f_v of people holding v is estimated by

    f^_v = (C_v / n - q*) / (p* - q*)                                   (unbiased)
    Var[f^_v] = (f_v p*(1 - p*) + (1 - f_v) q*(1 - q*)) / (n (p* - q*)^2)   (exact, reports independent)

The interval is the normal one, f^_v +- z sqrt(Var) with f_v replaced by f^_v clipped to [0, 1]; it holds for
each value on its own (not simultaneously for all k).

The guarantee is per person and per report: whatever one person holds, the probability of each report changes
by a factor of at most e**epsilon (pure epsilon-local DP, no trusted collector). A person who reports the same
attribute r times spends r x epsilon (basic composition).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import statistics
from fractions import Fraction
from typing import Any

import numpy as np

from privacy.local.randomness import resolve_random
from privacy.local.validation import check_confidence, check_domain, check_epsilon, check_values


@dataclasses.dataclass(frozen=True)
class FrequencyEstimate:
    """Estimated fractions of the population holding each value 0..k-1 (entries may leave [0, 1]: unbiased).

    Attributes:
      frequencies: f^_v, shape (k,).
      stderr: plug-in standard error of each f^_v.
      lower, upper: the ``confidence`` interval of each value, on its own.
      population: n, the number of reports.
      epsilon: per-person epsilon of the oracle that produced the reports.
    """

    mechanism: str
    epsilon: float
    population: int
    confidence: float
    frequencies: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "population": self.population,
            "confidence": self.confidence,
            **{name: getattr(self, name).tolist() for name in ("frequencies", "stderr", "lower", "upper")},
        }


class FrequencyOracle(abc.ABC):
    """A pure epsilon-LDP frequency oracle over values 0..k-1.

    Subclasses define ``name``, `support_probabilities`, `_randomize` and `support_counts`.
    """

    name: str

    def __init__(self, epsilon: float, k: int):
        self.epsilon = check_epsilon(epsilon)
        self.k = check_domain(k)

    @abc.abstractmethod
    def support_probabilities(self) -> tuple[float, float]:
        """(p*, q*): the probability that a report supports the person's own value, and any other one value."""

    @abc.abstractmethod
    def _randomize(self, values: np.ndarray, rng) -> Any:
        """The reports of people holding ``values`` (validated int64), drawing from ``rng``."""

    @abc.abstractmethod
    def support_counts(self, reports) -> tuple[np.ndarray, int]:
        """(C, n): how many of the n reports support each value 0..k-1."""

    def randomize(self, values, seed: int | None = None):
        """Each person's report: what leaves the person's device.

        ``values``: one value in [0, k) per person. ``seed=None`` (default): coins from the OS CSPRNG. An
        integer seed is for research only: anyone who knows it can undo the randomization.
        """
        return self._randomize(check_values(values, self.k), resolve_random(seed))

    def variance(self, frequencies, population: int) -> np.ndarray:
        """Exact Var[f^_v] for true fractions ``frequencies`` (one per value, or a scalar) and n = ``population``."""
        p, q = self.support_probabilities()
        f = np.asarray(frequencies, dtype=np.float64)
        return (f * p * (1 - p) + (1 - f) * q * (1 - q)) / (population * (p - q) ** 2)

    def estimate(self, reports, confidence: float = 0.95) -> FrequencyEstimate:
        """The unbiased estimate of each value's fraction, with plug-in standard errors and intervals."""
        confidence = check_confidence(confidence)
        counts, n = self.support_counts(reports)
        if n == 0:
            raise ValueError("no reports to estimate from")
        p, q = self.support_probabilities()
        frequencies = (counts / n - q) / (p - q)
        stderr = np.sqrt(self.variance(np.clip(frequencies, 0.0, 1.0), n))
        z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
        return FrequencyEstimate(
            mechanism=self.name,
            epsilon=self.epsilon,
            population=n,
            confidence=confidence,
            frequencies=frequencies,
            stderr=stderr,
            lower=frequencies - z * stderr,
            upper=frequencies + z * stderr,
        )

    def dp_event(self):
        """A dp-accounting event whose replace-one guarantee covers one report, or None where none fits."""
        return None

    def to_dict(self) -> dict[str, Any]:
        p, q = self.support_probabilities()
        return {
            "mechanism": self.name,
            "epsilon": self.epsilon,
            "k": self.k,
            "p_star": p,
            "q_star": q,
            "guarantee": f"pure {self.epsilon:g}-local DP per person per report (no trusted collector)",
        }


UNIFORM_GRID = 1 << 53
"""A Bernoulli draw with threshold K succeeds when a uniform integer in [0, 2**53) is below K: probability
K / 2**53 exactly."""


def exp_lower_bound(epsilon: float) -> Fraction:
    """A rational at most e**epsilon: ``math.exp`` is within one ulp (a relative 2**-52), lowered by 2**-50."""
    return Fraction(math.exp(epsilon)) * (1 - Fraction(1, 1 << 50))


def grr_keep_threshold(epsilon: float, buckets: int) -> int:
    """K, the largest integer with K (b - 1) / (2**53 - K) <= e**eps (exact rational arithmetic): keeping the value
    with probability K / 2**53 and each other one with (2**53 - K) / (2**53 (b - 1)) is then at most
    epsilon-LDP as drawn, the rounding of the keep probability going in the safe direction."""
    e = exp_lower_bound(epsilon)
    return math.floor(e * UNIFORM_GRID / (e + buckets - 1))


def grr_probabilities(epsilon: float, buckets: int) -> tuple[float, float]:
    """Generalized randomized response over ``buckets`` values: the (keep, each other) probabilities drawn with,
    e**eps / (e**eps + b - 1) and 1 / (e**eps + b - 1) rounded down / up to the draw's grid (`grr_keep_threshold`)."""
    keep = grr_keep_threshold(epsilon, buckets)
    return keep / UNIFORM_GRID, (UNIFORM_GRID - keep) / (UNIFORM_GRID * (buckets - 1))


def grr_draw(values: np.ndarray, epsilon: float, buckets: int, rng) -> np.ndarray:
    """Generalized randomized response over ``buckets``: each value kept with probability `grr_probabilities`'s
    keep, else replaced by one of the other b - 1 values, uniformly."""
    kept = rng.integers(0, UNIFORM_GRID, size=values.size) < grr_keep_threshold(epsilon, buckets)
    other = rng.integers(0, buckets - 1, size=values.size)
    other += other >= values  # skip the person's own value
    return np.where(kept, values, other).astype(np.int64)


def grr_dp_event(epsilon: float, buckets: int):
    """dp-accounting's RandomizedResponseDpEvent for GRR: with probability 1 - p the input, else uniform over all
    b buckets, so p / b = 1 / (e**eps + b - 1), p = b / (e**eps + b - 1)."""
    import dp_accounting

    return dp_accounting.RandomizedResponseDpEvent(
        noise_parameter=buckets / (math.exp(epsilon) + buckets - 1), num_buckets=buckets
    )
