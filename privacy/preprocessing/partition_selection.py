"""Private partition selection: which tokens a vocabulary may contain, by Gaussian thresholding.

Each record contributes its distinct tokens, at most ``max_tokens_per_record`` (l0) of them (the first
l0 in the record's own order: a choice that depends on that record alone). Token counts get Gaussian
noise of standard deviation s = m sqrt(l0), and a token is kept when its noisy count reaches the
threshold tau = 1 + s * Phi^-1(1 - delta_t / l0): a token that only one record holds is released with
probability at most delta_t / l0, and one record holds at most l0 tokens. The comparison is made on the
released counts, which are snapped to the grid g of s (`privacy.preprocessing.noise.snap`): a snapped count
reaches a grid point T only when the count reaches T - g / 2 (a half-way count rounds to even), so the threshold
applied is the grid point T with T - g / 2 >= tau, and every probability below is taken at the effective threshold
T - g / 2 (comparing with tau itself let a singleton token through up to 1.0035 times as often as delta_t / l0).

Guarantee, under add/remove adjacency (D' = D plus one record r, whose unique tokens U number at most
l0). Run on a fixed token domain, the mechanism is post-processing of the Gaussian mechanism on a
count vector that r moves by at most sqrt(l0) in L2 norm: `GaussianDpEvent(m)`, which dp-accounting
composes exactly with the artifact's other events to some (epsilon, delta_acc). The real mechanism's
domain is the data's tokens, so two couplings bridge the difference. On the domain of D', the run on D
differs from the real one only by releasing a token of U from a count of 0 (probability
p_0 <= l0 Phi(-tau / s)); this bounds P[M(D) in S] - e^epsilon P[M(D') in S] by delta_acc + p_0. On the
domain of D, the run on D' differs from the real one only in never releasing a token of U, which the
real one releases from a count of 1 with probability p_1 <= l0 Phi((1 - tau) / s) = delta_t; this bounds
the other direction by
delta_acc + p_1. So the release is (epsilon, delta_acc + delta_t)-DP: the additive term is never
multiplied by e^epsilon, and additive terms of several vocabularies add up. For a group of K records (a
client holding K of them) the event is `GaussianDpEvent(m / K)` and the additive term
K l0 Phi((K - tau) / s) (`additive_delta`). Replace-one adjacency is not supported: a replaced record's
unique tokens and its replacement's both differ, and no domain has neither.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from scipy import special

from privacy import validation
from privacy.accounting import Adjacency
from privacy.preprocessing.gaussian import Component, allocate
from privacy.preprocessing.noise import NoiseSource, grid


@dataclasses.dataclass(frozen=True)
class GaussianThresholding:
    """Gaussian thresholding of token counts.

    Attributes:
      noise_multiplier: m, of the count vector (from the budget share).
      threshold_delta: delta_t, the bound on releasing any token that only one record holds.
      max_tokens_per_record: l0.
      adjacency: must be add-remove.
    """

    noise_multiplier: float
    threshold_delta: float
    max_tokens_per_record: int = 1
    adjacency: Adjacency = Adjacency.ADD_REMOVE

    def __post_init__(self):
        object.__setattr__(self, "adjacency", Adjacency(self.adjacency))
        if self.adjacency is not Adjacency.ADD_REMOVE:
            raise ValueError(
                "private vocabularies are analysed under add-remove adjacency only (a replaced record's "
                "unique tokens can appear on both sides); use Poisson sampling in the Trainer"
            )
        object.__setattr__(
            self,
            "max_tokens_per_record",
            validation.integer("max_tokens_per_record", self.max_tokens_per_record, minimum=1),
        )
        object.__setattr__(self, "threshold_delta", validation.probability("threshold_delta", self.threshold_delta))

    @property
    def components(self) -> tuple[Component, ...]:
        return allocate({"counts": math.sqrt(self.max_tokens_per_record)}, {"counts": 1.0}, self.noise_multiplier)

    @property
    def noise_std(self) -> float:
        return self.components[0].noise_std

    @property
    def threshold(self) -> float:
        """T: a token is kept when its released (snapped) noisy count is >= T, the smallest grid point of the
        noise std with T - g / 2 >= tau = 1 + s Phi^-1(1 - delta_t / l0) (see the module docstring)."""
        tau = 1.0 + self.noise_std * float(-special.ndtri(self.threshold_delta / self.max_tokens_per_record))
        step = float(grid(self.noise_std))
        return step * math.ceil(tau / step + 0.5)

    def record_tokens(self, values: Iterable) -> list:
        """The tokens one record contributes: its distinct values in order, at most l0 of them."""
        seen = []
        for token in values:
            if token not in seen:
                seen.append(token)
                if len(seen) == self.max_tokens_per_record:
                    break
        return seen

    def release(self, counts: dict, noise: NoiseSource) -> list[tuple]:
        """(token, noisy count) of the kept tokens, most frequent first (ties by token)."""
        tokens = sorted(counts)
        noisy, threshold = noise.noisy([counts[t] for t in tokens], self.noise_std), self.threshold
        kept = [(t, float(c)) for t, c in zip(tokens, noisy, strict=True) if c >= threshold]
        return sorted(kept, key=lambda tc: (-tc[1], tc[0]))

    def parameters(self) -> dict:
        return {
            "threshold": self.threshold,
            "noise_std": self.noise_std,
            "threshold_delta": self.threshold_delta,
            "max_tokens_per_record": self.max_tokens_per_record,
        }


def additive_delta(*, threshold: float, noise_std: float, max_tokens_per_record: int, group_size: int = 1) -> float:
    """The probability bound K l0 Phi((K - T + g / 2) / s) that a token only a group of K records holds is released:
    a count is compared with the threshold T after snapping to the grid g of s, so it passes from T - g / 2.

    Returns 1 when T - g / 2 <= K (no bound).
    """
    k, l0 = group_size, max_tokens_per_record
    effective = threshold - float(grid(noise_std)) / 2
    if effective <= k:
        return 1.0
    return min(1.0, k * l0 * float(special.ndtr((k - effective) / noise_std)))
