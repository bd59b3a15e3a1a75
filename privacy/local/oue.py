"""Optimized unary encoding (OUE; Wang et al. 2017): a person holding v sends k bits, bit v set with probability
1/2 and every other bit set with probability 1 / (e**eps + 1), independently.

Two inputs differ in two bits, so the worst ratio of report probabilities is (1/2 / (1/2)) x
(1 - q) / q = e**eps for q = 1 / (e**eps + 1). As drawn, q is Q / 2**53 with Q rounded up in exact rational
arithmetic (`other_bit_threshold`), so the ratio is at most e**eps. Its variance does not grow with k (unlike
GRR), at the cost of k bits per report.
"""

from __future__ import annotations

import math

import numpy as np

from privacy.local.frequency_oracle import UNIFORM_GRID, FrequencyOracle, exp_lower_bound

_CHUNK_CELLS = 1 << 22
"""Cells (people x k) drawn at once: bounds memory at 32 MiB of uniform int64 draws."""


class OptimizedUnaryEncoding(FrequencyOracle):
    """OUE at per-person ``epsilon`` over k values; reports are bool arrays of shape (n, k)."""

    name = "oue"

    @property
    def other_bit_threshold(self) -> int:
        """Q, the smallest integer with (2**53 - Q) / Q <= L, L a rational at most e**eps (`exp_lower_bound`; exact
        rational arithmetic): a bit other than the
        person's is set when a uniform integer in [0, 2**53) is below Q, with probability q = Q / 2**53 at least
        1 / (e**eps + 1), so the design is at most epsilon-LDP as drawn. (A float q = 1 / (math.exp(eps) + 1) can
        round below that, and its ratio then exceeds e**eps.)"""
        return math.ceil(UNIFORM_GRID / (exp_lower_bound(self.epsilon) + 1))

    def support_probabilities(self):
        """(1/2, q): q = `other_bit_threshold` / 2**53, the probability the bits are drawn with."""
        return 0.5, self.other_bit_threshold / UNIFORM_GRID

    def _randomize(self, values, rng):
        threshold = self.other_bit_threshold
        reports = np.empty((values.size, self.k), dtype=bool)
        rows = max(1, _CHUNK_CELLS // self.k)
        for start in range(0, values.size, rows):
            chunk = values[start : start + rows]
            bits = rng.integers(0, UNIFORM_GRID, size=chunk.size * self.k).reshape(chunk.size, self.k) < threshold
            bits[np.arange(chunk.size), chunk] = rng.random(chunk.size) < 0.5
            reports[start : start + rows] = bits
        return reports

    def support_counts(self, reports):
        reports = np.asarray(reports)
        if (
            reports.ndim != 2
            or reports.shape[1] != self.k
            or not (
                reports.dtype == bool or (np.issubdtype(reports.dtype, np.integer) and np.isin(reports, (0, 1)).all())
            )
        ):
            raise ValueError(
                f"OUE reports must be 0/1 arrays of shape (n, {self.k}), got {reports.dtype} {reports.shape}"
            )
        return reports.sum(axis=0, dtype=np.float64), reports.shape[0]
