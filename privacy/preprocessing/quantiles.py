"""Private quantiles of a bounded numeric feature from a noisy hierarchical histogram.

The feature's values are binned on a public `Grid` (linear or log scale over public bounds; values
clipped into it, NaN at the midpoint). The bins are the leaves of a tree with ``branching`` children
per node and h = log_branching(bins) levels below the root; every node's count (the root's too: the
number of values) is released with Gaussian noise of one standard deviation. Each of a record's d
values adds 1 to one node per level, so one record moves the h + 1 levels by at most d sqrt(h + 1)
in L2 norm when added or removed, and d sqrt(2 (h + 1)) when replaced. The CDF at each bin edge is
the sum of the at most (branching - 1) h nodes that tile its prefix (Hay et al., VLDB 2010), made
monotone; quantiles are read off it with linear interpolation inside a bin (on the grid's scale).
A flat histogram is the tree with ``branching == bins``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from privacy import validation
from privacy.accounting import Adjacency
from privacy.preprocessing.bounds import Grid, check_values_per_record, records
from privacy.preprocessing.gaussian import Component, allocate
from privacy.preprocessing.noise import NoiseSource


@dataclasses.dataclass(frozen=True)
class TreeHistogram:
    """The noisy tree histogram of one feature.

    Attributes:
      grid: public bins (their number must be a power of ``branching``).
      noise_multiplier: of the whole release (from the budget share).
      branching: children per node (bins for a flat histogram).
      adjacency: the neighbouring relation the sensitivity is for.
      values_per_record: d, the values each record holds.
    """

    grid: Grid
    noise_multiplier: float
    branching: int = 2
    adjacency: Adjacency = Adjacency.ADD_REMOVE
    values_per_record: int = 1

    def __post_init__(self):
        object.__setattr__(self, "adjacency", Adjacency(self.adjacency))
        b = validation.integer("branching", self.branching, minimum=2)
        object.__setattr__(self, "branching", b)
        if b**self.height != self.grid.bins:
            raise ValueError(f"bins ({self.grid.bins}) must be a power of branching ({b})")
        check_values_per_record(self.values_per_record)

    @property
    def height(self) -> int:
        """h: levels below the root."""
        return round(math.log(self.grid.bins, self.branching))

    @property
    def components(self) -> tuple[Component, ...]:
        levels = self.height + 1
        factor = 1.0 if self.adjacency is Adjacency.ADD_REMOVE else 2.0
        sensitivity = self.values_per_record * math.sqrt(factor * levels)
        return allocate({"tree": sensitivity}, {"tree": 1.0}, self.noise_multiplier)

    def accumulate(self, batch) -> np.ndarray:
        """Leaf counts (bins,) of a batch of records."""
        values = records(batch, self.values_per_record)
        return np.bincount(self.grid.bin_of(values).ravel(), minlength=self.grid.bins).astype(np.float64)

    def release(self, leaf_counts: np.ndarray, noise: NoiseSource) -> list[np.ndarray]:
        """Noisy counts of every level, root first (level l has branching^l nodes)."""
        [component] = self.components
        levels = []
        counts = np.asarray(leaf_counts, dtype=np.float64)
        for level in range(self.height, -1, -1):
            levels.append(noise.noisy(counts, component.noise_std))
            counts = counts.reshape(-1, self.branching).sum(axis=1) if level else counts
        return levels[::-1]

    def cdf(self, noisy_levels: list[np.ndarray]) -> np.ndarray:
        """Noisy, monotone counts of values below each of the bins + 1 edges (first 0, last the noisy total)."""
        b, h, bins = self.branching, self.height, self.grid.bins
        total = max(float(noisy_levels[0][0]), 0.0)
        edges = np.arange(bins)
        prefix = np.zeros(bins)
        for level in range(1, h + 1):
            nodes = noisy_levels[level].reshape(-1, b)
            before = np.cumsum(nodes, axis=1) - nodes  # sum of the earlier siblings of each node
            node_of_edge = edges // b ** (h - level)
            prefix += before.reshape(-1)[node_of_edge]
        prefix = np.maximum.accumulate(np.clip(np.append(prefix, total), 0.0, total))
        prefix[0] = 0.0
        return prefix

    def quantiles(self, noisy_levels: list[np.ndarray], probabilities) -> np.ndarray:
        """Values at the given probabilities in [0, 1] (nondecreasing in the probability)."""
        cdf = self.cdf(noisy_levels)
        total = cdf[-1]
        positions = []
        for p in np.asarray(probabilities, dtype=np.float64):
            if total <= 0:
                positions.append(self.grid.bins / 2)
                continue
            target = p * total
            # The first edge whose count reaches the target (for p = 0: the first that exceeds 0).
            i = int(np.searchsorted(cdf, target, side="left" if target > 0 else "right"))
            i = min(max(i, 1), self.grid.bins)
            below, above = cdf[i - 1], cdf[i]
            fraction = 0.0 if above <= below else (target - below) / (above - below)
            positions.append(i - 1 + min(max(fraction, 0.0), 1.0))
        return self.grid.value_at(np.array(positions))
