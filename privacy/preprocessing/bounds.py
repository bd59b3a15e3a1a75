"""Public bounds: the clipping range of a numeric feature, and the grid a histogram bins it on.

Bounds must not come from the private data (not even from its documented minimum and maximum):
they are domain knowledge, a public source, or the output of an earlier private mechanism.
Values are clipped into the bounds before any statistic is taken; NaN counts as the midpoint
(centred value 0), so a malformed record moves a statistic no more than any other record does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from privacy import validation


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A closed interval [lower, upper] of finite numbers, lower < upper."""

    lower: float
    upper: float

    def __post_init__(self):
        for name in ("lower", "upper"):
            object.__setattr__(self, name, validation.number(f"bounds: {name}", getattr(self, name)))
        if not self.lower < self.upper:
            raise ValueError(f"bounds: lower must be below upper, got [{self.lower!r}, {self.upper!r}]")
        object.__setattr__(self, "lower", float(self.lower))
        object.__setattr__(self, "upper", float(self.upper))

    @classmethod
    def of(cls, value) -> "Bounds":
        """``value`` as Bounds: a Bounds, or a (lower, upper) pair; None is refused, naming the setting."""
        if isinstance(value, Bounds):
            return value
        if value is None:
            raise ValueError("bounds: a private analyzer needs public bounds (lower, upper); none were given")
        try:
            lower, upper = value
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a (lower, upper) pair, got {value!r}") from None
        return cls(lower, upper)

    @property
    def midpoint(self) -> float:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> float:
        """Half the width: the largest |x - midpoint| of a clipped value."""
        return (self.upper - self.lower) / 2

    def clip(self, values) -> np.ndarray:
        """``values`` as float64, clipped into [lower, upper]; NaN becomes the midpoint."""
        values = np.asarray(values, dtype=np.float64)
        return np.clip(np.where(np.isnan(values), self.midpoint, values), self.lower, self.upper)

    def to_list(self) -> list[float]:
        return [self.lower, self.upper]


def check_values_per_record(d) -> None:
    """d, the values each record holds, must be an integer >= 1."""
    validation.integer("values_per_record", d, minimum=1)


def records(batch, values_per_record: int) -> np.ndarray:
    """A batch of records (first axis) as a [records, values_per_record] array.

    An empty batch contributes no records (zero sums, as its neighbours' assume); its width is checked like any
    batch's where its shape gives one (``(0, d)``), so a refusal does not depend on whether the data is empty.

    Raises:
      ValueError: when a record does not hold exactly ``values_per_record`` values (the sensitivity assumes it).
    """
    values = np.asarray(batch)
    rows = values.shape[0] if values.ndim else 1
    width = math.prod(values.shape[1:]) if values.ndim > 1 else 1
    if rows == 0 and values.ndim < 2:  # no records (an empty list or 1-D batch) of unknown width: contribute nothing
        width = values_per_record
    if width != values_per_record:  # checked on empty batches too: a refusal then does not tell emptiness
        raise ValueError(f"each record must hold {values_per_record} values (the feature's static size), got {width}")
    return values.reshape(rows, values_per_record)


SCALES = ("linear", "log")


@dataclasses.dataclass(frozen=True)
class Grid:
    """``bins`` equal-width bins over the bounds, on a linear or a log scale (log needs lower > 0)."""

    bounds: Bounds
    bins: int
    scale: str = "linear"

    def __post_init__(self):
        object.__setattr__(self, "bins", validation.integer("bins", self.bins, minimum=2))
        validation.choice("scale", self.scale, SCALES)
        if self.scale == "log" and self.bounds.lower <= 0:
            raise ValueError(f"a log-scale grid needs bounds above 0, got lower={self.bounds.lower!r}")

    def _forward(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.scale == "log" else values

    def _backward(self, positions: np.ndarray) -> np.ndarray:
        return np.exp(positions) if self.scale == "log" else positions

    def edges(self) -> np.ndarray:
        """The bins + 1 bin edges, from lower to upper."""
        lo, hi = self._forward(np.array([self.bounds.lower, self.bounds.upper]))
        edges = self._backward(np.linspace(lo, hi, self.bins + 1))
        edges[0], edges[-1] = self.bounds.lower, self.bounds.upper
        return edges

    def bin_of(self, values) -> np.ndarray:
        """The bin index (0 .. bins - 1) of each value, after clipping into the bounds."""
        clipped = self._forward(self.bounds.clip(values))
        lo, hi = self._forward(np.array([self.bounds.lower, self.bounds.upper]))
        index = np.floor((clipped - lo) / (hi - lo) * self.bins).astype(np.int64)
        return np.clip(index, 0, self.bins - 1)

    def value_at(self, positions) -> np.ndarray:
        """Values at fractional bin positions (0 = lower edge, bins = upper edge), interpolated on the scale."""
        lo, hi = self._forward(np.array([self.bounds.lower, self.bounds.upper]))
        return self._backward(lo + np.asarray(positions, dtype=np.float64) / self.bins * (hi - lo))
