"""Optimized unary encoding (OUE; Wang et al. 2017): a person holding v sends k bits, bit v set with probability
1/2 and every other bit set with probability 1 / (e**eps + 1), independently.

Two inputs differ in two bits, so the worst ratio of report probabilities is (1/2 / (1/2)) x
(e**eps / (e**eps + 1)) / (1 / (e**eps + 1)) = e**eps. Its variance does not grow with k (unlike GRR), at the
cost of k bits per report.
"""

from __future__ import annotations

import math

import numpy as np

from privacy.local.frequency_oracle import FrequencyOracle

_CHUNK_CELLS = 1 << 22
"""Cells (people x k) drawn at once: bounds memory at 32 MiB of uniforms."""


class OptimizedUnaryEncoding(FrequencyOracle):
    """OUE at per-person ``epsilon`` over k values; reports are bool arrays of shape (n, k)."""

    name = "oue"

    def support_probabilities(self):
        return 0.5, 1.0 / (math.exp(self.epsilon) + 1)

    def _randomize(self, values, rng):
        _, q = self.support_probabilities()
        reports = np.empty((values.size, self.k), dtype=bool)
        rows = max(1, _CHUNK_CELLS // self.k)
        for start in range(0, values.size, rows):
            chunk = values[start : start + rows]
            bits = rng.random(chunk.size * self.k).reshape(chunk.size, self.k) < q
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
